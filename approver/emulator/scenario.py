"""Scenario files: what the emulated cloud holds when it starts, and what arrives later.

Loaded with ``yaml.safe_load`` and validated completely before anything starts: unknown keys,
wrong types, duplicate ids and dangling references are refused with the path of the offending
field (``demo.yaml: services[1].connections[0].status: ...``). See the package docstring for
the format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, cast

import yaml

from approver.emulator.wire import ERROR_SHAPES, ErrorShape
from approver.records import CONNECTION_STATUSES, PENDING

SERVICE_STATUSES: Final = frozenset({"creating", "available", "failed", "deleting"})
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class ScenarioError(ValueError):
    """The scenario file cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class CredentialSpec:
    """An AK/SK the emulated gateway accepts, bound to one project. Secrets stay out of repr."""

    ak: str
    sk: str = field(repr=False)
    project_id: str
    security_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ConnectionSpec:
    """A connection present at start. Missing ids, markers and times are generated."""

    domain_id: str
    status: str = PENDING
    description: str = ""
    id: str | None = None
    marker_id: int | None = None
    created_at: datetime | None = None


@dataclass(frozen=True)
class ServiceSpec:
    """An endpoint service of the provider; ``tags`` keep their file order."""

    id: str
    name: str
    project_id: str
    tags: tuple[tuple[str, str], ...] = ()
    approval_enabled: bool = True
    status: str = "available"
    description: str = ""
    connections: tuple[ConnectionSpec, ...] = ()


@dataclass(frozen=True)
class ArrivalSpec:
    """New connections appearing on ``service_id`` every ``every_seconds`` of emulator time.

    The k-th (from 0) is due at start + ``start_after_seconds`` + k * ``every_seconds``;
    ``domain_ids`` are used in turn; ``count`` caps the total (None: no cap).
    """

    service_id: str
    every_seconds: float
    domain_ids: tuple[str, ...]
    description: str = ""
    start_after_seconds: float = 0.0
    count: int | None = None

    def due(self, k: int) -> float:
        """Seconds after start at which arrival ``k`` appears."""
        return self.start_after_seconds + k * self.every_seconds


@dataclass(frozen=True)
class Scenario:
    """Everything the emulator needs to start; build with ``from_dict`` or ``load_scenario``."""

    credentials: tuple[CredentialSpec, ...]
    services: tuple[ServiceSpec, ...]
    arrivals: tuple[ArrivalSpec, ...] = ()
    seed: int | str = 0
    domain_id: str = "3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f"
    error_shape: ErrorShape = "flat"
    lockout_after: int = 5
    lockout_seconds: float = 300.0
    source: str = "scenario"

    @classmethod
    def from_dict(cls, data: object, *, source: str = "scenario") -> Scenario:
        """Validate a parsed scenario; raise ``ScenarioError`` naming the first bad field."""
        return _Parser(source).scenario(data)

    def service(self, key: str) -> ServiceSpec:
        """A service by id or name."""
        for spec in self.services:
            if key in (spec.id, spec.name):
                return spec
        raise KeyError(key)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read scenario file: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ScenarioError(f"{where}: invalid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: invalid YAML: {exc}") from None
    return Scenario.from_dict(data, source=str(path))


