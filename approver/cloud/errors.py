"""The client's own error tree: httpx is an implementation detail, these are the contract.

::

    CloudError
      TransportError          the exchange failed below HTTP
        NotSent               provably never reached the server (connect refused, connect/pool timeout)
        OutcomeUnknown        may have been processed (read timeout, reset mid-response)
      BadResponse             a 2xx whose body is not what the API documents
      ApiError                the API answered with an error status
        AuthError             401/403: never retried in a loop (the AK locks after 5 failures)
          ClockSkew           401 "signature expired": our clock is off by > 15 minutes
        Throttled             429 / APIGW.0308 / EndPoint.0022
        NotFound              404
        ServerError           5xx
        ClientError           any other 4xx
      ListingIncomplete       pagination stopped before the listing was complete

Every error carries what an operator needs (operation, HTTP status, error code, a bounded
message, X-Request-Id) and never a credential: messages come only from the known error fields
and are cut at 256 characters.
"""

from __future__ import annotations

import json
from typing import Any

MAX_MESSAGE = 256
THROTTLE_CODES = frozenset({"apigw.0308", "apig.0308", "endpoint.0022"})


class CloudError(Exception):
    """Base of every error the VPCEP client raises."""

    def __init__(
        self,
        message: str,
        *,
        operation: str = "",
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.message = message[:MAX_MESSAGE]
        self.operation = operation
        self.status = status
        self.code = code
        self.request_id = request_id
        super().__init__(self.message)

    def __str__(self) -> str:
        parts = [self.operation] if self.operation else []
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.code:
            parts.append(self.code)
        head = " ".join(parts)
        tail = f" (request {self.request_id})" if self.request_id else ""
        return f"{head}: {self.message}{tail}" if head else f"{self.message}{tail}"

    @property
    def short_code(self) -> str:
        """What an audit record's ``error_code`` says: the API code, else the status, else the class."""
        if self.code:
            return self.code
        if self.status is not None:
            return f"HTTP{self.status}"
        return type(self).__name__


class TransportError(CloudError):
    """The exchange failed below HTTP."""


class NotSent(TransportError):
    """The request provably never reached the server: safe to resend, even a POST."""


class OutcomeUnknown(TransportError):
    """The request may have been processed: a POST must be resolved by reading state again."""


class BadResponse(CloudError):
    """A success status with a body that is not the documented JSON."""


class ListingIncomplete(CloudError):
    """Pagination did not complete: nothing may be inferred from what is missing."""


class ApiError(CloudError):
    """The API answered with an error status."""


class AuthError(ApiError):
    """401/403: wrong keys, missing permission or a locked AK. Never retried in a loop."""


class ClockSkew(AuthError):
    """The gateway says the signature expired: X-Sdk-Date is > 15 minutes from its clock."""


class Throttled(ApiError):
    """Rate limited (429 APIGW.0308, or VPCEP's own 400 EndPoint.0022)."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class NotFound(ApiError):
    """404: the resource does not exist (or no longer does)."""


class ServerError(ApiError):
    """5xx: the server failed; for a POST the outcome is unknown."""


class ClientError(ApiError):
    """Any other 4xx: our request was wrong or the resource is in the wrong state."""


def error_fields(body: bytes) -> tuple[str | None, str]:
    """Find (code, message) in either documented body shape, as the official SDK does.

    Looks for error_code/error_msg, errorCode/errorMsg, code/message, then one level of
    nesting (``{"error": {"code", "message"}}``). Unknown bodies yield no code and a bounded,
    generic message rather than the raw text, which could hold anything.
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, "non-JSON error body"
    return _find_fields(data) if isinstance(data, dict) else (None, "unexpected error body")


def _find_fields(data: dict[str, Any]) -> tuple[str | None, str]:
    for code_key, msg_key in (
        ("error_code", "error_msg"),
        ("errorCode", "errorMsg"),
        ("code", "message"),
    ):
        if isinstance(data.get(code_key), str):
            message = data.get(msg_key)
            return data[code_key], message if isinstance(message, str) else ""
    for value in data.values():
        if isinstance(value, dict):
            code, message = _find_fields(value)
            if code:
                return code, message
    return None, "unexpected error body"


def from_response(
    operation: str,
    status: int,
    body: bytes,
    request_id: str | None,
    retry_after: float | None = None,
) -> ApiError:
    """Map an error response to the tree."""
    code, message = error_fields(body)
    kw: dict[str, Any] = {
        "operation": operation,
        "status": status,
        "code": code,
        "request_id": request_id,
    }
    lowered = (code or "").lower()
    if status == 429 or lowered in THROTTLE_CODES:
        return Throttled(message or "throttled", retry_after=retry_after, **kw)
    if status in (401, 403):
        if "signature expired" in message:
            return ClockSkew(message, **kw)
        return AuthError(message or "authentication failed", **kw)
    if status == 404:
        return NotFound(message or "not found", **kw)
    if status >= 500:
        return ServerError(message or "server error", **kw)
    return ClientError(message or "request refused", **kw)
