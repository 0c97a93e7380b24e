"""The emulated VPCEP service's state and operations, free of HTTP.

Every operation takes the caller's project, the path parameters, the raw query or body, and
the emulator's ``now``; it returns the JSON payload of a 200 or raises ``EmulatorError`` with a
documented VPCEP code. The emulator serialises calls with one lock, so nothing here locks.

Choices where Huawei documents nothing (vpcep-api.md §12) are marked "(guess)" below.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol, TypeVar

from approver.cloud.signer import parse_query
from approver.emulator.scenario import ArrivalSpec, Scenario, ServiceSpec
from approver.emulator.wire import vpcep_error
from approver.records import CONNECTION_STATUSES, COUNTED_STATUSES, PENDING

MAX_LIMIT: Final = 1000
DEFAULT_LIMIT: Final = 10
# ConnectionsDesc.description: 0-512 characters, no "<" or ">" (Huawei's English API reference,
# UpdateEndpointConnectionsDesc, 2024 pages).
MAX_DESCRIPTION: Final = 512
SORT_KEYS: Final = {"create_at": "created_at", "update_at": "updated_at"}
SERVICE_FILTER_STATUSES: Final = frozenset(
    {"creating", "available", "failed", "deleting", "deleted"}
)
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_INTEGER = re.compile(r"^-?[0-9]+$")
PUBLIC_BORDER_GROUP: Final = "center"

# What a receive or reject on a connection that is not pending answers with: a documented
# code, never a silent success. Reject of an accepted connection is documented as allowed
# ([DOC-HW]: the IP is returned for `rejected` "only when rejected after having been accepted").
#   accepted  + receive -> EndPoint.2014 "has connected"       (guess from the message, §6.2)
#   creating  + any     -> EndPoint.2019 "is being created"
#   deleting  + any     -> EndPoint.2018 "is being deleted"
#   failed    + any     -> EndPoint.2047 "in the Failed status cannot be modified"
#   rejected  + any     -> EndPoint.0002 "Parameter error." (guess: no code names the rejected
#                          state; the generic one keeps a client from reading it as success)
_REFUSALS: Final[dict[tuple[str, str], str]] = {
    ("accepted", "receive"): "EndPoint.2014",
    ("creating", "receive"): "EndPoint.2019",
    ("creating", "reject"): "EndPoint.2019",
    ("deleting", "receive"): "EndPoint.2018",
    ("deleting", "reject"): "EndPoint.2018",
    ("failed", "receive"): "EndPoint.2047",
    ("failed", "reject"): "EndPoint.2047",
    ("rejected", "receive"): "EndPoint.0002",
    ("rejected", "reject"): "EndPoint.0002",
}
_OUTCOME: Final = {"receive": "accepted", "reject": "rejected"}
# What a `failed` connection carries in `error` (guess: the code whose message fits best).
_FAILED_ERROR: Final = {
    "error_code": "EndPoint.2022",
    "error_message": "Failed to create an endpoint.",
}


class _Sortable(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...


_Item = TypeVar("_Item", bound=_Sortable)


def timestamp(moment: datetime) -> str:
    """The API's documented time format, ``YYYY-MM-DDTHH:MM:SSZ`` in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Ids:
    """A deterministic stream of UUIDs and marker ids, one per purpose so that the ids of one
    stream do not depend on how calls to the others interleave."""

    def __init__(self, seed: int | str, name: str) -> None:
        self._rng = random.Random(f"{seed}/{name}")
        self._markers = 0

    def uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def marker(self) -> int:
        # Every other marker id is above 2**53, where a float-based JSON parser loses digits
        # (the docs' own example is 422321321312321321).
        self._markers += 1
        if self._markers % 2:
            return self._rng.randrange(2**53 + 1, 2**62)
        return self._rng.randrange(10**6, 2**53)


@dataclass
class Connection:
    """One consumer endpoint's connection (ConnectionEndpoints)."""

    id: str
    marker_id: int
    domain_id: str
    status: str
    description: str
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "marker_id": self.marker_id,
            "created_at": timestamp(self.created_at),
            "updated_at": timestamp(self.updated_at),
            "domain_id": self.domain_id,
            "error": [dict(_FAILED_ERROR)] if self.status == "failed" else [],
            "status": self.status,
            "description": self.description,
        }


