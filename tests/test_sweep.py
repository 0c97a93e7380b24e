"""One sweep, end to end over real HTTP against the emulator, with the example policy."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    ACME,
    BILLING,
    BLOCKED,
    DEVTEAM,
    EXAMPLE_POLICY,
    GLOBEX,
    LEGACY,
    ORDERS,
    PROJECT,
    SANDBOX,
    UNKNOWN,
    FakeClock,
)

from approver.audit import AuditLog
from approver.cloud.client import ClientSettings, VpcepClient
from approver.cloud.signer import Credentials
from approver.config import ServiceSelector
from approver.daemon import AuditRecorder
from approver.emulator import Emulator
from approver.policy import Policy, load_policy
from approver.sweep import Sweeper, SweepResult

DEMO_AK = "DEMOAK00000000000001"
DEMO_SK = "demo-secret-key-not-for-production-000000"


class ListRecorder:
    """Keeps what was written, in order (the durable log is tested on its own)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def write(self, record: dict[str, Any]) -> dict[str, Any]:
        full = {"ts": "t", **record}
        self.records.append(full)
        return full

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["event"] == kind]


def sweep(
    emulator: Emulator,
    clock: FakeClock,
    policy: Policy,
    recorder: Any,
    *,
    dry_run: bool = False,
    selector: ServiceSelector | None = None,
    times: int = 1,
    act: bool = True,
) -> list[SweepResult]:
    async def go() -> list[SweepResult]:
        client = VpcepClient(
            ClientSettings(endpoint=emulator.url, project_id=PROJECT, page_limit=2),
            lambda: Credentials(DEMO_AK, DEMO_SK),
            clock=clock,
        )
        sweeper = Sweeper(
            "demo", selector or ServiceSelector(), client, recorder, clock, dry_run=dry_run
        )
        try:
            return [await sweeper.run(policy, act=act) for _ in range(times)]
        finally:
            await client.aclose()

    return asyncio.run(go())


def status_of(
    emulator: Emulator, service: str, domain: str, description: str | None = None
) -> list[str]:
    return [
        c["status"]
        for c in emulator.connections(service)
        if c["domain_id"] == domain and (description is None or c["description"] == description)
    ]


@pytest.fixture(name="policy")
def _policy() -> Policy:
    return load_policy([EXAMPLE_POLICY])


def test_sweep_acts_exactly_as_the_example_policy_says(
    emulator: Emulator, clock: FakeClock, policy: Policy
) -> None:
    """Partners on prod and the dev team with a ticket are accepted, blocked rejected, others held."""
    recorder = ListRecorder()
    [result] = sweep(emulator, clock, policy, recorder)
    assert result.clean, result.errors
    assert status_of(emulator, ORDERS, ACME) == ["accepted"]
    assert status_of(emulator, ORDERS, BLOCKED) == ["rejected"]
    assert status_of(emulator, ORDERS, UNKNOWN) == ["pendingAcceptance"]
    assert status_of(emulator, BILLING, GLOBEX) == ["accepted"]
    assert status_of(emulator, BILLING, UNKNOWN) == ["pendingAcceptance"]
    assert status_of(emulator, SANDBOX, DEVTEAM, "SEC-77 sandbox") == ["accepted"]
    assert status_of(emulator, SANDBOX, DEVTEAM, "no ticket") == ["pendingAcceptance"]
    assert emulator.count("AcceptOrRejectEndpoint") == 4
    # The service with approval disabled is never listed for connections.
    assert all(LEGACY not in r.path for r in emulator.requests)


