"""The VPCEP emulator over real HTTP on loopback: shapes, paging, transitions, errors, signing.

Requests are signed with the project's own ``SignerAuth`` and sent to URLs from ``build_url``
(never httpx ``params=``); time is the shared fake clock, never a sleep.
"""

from __future__ import annotations

import json
import re
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import (
    ACME,
    BILLING,
    BLOCKED,
    DEMO_SCENARIO,
    GLOBEX,
    LEGACY,
    ORDERS,
    PROJECT,
    SANDBOX,
    UNKNOWN,
    FakeClock,
)

from approver.cloud.signer import (
    Credentials,
    SignerAuth,
    build_url,
    canonical_request,
    parse_authorization,
    sign,
)
from approver.emulator import (
    Emulator,
    Incoming,
    Reply,
    Scenario,
    ScenarioError,
    load_scenario,
    register,
)
from approver.emulator.cli import run

AK = "DEMOAK00000000000001"
SK = "demo-secret-key-not-for-production-000000"
DEMO = Credentials(AK, SK)
SERVICES = f"/v1/{PROJECT}/vpc-endpoint-services"
TLS = ssl.create_default_context()
TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
CONNECTION_KEYS = {
    "id",
    "marker_id",
    "created_at",
    "updated_at",
    "domain_id",
    "error",
    "status",
    "description",
}


class Api:
    """A signed httpx client for one emulator; the signer's clock can run ahead or behind."""

    def __init__(self, emulator: Emulator, clock: FakeClock, credentials: Credentials = DEMO):
        self.base = emulator.url
        self.skew = timedelta(0)
        self.client = httpx.Client(
            auth=SignerAuth(lambda: credentials, PROJECT, lambda: clock() + self.skew),
            verify=TLS,  # plain http here; sharing one context saves ~20 ms per client
        )

    def get(self, path: str, **query: object) -> httpx.Response:
        return self.client.get(build_url(self.base, path, list(query.items())))

    def send(self, method: str, path: str, body: object) -> httpx.Response:
        content = json.dumps(body).encode() if not isinstance(body, bytes) else body
        return self.client.request(
            method,
            build_url(self.base, path),
            content=content,
            headers={"Content-Type": "application/json;charset=utf-8"},
        )

    def act(self, service: str, action: str, *endpoints: str) -> httpx.Response:
        body = {"action": action, "endpoints": list(endpoints)}
        return self.send("POST", f"{SERVICES}/{service}/connections/action", body)

    def connections(self, service: str, **query: object) -> httpx.Response:
        return self.get(f"{SERVICES}/{service}/connections", **query)


@pytest.fixture(name="api")
def _api(emulator: Emulator, clock: FakeClock) -> Iterator[Api]:
    api = Api(emulator, clock)
    yield api
    api.client.close()


