"""Human output: the decision table (``plan``, the demo) and one-line sweep summaries."""

from __future__ import annotations

from collections.abc import Sequence

from approver.sweep import Row, SweepResult

COLUMNS = ("service", "endpoint", "domain", "decision", "rule", "outcome", "reason")


def _cells(row: Row) -> tuple[str, ...]:
    outcome = row.outcome + (f" ({row.error})" if row.error else "")
    return (
        row.service_name,
        row.endpoint_id,
        row.domain_id,
        row.action.upper(),
        row.rule_id,
        outcome,
        row.reason,
    )


def table(rows: Sequence[Row], *, max_reason: int = 60) -> str:
    """A plain-text table a person can scan; widths fit the content."""
    if not rows:
        return "(no pending connections)"
    data = [COLUMNS, *(_cells(r) for r in rows)]
    data = [(*d[:-1], _clip(d[-1], max_reason)) for d in data]
    widths = [max(len(r[i]) for r in data) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in data
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summary(result: SweepResult) -> str:
    """``target: 3 services, 7 pending: 3 accepted, 1 rejected, 3 held; clean`` and the like."""
    counts = {"accept": 0, "reject": 0, "hold": 0}
    for row in result.rows:
        counts[row.action] = counts.get(row.action, 0) + 1
    verb = "planned" if any(r.outcome == "planned" for r in result.rows) else "decided"
    state = "clean" if result.clean else f"{len(result.errors)} error(s)"
    if result.limit_exceeded:
        state += ", action limit exceeded: nothing acted on"
    return (
        f"{result.target}: {result.services_swept} of {result.services_seen} services swept, "
        f"{result.pending} pending; {verb} {counts['accept']} accept, {counts['reject']} reject, "
        f"{counts['hold']} hold; {state}"
    )