class _Parser:
    """Walks the parsed YAML, remembering the file for every message."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> ScenarioError:
        return ScenarioError(f"{self.source}: {where}: {problem}")

    def mapping(
        self, value: object, where: str, required: set[str], optional: set[str]
    ) -> dict[str, object]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a mapping, got {_kind(value)}")
        unknown = sorted(str(k) for k in value if k not in required | optional)
        if unknown:
            allowed = ", ".join(sorted(required | optional))
            raise self.fail(where, f"unknown key(s) {', '.join(unknown)} (allowed: {allowed})")
        missing = sorted(required - set(value))
        if missing:
            raise self.fail(where, f"missing required key(s) {', '.join(missing)}")
        return cast("dict[str, object]", value)

    def items(self, value: object, where: str) -> list[object]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(where, f"expected a list, got {_kind(value)}")
        return value

    def text(self, value: object, where: str, *, empty: bool = False) -> str:
        if not isinstance(value, str):
            hint = " (quote it)" if isinstance(value, (int, float, bool)) else ""
            raise self.fail(where, f"expected a string, got {_kind(value)}{hint}")
        if not empty and not value.strip():
            raise self.fail(where, "must not be empty")
        return value

    def flag(self, value: object, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, f"expected true or false, got {_kind(value)}")
        return value

    def number(self, value: object, where: str, *, minimum: float, positive: bool) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(where, f"expected a number, got {_kind(value)}")
        if value < minimum or (positive and value <= 0):
            raise self.fail(where, f"must be {'>' if positive else '>='} {minimum}, got {value}")
        return float(value)

    def integer(self, value: object, where: str, *, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, f"expected an integer, got {_kind(value)}")
        if value < minimum:
            raise self.fail(where, f"must be >= {minimum}, got {value}")
        return value

    def choice(self, value: object, where: str, allowed: frozenset[str] | tuple[str, ...]) -> str:
        if value not in allowed:
            raise self.fail(where, f"{value!r} is not one of {', '.join(sorted(allowed))}")
        return cast(str, value)

    def uuid(self, value: object, where: str) -> str:
        text = self.text(value, where)
        if not _UUID.match(text):
            raise self.fail(where, f"expected a lower-case UUID, got {text!r}")
        return text

    def when(self, value: object, where: str) -> datetime:
        if isinstance(value, datetime):
            moment = value
        else:
            text = self.text(value, where)
            try:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise self.fail(where, f"expected an ISO 8601 time, got {text!r}") from None
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment

    # -- the document ---------------------------------------------------------------------

    def scenario(self, data: object) -> Scenario:
        top = self.mapping(
            data,
            "top level",
            {"credentials", "services"},
            {"seed", "arrivals", "domain_id", "error_shape", "lockout"},
        )
        credentials = tuple(
            self.credential(item, f"credentials[{i}]")
            for i, item in enumerate(self.items(top["credentials"], "credentials"))
        )
        if not credentials:
            raise self.fail("credentials", "at least one credential is required")
        aks = [c.ak for c in credentials]
        if len(set(aks)) != len(aks):
            raise self.fail("credentials", "duplicate ak")
        default_project = credentials[0].project_id
        services = tuple(
            self.service(item, f"services[{i}]", default_project)
            for i, item in enumerate(self.items(top["services"], "services"))
        )
        self.check_unique(services)
        arrivals = tuple(
            self.arrival(item, f"arrivals[{i}]", services)
            for i, item in enumerate(self.items(top.get("arrivals"), "arrivals"))
        )
        seed = top.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, (int, str)):
            raise self.fail("seed", f"expected an integer or a string, got {_kind(seed)}")
        lockout = self.mapping(top.get("lockout", {}), "lockout", set(), {"after", "seconds"})
        return Scenario(
            credentials=credentials,
            services=services,
            arrivals=arrivals,
            seed=seed,
            domain_id=self.text(top.get("domain_id", Scenario.domain_id), "domain_id"),
            error_shape=cast(
                ErrorShape,
                self.choice(
                    top.get("error_shape", Scenario.error_shape), "error_shape", ERROR_SHAPES
                ),
            ),
            lockout_after=self.integer(
                lockout.get("after", Scenario.lockout_after), "lockout.after", minimum=0
            ),
            lockout_seconds=self.number(
                lockout.get("seconds", Scenario.lockout_seconds),
                "lockout.seconds",
                minimum=0,
                positive=False,
            ),
            source=self.source,
        )

    def credential(self, value: object, where: str) -> CredentialSpec:
        data = self.mapping(value, where, {"ak", "sk", "project_id"}, {"security_token"})
        token = data.get("security_token")
        return CredentialSpec(
            ak=self.text(data["ak"], f"{where}.ak"),
            sk=self.text(data["sk"], f"{where}.sk"),
            project_id=self.text(data["project_id"], f"{where}.project_id"),
            security_token=None if token is None else self.text(token, f"{where}.security_token"),
        )

    def service(self, value: object, where: str, default_project: str) -> ServiceSpec:
        data = self.mapping(
            value,
            where,
            {"id", "name"},
            {"tags", "approval_enabled", "status", "description", "project_id", "connections"},
        )
        tags_raw = data.get("tags") or {}
        if not isinstance(tags_raw, dict):
            raise self.fail(
                f"{where}.tags", f"expected a mapping of key: value, got {_kind(tags_raw)}"
            )
        tags = tuple(
            (self.text(k, f"{where}.tags"), self.text(v, f"{where}.tags.{k}", empty=True))
            for k, v in tags_raw.items()
        )
        project = data.get("project_id", default_project)
        return ServiceSpec(
            id=self.uuid(data["id"], f"{where}.id"),
            name=self.text(data["name"], f"{where}.name"),
            project_id=self.text(project, f"{where}.project_id"),
            tags=tags,
            approval_enabled=self.flag(
                data.get("approval_enabled", True), f"{where}.approval_enabled"
            ),
            status=self.choice(
                data.get("status", "available"), f"{where}.status", SERVICE_STATUSES
            ),
            description=self.text(data.get("description", ""), f"{where}.description", empty=True),
            connections=tuple(
                self.connection(item, f"{where}.connections[{i}]")
                for i, item in enumerate(
                    self.items(data.get("connections"), f"{where}.connections")
                )
            ),
        )

    def connection(self, value: object, where: str) -> ConnectionSpec:
        data = self.mapping(
            value, where, {"domain_id"}, {"status", "description", "id", "marker_id", "created_at"}
        )
        return ConnectionSpec(
            domain_id=self.text(data["domain_id"], f"{where}.domain_id"),
            status=self.choice(data.get("status", PENDING), f"{where}.status", CONNECTION_STATUSES),
            description=self.text(data.get("description", ""), f"{where}.description", empty=True),
            id=None if data.get("id") is None else self.uuid(data["id"], f"{where}.id"),
            marker_id=(
                None
                if data.get("marker_id") is None
                else self.integer(data["marker_id"], f"{where}.marker_id", minimum=1)
            ),
            created_at=(
                None
                if data.get("created_at") is None
                else self.when(data["created_at"], f"{where}.created_at")
            ),
        )

    def arrival(self, value: object, where: str, services: tuple[ServiceSpec, ...]) -> ArrivalSpec:
        data = self.mapping(
            value,
            where,
            {"every_seconds", "service", "domain_ids"},
            {"description", "start_after_seconds", "count"},
        )
        key = self.text(data["service"], f"{where}.service")
        matches = [s for s in services if key in (s.id, s.name)]
        if not matches:
            raise self.fail(f"{where}.service", f"no service with id or name {key!r}")
        domains = tuple(
            self.text(d, f"{where}.domain_ids[{i}]")
            for i, d in enumerate(self.items(data["domain_ids"], f"{where}.domain_ids"))
        )
        if not domains:
            raise self.fail(f"{where}.domain_ids", "at least one domain id is required")
        every = self.number(
            data["every_seconds"], f"{where}.every_seconds", minimum=0, positive=True
        )
        return ArrivalSpec(
            service_id=matches[0].id,
            every_seconds=every,
            domain_ids=domains,
            description=self.text(data.get("description", ""), f"{where}.description", empty=True),
            start_after_seconds=self.number(
                data.get("start_after_seconds", every),
                f"{where}.start_after_seconds",
                minimum=0,
                positive=False,
            ),
            count=(
                None
                if data.get("count") is None
                else self.integer(data["count"], f"{where}.count", minimum=0)
            ),
        )

    def check_unique(self, services: tuple[ServiceSpec, ...]) -> None:
        seen: dict[str, str] = {}
        for i, spec in enumerate(services):
            for label, key in (("id", spec.id), ("name", spec.name)):
                if key in seen:
                    raise self.fail(
                        f"services[{i}].{label}", f"{key!r} already used by {seen[key]}"
                    )
                seen[key] = f"services[{i}]"
        connection_ids: set[str] = set()
        for i, spec in enumerate(services):
            for j, conn in enumerate(spec.connections):
                if conn.id is None:
                    continue
                if conn.id in connection_ids:
                    raise self.fail(
                        f"services[{i}].connections[{j}].id", f"duplicate id {conn.id!r}"
                    )
                connection_ids.add(conn.id)


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"{type(value).__name__} {value!r}"
    )