def error(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["error_code"], body["error_msg"]


def ids_of(emulator: Emulator, service: str, domain: str) -> list[str]:
    return [c["id"] for c in emulator.connections(service) if c["domain_id"] == domain]


def make_scenario(**overrides: Any) -> Scenario:
    data: dict[str, Any] = {
        "credentials": [{"ak": AK, "sk": SK, "project_id": PROJECT}],
        "services": [
            {
                "id": ORDERS,
                "name": "orders-api",
                "connections": [{"domain_id": ACME}],
            }
        ],
    }
    data.update(overrides)
    return Scenario.from_dict(data, source="test.yaml")


# -- listing and pagination ----------------------------------------------------------------


def test_default_limit_is_ten_and_total_count_ignores_paging(emulator: Emulator, api: Api) -> None:
    """Without limit a page holds 10 connections; total_count counts all 13."""
    for n in range(9):
        emulator.add_connection(ORDERS, domain_id=ACME, description=f"extra {n}")
    page = api.connections(ORDERS).json()
    assert len(page["connections"]) == 10
    assert page["total_count"] == 13
    assert api.connections(ORDERS, limit=3, offset=12).json()["total_count"] == 13


def test_offset_pages_cover_every_connection_once_in_created_order(
    emulator: Emulator, api: Api, clock: FakeClock
) -> None:
    """limit/offset pages, sorted by created_at asc, concatenate to the full list."""
    for _ in range(8):
        clock.advance(0.1)  # stays before the first arrival (4 s)
        emulator.add_connection(ORDERS, domain_id=GLOBEX)
    pages = [
        api.connections(ORDERS, limit=5, offset=o, sort_dir="asc", sort_key="create_at").json()
        for o in (0, 5, 10)
    ]
    seen = [c["id"] for p in pages for c in p["connections"]]
    assert [len(p["connections"]) for p in pages] == [5, 5, 2]
    assert seen == [c["id"] for c in emulator.connections(ORDERS)]


def test_default_order_is_newest_first(emulator: Emulator, api: Api, clock: FakeClock) -> None:
    """sort_key defaults to create_at and sort_dir to desc."""
    clock.advance(1)
    newest = emulator.add_connection(ORDERS, domain_id=GLOBEX)
    listed = api.connections(ORDERS).json()["connections"]
    assert listed[0]["id"] == newest["id"]
    assert [c["created_at"] for c in listed] == sorted(
        (c["created_at"] for c in listed), reverse=True
    )


def test_update_at_sort_puts_the_last_changed_first(
    emulator: Emulator, api: Api, clock: FakeClock
) -> None:
    """sort_key=update_at orders by updated_at, which an accept bumps."""
    oldest = emulator.connections(ORDERS)[0]["id"]
    clock.advance(2)
    assert api.act(ORDERS, "receive", oldest).status_code == 200
    by_update = api.connections(ORDERS, sort_key="update_at").json()["connections"]
    by_create = api.connections(ORDERS, sort_key="create_at").json()["connections"]
    assert by_update[0]["id"] == oldest
    assert by_create[-1]["id"] == oldest


def test_limit_of_1000_is_accepted(api: Api) -> None:
    """limit may be as large as 1000."""
    assert api.connections(ORDERS, limit=1000).status_code == 200


@pytest.mark.parametrize("limit", ["0", "1001", "-1", "ten", ""])
def test_bad_limit_is_endpoint_0006(api: Api, limit: str) -> None:
    """limit outside 1..1000, or not a number, is 400 EndPoint.0006 "Invalid limit."."""
    assert error(api.connections(ORDERS, limit=limit)) == (400, "EndPoint.0006", "Invalid limit.")


@pytest.mark.parametrize("offset", ["-1", "x"])
def test_bad_offset_is_endpoint_0010(api: Api, offset: str) -> None:
    """A negative or non-numeric offset is 400 EndPoint.0010."""
    assert error(api.connections(ORDERS, offset=offset)) == (
        400,
        "EndPoint.0010",
        "Invalid offset.",
    )


def test_bad_sort_key_and_sort_dir_are_refused(api: Api) -> None:
    """Unknown sort_key is EndPoint.0017, unknown sort_dir EndPoint.0018."""
    assert error(api.connections(ORDERS, sort_key="created_at"))[1] == "EndPoint.0017"
    assert error(api.connections(ORDERS, sort_dir="up"))[1] == "EndPoint.0018"


def test_status_filter_selects_pending_or_accepted(api: Api) -> None:
    """status= narrows the list and total_count to that status."""
    pending = api.connections(ORDERS, status="pendingAcceptance").json()
    accepted = api.connections(ORDERS, status="accepted").json()
    assert pending["total_count"] == 3
    assert {c["status"] for c in pending["connections"]} == {"pendingAcceptance"}
    assert [c["domain_id"] for c in accepted["connections"]] == [GLOBEX]


def test_unknown_status_filter_is_endpoint_0019(api: Api) -> None:
    """A status value the API does not know is 400 EndPoint.0019 "Invalid status."."""
    assert error(api.connections(ORDERS, status="pending")) == (
        400,
        "EndPoint.0019",
        "Invalid status.",
    )


def test_id_and_marker_id_filters_find_one_connection(emulator: Emulator, api: Api) -> None:
    """?id= and ?marker_id= each return exactly the matching connection."""
    target = emulator.connections(ORDERS)[1]
    by_id = api.connections(ORDERS, id=target["id"]).json()
    by_marker = api.connections(ORDERS, marker_id=target["marker_id"]).json()
    assert by_id == by_marker == {"connections": [target], "total_count": 1}
    assert api.connections(ORDERS, id="not-there").json() == {"connections": [], "total_count": 0}
    assert error(api.connections(ORDERS, marker_id="12ab"))[1] == "EndPoint.0021"


def test_connection_has_exactly_the_documented_fields(emulator: Emulator, api: Api) -> None:
    """Every connection carries the eight ConnectionEndpoints keys, marker_id as a JSON integer."""
    raw = api.connections(ORDERS).text
    listed = json.loads(raw)["connections"]
    assert all(set(c) == CONNECTION_KEYS for c in listed)
    assert all(TIME.match(c["created_at"]) and TIME.match(c["updated_at"]) for c in listed)
    markers = [c["marker_id"] for s in (ORDERS, BILLING, SANDBOX) for c in emulator.connections(s)]
    assert all(isinstance(m, int) for m in markers) and len(set(markers)) == len(markers)
    assert any(m > 2**53 for m in markers) and any(m < 2**53 for m in markers)


def test_big_marker_ids_are_exact_on_the_wire(emulator: Emulator, api: Api) -> None:
    """marker_id above 2**53 is sent as exact integer digits, not a rounded float."""
    big = [c for c in emulator.connections(ORDERS) if c["marker_id"] > 2**53]
    assert big
    assert f'"marker_id": {big[0]["marker_id"]}' in api.connections(ORDERS, limit=100).text


def test_list_services_has_the_service_list_shape(emulator: Emulator, api: Api) -> None:
    """ListEndpointService returns all four services with tags, approval and connection_count."""
    body = api.get(SERVICES, limit=100).json()
    assert body["total_count"] == 4
    by_name = {s["service_name"]: s for s in body["endpoint_services"]}
    orders = by_name["orders-api"]
    assert orders["id"] == ORDERS
    assert orders["tags"] == [{"key": "env", "value": "prod"}, {"key": "team", "value": "orders"}]
    assert orders["approval_enabled"] is True and orders["status"] == "available"
    assert orders["connection_count"] == 1  # the accepted globex connection
    assert orders["project_id"] == PROJECT and isinstance(orders["domain_id"], str)
    assert by_name["legacy-api"]["approval_enabled"] is False
    assert {"port_id", "vpc_id", "ports", "service_type", "server_type", "created_at"} <= set(
        orders
    )


def test_connection_count_counts_accepted_and_creating(emulator: Emulator, api: Api) -> None:
    """connection_count = accepted + creating connections of the service."""
    emulator.set_status(ORDERS, ids_of(emulator, ORDERS, ACME)[0], "creating")
    emulator.set_status(ORDERS, ids_of(emulator, ORDERS, BLOCKED)[0], "rejected")
    services = api.get(SERVICES, id=ORDERS).json()["endpoint_services"]
    assert services[0]["connection_count"] == 2


def test_service_filters_name_fuzzy_status_and_id(api: Api) -> None:
    """endpoint_service_name is a case-insensitive substring; id and status filter exactly."""
    names = {
        s["service_name"]
        for s in api.get(SERVICES, endpoint_service_name="ORDERS").json()["endpoint_services"]
    }
    assert names == {"orders-api"}
    assert api.get(SERVICES, endpoint_service_name="-Api").json()["total_count"] == 4
    assert (
        api.get(SERVICES, id=LEGACY).json()["endpoint_services"][0]["service_name"] == "legacy-api"
    )
    assert api.get(SERVICES, status="failed").json()["total_count"] == 0
    assert error(api.get(SERVICES, status="broken"))[1] == "EndPoint.0019"
    assert error(api.get(SERVICES, limit=0))[1] == "EndPoint.0006"


def test_service_details_shape_and_unknown_service(api: Api) -> None:
    """ListServiceDetails has no domain_id/connection_count; an unknown id is 400 EndPoint.2003."""
    body = api.get(f"{SERVICES}/{BILLING}").json()
    assert body["service_name"] == "billing-api"
    assert body["tags"] == [{"key": "env", "value": "prod"}, {"key": "team", "value": "billing"}]
    assert "connection_count" not in body and "domain_id" not in body
    missing = api.get(f"{SERVICES}/00000000-0000-4000-8000-000000000000")
    assert error(missing) == (400, "EndPoint.2003", "The endpoint service does not exist.")


# -- accept / reject -----------------------------------------------------------------------


def test_receive_accepts_a_pending_connection(
    emulator: Emulator, api: Api, clock: FakeClock
) -> None:
    """receive turns pendingAcceptance into accepted and bumps updated_at."""
    acme = ids_of(emulator, ORDERS, ACME)[0]
    before = emulator.connection(ORDERS, acme)
    clock.advance(90)
    response = api.act(ORDERS, "receive", acme)
    assert response.status_code == 200
    (conn,) = response.json()["connections"]
    assert set(conn) == CONNECTION_KEYS
    assert conn["status"] == "accepted" and conn["id"] == acme
    assert conn["updated_at"] > before["updated_at"] and conn["created_at"] == before["created_at"]
    assert emulator.connection(ORDERS, acme)["status"] == "accepted"


def test_reject_works_on_pending_and_on_accepted(emulator: Emulator, api: Api) -> None:
    """reject of a pending connection and of an accepted one both end in rejected."""
    blocked = ids_of(emulator, ORDERS, BLOCKED)[0]
    globex = ids_of(emulator, ORDERS, GLOBEX)[0]  # seeded as accepted
    for endpoint in (blocked, globex):
        response = api.act(ORDERS, "reject", endpoint)
        assert response.json()["connections"][0]["status"] == "rejected"
        assert emulator.connection(ORDERS, endpoint)["status"] == "rejected"


@pytest.mark.parametrize(
    ("status", "action", "code", "message"),
    [
        (
            "accepted",
            "receive",
            "EndPoint.2014",
            "The endpoint has connected to the endpoint service.",
        ),
        ("deleting", "receive", "EndPoint.2018", "The endpoint is being deleted."),
        ("deleting", "reject", "EndPoint.2018", "The endpoint is being deleted."),
        ("creating", "receive", "EndPoint.2019", "The endpoint is being created."),
        ("creating", "reject", "EndPoint.2019", "The endpoint is being created."),
        (
            "failed",
            "receive",
            "EndPoint.2047",
            "The VPC endpoint in the Failed status cannot be modified.",
        ),
        ("rejected", "receive", "EndPoint.0002", "Parameter error."),
        ("rejected", "reject", "EndPoint.0002", "Parameter error."),
    ],
)
def test_acting_on_a_connection_that_is_not_pending_is_an_error(
    emulator: Emulator, api: Api, status: str, action: str, code: str, message: str
) -> None:
    """receive/reject outside pendingAcceptance (bar reject of accepted) fails, changes nothing."""
    endpoint = ids_of(emulator, ORDERS, ACME)[0]
    emulator.set_status(ORDERS, endpoint, status)
    before = emulator.connection(ORDERS, endpoint)
    assert error(api.act(ORDERS, action, endpoint)) == (400, code, message)
    assert emulator.connection(ORDERS, endpoint) == before


def test_more_or_fewer_than_one_endpoint_is_endpoint_2031(emulator: Emulator, api: Api) -> None:
    """The action takes exactly one endpoint id: two or none is 400 EndPoint.2031."""
    acme, blocked = ids_of(emulator, ORDERS, ACME)[0], ids_of(emulator, ORDERS, BLOCKED)[0]
    expected = (400, "EndPoint.2031", "Only one endpoint is allowed.")
    assert error(api.act(ORDERS, "receive", acme, blocked)) == expected
    assert error(api.act(ORDERS, "receive")) == expected
    assert emulator.connection(ORDERS, acme)["status"] == "pendingAcceptance"


def test_endpoint_of_another_service_is_endpoint_2013(emulator: Emulator, api: Api) -> None:
    """An endpoint id that is not one of the service's connections is 400 EndPoint.2013."""
    billing_globex = ids_of(emulator, BILLING, GLOBEX)[0]
    expected = (400, "EndPoint.2013", "The endpoint does not belong to the endpoint service.")
    assert error(api.act(ORDERS, "receive", billing_globex)) == expected
    assert error(api.act(ORDERS, "receive", "00000000-0000-4000-8000-000000000001")) == expected
    assert emulator.connection(BILLING, billing_globex)["status"] == "pendingAcceptance"


def test_invalid_action_unknown_service_and_bad_input(emulator: Emulator, api: Api) -> None:
    """approve is EndPoint.2027; unknown service 2003; a non-UUID id 2017; non-JSON body 0002."""
    acme = ids_of(emulator, ORDERS, ACME)[0]
    assert error(api.act(ORDERS, "approve", acme)) == (400, "EndPoint.2027", "Invalid action.")
    unknown = "11111111-2222-4333-8444-555555555555"
    assert error(api.act(unknown, "receive", acme))[:2] == (400, "EndPoint.2003")
    assert error(api.act(ORDERS, "receive", "abc"))[:2] == (400, "EndPoint.2017")
    body = api.send("POST", f"{SERVICES}/{ORDERS}/connections/action", b"{not json")
    assert error(body) == (400, "EndPoint.0002", "Parameter error.")
    assert emulator.count("AcceptOrRejectEndpoint", status=200) == 0


def test_action_on_a_service_that_is_not_available_is_endpoint_2004(clock: FakeClock) -> None:
    """A service in creating refuses accept/reject with EndPoint.2004."""
    scenario = make_scenario(
        services=[
            {"id": ORDERS, "name": "o", "status": "creating", "connections": [{"domain_id": ACME}]}
        ]
    )
    with Emulator(scenario, clock=clock) as emulator:
        api = Api(emulator, clock)
        with api.client:
            endpoint = emulator.connections(ORDERS)[0]["id"]
            assert error(api.act(ORDERS, "receive", endpoint))[:2] == (400, "EndPoint.2004")


# -- descriptions --------------------------------------------------------------------------


def test_descriptions_update_in_batches(emulator: Emulator, api: Api, clock: FakeClock) -> None:
    """PUT connections/description sets several descriptions at once and returns them."""
    acme, unknown = ids_of(emulator, ORDERS, ACME)[0], ids_of(emulator, ORDERS, UNKNOWN)[0]
    clock.advance(5)
    body = {
        "connections": [
            {"id": acme, "description": "auto-accepted"},
            {"id": unknown, "description": "x" * 512},
        ]
    }
    response = api.send("PUT", f"{SERVICES}/{ORDERS}/connections/description", body)
    assert response.status_code == 200
    assert [c["description"] for c in response.json()["connections"]] == [
        "auto-accepted",
        "x" * 512,
    ]
    assert emulator.connection(ORDERS, acme)["description"] == "auto-accepted"


@pytest.mark.parametrize(
    ("description", "code"),
    [("<b>hi</b>", "EndPoint.0002"), ("a > b", "EndPoint.0002"), ("y" * 513, "EndPoint.0002")],
)
def test_bad_description_is_refused_and_nothing_changes(
    emulator: Emulator, api: Api, description: str, code: str
) -> None:
    """Angle brackets or more than 512 characters: EndPoint.0002, no connection changed."""
    acme, unknown = ids_of(emulator, ORDERS, ACME)[0], ids_of(emulator, ORDERS, UNKNOWN)[0]
    body = {
        "connections": [
            {"id": acme, "description": "fine"},
            {"id": unknown, "description": description},
        ]
    }
    assert error(api.send("PUT", f"{SERVICES}/{ORDERS}/connections/description", body))[1] == code
    assert emulator.connection(ORDERS, acme)["description"] == "SEC-1201 acme orders"


def test_description_of_a_foreign_connection_is_endpoint_2013(emulator: Emulator, api: Api) -> None:
    """Updating a connection of another service is EndPoint.2013."""
    body = {"connections": [{"id": ids_of(emulator, BILLING, GLOBEX)[0], "description": "x"}]}
    assert (
        error(api.send("PUT", f"{SERVICES}/{ORDERS}/connections/description", body))[1]
        == "EndPoint.2013"
    )


# -- error bodies, request ids, routing ------------------------------------------------------


def test_vpcep_errors_are_flat_and_every_answer_has_a_request_id(api: Api) -> None:
    """VPCEP errors are {error_code, error_msg} only; every answer has its own X-Request-Id."""
    bad = api.connections(ORDERS, limit=0)
    good = api.connections(ORDERS)
    assert bad.json() == {"error_code": "EndPoint.0006", "error_msg": "Invalid limit."}
    assert bad.headers["content-type"] == "application/json"
    ids = [bad.headers["x-request-id"], good.headers["x-request-id"]]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids) and ids[0] != ids[1]


