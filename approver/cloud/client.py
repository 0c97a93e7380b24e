"""The VPCEP client. Every HTTP exchange goes through ``VpcepClient._call``.

That one place owns signing (via ``SignerAuth``), timeouts, the body-size cap, the mapping of
httpx failures to our error tree, and the retry rules:

* GETs are retried on throttling, 5xx, timeouts and dropped connections, with capped
  exponential backoff and full jitter, honouring ``Retry-After``.
* A POST/PUT is resent only when it provably never reached the server (``NotSent``) or the
  gateway throttled it before the backend; anything else is surfaced for the caller to resolve
  by reading the connection again. The accept/reject API has no idempotency token.
* 401/403 are never retried: the AK locks after five failed authentications.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from approver.cloud import errors
from approver.cloud.models import (
    Malformed,
    RecordError,
    parse_connection,
    parse_service,
    record_id,
)
from approver.cloud.signer import Credentials, SignerAuth, build_url
from approver.records import Connection, Service

Action = Literal["receive", "reject"]
Sleep = Callable[[float], Awaitable[None]]
JSON_TYPE = "application/json"
JSON_WRITE_TYPE = "application/json;charset=utf-8"


@dataclass(frozen=True)
class ClientSettings:
    """How one client talks to one (endpoint, project)."""

    endpoint: str
    project_id: str
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    attempts: int = 4
    backoff_base: float = 0.5
    backoff_cap: float = 20.0
    retry_after_cap: float = 60.0
    page_limit: int = 1000
    max_pages: int = 200
    max_body_bytes: int = 32 * 1024 * 1024
    concurrency: int = 8
    user_agent: str = "vpcep-approver"


@dataclass(frozen=True)
class Listing:
    """A complete listing: parsed records, plus the ones that could not be parsed."""

    items: tuple[Any, ...]
    malformed: tuple[Malformed, ...] = ()
    requests: int = 0


@dataclass(frozen=True)
class ActResult:
    """What the accept/reject call returned."""

    status: str | None
    request_id: str | None
    latency_ms: float


@dataclass(frozen=True)
class Reply:
    data: dict[str, Any]
    request_id: str | None
    latency_ms: float


@dataclass
class CallStats:
    """Counters a sweep reads afterwards (API calls by operation, retries, throttles)."""

    calls: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    throttled: int = 0


class VpcepClient:
    """Async client for the VPCEP operations the daemon needs."""

    def __init__(
        self,
        settings: ClientSettings,
        credentials: Callable[[], Credentials],
        *,
        clock: Callable[[], datetime],
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.stats = CallStats()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._limit = asyncio.Semaphore(settings.concurrency)
        self._http = httpx.AsyncClient(
            auth=SignerAuth(credentials, settings.project_id, clock),
            timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
            transport=transport,
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": settings.user_agent},
        )

    def __repr__(self) -> str:
        return f"VpcepClient(endpoint={self.settings.endpoint!r}, project_id={self.settings.project_id!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> VpcepClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- operations -------------------------------------------------------------------

    def _path(self, *parts: str) -> str:
        return "/".join(["", "v1", self.settings.project_id, *parts])

    async def list_services(self) -> Listing:
        """Every endpoint service of the project (ServiceList records, with tags)."""
        return await self._list(
            "ListEndpointService",
            self._path("vpc-endpoint-services"),
            "endpoint_services",
            (),
            parse_service,
        )

    async def show_service(self, service_id: str) -> Service:
        reply = await self._call(
            "ListServiceDetails", "GET", self._path("vpc-endpoint-services", service_id)
        )
        try:
            return parse_service(reply.data)
        except RecordError as exc:
            raise errors.BadResponse(str(exc), operation="ListServiceDetails") from None

    async def list_connections(
        self,
        service_id: str,
        *,
        status: str | None = None,
        endpoint_id: str | None = None,
    ) -> Listing:
        """A service's connections, optionally filtered; de-duplicated by endpoint id."""
        query: list[tuple[str, object]] = [("sort_key", "create_at"), ("sort_dir", "asc")]
        if status:
            query.append(("status", status))
        if endpoint_id:
            query.append(("id", endpoint_id))
        return await self._list(
            "ListServiceConnections",
            self._path("vpc-endpoint-services", service_id, "connections"),
            "connections",
            query,
            parse_connection,
        )

    async def connection(self, service_id: str, endpoint_id: str) -> Connection | None:
        """Read one connection again (None when it no longer exists)."""
        listing = await self.list_connections(service_id, endpoint_id=endpoint_id)
        for item in listing.items:
            if item.id == endpoint_id:
                return item  # type: ignore[no-any-return]
        if listing.malformed:
            raise errors.BadResponse(
                listing.malformed[0].reason, operation="ListServiceConnections"
            )
        return None

    async def act(self, service_id: str, endpoint_id: str, action: Action) -> ActResult:
        """Accept (``receive``) or reject exactly one endpoint."""
        body = {"action": action, "endpoints": [endpoint_id]}
        reply = await self._call(
            "AcceptOrRejectEndpoint",
            "POST",
            self._path("vpc-endpoint-services", service_id, "connections", "action"),
            body=body,
        )
        status = None
        for item in reply.data.get("connections") or []:
            if isinstance(item, dict) and item.get("id") == endpoint_id:
                status = item.get("status") if isinstance(item.get("status"), str) else None
        return ActResult(status, reply.request_id, reply.latency_ms)

    async def update_descriptions(
        self, service_id: str, descriptions: Iterable[tuple[str, str]]
    ) -> Reply:
        """Write connection descriptions (the only connection field a provider can write)."""
        body = {"connections": [{"id": i, "description": d} for i, d in descriptions]}
        return await self._call(
            "UpdateEndpointConnectionsDesc",
            "PUT",
            self._path("vpc-endpoint-services", service_id, "connections", "description"),
            body=body,
        )

    # -- pagination ---------------------------------------------------------------------

    async def _list(
        self,
        operation: str,
        path: str,
        key: str,
        query: Sequence[tuple[str, object]],
        parse: Callable[[Any], Any],
    ) -> Listing:
        items: dict[str, Any] = {}
        malformed: list[Malformed] = []
        offset = 0
        limit = self.settings.page_limit
        for page in range(1, self.settings.max_pages + 1):
            reply = await self._call(
                operation, "GET", path, [*query, ("limit", limit), ("offset", offset)]
            )
            records = reply.data.get(key)
            total = reply.data.get("total_count")
            if (
                not isinstance(records, list)
                or isinstance(total, bool)
                or not isinstance(total, int)
            ):
                raise errors.BadResponse(
                    f"page {page} lacks a {key!r} list or an integer total_count",
                    operation=operation,
                    request_id=reply.request_id,
                )
            for raw in records:
                try:
                    parsed = parse(raw)
                except RecordError as exc:
                    malformed.append(Malformed(record_id(raw), str(exc)))
                    continue
                # Offset paging over a changing list can repeat an item; keep the first.
                items.setdefault(parsed.id, parsed)
            offset += len(records)
            if offset >= total:
                return Listing(tuple(items.values()), tuple(malformed), page)
            if not records:
                raise errors.ListingIncomplete(
                    f"page {page} was empty at offset {offset} of {total}", operation=operation
                )
        raise errors.ListingIncomplete(
            f"more than {self.settings.max_pages} pages; stopped", operation=operation
        )

    # -- the choke point ------------------------------------------------------------------

    async def _call(
        self,
        operation: str,
        method: str,
        path: str,
        query: Sequence[tuple[str, object]] = (),
        body: dict[str, Any] | None = None,
    ) -> Reply:
        url = build_url(self.settings.endpoint, path, query)
        content = json.dumps(body).encode() if body is not None else b""
        retryable = _retry_read if method == "GET" else _retry_write
        retrying = AsyncRetrying(
            stop=stop_after_attempt(max(1, self.settings.attempts)),
            wait=self._wait,
            retry=retry_if_exception(retryable),
            sleep=self._sleep,
            reraise=True,
            before_sleep=self._count_retry,
        )
        async for attempt in retrying:
            with attempt:
                return await self._send(operation, method, url, content)
        raise AssertionError("unreachable")  # pragma: no cover

    def _count_retry(self, state: RetryCallState) -> None:
        self.stats.retries += 1

    def _wait(self, state: RetryCallState) -> float:
        """Full jitter, ``rand(0, min(cap, base * 2**n))``; a Retry-After is honoured (capped)."""
        n = state.attempt_number
        delay = self._rng.uniform(
            0, min(self.settings.backoff_cap, self.settings.backoff_base * 2**n)
        )
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, errors.Throttled) and exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, self.settings.retry_after_cap))
        return delay

    async def _send(self, operation: str, method: str, url: str, content: bytes) -> Reply:
        headers = {"Content-Type": JSON_TYPE if method == "GET" else JSON_WRITE_TYPE}
        self.stats.calls[operation] = self.stats.calls.get(operation, 0) + 1
        async with self._limit:
            started = time.monotonic()
            try:
                async with self._http.stream(method, url, content=content, headers=headers) as resp:
                    raw = await self._read(resp, operation)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                raise errors.NotSent(_describe(exc), operation=operation) from None
            except httpx.TransportError as exc:
                raise errors.OutcomeUnknown(_describe(exc), operation=operation) from None
            latency = (time.monotonic() - started) * 1000
        request_id = resp.headers.get("x-request-id")
        if resp.status_code >= 400:
            err = errors.from_response(
                operation,
                resp.status_code,
                raw,
                request_id,
                _retry_after(resp.headers.get("retry-after")),
            )
            if isinstance(err, errors.Throttled):
                self.stats.throttled += 1
            raise err
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise errors.BadResponse(
                f"HTTP {resp.status_code} body is not JSON",
                operation=operation,
                status=resp.status_code,
                request_id=request_id,
            ) from None
        if not isinstance(data, dict):
            raise errors.BadResponse(
                "body is not a JSON object", operation=operation, request_id=request_id
            )
        return Reply(data, request_id, latency)

    async def _read(self, resp: httpx.Response, operation: str) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.aiter_bytes():
            size += len(chunk)
            if size > self.settings.max_body_bytes:
                raise errors.BadResponse(
                    f"body larger than {self.settings.max_body_bytes} bytes", operation=operation
                )
            chunks.append(chunk)
        return b"".join(chunks)


def _describe(exc: httpx.HTTPError) -> str:
    # httpx messages name the host and the failure, never headers or credentials.
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _retry_read(exc: BaseException) -> bool:
    """A GET changes nothing, so anything transient may be tried again."""
    return isinstance(
        exc,
        errors.TransportError | errors.Throttled | errors.ServerError | errors.BadResponse,
    )


def _retry_write(exc: BaseException) -> bool:
    """A write is resent only when it provably was not processed."""
    return isinstance(exc, errors.NotSent | errors.Throttled)
