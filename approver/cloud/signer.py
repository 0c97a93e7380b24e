"""SDK-HMAC-SHA256 request signing, as Huawei Cloud's API gateway verifies it.

Everything here is a pure function of (method, url, headers, body, credentials, time); the
httpx glue is the small ``SignerAuth`` at the bottom. The emulator verifies signatures with the
same canonical-request code, and the test suite checks both against the official SDK's signer.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, unquote, urlsplit

import httpx

ALGORITHM = "SDK-HMAC-SHA256"
DATE_HEADER = "X-Sdk-Date"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


@dataclass(frozen=True)
class Credentials:
    """An AK/SK pair, optionally temporary (with a security token).

    The secret parts never appear in ``repr``: this object ends up in settings, in
    tracebacks and in log context.
    """

    ak: str
    sk: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        temporary = ", temporary" if self.security_token else ""
        return f"Credentials(ak={mask(self.ak)}{temporary})"

    __str__ = __repr__


def mask(value: str) -> str:
    """Show enough of an identifier to recognise it, never the whole of it."""
    if len(value) <= 8:
        return "***"
    return f"{value[:4]}***{value[-2:]}"


def _query_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def encode(text: str) -> str:
    """RFC 3986 percent-encoding as the gateway expects: space -> %20, '/' -> %2F, '~' kept."""
    return quote(text, safe="~")


def canonical_query(pairs: Iterable[tuple[str, object]]) -> str:
    """The canonical (and sent) query string: pairs sorted by raw key then raw value."""
    flat: list[tuple[str, str]] = []
    for key, value in pairs:
        if isinstance(value, (list, tuple)):
            flat.extend((key, _query_value(v)) for v in value)
        else:
            flat.append((key, _query_value(value)))
    return "&".join(f"{encode(k)}={encode(v)}" for k, v in sorted(flat))


def parse_query(raw: str) -> list[tuple[str, str]]:
    """Split a raw query string into decoded pairs (no '+'-as-space: the gateway does not)."""
    pairs: list[tuple[str, str]] = []
    for part in raw.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        pairs.append((unquote(key), unquote(value)))
    return pairs


def canonical_uri(path: str) -> str:
    """Each segment re-encoded, and always a trailing slash (so /a and /a/ sign the same)."""
    segments = [encode(s) for s in unquote(path).split("/")]
    uri = "/".join(segments)
    return uri if uri.endswith("/") else uri + "/"


def build_url(base: str, path: str, query: Iterable[tuple[str, object]] = ()) -> str:
    """The URL to send: httpx must not re-encode it, so never use ``params=`` with a signer."""
    qs = canonical_query(query)
    return f"{base.rstrip('/')}{path}" + (f"?{qs}" if qs else "")


def signed_header_names(headers: Mapping[str, str]) -> list[str]:
    """Every header present at signing time except names containing '_', sorted."""
    return sorted({k.lower() for k in headers if "_" not in k})


def payload_hash(headers: Mapping[str, str], body: bytes) -> str:
    lowered = {k.lower(): v for k, v in headers.items()}
    declared = lowered.get("x-sdk-content-sha256")
    if declared and body:
        return declared
    return hashlib.sha256(body).hexdigest()


def canonical_request(
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    signed: list[str],
    body: bytes,
) -> str:
    """Build the canonical request from what is (or was) on the wire.

    ``query`` is the raw query string; ``signed`` the lower-cased names to include.
    """
    lowered = {k.lower(): str(v).strip() for k, v in headers.items()}
    header_lines = "".join(f"{name}:{lowered.get(name, '')}\n" for name in signed)
    return "\n".join(
        [
            method.upper(),
            canonical_uri(path),
            canonical_query(parse_query(query)),
            header_lines,
            ";".join(signed),
            payload_hash(headers, body),
        ]
    )


def string_to_sign(creq: str, date: str) -> str:
    digest = hashlib.sha256(creq.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{date}\n{digest}"


def signature(sk: str, sts: str) -> str:
    return hmac.new(sk.encode("utf-8"), sts.encode("utf-8"), hashlib.sha256).hexdigest()


def authorization(ak: str, signed: list[str], sig: str) -> str:
    return f"{ALGORITHM} Access={ak}, SignedHeaders={';'.join(signed)}, Signature={sig}"


def format_date(now: datetime) -> str:
    """``X-Sdk-Date`` for ``now``; a naive datetime is taken as UTC (as ``utcnow()`` gives)."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.astimezone(UTC).strftime(DATE_FORMAT)


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: Credentials,
    project_id: str | None,
    now: datetime,
) -> dict[str, str]:
    """Return the full header set to send, ``Authorization`` included.

    Follows huaweicloudsdkcore's signer: project id (and security token) are added before
    signing, so they are signed; ``X-Sdk-Date`` comes from ``headers`` if given, else ``now``.
    """
    parts = urlsplit(url)
    out = {k: str(v).strip() for k, v in headers.items()}
    lowered = {k.lower() for k in out}
    content_type = next((v for k, v in out.items() if k.lower() == "content-type"), None)
    if content_type and not content_type.startswith(("application/json", "application/bson")):
        out["X-Sdk-Content-Sha256"] = UNSIGNED_PAYLOAD
    if "x-sdk-date" not in lowered:
        out[DATE_HEADER] = format_date(now)
    if "host" not in lowered:
        out["Host"] = parts.netloc
    if project_id:
        out["X-Project-Id"] = project_id
    if credentials.security_token:
        out["X-Security-Token"] = credentials.security_token
    date = next(v for k, v in out.items() if k.lower() == "x-sdk-date")
    signed = signed_header_names(out)
    creq = canonical_request(method, parts.path or "/", parts.query, out, signed, body)
    out["Authorization"] = authorization(
        credentials.ak, signed, signature(credentials.sk, string_to_sign(creq, date))
    )
    return out