def test_nested_error_shape_on_request(clock: FakeClock) -> None:
    """error_shape: nested answers VPCEP errors as {"error": {"code", "message"}}."""
    with Emulator(make_scenario(error_shape="nested"), clock=clock) as emulator:
        api = Api(emulator, clock)
        with api.client:
            body = api.connections(ORDERS, limit=0).json()
    assert body == {"error": {"code": "EndPoint.0006", "message": "Invalid limit."}}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/v2/{PROJECT}/vpc-endpoint-services"),
        ("DELETE", f"{SERVICES}/{ORDERS}/connections"),
        ("GET", f"/v1/{PROJECT}/vpc-endpoints"),
        ("GET", f"{SERVICES}/describe"),
    ],
)
def test_unknown_api_is_gateway_404(api: Api, method: str, path: str) -> None:
    """An API the emulator does not serve is 404 APIGW.0101 with the gateway body shape."""
    response = api.client.request(method, build_url(api.base, path))
    body = response.json()
    assert response.status_code == 404 and body["error_code"] == "APIGW.0101"
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["error_msg"].startswith("The API does not exist")


def test_version_documents_are_served_unsigned(emulator: Emulator) -> None:
    """GET / and GET /v1 answer without a signature, with the VersionObject shape."""
    versions = httpx.get(emulator.url + "/").json()["versions"]
    single = httpx.get(emulator.url + "/v1").json()["version"]
    assert versions == [single]
    assert single["id"] == "v1" and single["status"] == "CURRENT"
    assert single["links"][0]["href"] == emulator.url + "/v1/"


