"""What the emulator puts on the wire when something is refused: codes, messages, body shapes.

Two origins, two body shapes, as Huawei Cloud answers (vpcep-api.md §6):

* **VPCEP** itself: ``{"error_code": "EndPoint.xxxx", "error_msg": "<message>"}`` with the exact
  English message of Huawei's error-code table (vpcep-error-codes.zh.txt). A scenario may switch
  to the per-API schema ``{"error": {"code": ..., "message": ...}}`` that [DOC-HW]'s operation
  pages document, so clients can be tried against both.
* **API Gateway** in front of it:
  ``{"error_code": "APIGW.xxxx", "error_msg": ..., "request_id": ...}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

ErrorShape = Literal["flat", "nested"]
ERROR_SHAPES: Final = ("flat", "nested")

# (HTTP status, exact English message) per VPCEP code, as Huawei's table has them. Only the codes
# the emulator can return are listed; the rest of the table is in shared/reference.
VPCEP_ERRORS: Final[dict[str, tuple[int, str]]] = {
    "EndPoint.0002": (400, "Parameter error."),
    "EndPoint.0004": (403, "Authentication information is incorrect or you have no permissions."),
    "EndPoint.0006": (400, "Invalid limit."),
    "EndPoint.0010": (400, "Invalid offset."),
    "EndPoint.0017": (400, "Invalid sort_key."),
    "EndPoint.0018": (400, "Invalid sort_dir."),
    "EndPoint.0019": (400, "Invalid status."),
    "EndPoint.0021": (400, "Invalid marker_id."),
    "EndPoint.2003": (400, "The endpoint service does not exist."),
    "EndPoint.2004": (400, "The endpoint service is unavailable."),
    "EndPoint.2013": (400, "The endpoint does not belong to the endpoint service."),
    "EndPoint.2014": (400, "The endpoint has connected to the endpoint service."),
    "EndPoint.2017": (400, "Invalid endpoint ID."),
    "EndPoint.2018": (400, "The endpoint is being deleted."),
    "EndPoint.2019": (400, "The endpoint is being created."),
    "EndPoint.2027": (400, "Invalid action."),
    "EndPoint.2031": (400, "Only one endpoint is allowed."),
    "EndPoint.2047": (400, "The VPC endpoint in the Failed status cannot be modified."),
}

# API Gateway codes (the signing guide's error page and its FAQ, vpcep-api.md §6.4).
IAM_AUTH_PREFIX: Final = "Incorrect IAM authentication information: "
GATEWAY_ERRORS: Final[dict[str, tuple[int, str]]] = {
    "APIGW.0101": (404, "The API does not exist or has not been published in the environment."),
    "APIGW.0201": (413, "Request entity too large."),
    "APIGW.0301": (401, "Incorrect IAM authentication information."),
}


class EmulatorError(Exception):
    """A refusal the emulator answers with (any status >= 400)."""

    def __init__(self, code: str, status: int, message: str, *, gateway: bool) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.status = status
        self.message = message
        self.gateway = gateway


def vpcep_error(code: str) -> EmulatorError:
    """A VPCEP error by its documented code: the status and message come from the table."""
    status, message = VPCEP_ERRORS[code]
    return EmulatorError(code, status, message, gateway=False)


def gateway_error(code: str, message: str | None = None) -> EmulatorError:
    """An API Gateway error; ``message`` replaces the generic one (e.g. APIGW.0301 sub-messages)."""
    status, default = GATEWAY_ERRORS[code]
    return EmulatorError(code, status, message or default, gateway=True)


def auth_error(detail: str) -> EmulatorError:
    """401 APIGW.0301 with one of the gateway's IAM sub-messages."""
    return gateway_error("APIGW.0301", IAM_AUTH_PREFIX + detail)


def error_body(error: EmulatorError, request_id: str, shape: ErrorShape) -> dict[str, Any]:
    """The JSON body for ``error``, in the shape its origin uses."""
    if error.gateway:
        return {"error_code": error.code, "error_msg": error.message, "request_id": request_id}
    if shape == "nested":
        return {"error": {"code": error.code, "message": error.message}}
    return {"error_code": error.code, "error_msg": error.message}


def dump(payload: object) -> bytes:
    """Serialise a response body (UTF-8, non-ASCII kept, as the service sends it)."""
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class Reply:
    """A complete HTTP answer, before it is written to the socket.

    ``error_code`` is what the request log records; the body already carries it.
    """

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    error_code: str | None = None

    @classmethod
    def json(cls, status: int, payload: object, *, error_code: str | None = None) -> Reply:
        return cls(status, dump(payload), (("Content-Type", "application/json"),), error_code)


@dataclass(frozen=True)
class Incoming:
    """One request exactly as received: raw path and query, header values, body bytes.

    ``headers`` has lower-cased names (the first value when a name repeats).
    """

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())