@dataclass(frozen=True)
class ParsedAuthorization:
    ak: str
    signed_headers: list[str]
    signature: str


def parse_authorization(value: str) -> ParsedAuthorization | None:
    """Parse an ``SDK-HMAC-SHA256 Access=…, SignedHeaders=…, Signature=…`` header (server side)."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        return None
    fields: dict[str, str] = {}
    for item in rest.split(","):
        key, _, val = item.strip().partition("=")
        fields[key] = val
    try:
        return ParsedAuthorization(
            fields["Access"], fields["SignedHeaders"].split(";"), fields["Signature"]
        )
    except KeyError:
        return None


class SignerAuth(httpx.Auth):
    """Signs each request just before it is sent (a retry is re-signed with a fresh date)."""

    requires_request_body = True

    def __init__(
        self,
        credentials: Callable[[], Credentials],
        project_id: str | None,
        clock: Callable[[], datetime],
    ) -> None:
        self._credentials = credentials
        self._project_id = project_id
        self._clock = clock

    def __repr__(self) -> str:
        return f"SignerAuth(project_id={self._project_id!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        # Drop what an earlier signing of this same request added: a re-sent request would
        # otherwise keep its stale X-Sdk-Date (``sign`` honours a given date) and sign the old
        # Authorization as a header. The date always comes from the clock.
        for name in _SET_BY_SIGNER:
            if name in request.headers:
                del request.headers[name]
        # Headers httpx adds itself (accept, content-length, …) are left unsigned, as the SDK does.
        given = {
            k: v for k, v in request.headers.items() if k.lower() not in _UNSIGNED_TRANSPORT_HEADERS
        }
        signed = sign(
            request.method,
            str(request.url),
            given,
            request.content,
            self._credentials(),
            self._project_id,
            self._clock(),
        )
        for key, value in signed.items():
            request.headers[key] = value
        yield request


_UNSIGNED_TRANSPORT_HEADERS = frozenset(
    {"accept", "accept-encoding", "connection", "content-length", "user-agent"}
)
_SET_BY_SIGNER = ("authorization", "x-sdk-date", "x-project-id", "x-security-token")
