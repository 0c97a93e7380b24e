"""One reconciliation pass over one target: list → decide → act → audit.

Level-triggered: every sweep starts from what the API says now, never from what an earlier
sweep saw. Safety rules that live here:

* A service whose listing did not complete contributes nothing: no action is taken from a
  partial listing and nothing is inferred from absence.
* The decision record (the write-ahead intent) is durable before the POST; if it cannot be
  written, nothing more is acted on in this sweep.
* Above ``max_actions_per_sweep`` no action is taken at all, and the sweep says so.
* A POST whose outcome is unknown is recorded as ``ambiguous`` and never resent in the same
  sweep; the next sweep reads the connection again and decides from what it sees.
* 401/403 stop all further calls of the sweep: the AK locks after five failures.
"""

from __future__ import annotations

import asyncio
import fnmatch
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from approver.cloud import errors
from approver.cloud.client import Listing, VpcepClient
from approver.cloud.models import Malformed
from approver.config import ServiceSelector
from approver.policy import Decision, Policy, decide
from approver.records import COUNTED_STATUSES, PENDING, Connection, Service

Outcome = Literal[
    "ok",
    "error",
    "ambiguous",
    "skipped_dry_run",
    "not_pending",
    "blocked_by_limit",
]
API_ACTION = {"accept": "receive", "reject": "reject"}


class Recorder(Protocol):
    """Where records go: the durable audit log first, then the log stream."""

    def write(self, record: dict[str, Any]) -> dict[str, Any]: ...


