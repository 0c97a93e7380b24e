"""The audit record JSON Schema: written records validate, malformed ones do not."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from approver.audit import AuditLog, load_record_schema

DECISION: dict[str, Any] = {
    "event": "decision",
    "decision_id": "0b8f0c7e-6f1e-4a57-9d2a-3c1b2a0f9e8d",
    "sweep_id": "5d6e7f80-1a2b-4c3d-8e9f-0a1b2c3d4e5f",
    "target": "cn-north-4/0a1b2c3d4e5f60718293a4b5c6d7e8f9",
    "service_id": "4189d3c2-8882-4871-a3c2-d380272eed88",
    "service_name": "orders-prod",
    "endpoint_id": "1f0e9d8c-7b6a-4958-8372-615043322110",
    "domain_id": "0c1f2e3d4c5b6a798877665544332211",
    "status": "pendingAcceptance",
    "action": "accept",
    "rule_id": "partners-prod",
    "reason": "rule partners-prod matched",
    "trace": [{"condition": "domains", "observed": "partners", "result": True}],
    "policy_digest": "9f" * 32,
    "dry_run": False,
}
OUTCOME: dict[str, Any] = {
    "event": "outcome",
    "decision_id": DECISION["decision_id"],
    "sweep_id": DECISION["sweep_id"],
    "endpoint_id": DECISION["endpoint_id"],
    "service_id": DECISION["service_id"],
    "outcome": "ok",
    "http_status": 200,
    "request_id": "c0ffee0123456789",
    "latency_ms": 41.7,
    "observed_status": None,
}
SWEEP_START: dict[str, Any] = {"event": "sweep", "sweep_id": DECISION["sweep_id"], "phase": "start"}
SWEEP_END: dict[str, Any] = {
    "event": "sweep",
    "sweep_id": DECISION["sweep_id"],
    "phase": "end",
    "accepted": 1,
    "errors": [],
}
DAEMON: dict[str, Any] = {"event": "daemon", "phase": "start", "version": "0.1.0"}


@pytest.fixture(name="validator")
def _validator() -> jsonschema.Draft202012Validator:
    schema = load_record_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def written(tmp_path: Path, *records: dict[str, Any]) -> list[dict[str, Any]]:
    clock = lambda: datetime(2026, 7, 1, 12, 0, 0, 1, tzinfo=UTC)  # noqa: E731
    with AuditLog(tmp_path / "audit.jsonl", fsync=False, clock=clock) as log:
        for record in records:
            log.append(record)
    return [json.loads(line) for line in (tmp_path / "audit.jsonl").read_bytes().splitlines()]


def test_generated_records_validate(
    tmp_path: Path, validator: jsonschema.Draft202012Validator
) -> None:
    """Every record kind, as the log writes it, validates against the schema."""
    for record in written(tmp_path, SWEEP_START, DECISION, OUTCOME, SWEEP_END, DAEMON):
        errors = [e.message for e in validator.iter_errors(record)]
        assert errors == [], record["event"]


def test_repair_record_validates(
    tmp_path: Path, validator: jsonschema.Draft202012Validator
) -> None:
    """The log_repaired record the writer adds itself validates too."""
    path = tmp_path / "audit.jsonl"
    written(tmp_path, DAEMON)
    with path.open("ab") as handle:
        handle.write(b'{"event":"deci')
    AuditLog(path, fsync=False).close()
    repaired = json.loads(path.read_bytes().splitlines()[-1])
    assert repaired["event"] == "log_repaired"
    validator.validate(repaired)


def test_unknown_events_and_extra_fields_allowed(
    tmp_path: Path, validator: jsonschema.Draft202012Validator
) -> None:
    """Forward compatibility: new event kinds and extra fields are accepted."""
    for record in written(
        tmp_path, {"event": "limit_exceeded", "limit": 5}, {**DECISION, "description": "SEC-1"}
    ):
        validator.validate(record)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"action": "approve"}, "action"),
        ({"dry_run": "no"}, "dry_run"),
        ({"policy_digest": "xyz"}, "policy_digest"),
        ({"decision_id": ""}, "decision_id"),
        ({"prev": "0" * 63}, "prev"),
        ({"prev": "A" * 64}, "prev"),
        ({"seq": 0}, "seq"),
        ({"seq": "1"}, "seq"),
        ({"ts": "2026-07-01T12:00:00Z"}, "ts"),
        ({"ts": "2026-07-01T12:00:00.000001+00:00"}, "ts"),
    ],
)
def test_malformed_decision_rejected(
    tmp_path: Path, validator: jsonschema.Draft202012Validator, change: dict[str, Any], where: str
) -> None:
    """A wrong enum, type, digest or chain field fails validation at that field."""
    record = {**written(tmp_path, DECISION)[0], **change}
    errors = list(validator.iter_errors(record))
    assert errors
    assert any(where in e.json_path or where in e.message for e in errors)


@pytest.mark.parametrize(
    "record",
    [
        {k: v for k, v in OUTCOME.items() if k != "decision_id"},
        {**OUTCOME, "outcome": "succeeded"},
        {**OUTCOME, "http_status": 42},
        {**SWEEP_START, "phase": "middle"},
        {k: v for k, v in DECISION.items() if k != "trace"},
    ],
    ids=["outcome-no-decision-id", "outcome-enum", "http-status", "sweep-phase", "no-trace"],
)
def test_malformed_records_rejected(
    validator: jsonschema.Draft202012Validator, record: dict[str, Any]
) -> None:
    """Records missing required fields or with out-of-range values are invalid."""
    chained = {**record, "ts": "2026-07-01T12:00:00.000000Z", "seq": 1, "prev": "0" * 64}
    assert not validator.is_valid(chained)


def test_chain_fields_required(validator: jsonschema.Draft202012Validator) -> None:
    """A record without ts/seq/prev is not an audit line."""
    assert not validator.is_valid(DAEMON)
