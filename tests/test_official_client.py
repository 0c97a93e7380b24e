"""The official Huawei Cloud SDK (huaweicloudsdkvpcep 3.1.219) as referee for the emulator.

The SDK signs with its own signer from the real clock, parses the answers into its own models
and maps errors to its own exceptions: if it works against the emulator, the emulator's wire
format and signature check agree with Huawei's client. The emulator's clock is pinned to the
real time at the start of each test, so nothing arrives while a test runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import ACME, BLOCKED, DEMO_SCENARIO, GLOBEX, ORDERS, PROJECT, UNKNOWN, FakeClock

from approver.emulator import Emulator, load_scenario

AK = "DEMOAK00000000000001"
SK = "demo-secret-key-not-for-production-000000"


@pytest.fixture(name="sdk", scope="module")
def _sdk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """The SDK's classes, imported with HOME in a temp dir (its import writes an app id there)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
        patch.setenv("NO_PROXY", "127.0.0.1,localhost")
        from huaweicloudsdkcore.auth.credentials import BasicCredentials
        from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
        from huaweicloudsdkcore.http.http_config import HttpConfig
        from huaweicloudsdkvpcep.v1 import (
            AcceptOrRejectEndpointRequest,
            AcceptOrRejectEndpointRequestBody,
            ConnectionsDesc,
            ListEndpointServiceRequest,
            ListServiceConnectionsRequest,
            ListServiceDetailsRequest,
            ListVersionDetailsRequest,
            UpdateEndpointConnectionsDescRequest,
            UpdateEndpointConnectionsDescRequestBody,
            VpcepClient,
        )

        yield SimpleNamespace(
            BasicCredentials=BasicCredentials,
            ClientRequestException=ClientRequestException,
            HttpConfig=HttpConfig,
            VpcepClient=VpcepClient,
            AcceptOrRejectEndpointRequest=AcceptOrRejectEndpointRequest,
            AcceptOrRejectEndpointRequestBody=AcceptOrRejectEndpointRequestBody,
            ConnectionsDesc=ConnectionsDesc,
            ListEndpointServiceRequest=ListEndpointServiceRequest,
            ListServiceConnectionsRequest=ListServiceConnectionsRequest,
            ListServiceDetailsRequest=ListServiceDetailsRequest,
            ListVersionDetailsRequest=ListVersionDetailsRequest,
            UpdateEndpointConnectionsDescRequest=UpdateEndpointConnectionsDescRequest,
            UpdateEndpointConnectionsDescRequestBody=UpdateEndpointConnectionsDescRequestBody,
        )


@pytest.fixture(name="live")
def _live() -> Iterator[Emulator]:
    """The demo scenario with the clock pinned at the real now (the SDK signs with real time)."""
    clock = FakeClock(datetime.now(UTC))
    with Emulator(load_scenario(DEMO_SCENARIO), clock=clock) as emulator:
        yield emulator


def client_for(sdk: SimpleNamespace, emulator: Emulator, sk: str = SK) -> Any:
    config = sdk.HttpConfig.get_default_config()
    config.ignore_ssl_verification = True  # plain http on loopback; nothing to verify
    config.timeout = (5, 10)
    return (
        sdk.VpcepClient.new_builder()
        .with_credentials(sdk.BasicCredentials(AK, sk, PROJECT))  # a project id: no IAM lookup
        .with_endpoints([emulator.url])
        .with_http_config(config)
        .build()
    )


@pytest.fixture(name="client")
def _client(sdk: SimpleNamespace, live: Emulator) -> Any:
    return client_for(sdk, live)


def pending_id(emulator: Emulator, domain: str) -> str:
    return next(
        c["id"]
        for c in emulator.connections(ORDERS)
        if c["domain_id"] == domain and c["status"] == "pendingAcceptance"
    )


def test_sdk_lists_services_with_tags_and_counts(sdk: SimpleNamespace, client: Any) -> None:
    """list_endpoint_service parses all four services, their tags and connection counts."""
    response = client.list_endpoint_service(sdk.ListEndpointServiceRequest(limit=100))
    assert response.total_count == 4
    by_name = {s.service_name: s for s in response.endpoint_services}
    orders = by_name["orders-api"]
    assert orders.id == ORDERS and orders.approval_enabled is True and orders.status == "available"
    assert [(t.key, t.value) for t in orders.tags] == [("env", "prod"), ("team", "orders")]
    assert orders.connection_count == 1
    assert by_name["legacy-api"].approval_enabled is False


def test_sdk_shows_one_service(sdk: SimpleNamespace, client: Any) -> None:
    """list_service_details returns the service's name and tags."""
    request = sdk.ListServiceDetailsRequest(vpc_endpoint_service_id=ORDERS)
    response = client.list_service_details(request)
    assert response.service_name == "orders-api" and response.project_id == PROJECT
    assert {t.key: t.value for t in response.tags} == {"env": "prod", "team": "orders"}