def test_request_log_and_count(emulator: Emulator, api: Api) -> None:
    """Every request is logged with operation, status and error code; count() filters them."""
    acme = ids_of(emulator, ORDERS, ACME)[0]
    api.act(ORDERS, "receive", acme)
    api.act(ORDERS, "receive", acme)
    api.connections(ORDERS, status="pendingAcceptance", limit=5)
    log = emulator.requests
    assert [(r.operation, r.status, r.error_code) for r in log] == [
        ("AcceptOrRejectEndpoint", 200, None),
        ("AcceptOrRejectEndpoint", 400, "EndPoint.2014"),
        ("ListServiceConnections", 200, None),
    ]
    assert log[2].query == "limit=5&status=pendingAcceptance" and log[2].ak == AK
    assert emulator.count("AcceptOrRejectEndpoint") == 2
    assert emulator.count("AcceptOrRejectEndpoint", status=200) == 1


def test_date_header_follows_the_emulator_clock(api: Api, clock: FakeClock) -> None:
    """The Date response header is the emulator's (fake) time, so clients can measure skew."""
    clock.advance(3600)
    date = parsedate_to_datetime(api.connections(ORDERS).headers["date"])
    assert date == clock().replace(microsecond=0)


def test_fault_hook_answers_instead_of_the_operation(emulator: Emulator, api: Api) -> None:
    """A fault hook's Reply replaces the operation: nothing changes, the answer is logged."""
    seen: list[str] = []

    def unavailable(request: Incoming, operation: str) -> Reply | None:
        seen.append(operation)
        if operation != "AcceptOrRejectEndpoint":
            return None
        return Reply.json(
            503,
            {"error_code": "EndPoint.0001", "error_msg": "System error. Please retry."},
            error_code="EndPoint.0001",
        )

    emulator.faults.append(unavailable)
    acme = ids_of(emulator, ORDERS, ACME)[0]
    response = api.act(ORDERS, "receive", acme)
    assert response.status_code == 503 and "x-request-id" in response.headers
    assert emulator.connection(ORDERS, acme)["status"] == "pendingAcceptance"
    assert api.connections(ORDERS).status_code == 200
    assert seen == ["AcceptOrRejectEndpoint", "ListServiceConnections"]
    assert emulator.count("AcceptOrRejectEndpoint", status=503) == 1