@dataclass
class Service:
    """An endpoint service and its connections (in creation order)."""

    spec: ServiceSpec
    port_id: str
    vpc_id: str
    ip: str
    created_at: datetime
    connections: dict[str, Connection] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def updated_at(self) -> datetime:
        return self.created_at  # services do not change here

    def common_json(self) -> dict[str, Any]:
        return {
            "id": self.spec.id,
            "port_id": self.port_id,
            "service_name": self.spec.name,
            "server_type": "VM",
            "vpc_id": self.vpc_id,
            "approval_enabled": self.spec.approval_enabled,
            "status": self.spec.status,
            "service_type": "interface",
            "created_at": timestamp(self.created_at),
            "updated_at": timestamp(self.updated_at),
            "project_id": self.spec.project_id,
            "ip": self.ip,
            "ports": [{"client_port": 443, "server_port": 443, "protocol": "TCP"}],
            "tcp_proxy": "close",
            "tags": [{"key": k, "value": v} for k, v in self.spec.tags],
            "error": [],
            "description": self.spec.description,
            "supported_editions": ["profession"],
            "enable_policy": False,
        }


class Cloud:
    """All services and connections of a scenario, plus the arrivals still to come."""

    def __init__(self, scenario: Scenario, start: datetime) -> None:
        self._scenario = scenario
        self._start = start
        self._owner_domain = scenario.domain_id
        self.services: dict[str, Service] = {}
        self._markers: set[int] = set()
        self._streams: dict[str, _Ids] = {}
        seeded = [(spec, conn) for spec in scenario.services for conn in spec.connections]
        for index, spec in enumerate(scenario.services):
            ids = self._ids("services")
            self.services[spec.id] = Service(
                spec=spec,
                port_id=ids.uuid(),
                vpc_id=ids.uuid(),
                ip=f"192.168.{index % 250}.10",
                created_at=start - timedelta(days=len(scenario.services) - index),
            )
        for index, (spec, conn) in enumerate(seeded):
            created = conn.created_at or start - timedelta(minutes=len(seeded) - index)
            self._create(
                self.services[spec.id],
                stream="seeded",
                domain_id=conn.domain_id,
                description=conn.description,
                status=conn.status,
                endpoint_id=conn.id,
                marker_id=conn.marker_id,
                created_at=created,
            )
        self._arrived = [0] * len(scenario.arrivals)

    # -- state changes that are not API calls ---------------------------------------------

    def tick(self, now: datetime) -> None:
        """Create every arrival due at ``now``, in due order (ties: file order)."""
        elapsed = (now - self._start).total_seconds()
        while True:
            due = [
                (spec.due(self._arrived[i]), i)
                for i, spec in enumerate(self._scenario.arrivals)
                if _more(spec, self._arrived[i]) and spec.due(self._arrived[i]) <= elapsed
            ]
            if not due:
                return
            seconds, index = min(due)
            spec = self._scenario.arrivals[index]
            k = self._arrived[index]
            self._arrived[index] = k + 1
            service = self.services[spec.service_id]
            self._create(
                service,
                stream=f"arrivals[{index}]",
                domain_id=spec.domain_ids[k % len(spec.domain_ids)],
                description=spec.description,
                status=PENDING if service.spec.approval_enabled else "accepted",
                created_at=self._start + timedelta(seconds=seconds),
            )

    def add_connection(
        self,
        service_key: str,
        *,
        domain_id: str,
        description: str,
        status: str,
        endpoint_id: str | None,
        now: datetime,
    ) -> dict[str, Any]:
        if status not in CONNECTION_STATUSES:
            raise ValueError(f"unknown connection status {status!r}")
        service = self.service(service_key)
        if endpoint_id is not None and self._find(endpoint_id) is not None:
            raise ValueError(f"connection {endpoint_id} already exists")
        conn = self._create(
            service,
            stream="manual",
            domain_id=domain_id,
            description=description,
            status=status,
            endpoint_id=endpoint_id,
            created_at=now,
        )
        return conn.to_json()

    def set_status(self, service_key: str, endpoint_id: str, status: str, now: datetime) -> None:
        if status not in CONNECTION_STATUSES:
            raise ValueError(f"unknown connection status {status!r}")
        conn = self.service(service_key).connections[endpoint_id]
        conn.status = status
        conn.updated_at = now

    def service(self, key: str) -> Service:
        """A service by id or name; ``KeyError`` if there is none."""
        if key in self.services:
            return self.services[key]
        for service in self.services.values():
            if service.spec.name == key:
                return service
        raise KeyError(key)

    # -- API operations -------------------------------------------------------------------

    def list_services(self, project_id: str, query: str) -> dict[str, Any]:
        """ListEndpointService."""
        params = _params(query)
        services = [s for s in self.services.values() if s.spec.project_id == project_id]
        if "id" in params:
            services = [s for s in services if s.spec.id == params["id"]]
        if "endpoint_service_name" in params:
            name = params["endpoint_service_name"]
            if not 1 <= len(name) <= 128:
                raise vpcep_error("EndPoint.0002")
            services = [s for s in services if name.casefold() in s.spec.name.casefold()]
        if "status" in params:
            if params["status"] not in SERVICE_FILTER_STATUSES:
                raise vpcep_error("EndPoint.0019")
            services = [s for s in services if s.spec.status == params["status"]]
        if params.get("public_border_group", PUBLIC_BORDER_GROUP) != PUBLIC_BORDER_GROUP:
            services = []  # every emulated service is in the central pool
        page, total = _page(services, params)
        return {"endpoint_services": [self._list_json(s) for s in page], "total_count": total}

    def service_details(self, project_id: str, service_id: str) -> dict[str, Any]:
        """ListServiceDetails (ShowEndpointService)."""
        service = self._own(project_id, service_id)
        body = service.common_json()
        body["cidr_type"] = "internal"
        return body

    def list_connections(self, project_id: str, service_id: str, query: str) -> dict[str, Any]:
        """ListServiceConnections."""
        service = self._own(project_id, service_id)
        params = _params(query)
        conns = list(service.connections.values())
        if "id" in params:
            conns = [c for c in conns if c.id == params["id"]]
        if "marker_id" in params:
            if not _INTEGER.match(params["marker_id"]):
                raise vpcep_error("EndPoint.0021")
            conns = [c for c in conns if c.marker_id == int(params["marker_id"])]
        if "status" in params:
            # The docs list only four values for this filter; the other two are real statuses
            # too, so they filter rather than fail (guess).
            if params["status"] not in CONNECTION_STATUSES:
                raise vpcep_error("EndPoint.0019")
            conns = [c for c in conns if c.status == params["status"]]
        page, total = _page(conns, params)
        return {"connections": [c.to_json() for c in page], "total_count": total}

    def accept_or_reject(
        self, project_id: str, service_id: str, body: bytes, now: datetime
    ) -> dict[str, Any]:
        """AcceptOrRejectEndpoint: one endpoint per call, only from a state that allows it.

        Checks in this order (guess; Huawei documents the codes, not their precedence):
        service exists, body is a JSON object, action, exactly one endpoint, endpoint id
        format, service available, endpoint belongs to the service, state allows the action.
        """
        service = self._own(project_id, service_id)
        data = _json_object(body)
        action = data.get("action")
        endpoints = data.get("endpoints")
        if not isinstance(action, str) or not isinstance(endpoints, list):
            raise vpcep_error("EndPoint.0002")
        if action not in _OUTCOME:
            raise vpcep_error("EndPoint.2027")
        if len(endpoints) != 1:
            raise vpcep_error("EndPoint.2031")
        endpoint_id = endpoints[0]
        if not isinstance(endpoint_id, str) or not _UUID.match(endpoint_id):
            raise vpcep_error("EndPoint.2017")
        if service.spec.status != "available":
            raise vpcep_error("EndPoint.2004")
        conn = service.connections.get(endpoint_id)
        if conn is None:
            raise vpcep_error("EndPoint.2013")
        refusal = _REFUSALS.get((conn.status, action))
        if refusal is not None:
            raise vpcep_error(refusal)
        conn.status = _OUTCOME[action]
        conn.updated_at = now
        return {"connections": [conn.to_json()]}

    def update_descriptions(
        self, project_id: str, service_id: str, body: bytes, now: datetime
    ) -> dict[str, Any]:
        """UpdateEndpointConnectionsDesc: several connections per call, all or none."""
        service = self._own(project_id, service_id)
        items = _json_object(body).get("connections")
        if not isinstance(items, list) or not items:
            raise vpcep_error("EndPoint.0002")
        changes: list[tuple[Connection, str]] = []
        for item in items:
            if not isinstance(item, dict):
                raise vpcep_error("EndPoint.0002")
            endpoint_id, text = item.get("id"), item.get("description")
            if not isinstance(endpoint_id, str) or not isinstance(text, str):
                raise vpcep_error("EndPoint.0002")
            if not _UUID.match(endpoint_id):
                raise vpcep_error("EndPoint.2017")
            if len(text) > MAX_DESCRIPTION or "<" in text or ">" in text:
                raise vpcep_error("EndPoint.0002")
            conn = service.connections.get(endpoint_id)
            if conn is None:
                raise vpcep_error("EndPoint.2013")
            changes.append((conn, text))
        for conn, text in changes:
            conn.description = text
            conn.updated_at = now
        return {"connections": [conn.to_json() for conn, _ in changes]}

    # -- helpers --------------------------------------------------------------------------

    def _own(self, project_id: str, service_id: str) -> Service:
        service = self.services.get(service_id)
        if service is None or service.spec.project_id != project_id:
            raise vpcep_error("EndPoint.2003")
        return service

    def _list_json(self, service: Service) -> dict[str, Any]:
        body = service.common_json()
        body["domain_id"] = self._owner_domain
        body["connection_count"] = sum(
            1 for c in service.connections.values() if c.status in COUNTED_STATUSES
        )
        body["public_border_group"] = PUBLIC_BORDER_GROUP
        return body

    def _ids(self, name: str) -> _Ids:
        if name not in self._streams:
            self._streams[name] = _Ids(self._scenario.seed, name)
        return self._streams[name]

    def _find(self, endpoint_id: str) -> Connection | None:
        for service in self.services.values():
            if endpoint_id in service.connections:
                return service.connections[endpoint_id]
        return None

    def _create(
        self,
        service: Service,
        *,
        stream: str,
        domain_id: str,
        description: str,
        status: str,
        created_at: datetime,
        endpoint_id: str | None = None,
        marker_id: int | None = None,
    ) -> Connection:
        ids = self._ids(stream)
        while endpoint_id is None or self._find(endpoint_id) is not None:
            endpoint_id = ids.uuid()
        while marker_id is None or marker_id in self._markers:
            marker_id = ids.marker()
        self._markers.add(marker_id)
        conn = Connection(
            id=endpoint_id,
            marker_id=marker_id,
            domain_id=domain_id,
            status=status,
            description=description,
            created_at=created_at,
            updated_at=created_at,
        )
        service.connections[conn.id] = conn
        return conn