def test_every_decision_is_recorded_and_intents_precede_outcomes(
    emulator: Emulator, clock: FakeClock, policy: Policy
) -> None:
    """Each accept/reject has a decision record then an outcome with the request id; holds one record."""
    recorder = ListRecorder()
    sweep(emulator, clock, policy, recorder)
    decisions = recorder.events("decision")
    outcomes = recorder.events("outcome")
    assert sorted(d["action"] for d in decisions) == ["accept"] * 3 + ["hold"] * 3 + ["reject"]
    assert len(outcomes) == 4
    for out in outcomes:
        intent_index = next(
            i for i, r in enumerate(recorder.records) if r.get("decision_id") == out["decision_id"]
        )
        assert intent_index < recorder.records.index(out)
        assert out["outcome"] == "ok"
        assert out["request_id"]
    for record in decisions:
        assert record["policy_digest"] == policy.digest
        assert record["rule_id"] and record["reason"]
        assert record["target"] == "demo" and record["service_name"]
        assert record["dry_run"] is False
    accept = next(d for d in decisions if d["domain_id"] == ACME)
    assert accept["rule_id"] == "partners-prod"
    assert accept["trace"], "the per-condition trace is recorded"


def test_a_second_sweep_neither_acts_again_nor_rerecords_holds(
    emulator: Emulator, clock: FakeClock, policy: Policy
) -> None:
    """Holds are recorded once per policy version; decided endpoints are not pending any more."""
    recorder = ListRecorder()
    first, second = sweep(emulator, clock, policy, recorder, times=2)
    assert emulator.count("AcceptOrRejectEndpoint") == 4
    assert second.pending == 3
    holds = [d for d in recorder.events("decision") if d["action"] == "hold"]
    assert len(holds) == 3
    assert first.sweep_id != second.sweep_id


def test_dry_run_sends_no_post_and_says_so(
    emulator: Emulator, clock: FakeClock, policy: Policy
) -> None:
    """--dry-run: zero POSTs; each would-be action has a dry_run decision and a skipped outcome."""
    recorder = ListRecorder()
    [result] = sweep(emulator, clock, policy, recorder, dry_run=True)
    assert emulator.count("AcceptOrRejectEndpoint") == 0
    assert status_of(emulator, ORDERS, ACME) == ["pendingAcceptance"]
    outcomes = recorder.events("outcome")
    assert len(outcomes) == 4
    assert {o["outcome"] for o in outcomes} == {"skipped_dry_run"}
    assert all(r["dry_run"] for r in recorder.events("decision"))
    assert result.clean


def test_plan_decides_without_writing_or_acting(
    emulator: Emulator, clock: FakeClock, policy: Policy
) -> None:
    """plan (act=False) returns every decision, writes no record and sends no POST."""
    recorder = ListRecorder()
    [result] = sweep(emulator, clock, policy, recorder, act=False)
    assert recorder.records == []
    assert emulator.count("AcceptOrRejectEndpoint") == 0
    assert sorted(r.action for r in result.rows) == ["accept"] * 3 + ["hold"] * 3 + ["reject"]


def test_action_limit_blocks_every_action_of_the_sweep(
    emulator: Emulator, clock: FakeClock, tmp_path: Path
) -> None:
    """Above max_actions_per_sweep nothing is accepted or rejected, and the sweep says why."""
    text = EXAMPLE_POLICY.read_text().replace(
        "max_actions_per_sweep: 50", "max_actions_per_sweep: 2"
    )
    assert "max_actions_per_sweep: 2" in text
    (tmp_path / "p.yaml").write_text(text)
    recorder = ListRecorder()
    [result] = sweep(emulator, clock, load_policy([tmp_path / "p.yaml"]), recorder)
    assert emulator.count("AcceptOrRejectEndpoint") == 0
    assert result.limit_exceeded and not result.clean
    assert recorder.events("limit_exceeded")
    assert {r.outcome for r in result.rows if r.action != "hold"} == {"blocked_by_limit"}


def test_selector_limits_the_services_swept(
    emulator: Emulator, clock: FakeClock, policy: Policy
) -> None:
    """A name selector sweeps only matching services."""
    [result] = sweep(
        emulator, clock, policy, ListRecorder(), selector=ServiceSelector(names=("billing-*",))
    )
    assert result.services_swept == 1
    assert status_of(emulator, ORDERS, ACME) == ["pendingAcceptance"]
    assert status_of(emulator, BILLING, GLOBEX) == ["accepted"]