# -- signature verification ------------------------------------------------------------------


def signed(
    clock: FakeClock,
    url: str,
    *,
    method: str = "GET",
    body: bytes = b"",
    credentials: Credentials = DEMO,
) -> dict[str, str]:
    return sign(
        method, url, {"Content-Type": "application/json"}, body, credentials, PROJECT, clock()
    )


def test_valid_signature_is_accepted(emulator: Emulator, api: Api) -> None:
    """A request signed by SignerAuth with the scenario's AK/SK gets 200."""
    assert api.connections(ORDERS, status="pendingAcceptance").status_code == 200
    assert emulator.requests[-1].ak == AK


def test_tampered_query_is_refused_with_the_canonical_request(
    emulator: Emulator, clock: FakeClock
) -> None:
    """A query changed after signing is 401 APIGW.0301 echoing the canonical request received."""
    path = f"{SERVICES}/{ORDERS}/connections"
    headers = signed(clock, build_url(emulator.url, path, [("limit", 10)]))
    response = httpx.get(build_url(emulator.url, path, [("limit", 11)]), headers=headers)
    status, code, message = error(response)
    assert (status, code) == (401, "APIGW.0301")
    prefix = (
        "Incorrect IAM authentication information: verify aksk signature fail,canonicalRequest:"
    )
    assert message.startswith(prefix)
    parsed = parse_authorization(headers["Authorization"])
    assert parsed is not None
    received = canonical_request("GET", path, "limit=11", headers, parsed.signed_headers, b"")
    assert message[len(prefix) :] == received.replace("\n", "|")
    assert response.json()["request_id"] == response.headers["x-request-id"]


