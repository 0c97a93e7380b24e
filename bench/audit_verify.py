"""How long `audit verify` takes per 100,000 records (and what one durable append costs).

Run: .venv/bin/python bench/audit_verify.py [--records N] [--fsync-appends N]

Writes N realistic records (decision + outcome pairs, ~0.8 KB per decision) with fsync off
(the verify speed is what is measured here), verifies them (best of 3), then times a few
appends with fsync on, which is what the daemon pays per audit record.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from approver.audit import AuditLog, verify

COMMAND = ".venv/bin/python bench/audit_verify.py"


def _records(count: int) -> list[dict[str, object]]:
    sweep = str(uuid.uuid4())
    out: list[dict[str, object]] = []
    while len(out) < count:
        decision_id = str(uuid.uuid4())
        endpoint = str(uuid.uuid4())
        out.append(
            {
                "event": "decision",
                "decision_id": decision_id,
                "sweep_id": sweep,
                "target": "cn-north-4/0a1b2c3d4e5f60718293a4b5c6d7e8f9",
                "service_id": "6c8e4a52-2b1f-4d7e-9a3c-1f2e3d4c5b6a",
                "service_name": "orders-prod",
                "endpoint_id": endpoint,
                "domain_id": "0c1f9e8d7c6b5a4938271605f4e3d2c1",
                "status": "pendingAcceptance",
                "action": "accept",
                "rule_id": "partners-prod",
                "reason": "rule partners-prod matched: domain in set partners",
                "trace": [
                    {"condition": "service.tags.env", "observed": "prod", "result": True},
                    {"condition": "service.names", "observed": "orders-prod", "result": True},
                    {"condition": "domains", "observed": "partners", "result": True},
                    {"condition": "description", "observed": "SEC-1234 orders", "result": True},
                ],
                "policy_digest": "5" * 64,
                "dry_run": False,
            }
        )
        out.append(
            {
                "event": "outcome",
                "decision_id": decision_id,
                "sweep_id": sweep,
                "endpoint_id": endpoint,
                "service_id": "6c8e4a52-2b1f-4d7e-9a3c-1f2e3d4c5b6a",
                "outcome": "ok",
                "http_status": 200,
                "request_id": uuid.uuid4().hex,
                "latency_ms": 41.7,
            }
        )
    return out[:count]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--fsync-appends", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audit.jsonl"
        records = _records(args.records)
        started = time.perf_counter()
        with AuditLog(path, fsync=False, clock=lambda: datetime.now(UTC)) as log:
            for record in records:
                log.append(record)
        write_s = time.perf_counter() - started
        size = sum(p.stat().st_size for p in Path(tmp).glob("audit.jsonl*"))

        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            report = verify([path])
            best = min(best, time.perf_counter() - started)
        if not report.ok or report.records != args.records:
            print(f"verify failed: {report}", file=sys.stderr)
            return 1

        durable = Path(tmp) / "durable" / "audit.jsonl"
        with AuditLog(durable, clock=lambda: datetime.now(UTC)) as log:
            started = time.perf_counter()
            for record in records[: args.fsync_appends]:
                log.append(record)
            fsync_s = (time.perf_counter() - started) / max(1, args.fsync_appends)

    per_100k = best / args.records * 100_000
    print(f"command: {COMMAND} --records {args.records}")
    print(f"records: {args.records:,} in {len(report.files)} file(s), {size / 1e6:.1f} MB")
    print(
        f"verify:  {per_100k * 1000:.0f} ms per 100,000 records "
        f"({args.records / best:,.0f} records/s, best of 3)"
    )
    print(f"write:   {write_s / args.records * 1e6:.1f} us per append without fsync")
    print(f"append:  {fsync_s * 1000:.2f} ms per durable append (fsync on, this disk)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