def _more(spec: ArrivalSpec, produced: int) -> bool:
    return spec.count is None or produced < spec.count


def _params(query: str) -> dict[str, str]:
    """Decoded query parameters; for a repeated key the first value counts."""
    params: dict[str, str] = {}
    for key, value in parse_query(query):
        params.setdefault(key, value)
    return params


def _json_object(body: bytes) -> Mapping[str, object]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise vpcep_error("EndPoint.0002") from None
    if not isinstance(data, dict):
        raise vpcep_error("EndPoint.0002")
    return data


def _integer(params: Mapping[str, str], key: str, default: int, code: str) -> int:
    raw = params.get(key)
    if raw is None:
        return default
    if not _INTEGER.match(raw):
        raise vpcep_error(code)
    return int(raw)


def _page(items: Iterable[_Item], params: Mapping[str, str]) -> tuple[list[_Item], int]:
    """Validate limit/offset/sort_key/sort_dir, sort (ties by id), cut one page; and the total."""
    limit = _integer(params, "limit", DEFAULT_LIMIT, "EndPoint.0006")
    if not 1 <= limit <= MAX_LIMIT:
        raise vpcep_error("EndPoint.0006")
    offset = _integer(params, "offset", 0, "EndPoint.0010")
    if offset < 0:
        raise vpcep_error("EndPoint.0010")
    sort_key = params.get("sort_key", "create_at")
    if sort_key not in SORT_KEYS:
        raise vpcep_error("EndPoint.0017")
    sort_dir = params.get("sort_dir", "desc")
    if sort_dir not in ("asc", "desc"):
        raise vpcep_error("EndPoint.0018")
    attribute = SORT_KEYS[sort_key]
    ordered = sorted(
        items, key=lambda item: (getattr(item, attribute), item.id), reverse=sort_dir == "desc"
    )
    return ordered[offset : offset + limit], len(ordered)