def test_tampered_body_is_refused(emulator: Emulator, clock: FakeClock) -> None:
    """A body changed after signing is 401, and the connection stays pending."""
    acme = ids_of(emulator, ORDERS, ACME)[0]
    url = build_url(emulator.url, f"{SERVICES}/{ORDERS}/connections/action")
    headers = signed(
        clock,
        url,
        method="POST",
        body=json.dumps({"action": "reject", "endpoints": [acme]}).encode(),
    )
    sent = json.dumps({"action": "receive", "endpoints": [acme]}).encode()
    response = httpx.post(url, content=sent, headers=headers)
    assert error(response)[:2] == (401, "APIGW.0301")
    assert "verify aksk signature fail" in error(response)[2]
    assert emulator.connection(ORDERS, acme)["status"] == "pendingAcceptance"


def test_wrong_sk_is_refused(emulator: Emulator, clock: FakeClock) -> None:
    """The right AK signed with another SK is 401 verify aksk signature fail."""
    api = Api(emulator, clock, Credentials(AK, "not-the-secret"))
    with api.client:
        status, code, message = error(api.connections(ORDERS))
    assert (status, code) == (401, "APIGW.0301") and "verify aksk signature fail" in message


def test_unknown_ak_is_refused(emulator: Emulator, clock: FakeClock) -> None:
    """An AK the gateway does not know is 401 "Get secretKey failed ... ak not exist"."""
    api = Api(emulator, clock, Credentials("NOSUCHAK000000000000", SK))
    with api.client:
        status, code, message = error(api.connections(ORDERS))
    assert (status, code) == (401, "APIGW.0301")
    assert message == (
        "Incorrect IAM authentication information: "
        "Get secretKey failed,ak:NOSUCHAK000000000000,err:ak not exist"
    )


def test_missing_or_garbled_authorization_is_refused(emulator: Emulator, clock: FakeClock) -> None:
    """No Authorization is "x-auth-token not found"; a garbled one "verify aksk signature fail"."""
    url = build_url(emulator.url, f"{SERVICES}/{ORDERS}/connections")
    assert error(httpx.get(url)) == (
        401,
        "APIGW.0301",
        "Incorrect IAM authentication information: x-auth-token not found",
    )
    headers = signed(clock, url) | {"Authorization": "SDK-HMAC-SHA256 garbage"}
    status, code, message = error(httpx.get(url, headers=headers))
    assert (status, code) == (401, "APIGW.0301") and "verify aksk signature fail" in message
    unsigned_date = signed(clock, url)
    unsigned_date["Authorization"] = unsigned_date["Authorization"].replace(";x-sdk-date", "")
    assert error(httpx.get(url, headers=unsigned_date))[:2] == (401, "APIGW.0301")


@pytest.mark.parametrize(("minutes", "status"), [(16, 401), (-16, 401), (14, 200), (-14, 200)])
def test_signature_date_must_be_within_15_minutes(api: Api, minutes: int, status: int) -> None:
    """X-Sdk-Date more than 15 minutes off the emulator clock is 401 "signature expired"."""
    api.skew = timedelta(minutes=minutes)
    response = api.connections(ORDERS)
    assert response.status_code == status
    if status == 401:
        assert error(response) == (
            401,
            "APIGW.0301",
            "Incorrect IAM authentication information: calc ak sk signature fail:signature expired",
        )


def test_project_of_another_account_is_forbidden(emulator: Emulator, clock: FakeClock) -> None:
    """A valid signature for a path project that is not the credential's is 403 EndPoint.0004."""
    other = "ffffffffffffffffffffffffffffffff"
    url = build_url(emulator.url, f"/v1/{other}/vpc-endpoint-services")
    response = httpx.get(url, headers=signed(clock, url))
    assert error(response) == (
        403,
        "EndPoint.0004",
        "Authentication information is incorrect or you have no permissions.",
    )


def test_temporary_credentials_need_their_signed_token(clock: FakeClock) -> None:
    """A temporary AK works only with its X-Security-Token present and signed."""
    creds = [{"ak": "TEMPAK", "sk": "temp-sk", "project_id": PROJECT, "security_token": "tok-123"}]
    with Emulator(make_scenario(credentials=creds), clock=clock) as emulator:
        good = Api(emulator, clock, Credentials("TEMPAK", "temp-sk", "tok-123"))
        no_token = Api(emulator, clock, Credentials("TEMPAK", "temp-sk"))
        wrong = Api(emulator, clock, Credentials("TEMPAK", "temp-sk", "tok-999"))
        with good.client, no_token.client, wrong.client:
            assert good.connections(ORDERS).status_code == 200
            assert error(no_token.connections(ORDERS))[:2] == (401, "APIGW.0301")
            assert error(wrong.connections(ORDERS))[:2] == (401, "APIGW.0301")