def test_someone_else_deciding_first_is_seen_not_fought(
    emulator: Emulator, clock: FakeClock, policy: Policy
) -> None:
    """If a human rejects a connection between our listing and our accept, the refusal is read back."""
    acme = next(c["id"] for c in emulator.connections(ORDERS) if c["domain_id"] == ACME)

    class HumanInTheLoop(ListRecorder):
        def write(self, record: dict[str, Any]) -> dict[str, Any]:
            if record["event"] == "decision" and record["endpoint_id"] == acme:
                emulator.set_status(ORDERS, acme, "rejected")
            return super().write(record)

    recorder = HumanInTheLoop()
    sweep(emulator, clock, policy, recorder)
    outcome = next(o for o in recorder.events("outcome") if o["endpoint_id"] == acme)
    assert outcome["outcome"] == "not_pending"
    assert outcome["observed_status"] == "rejected"
    assert status_of(emulator, ORDERS, ACME) == ["rejected"]


def test_unwritable_audit_log_blocks_every_action(
    emulator: Emulator, clock: FakeClock, policy: Policy, tmp_path: Path
) -> None:
    """When the durable log cannot be written, nothing is accepted or rejected."""
    # A full disk, for real: every write to /dev/full fails with ENOSPC.
    path = tmp_path / "audit.jsonl"
    path.symlink_to("/dev/full")
    log = AuditLog(path, clock=clock)
    recorder = AuditRecorder(log, _NullLogger(), clock)
    [result] = sweep(emulator, clock, policy, recorder)
    assert emulator.count("AcceptOrRejectEndpoint") == 0
    assert not result.clean
    assert any("audit" in e for e in result.errors)


def test_durable_log_holds_the_same_records(
    emulator: Emulator, clock: FakeClock, policy: Policy, tmp_path: Path
) -> None:
    """With a real audit log, the JSONL file has one line per record and each parses."""
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, clock=clock) as log:
        sweep(emulator, clock, policy, AuditRecorder(log, _NullLogger(), clock))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    events = [r["event"] for r in lines]
    assert events.count("outcome") == 4
    assert events.count("decision") == 7


class _NullLogger:
    def info(self, *args: Any, **kw: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return self.info


def test_intent_without_outcome_is_resolved_by_reading_not_by_posting(
    emulator: Emulator, clock: FakeClock, policy: Policy, tmp_path: Path
) -> None:
    """After a crash between POST and outcome, the endpoint is read again: confirmed, no second POST."""
    acme = next(c["id"] for c in emulator.connections(ORDERS) if c["domain_id"] == ACME)
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, clock=clock) as log:
        log.append(
            {
                "event": "decision",
                "decision_id": "d" * 32,
                "sweep_id": "s" * 32,
                "target": "demo",
                "service_id": ORDERS,
                "service_name": "orders-api",
                "endpoint_id": acme,
                "domain_id": ACME,
                "action": "accept",
                "rule_id": "partners-prod",
                "reason": "r",
                "policy_digest": policy.digest,
                "dry_run": False,
            }
        )
    emulator.set_status(ORDERS, acme, "accepted")  # the POST went through before the crash

    async def restart() -> list[dict[str, Any]]:
        client = VpcepClient(
            ClientSettings(endpoint=emulator.url, project_id=PROJECT),
            lambda: Credentials(DEMO_AK, DEMO_SK),
            clock=clock,
        )
        with AuditLog(path, clock=clock) as log:
            intents = log.unresolved_intents()
            sweeper = Sweeper(
                "demo", ServiceSelector(), client, AuditRecorder(log, _NullLogger(), clock), clock
            )
            try:
                written = await sweeper.resolve_intents(intents)
                await sweeper.run(policy)
            finally:
                await client.aclose()
            assert log.unresolved_intents() == []
        return written

    [outcome] = asyncio.run(restart())
    assert outcome["outcome"] == "confirmed_after_restart"
    assert outcome["decision_id"] == "d" * 32
    assert emulator.count("AcceptOrRejectEndpoint") == 3  # the other three, none for acme
