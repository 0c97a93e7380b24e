"""The VPCEP client's choke point: error mapping, retries, pagination guards.

Status and body faults are scripted with httpx.MockTransport (the emulator covers the real
wire format elsewhere); no test sleeps: the client's sleep is injected and recorded.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from approver.cloud import errors
from approver.cloud.client import ClientSettings, VpcepClient
from approver.cloud.signer import Credentials

PROJECT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
SERVICE = "4189d3c2-8882-4871-a3c2-d380272eed88"


def conn(i: int, status: str = "pendingAcceptance") -> dict[str, Any]:
    return {
        "id": f"ep-{i:04d}",
        "marker_id": 2**60 + i,
        "domain_id": "0c1f2e3d4c5b6a798877665544332211",
        "status": status,
        "description": "",
        "created_at": "2026-11-26T00:00:00Z",
        "updated_at": "2026-11-26T00:00:00.123",
        "error": [],
    }


class Harness:
    """A client wired to a scripted handler, with a recorded fake sleep."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response], **settings: Any):
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

        def record(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return handler(request)

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        self.client = VpcepClient(
            ClientSettings(endpoint="https://vpcep.test", project_id=PROJECT, **settings),
            lambda: Credentials("AKTEST0000000000000A", "sk-test-secret-value-000"),
            clock=lambda: datetime(2026, 11, 26, tzinfo=UTC),
            sleep=sleep,
            rng=random.Random(7),
            transport=httpx.MockTransport(record),
        )

    def run(self, coro: Any) -> Any:
        async def go() -> Any:
            try:
                return await coro
            finally:
                await self.client.aclose()

        return asyncio.run(go())


def error(status: int, code: str, msg: str = "x", **headers: str) -> httpx.Response:
    return httpx.Response(
        status,
        json={"error_code": code, "error_msg": msg},
        headers={"X-Request-Id": "req-1", **headers},
    )


def test_pagination_walks_every_page_and_dedupes() -> None:
    """Pages are fetched by offset until total_count, and a repeated item is kept once."""
    items = [conn(i) for i in range(5)]

    def handler(request: httpx.Request) -> httpx.Response:
        q = dict(request.url.params)
        offset, limit = int(q["offset"]), int(q["limit"])
        page = items[offset : offset + limit]
        if offset == 2:
            page = [items[1], *page[:1]]  # the list shifted: item 1 repeats
        return httpx.Response(200, json={"connections": page, "total_count": 5})

    h = Harness(handler, page_limit=2)
    listing = h.run(h.client.list_connections(SERVICE, status="pendingAcceptance"))
    ids = [c.id for c in listing.items]
    assert ids == sorted(set(ids))
    assert len(h.requests) == 3
    assert "status=pendingAcceptance" in str(h.requests[0].url)


def test_endless_pagination_is_cut_by_the_page_guard() -> None:
    """A server that always claims more items stops at max_pages with ListingIncomplete."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"connections": [conn(1)], "total_count": 10**9})

    h = Harness(handler, page_limit=1, max_pages=5)
    with pytest.raises(errors.ListingIncomplete):
        h.run(h.client.list_connections(SERVICE))
    assert len(h.requests) == 5


def test_empty_page_before_total_is_incomplete() -> None:
    """An empty page while total_count says more exist is not taken as the end."""

    def handler(request: httpx.Request) -> httpx.Response:
        offset = int(dict(request.url.params)["offset"])
        page = [conn(0)] if offset == 0 else []
        return httpx.Response(200, json={"connections": page, "total_count": 3})

    h = Harness(handler, page_limit=1)
    with pytest.raises(errors.ListingIncomplete):
        h.run(h.client.list_connections(SERVICE))


def test_malformed_record_is_reported_not_guessed() -> None:
    """A record missing its status is returned as malformed; the others parse."""
    bad = conn(2)
    del bad["status"]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"connections": [conn(1), bad], "total_count": 2})

    h = Harness(handler)
    listing = h.run(h.client.list_connections(SERVICE))
    assert [c.id for c in listing.items] == ["ep-0001"]
    assert listing.malformed[0].id == "ep-0002"
    assert "status" in listing.malformed[0].reason


@pytest.mark.parametrize(
    "body",
    [b'{"connections": [', b"<html>502 Bad Gateway</html>", b"[]", b'{"connections": 3}'],
)
def test_bad_success_bodies_are_bad_responses(body: bytes) -> None:
    """Truncated JSON, HTML, or the wrong shape on a 200 is BadResponse, never an empty list."""
    h = Harness(lambda r: httpx.Response(200, content=body), attempts=1)
    with pytest.raises(errors.BadResponse):
        h.run(h.client.list_connections(SERVICE))


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (429, "APIGW.0308", errors.Throttled),
        (400, "EndPoint.0022", errors.Throttled),
        (401, "APIGW.0301", errors.AuthError),
        (403, "EndPoint.0004", errors.AuthError),
        (404, "EndPoint.2006", errors.NotFound),
        (500, "EndPoint.0001", errors.ServerError),
        (400, "EndPoint.2014", errors.ClientError),
    ],
)
def test_error_statuses_map_to_the_tree(status: int, code: str, kind: type) -> None:
    """Each documented error maps to its class with status, code and request id."""
    h = Harness(lambda r: error(status, code), attempts=1)
    with pytest.raises(kind) as caught:
        h.run(h.client.act(SERVICE, "ep-1", "receive"))
    assert caught.value.status == status
    assert caught.value.code == code
    assert caught.value.request_id == "req-1"


def test_nested_error_body_shape_is_read() -> None:
    """The per-API {"error": {"code", "message"}} shape yields the same fields."""
    h = Harness(
        lambda r: httpx.Response(400, json={"error": {"code": "EndPoint.2013", "message": "m"}}),
        attempts=1,
    )
    with pytest.raises(errors.ClientError) as caught:
        h.run(h.client.act(SERVICE, "ep-1", "receive"))
    assert caught.value.code == "EndPoint.2013"


def test_signature_expired_is_clock_skew_and_not_retried() -> None:
    """A 401 'signature expired' is ClockSkew, sent once."""
    h = Harness(lambda r: error(401, "APIGW.0301", "calc ak sk signature fail:signature expired"))
    with pytest.raises(errors.ClockSkew):
        h.run(h.client.list_services())
    assert len(h.requests) == 1


def test_get_retries_5xx_with_bounded_full_jitter() -> None:
    """A GET is retried on 503 up to the attempt limit, each wait within [0, base*2^n]."""
    h = Harness(lambda r: error(503, "EndPoint.0001"), attempts=4, backoff_base=0.5)
    with pytest.raises(errors.ServerError):
        h.run(h.client.list_services())
    assert len(h.requests) == 4
    assert len(h.sleeps) == 3
    for n, slept in enumerate(h.sleeps, start=1):
        assert 0 <= slept <= 0.5 * 2**n


def test_retry_after_is_honoured() -> None:
    """A 429 with Retry-After: 7 waits at least 7 s before the next attempt, then succeeds."""
    replies = iter(
        [
            error(429, "APIGW.0308", **{"Retry-After": "7"}),
            httpx.Response(200, json={"endpoint_services": [], "total_count": 0}),
        ]
    )
    h = Harness(lambda r: next(replies))
    listing = h.run(h.client.list_services())
    assert listing.items == ()
    assert h.sleeps and h.sleeps[0] >= 7


def test_post_is_not_resent_after_a_server_error() -> None:
    """An accept answered 500 may have happened: it is sent exactly once."""
    h = Harness(lambda r: error(500, "EndPoint.0001"), attempts=4)
    with pytest.raises(errors.ServerError):
        h.run(h.client.act(SERVICE, "ep-1", "receive"))
    assert len(h.requests) == 1


def test_post_is_not_resent_after_a_read_timeout() -> None:
    """A read timeout on an accept is OutcomeUnknown and is not resent."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    h = Harness(handler, attempts=4)
    with pytest.raises(errors.OutcomeUnknown):
        h.run(h.client.act(SERVICE, "ep-1", "receive"))
    assert len(h.requests) == 1


def test_post_is_resent_when_it_provably_never_left() -> None:
    """A refused connection means nothing was sent: the accept is tried again and lands once."""
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectError("connection refused", request=request)
        body = json.loads(request.content)
        return httpx.Response(
            200,
            json={"connections": [{**conn(1), "id": body["endpoints"][0], "status": "accepted"}]},
        )

    h = Harness(handler)
    result = h.run(h.client.act(SERVICE, "ep-0001", "receive"))
    assert result.status == "accepted"
    assert len(calls) == 2


def test_accept_body_holds_exactly_one_endpoint_and_is_signed() -> None:
    """The action POST carries one endpoint id, a JSON content type and an Authorization."""
    h = Harness(lambda r: httpx.Response(200, json={"connections": []}))
    h.run(h.client.act(SERVICE, "ep-9", "reject"))
    sent = h.requests[0]
    assert json.loads(sent.content) == {"action": "reject", "endpoints": ["ep-9"]}
    assert sent.headers["content-type"].startswith("application/json")
    assert sent.headers["authorization"].startswith("SDK-HMAC-SHA256 Access=AKTEST")
    assert sent.headers["x-project-id"] == PROJECT
    assert sent.url.path.endswith(f"/vpc-endpoint-services/{SERVICE}/connections/action")


def test_oversized_body_is_refused() -> None:
    """A body above the cap is BadResponse, not read into memory whole."""
    h = Harness(lambda r: httpx.Response(200, content=b" " * 5000), max_body_bytes=1000, attempts=1)
    with pytest.raises(errors.BadResponse):
        h.run(h.client.list_services())


def test_error_messages_are_bounded_and_carry_no_secret() -> None:
    """An error echoing a long canonical request is cut to 256 characters; no SK in str()."""
    h = Harness(lambda r: error(401, "APIGW.0301", "verify aksk signature fail," + "x" * 2000))
    with pytest.raises(errors.AuthError) as caught:
        h.run(h.client.list_services())
    assert len(caught.value.message) <= 256
    assert "sk-test-secret-value-000" not in str(caught.value)
    assert "sk-test-secret-value-000" not in repr(h.client)