def test_ak_locks_for_five_minutes_after_five_failures(
    emulator: Emulator, api: Api, clock: FakeClock
) -> None:
    """After 5 failed authentications even a valid request is refused until 5 minutes pass."""
    bad = Api(emulator, clock, Credentials(AK, "wrong"))
    with bad.client:
        for _ in range(5):
            assert "verify aksk signature fail" in error(bad.connections(ORDERS))[2]
    locked = error(api.connections(ORDERS))
    assert locked == (
        401,
        "APIGW.0301",
        "Incorrect IAM authentication information: AK access failed to reach the limit,forbidden",
    )
    clock.advance(299)
    assert api.connections(ORDERS).status_code == 401
    clock.advance(1)
    assert api.connections(ORDERS).status_code == 200


def test_a_success_resets_the_failure_count(emulator: Emulator, api: Api, clock: FakeClock) -> None:
    """Failures must be consecutive: a success in between starts the count again."""
    bad = Api(emulator, clock, Credentials(AK, "wrong"))
    with bad.client:
        for _ in range(4):
            bad.connections(ORDERS)
        assert api.connections(ORDERS).status_code == 200
        for _ in range(4):
            bad.connections(ORDERS)
    assert api.connections(ORDERS).status_code == 200


# -- arrivals and determinism ----------------------------------------------------------------


def test_arrivals_appear_as_the_fake_clock_advances(
    emulator: Emulator, api: Api, clock: FakeClock
) -> None:
    """Every 4 s of emulator time a pending orders-api connection arrives, domains in turn."""
    start = clock()

    def pending() -> list[dict[str, Any]]:
        body = api.connections(ORDERS, status="pendingAcceptance", sort_dir="asc", limit=100)
        return body.json()["connections"]

    assert len(pending()) == 3
    clock.advance(3.9)
    assert len(pending()) == 3
    clock.advance(0.1)
    arrived = pending()[3:]
    assert [(c["domain_id"], c["description"]) for c in arrived] == [(ACME, "SEC-2001 new")]
    assert arrived[0]["created_at"] == (start + timedelta(seconds=4)).strftime("%Y-%m-%dT%H:%M:%SZ")
    clock.advance(12)
    assert [c["domain_id"] for c in pending()[3:]] == [ACME, UNKNOWN, BLOCKED, ACME]
    assert len(emulator.connections(BILLING)) == 2  # arrivals only where declared


def test_tick_applies_arrivals_without_a_request(emulator: Emulator, clock: FakeClock) -> None:
    """tick() (and the state accessors) apply due arrivals even when no request comes."""
    clock.advance(8)
    emulator.tick()
    assert len(emulator.connections(ORDERS)) == 6
    assert emulator.requests == []


def test_arrival_count_cap_and_approval_disabled(clock: FakeClock) -> None:
    """count caps arrivals; on a service without approval they arrive accepted."""
    scenario = make_scenario(
        services=[{"id": LEGACY, "name": "legacy", "approval_enabled": False}],
        arrivals=[{"service": "legacy", "every_seconds": 1, "domain_ids": [ACME], "count": 2}],
    )
    with Emulator(scenario, clock=clock) as emulator:
        clock.advance(10)
        conns = emulator.connections(LEGACY)
    assert [c["status"] for c in conns] == ["accepted", "accepted"]


def test_ids_follow_the_seed(clock: FakeClock) -> None:
    """The same seed gives the same ids and markers however arrivals are ticked; another differs."""
    scenario = load_scenario(DEMO_SCENARIO)
    stepwise, at_once = Emulator(scenario, clock=clock), Emulator(scenario, clock=clock)
    for _ in range(3):
        clock.advance(4)
        stepwise.tick()
    at_once.tick()
    first = stepwise.connections(ORDERS)
    assert first == at_once.connections(ORDERS) and len(first) == 7
    reseeded = Emulator(Scenario.from_dict({**_demo_dict(), "seed": 1}), clock=clock)
    assert {c["id"] for c in reseeded.connections(ORDERS)}.isdisjoint(c["id"] for c in first)


def _demo_dict() -> dict[str, Any]:
    import yaml

    data: dict[str, Any] = yaml.safe_load(DEMO_SCENARIO.read_text())
    return data


def test_demo_scenario_holds_the_agreed_fixtures() -> None:
    """The packaged demo has the four services, the seeded connections and the arrivals agreed."""
    scenario = load_scenario(DEMO_SCENARIO)
    assert [(c.ak, c.project_id) for c in scenario.credentials] == [(AK, PROJECT)]
    assert scenario.credentials[0].sk == SK
    assert [(s.name, s.id, dict(s.tags), s.approval_enabled) for s in scenario.services] == [
        ("orders-api", ORDERS, {"env": "prod", "team": "orders"}, True),
        ("billing-api", BILLING, {"env": "prod", "team": "billing"}, True),
        ("sandbox-api", SANDBOX, {"env": "dev"}, True),
        ("legacy-api", LEGACY, {"env": "prod"}, False),
    ]
    seeded = {
        s.name: [(c.domain_id, c.status, c.description) for c in s.connections]
        for s in scenario.services
    }
    assert seeded["orders-api"] == [
        (ACME, "pendingAcceptance", "SEC-1201 acme orders"),
        (BLOCKED, "pendingAcceptance", ""),
        (UNKNOWN, "pendingAcceptance", "please approve"),
        (GLOBEX, "accepted", ""),
    ]
    assert seeded["billing-api"] == [
        (GLOBEX, "pendingAcceptance", "SEC-1302"),
        (UNKNOWN, "pendingAcceptance", ""),
    ]
    assert [d for d, _, _ in seeded["sandbox-api"]] == ["1d2d3d4d5d6d7d8d9dadbdcdddedfd0d"] * 2
    (arrival,) = scenario.arrivals
    assert (arrival.service_id, arrival.every_seconds, arrival.domain_ids, arrival.description) == (
        ORDERS,
        4.0,
        (ACME, UNKNOWN, BLOCKED),
        "SEC-2001 new",
    )


