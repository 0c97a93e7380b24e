"""A local Huawei Cloud VPCEP API for the demo, policy trials and the tests.

It speaks the real wire format (shared/reference/vpcep-api.md): the real paths and query
parameters, the SDK models' JSON shapes, offset/limit pagination with ``total_count``,
connection status transitions, VPCEP and API Gateway error bodies with Huawei's codes and
messages, ``X-Request-Id`` on every answer, and SDK-HMAC-SHA256 signature verification
(±15 minutes on the emulator's clock, AK lockout). The official ``huaweicloudsdkvpcep`` client
works against it unchanged.

    with Emulator(load_scenario("scenario.yaml"), clock=fake_clock) as emu:
        ...  # point a client at emu.url; inspect emu.requests, emu.count("AcceptOrRejectEndpoint")

Operations: ``GET /`` and ``GET /v1`` (version documents, unsigned), and under
``/v1/{project_id}/vpc-endpoint-services``: ListEndpointService (``GET``), ListServiceDetails
(``GET /{id}``), ListServiceConnections (``GET /{id}/connections``), AcceptOrRejectEndpoint
(``POST /{id}/connections/action``), UpdateEndpointConnectionsDesc
(``PUT /{id}/connections/description``). Anything else is 404 ``APIGW.0101``.

Scenario file (YAML)::

    seed: 7                          # int or string: generated ids and markers derive from it
    credentials:                     # the AK/SKs the gateway accepts (at least one)
      - ak: DEMOAK00000000000001
        sk: demo-secret-key-not-for-production-000000
        project_id: 0a1b2c3d4e5f60718293a4b5c6d7e8f9
        security_token: ...          # optional: a temporary AK; X-Security-Token must be signed
    domain_id: 3c2d...               # optional: the provider's own account (ServiceList.domain_id)
    error_shape: flat                # optional: flat {"error_code","error_msg"} (default) or
                                     #   nested {"error": {"code","message"}} for VPCEP errors
    lockout: {after: 5, seconds: 300}  # optional: AK lockout after N failed authentications
                                       #   (after: 0 disables it)
    services:
      - id: 4189d3c2-8882-4871-a3c2-d380272eed88   # lower-case UUID, unique
        name: orders-api                           # unique; ListEndpointService's service_name
        tags: {env: prod, team: orders}            # optional, string values
        approval_enabled: true                     # optional, default true
        status: available                          # optional: creating|available|failed|deleting
        description: ""                            # optional
        project_id: ...                            # optional, default: first credential's
        connections:                               # optional: present at start
          - domain_id: 0c1f2e3d4c5b6a798877665544332211   # the consumer's account (quote it)
            status: pendingAcceptance                      # optional, default pendingAcceptance
            description: "SEC-1201 acme orders"            # optional
            id: ...                                        # optional UUID, else generated
            marker_id: 123                                 # optional, else generated
            created_at: 2024-01-02T03:04:05Z               # optional, else before start
    arrivals:                        # optional: connections that appear as the clock advances
      - service: orders-api          # id or name
        every_seconds: 4             # > 0
        domain_ids: [acme, unknown]  # used in turn
        description: "SEC-2001 new"  # optional
        start_after_seconds: 4       # optional, default every_seconds
        count: 10                    # optional cap, default unlimited

Time: the emulator's clock is injected (``clock=``, default UTC now). Start is the clock at
construction; arrival k of a spec is due at start + start_after_seconds + k * every_seconds
and gets that moment as ``created_at``. Due arrivals are applied on ``tick()`` and before every
request, so a test advances its fake clock and the next listing shows them. On a service with
``approval_enabled: false`` arrivals are ``accepted`` at once. Seeded connections without
``created_at`` are one minute apart, ending one minute before start, in file order.

Not modelled yet: throttling (429 ``APIGW.0308``, 400 ``EndPoint.0022``), the ``creating``
step after a receive (the answer is ``accepted`` at once; ``Emulator.set_status`` can put a
connection in any state), whitelist, tag, quota and consumer-side APIs, token auth, and
fault injection (``Emulator.faults`` is the hook for it).
"""

from approver.emulator.cli import DEFAULT_PORT, demo_scenario_path, register
from approver.emulator.scenario import (
    ArrivalSpec,
    ConnectionSpec,
    CredentialSpec,
    Scenario,
    ScenarioError,
    ServiceSpec,
    load_scenario,
)
from approver.emulator.server import Emulator, FaultHook, RequestLog
from approver.emulator.wire import EmulatorError, Incoming, Reply

__all__ = [
    "DEFAULT_PORT",
    "ArrivalSpec",
    "ConnectionSpec",
    "CredentialSpec",
    "Emulator",
    "EmulatorError",
    "FaultHook",
    "Incoming",
    "Reply",
    "RequestLog",
    "Scenario",
    "ScenarioError",
    "ServiceSpec",
    "demo_scenario_path",
    "load_scenario",
    "register",
]