class HoldMemory:
    """Remembers which holds were recorded, so a held endpoint is recorded once per policy
    version (and again when the rule or reason for holding it changes), not every sweep."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str, str, str]] = set()

    def first_time(self, endpoint_id: str, decision: Decision) -> bool:
        key = (endpoint_id, decision.policy_digest, decision.rule_id, decision.reason)
        if key in self._seen:
            return False
        self._seen.add(key)
        return True

    def keep_only(self, endpoint_ids: Iterable[str]) -> None:
        """Forget endpoints that are no longer pending (bounded memory, re-record if they return)."""
        alive = set(endpoint_ids)
        self._seen = {key for key in self._seen if key[0] in alive}


@dataclass(frozen=True)
class Row:
    """One decision as a person reads it (the plan table, the demo output)."""

    service_id: str
    service_name: str
    endpoint_id: str
    domain_id: str
    action: str
    rule_id: str
    reason: str
    outcome: str
    error: str = ""
    connection: Connection | None = None
    decision: Decision | None = None


@dataclass
class SweepResult:
    sweep_id: str
    target: str
    policy_digest: str
    services_seen: int = 0
    services_swept: int = 0
    pending: int = 0
    rows: list[Row] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    partial: bool = False
    limit_exceeded: bool = False
    api_calls: dict[str, int] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not self.errors and not self.partial

    def counts(self) -> Counter[str]:
        return Counter(f"{row.action}:{row.outcome}" for row in self.rows)


@dataclass(frozen=True)
class ServiceWork:
    service: Service
    pending: tuple[Connection, ...]
    usage: dict[str, int] | None
    malformed: tuple[Malformed, ...]


def selected(service: Service, selector: ServiceSelector) -> bool:
    if selector.ids and service.id not in selector.ids:
        return False
    if selector.names and not any(fnmatch.fnmatchcase(service.name, g) for g in selector.names):
        return False
    return all(service.tags.get(k) == v for k, v in selector.tags.items())


class Sweeper:
    """Runs sweeps for one target. Holds only the hold memory between sweeps."""

    def __init__(
        self,
        target: str,
        selector: ServiceSelector,
        client: VpcepClient,
        recorder: Recorder,
        clock: Callable[[], datetime],
        *,
        dry_run: bool = False,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        stop_requested: Callable[[], bool] = lambda: False,
    ) -> None:
        self.target = target
        self.selector = selector
        self.client = client
        self.recorder = recorder
        self.clock = clock
        self.dry_run = dry_run
        self.new_id = new_id
        self.stop_requested = stop_requested
        self.holds = HoldMemory()

    async def run(self, policy: Policy, *, act: bool = True) -> SweepResult:
        """One pass. ``act=False`` is ``plan``: decide and report, write nothing, POST nothing."""
        result = SweepResult(self.new_id(), self.target, policy.digest)
        calls_before = dict(self.client.stats.calls)
        try:
            work = await self._gather(policy, result)
            if act:
                await self._act_all(policy, work, result)
            else:
                self._plan_all(policy, work, result)
        finally:
            result.api_calls = {
                op: n - calls_before.get(op, 0)
                for op, n in self.client.stats.calls.items()
                if n - calls_before.get(op, 0)
            }
        return result

    async def resolve_intents(self, intents: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """After a crash: read again each endpoint whose intent has no outcome, and record it.

        An endpoint the earlier POST already moved is ``confirmed_after_restart``; one still
        pending is ``not_applied`` and the next sweep decides it afresh (one POST at most).
        Nothing is POSTed here.
        """
        written = []
        for intent in intents:
            if intent.get("target") != self.target:
                continue
            outcome: dict[str, Any] = {
                "event": "outcome",
                "decision_id": intent.get("decision_id"),
                "sweep_id": intent.get("sweep_id"),
                "target": self.target,
                "service_id": intent.get("service_id"),
                "service_name": intent.get("service_name"),
                "endpoint_id": intent.get("endpoint_id"),
                "domain_id": intent.get("domain_id"),
                "action": intent.get("action"),
                "rule_id": intent.get("rule_id"),
                "policy_digest": intent.get("policy_digest"),
                "dry_run": False,
            }
            try:
                current = await self.client.connection(
                    str(intent["service_id"]), str(intent["endpoint_id"])
                )
            except (errors.CloudError, KeyError) as exc:
                outcome.update(outcome="unresolved", error=str(exc)[:256])
            else:
                status = current.status if current else "gone"
                expected = {"accept": ("accepted", "creating"), "reject": ("rejected",)}
                if status in expected.get(str(intent.get("action")), ()):
                    outcome["outcome"] = "confirmed_after_restart"
                elif status == PENDING:
                    outcome["outcome"] = "not_applied"
                else:
                    outcome["outcome"] = "not_pending"
                outcome["observed_status"] = status
            written.append(self.recorder.write(outcome))
        return written

    async def apply(self, policy: Policy, planned: Iterable[dict[str, Any]]) -> SweepResult:
        """Execute exactly a reviewed plan's accepts and rejects, refusing the stale ones.

        The caller has checked the plan was made under this policy (same digest). Each
        connection is read again first: one that is no longer pending, or whose consumer
        domain changed, is refused (``stale``), never acted on.
        """
        result = SweepResult(self.new_id(), self.target, policy.digest)
        chosen = [p for p in planned if p.get("action") in API_ACTION]
        limit = policy.limits.max_actions_per_sweep
        if limit is not None and len(chosen) > limit:
            result.limit_exceeded = True
            result.errors.append(f"{len(chosen)} actions exceed max_actions_per_sweep={limit}")
            return result
        for item in chosen:
            service = Service(id=str(item["service_id"]), name=str(item.get("service_name", "")))
            decision = Decision(
                action=item["action"],
                rule_id=str(item.get("rule_id", "")),
                reason=str(item.get("reason", "")),
                trace=(),
                policy_digest=policy.digest,
            )
            try:
                current = await self.client.connection(service.id, str(item["endpoint_id"]))
            except errors.CloudError as exc:
                result.errors.append(f"{service.name}: reading {item['endpoint_id']}: {exc}")
                continue
            if (
                current is None
                or current.status != PENDING
                or current.domain_id != item.get("domain_id")
            ):
                now = current.status if current else "gone"
                planned_conn = Connection(str(item["endpoint_id"]), str(item.get("domain_id")), now)
                result.rows.append(_row(service, planned_conn, decision, "stale", f"now {now}"))
                continue
            result.pending += 1
            if self.stop_requested():
                break
            if await self._act(service, current, decision, result):
                break
        return result

    # -- listing ----------------------------------------------------------------------------

    async def _gather(self, policy: Policy, result: SweepResult) -> list[ServiceWork]:
        try:
            listing = await self.client.list_services()
        except errors.CloudError as exc:
            result.errors.append(f"listing services: {exc}")
            result.partial = True
            return []
        services: list[Service] = list(listing.items)
        result.services_seen = len(services)
        for bad in listing.malformed:
            result.errors.append(f"service {bad.id or '?'} skipped: {bad.reason}")
        chosen = [
            s
            for s in services
            if s.approval_enabled and s.status in ("available", "") and selected(s, self.selector)
        ]
        result.services_swept = len(chosen)
        outcomes = await asyncio.gather(
            *(self._list_service(policy, s) for s in chosen), return_exceptions=True
        )
        work: list[ServiceWork] = []
        for service, outcome in zip(chosen, outcomes, strict=True):
            if isinstance(outcome, errors.CloudError):
                result.errors.append(f"{service.name}: listing connections: {outcome}")
                result.partial = True
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                work.append(outcome)
                result.pending += len(outcome.pending)
        return work

    async def _list_service(self, policy: Policy, service: Service) -> ServiceWork:
        if policy.needs_domain_usage(service):
            # One unfiltered listing gives both the pending connections and the per-domain
            # usage (accepted + creating); the API cannot filter by domain.
            listing: Listing = await self.client.list_connections(service.id)
            connections: tuple[Connection, ...] = listing.items
            usage = Counter(c.domain_id for c in connections if c.status in COUNTED_STATUSES)
            pending = tuple(c for c in connections if c.status == PENDING)
            return ServiceWork(service, pending, dict(usage), listing.malformed)
        listing = await self.client.list_connections(service.id, status=PENDING)
        pending = tuple(c for c in listing.items if c.status == PENDING)
        return ServiceWork(service, pending, None, listing.malformed)

    # -- deciding -----------------------------------------------------------------------------

    def _decisions(
        self, policy: Policy, work: list[ServiceWork]
    ) -> list[tuple[ServiceWork, Connection, Decision]]:
        now = self.clock()
        out = []
        for item in work:
            usage = dict(item.usage) if item.usage is not None else None
            for conn in item.pending:
                decision = decide(conn, item.service, policy, now, usage)
                if decision.action == "accept" and usage is not None:
                    # Accepting takes a slot: later pending connections of that domain see it.
                    usage[conn.domain_id] = usage.get(conn.domain_id, 0) + 1
                out.append((item, conn, decision))
        return out

    def _plan_all(self, policy: Policy, work: list[ServiceWork], result: SweepResult) -> None:
        for item, conn, decision in self._decisions(policy, work):
            result.rows.append(_row(item.service, conn, decision, "planned"))
        self._check_limit(policy, result.rows, result)

    def _check_limit(self, policy: Policy, rows: Iterable[Row], result: SweepResult) -> bool:
        limit = policy.limits.max_actions_per_sweep
        actions = sum(1 for row in rows if row.action in API_ACTION)
        if limit is not None and actions > limit:
            result.limit_exceeded = True
            result.errors.append(
                f"{actions} accepts/rejects exceed max_actions_per_sweep={limit}: "
                "no action taken this sweep"
            )
            return True
        return False

    # -- acting -------------------------------------------------------------------------------

    async def _act_all(self, policy: Policy, work: list[ServiceWork], result: SweepResult) -> None:
        decided = self._decisions(policy, work)
        self._record_malformed(work, result)
        rows = [_row(i.service, c, d, "") for i, c, d in decided]
        blocked = self._check_limit(policy, rows, result)
        if blocked:
            self.recorder.write(
                {
                    "event": "limit_exceeded",
                    "sweep_id": result.sweep_id,
                    "target": self.target,
                    "policy_digest": policy.digest,
                    "actions": sum(1 for r in rows if r.action in API_ACTION),
                    "limit": policy.limits.max_actions_per_sweep,
                }
            )
        halted: str | None = None
        for item, conn, decision in decided:
            if decision.action not in API_ACTION:
                self._record_hold(item.service, conn, decision, result)
                continue
            if blocked:
                result.rows.append(_row(item.service, conn, decision, "blocked_by_limit"))
                continue
            if halted or self.stop_requested():
                halted = halted or "shutdown requested"
                result.rows.append(_row(item.service, conn, decision, "not_attempted", halted))
                continue
            halted = await self._act(item.service, conn, decision, result)
        self.holds.keep_only(c.id for item in work for c in item.pending)

    def _record_malformed(self, work: list[ServiceWork], result: SweepResult) -> None:
        for item in work:
            for bad in item.malformed:
                result.errors.append(
                    f"{item.service.name}: connection {bad.id or '?'}: {bad.reason}"
                )
                self._write(
                    {
                        "event": "unparseable",
                        "sweep_id": result.sweep_id,
                        "target": self.target,
                        "service_id": item.service.id,
                        "service_name": item.service.name,
                        "endpoint_id": bad.id,
                        "reason": bad.reason,
                    },
                    result,
                )

    def _record_hold(
        self, service: Service, conn: Connection, decision: Decision, result: SweepResult
    ) -> None:
        row = _row(service, conn, decision, "held")
        result.rows.append(row)
        if self.holds.first_time(conn.id, decision):
            self._write(self._decision_record(service, conn, decision, result), result)

    def _decision_record(
        self, service: Service, conn: Connection, decision: Decision, result: SweepResult
    ) -> dict[str, Any]:
        return {
            "event": "decision",
            "decision_id": self.new_id(),
            "sweep_id": result.sweep_id,
            "target": self.target,
            "service_id": service.id,
            "service_name": service.name,
            "endpoint_id": conn.id,
            "domain_id": conn.domain_id,
            "status": conn.status,
            "description": conn.description[:256],
            "action": decision.action,
            "rule_id": decision.rule_id,
            "reason": decision.reason,
            "trace": decision.to_dict().get("trace", []),
            "policy_digest": decision.policy_digest,
            "dry_run": self.dry_run,
        }

    def _write(self, record: dict[str, Any], result: SweepResult) -> dict[str, Any] | None:
        try:
            return self.recorder.write(record)
        except Exception as exc:  # an unwritable audit log: no durable record, no action
            result.errors.append(f"audit log: {exc}")
            return None

    async def _act(
        self, service: Service, conn: Connection, decision: Decision, result: SweepResult
    ) -> str | None:
        """Intent, POST, outcome. Returns a reason to halt the sweep's actions, or None."""
        intent = self._write(self._decision_record(service, conn, decision, result), result)
        if intent is None:
            result.rows.append(_row(service, conn, decision, "not_attempted", "audit unwritable"))
            return "audit log unwritable"
        outcome: dict[str, Any] = {
            "event": "outcome",
            "decision_id": intent["decision_id"],
            "sweep_id": result.sweep_id,
            "target": self.target,
            "service_id": service.id,
            "service_name": service.name,
            "endpoint_id": conn.id,
            "domain_id": conn.domain_id,
            "action": decision.action,
            "rule_id": decision.rule_id,
            "policy_digest": decision.policy_digest,
            "dry_run": self.dry_run,
        }
        halt: str | None = None
        if self.dry_run:
            outcome["outcome"] = "skipped_dry_run"
        else:
            halt = await self._post(service, conn, decision, outcome)
        self._write(outcome, result)
        result.rows.append(
            _row(service, conn, decision, outcome["outcome"], outcome.get("error_code", ""))
        )
        if outcome["outcome"] in ("error", "ambiguous"):
            result.errors.append(
                f"{service.name}: {decision.action} {conn.id}: {outcome['outcome']} "
                f"{outcome.get('error_code', '')}".rstrip()
            )
        return halt

    async def _post(
        self, service: Service, conn: Connection, decision: Decision, outcome: dict[str, Any]
    ) -> str | None:
        action = API_ACTION[decision.action]
        try:
            reply = await self.client.act(service.id, conn.id, action)  # type: ignore[arg-type]
        except errors.AuthError as exc:
            _fill_error(outcome, "error", exc)
            return f"authentication failed ({exc.short_code}); no further calls this sweep"
        except (errors.OutcomeUnknown, errors.ServerError, errors.BadResponse) as exc:
            # It may have been processed. Never resend blindly: the next sweep reads it again.
            _fill_error(outcome, "ambiguous", exc)
            return None
        except errors.NotFound as exc:
            _fill_error(outcome, "not_pending", exc)
            outcome["observed_status"] = "gone"
            return None
        except errors.CloudError as exc:
            _fill_error(outcome, "error", exc)
            await self._observe(service, conn, outcome)
            return None
        outcome.update(
            outcome="ok",
            request_id=reply.request_id,
            latency_ms=round(reply.latency_ms, 1),
            observed_status=reply.status,
        )
        return None

    async def _observe(self, service: Service, conn: Connection, outcome: dict[str, Any]) -> None:
        """After a refused POST, read the connection: someone else may have decided it."""
        try:
            current = await self.client.connection(service.id, conn.id)
        except errors.CloudError:
            return
        status = current.status if current else "gone"
        outcome["observed_status"] = status
        if status != PENDING:
            outcome["outcome"] = "not_pending"


def _fill_error(outcome: dict[str, Any], kind: str, exc: errors.CloudError) -> None:
    outcome["outcome"] = kind
    outcome["error_code"] = exc.short_code
    outcome["error"] = str(exc)
    if exc.status is not None:
        outcome["http_status"] = exc.status
    if exc.request_id:
        outcome["request_id"] = exc.request_id


def _row(
    service: Service, conn: Connection, decision: Decision, outcome: str, error: str = ""
) -> Row:
    return Row(
        service_id=service.id,
        service_name=service.name,
        endpoint_id=conn.id,
        domain_id=conn.domain_id,
        action=decision.action,
        rule_id=decision.rule_id,
        reason=decision.reason,
        outcome=outcome,
        error=error,
        connection=conn,
        decision=decision,
    )