# -- scenario loading errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"credentials": []}, "test.yaml: credentials: at least one credential is required"),
        ({"colour": "blue"}, "test.yaml: top level: unknown key(s) colour"),
        (
            {"services": [{"id": "orders", "name": "o"}]},
            "test.yaml: services[0].id: expected a lower-case UUID, got 'orders'",
        ),
        (
            {
                "services": [
                    {
                        "id": ORDERS,
                        "name": "o",
                        "connections": [{"domain_id": ACME, "status": "pending"}],
                    }
                ]
            },
            "test.yaml: services[0].connections[0].status: 'pending' is not one of",
        ),
        (
            {"services": [{"id": ORDERS, "name": "o", "connections": [{"domain_id": 1234}]}]},
            "test.yaml: services[0].connections[0].domain_id: "
            "expected a string, got int 1234 (quote it)",
        ),
        (
            {"arrivals": [{"service": "nope", "every_seconds": 4, "domain_ids": [ACME]}]},
            "test.yaml: arrivals[0].service: no service with id or name 'nope'",
        ),
        (
            {"arrivals": [{"service": ORDERS, "every_seconds": 0, "domain_ids": [ACME]}]},
            "test.yaml: arrivals[0].every_seconds: must be > 0",
        ),
        (
            {"services": [{"id": ORDERS, "name": "a"}, {"id": ORDERS, "name": "b"}]},
            "test.yaml: services[1].id:",
        ),
    ],
)
def test_bad_scenarios_name_the_field(change: dict[str, Any], expected: str) -> None:
    """Every scenario error names the file and the path of the offending field."""
    with pytest.raises(ScenarioError) as caught:
        make_scenario(**change)
    assert str(caught.value).startswith(expected)


def test_yaml_syntax_error_and_missing_file_are_clear(tmp_path: Path) -> None:
    """Broken YAML is reported with file:line:column; a missing file says it cannot be read."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("seed: 1\nservices: [\n  {id: x\n")
    with pytest.raises(ScenarioError, match=r"broken\.yaml:\d+:\d+: invalid YAML"):
        load_scenario(broken)
    with pytest.raises(ScenarioError, match="cannot read scenario file"):
        load_scenario(tmp_path / "absent.yaml")


def test_credential_secrets_stay_out_of_repr() -> None:
    """A scenario's repr shows the AK but never the SK or the security token."""
    creds = [
        {"ak": "TEMPAK", "sk": "sk-secret", "project_id": PROJECT, "security_token": "tok-secret"}
    ]
    text = repr(make_scenario(credentials=creds))
    assert "TEMPAK" in text and "sk-secret" not in text and "tok-secret" not in text


# -- command line ----------------------------------------------------------------------------


def test_cli_serves_until_sigterm_and_never_prints_the_sk(tmp_path: Path) -> None:
    """`emulator --port 0` prints URL and AK, writes the URL file, serves, exits 0 on SIGTERM."""
    url_file = tmp_path / "url"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "approver.emulator",
            "--port",
            "0",
            "--print-url-file",
            str(url_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = url_file.read_text().strip()
        assert url in line and AK in line and PROJECT in line
        assert httpx.get(url + "/v1").status_code == 200
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert SK not in line + out + err


def test_cli_refuses_a_bad_scenario_with_exit_78(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A scenario that does not validate exits 78 (EX_CONFIG) with the reason on stderr."""
    import argparse

    bad = tmp_path / "bad.yaml"
    bad.write_text("credentials: []\nservices: []\n")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["emulator", "--scenario", str(bad), "--port", "0"])
    assert args.handler is run
    assert args.handler(args) == 78
    assert "bad.yaml: credentials: at least one credential is required" in capsys.readouterr().err


def test_emulator_imports_only_what_its_layer_allows() -> None:
    """approver.emulator uses stdlib, yaml, httpx, the signer and records: nothing else."""
    import ast

    allowed_project = {"approver.cloud.signer", "approver.records"}
    package = Path(__file__).resolve().parents[1] / "approver" / "emulator"
    offenders = []
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            for name in names:
                top = name.split(".")[0]
                if name.startswith("approver.emulator") or name in allowed_project:
                    continue
                if top == "approver" or top not in sys.stdlib_module_names | {
                    "yaml",
                    "httpx",
                    "__future__",
                }:
                    offenders.append(f"{source.name}: {name}")
    assert offenders == []