def test_sdk_pages_through_pending_connections(
    sdk: SimpleNamespace, client: Any, live: Emulator
) -> None:
    """status/limit/offset reach the emulator as sent; total_count and fields come back intact."""
    pages = [
        client.list_service_connections(
            sdk.ListServiceConnectionsRequest(
                vpc_endpoint_service_id=ORDERS,
                status="pendingAcceptance",
                limit=2,
                offset=offset,
                sort_dir="asc",
            )
        )
        for offset in (0, 2)
    ]
    assert [p.total_count for p in pages] == [3, 3]
    conns = [c for p in pages for c in p.connections]
    assert [c.domain_id for c in conns] == [ACME, BLOCKED, UNKNOWN]
    expected = {c["id"]: c for c in live.connections(ORDERS)}
    for conn in conns:
        assert conn.status == "pendingAcceptance"
        assert conn.marker_id == expected[conn.id]["marker_id"]  # big ints survive exactly
        assert conn.created_at == expected[conn.id]["created_at"]
    assert live.requests[0].query == "limit=2&offset=0&sort_dir=asc&status=pendingAcceptance"
    assert live.count("ListServiceConnections", status=200) == 2


def test_sdk_accepts_and_rejects(sdk: SimpleNamespace, client: Any, live: Emulator) -> None:
    """accept_or_reject_endpoint with receive/reject returns and stores accepted/rejected."""
    acme, blocked = pending_id(live, ACME), pending_id(live, BLOCKED)
    for endpoint, action, status in (
        (acme, "receive", "accepted"),
        (blocked, "reject", "rejected"),
    ):
        body = sdk.AcceptOrRejectEndpointRequestBody(action=action, endpoints=[endpoint])
        response = client.accept_or_reject_endpoint(
            sdk.AcceptOrRejectEndpointRequest(vpc_endpoint_service_id=ORDERS, body=body)
        )
        assert [(c.id, c.status) for c in response.connections] == [(endpoint, status)]
        assert live.connection(ORDERS, endpoint)["status"] == status
    assert live.count("AcceptOrRejectEndpoint", status=200) == 2
    assert all(r.ak == AK for r in live.requests)


def test_sdk_sees_endpoint_2014_on_re_accept(
    sdk: SimpleNamespace, client: Any, live: Emulator
) -> None:
    """Accepting an accepted connection raises ClientRequestException 400 EndPoint.2014."""
    globex = next(c["id"] for c in live.connections(ORDERS) if c["domain_id"] == GLOBEX)
    body = sdk.AcceptOrRejectEndpointRequestBody(action="receive", endpoints=[globex])
    with pytest.raises(sdk.ClientRequestException) as caught:
        client.accept_or_reject_endpoint(
            sdk.AcceptOrRejectEndpointRequest(vpc_endpoint_service_id=ORDERS, body=body)
        )
    exc = caught.value
    assert (exc.status_code, exc.error_code) == (400, "EndPoint.2014")
    assert exc.error_msg == "The endpoint has connected to the endpoint service."
    assert exc.request_id == live.requests[-1].request_id


def test_sdk_sees_endpoint_2031_for_two_endpoints(
    sdk: SimpleNamespace, client: Any, live: Emulator
) -> None:
    """Two endpoints in one action raise EndPoint.2031 and change nothing."""
    endpoints = [pending_id(live, ACME), pending_id(live, UNKNOWN)]
    body = sdk.AcceptOrRejectEndpointRequestBody(action="receive", endpoints=endpoints)
    with pytest.raises(sdk.ClientRequestException) as caught:
        client.accept_or_reject_endpoint(
            sdk.AcceptOrRejectEndpointRequest(vpc_endpoint_service_id=ORDERS, body=body)
        )
    assert caught.value.error_code == "EndPoint.2031"
    assert {live.connection(ORDERS, e)["status"] for e in endpoints} == {"pendingAcceptance"}


def test_sdk_with_a_wrong_sk_gets_the_gateway_401(sdk: SimpleNamespace, live: Emulator) -> None:
    """A wrong SK surfaces as ClientRequestException 401 APIGW.0301 with the request id."""
    client = client_for(sdk, live, sk="wrong-secret")
    with pytest.raises(sdk.ClientRequestException) as caught:
        client.list_endpoint_service(sdk.ListEndpointServiceRequest())
    exc = caught.value
    assert (exc.status_code, exc.error_code) == (401, "APIGW.0301")
    assert "verify aksk signature fail" in exc.error_msg
    assert exc.request_id == live.requests[-1].request_id


def test_sdk_updates_descriptions(sdk: SimpleNamespace, client: Any, live: Emulator) -> None:
    """update_endpoint_connections_desc writes the description the SDK serialised."""
    acme = pending_id(live, ACME)
    body = sdk.UpdateEndpointConnectionsDescRequestBody(
        connections=[sdk.ConnectionsDesc(id=acme, description="held: no rule matched — ok")]
    )
    response = client.update_endpoint_connections_desc(
        sdk.UpdateEndpointConnectionsDescRequest(vpc_endpoint_service_id=ORDERS, body=body)
    )
    assert response.connections[0].description == "held: no rule matched — ok"
    assert live.connection(ORDERS, acme)["description"] == "held: no rule matched — ok"


def test_sdk_reads_the_version_list(sdk: SimpleNamespace, client: Any) -> None:
    """list_version_details parses the GET / version document."""
    response = client.list_version_details(sdk.ListVersionDetailsRequest())
    assert [(v.id, v.status) for v in response.versions] == [("v1", "CURRENT")]
