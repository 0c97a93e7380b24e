"""Policy unit tests: YAML fixtures of (service, connection) → expected decision.

A test file (``policies/*.test.yaml``)::

    policy: example.yaml            # or a list; relative to the test file
    now: 2026-11-26T00:00:00Z       # optional; a case may set its own; else the run's time
    cases:
      - name: partner on prod is accepted
        service: {id: <uuid>, name: orders-api, tags: {env: prod}}
        connection: {domain_id: <id>, description: "SEC-1 x", status: pendingAcceptance}
        domain_usage: {<domain id>: 2}   # optional: accepted+creating per domain
        expect: {action: accept, rule: partners-prod, reason_contains: "Partner"}

The file is validated as strictly as a policy (unknown keys are errors), ``expect.rule``
must name a rule of the policy (or ``default`` / ``fail-closed``), case names are unique, and
any difference between expected and actual fails the case: a test that cannot fail must not
pass. Coverage lists the policy's rules that no case's decision came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, PlainValidator, WithJsonSchema

from approver.policy._engine import Policy, decide
from approver.policy._load import _File, fmt_path, load_policy, parse_file, read
from approver.policy._models import ActionName, AwareTime, Strict, fail, kind
from approver.policy._types import (
    DEFAULT_RULE,
    FAIL_CLOSED_RULE,
    Decision,
    PolicyError,
    Problem,
    RuleTrace,
)
from approver.records import PENDING, Connection, Service

TEST_SUFFIXES = (".test.yaml", ".test.yml")


def _policy_paths(value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise fail(f"expected a policy file name or a list of them, got {kind(value)}")
    for item in items:
        if not isinstance(item, str) or not item:
            raise fail(f"expected a policy file name, got {kind(item)}")
    return items


PolicyPaths = Annotated[
    list[str],
    PlainValidator(_policy_paths),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
            ]
        }
    ),
]


class CaseService(Strict):
    """The endpoint service, as the API would describe it (all optional)."""

    id: str = ""
    name: str = ""
    tags: dict[str, str] = Field(default_factory=dict)


class CaseConnection(Strict):
    """The connection (only ``domain_id`` is required); nothing is normalised."""

    id: str = "test-endpoint"
    domain_id: str
    description: str = ""
    status: str = PENDING


class Expect(Strict):
    action: ActionName
    rule: str | None = Field(None, description="rule id, 'default' or 'fail-closed'")
    reason_contains: str | None = Field(None, min_length=1)


class CaseSpec(Strict):
    name: str = Field(min_length=1)
    now: AwareTime | None = None
    service: CaseService = Field(default_factory=CaseService)
    connection: CaseConnection
    domain_usage: dict[str, int] | None = None
    expect: Expect


class PolicyTestFile(Strict):
    """A policy test file: the policy under test, an optional fixed time, and cases."""

    model_config = Strict.model_config | {"title": "vpcep-approver policy tests"}

    policy: PolicyPaths = Field(description="policy file(s) or directories, relative to this file")
    now: AwareTime | None = None
    cases: list[CaseSpec] = Field(min_length=1)


class ExplainInput(Strict):
    """``explain --json``: one service and one connection, as in a test case."""

    service: CaseService = Field(default_factory=CaseService)
    connection: CaseConnection
    domain_usage: dict[str, int] | None = None
    at: AwareTime | None = None


@dataclass(frozen=True)
class CaseResult:
    name: str
    line: int | None
    expect: Expect
    decision: Decision
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class SuiteResult:
    """One test file's outcome: every case, and the rules no case's decision came from."""

    file: str
    policy: Policy
    cases: tuple[CaseResult, ...]
    uncovered: tuple[str, ...]

    @property
    def failed(self) -> int:
        return sum(not c.passed for c in self.cases)

    @property
    def passed(self) -> int:
        return sum(c.passed for c in self.cases)

    def report(self, *, verbose: bool = False) -> str:
        """Readable lines: failures with expected/actual and the trace, then the counts."""
        names = ", ".join(self.policy.sources)
        lines = [f"{self.file}: policy {names} (digest {self.policy.digest[:12]})"]
        for case in self.cases:
            at = f" ({self.file}:{case.line})" if case.line else ""
            if case.passed:
                if verbose:
                    lines.append(f"  ok    {case.name}")
                continue
            lines.append(f"  FAIL  {case.name}{at}")
            d = case.decision
            lines.append(f"          expected: {_expected(case.expect)}")
            lines.append(f"          actual:   action={d.action} rule={d.rule_id}")
            lines.extend(f"          - {f}" for f in case.failures)
            lines.append(f"          reason:   {d.reason}")
            lines.extend(f"          trace:    {t}" for t in trace_lines(d.trace))
        total = len(self.policy.rules)
        covered = total - len(self.uncovered)
        lines.append(
            f"  {self.passed} passed, {self.failed} failed; rules covered {covered}/{total}"
            + (f" (not exercised: {', '.join(self.uncovered)})" if self.uncovered else "")
        )
        return "\n".join(lines)


def _expected(expect: Expect) -> str:
    parts = [f"action={expect.action}"]
    if expect.rule is not None:
        parts.append(f"rule={expect.rule}")
    if expect.reason_contains is not None:
        parts.append(f"reason containing {expect.reason_contains!r}")
    return " ".join(parts)


def trace_lines(trace: tuple[RuleTrace, ...]) -> list[str]:
    """One compact line per rule: ✓/✗, its id, and the checks that failed."""
    out = []
    for entry in trace:
        failed = [
            f"{c.condition} (expected {c.expected}, observed {c.observed!r})"
            for c in entry.checks
            if not c.ok
        ]
        detail = "; ".join(failed + ([entry.note] if entry.note else []))
        out.append(
            f"{'✓' if entry.matched else '✗'} {entry.rule_id}" + (f": {detail}" if detail else "")
        )
    return out


def _check_case(case: CaseSpec, decision: Decision) -> tuple[str, ...]:
    failures = []
    exp = case.expect
    if decision.action != exp.action:
        failures.append(f"action: expected {exp.action}, got {decision.action}")
    if exp.rule is not None and decision.rule_id != exp.rule:
        failures.append(f"rule: expected {exp.rule}, got {decision.rule_id}")
    if exp.reason_contains is not None and exp.reason_contains not in decision.reason:
        failures.append(f"reason: expected to contain {exp.reason_contains!r}")
    return tuple(failures)


def load_test_file(path: str | Path) -> tuple[PolicyTestFile, _File]:
    """The validated test file; ``PolicyError`` lists every problem in it."""
    name = str(path)
    raw = read(name, Path(path))
    if isinstance(raw, Problem):
        raise PolicyError([raw])
    file, model = parse_file(name, raw, PolicyTestFile)
    seen: dict[str, int] = {}
    cases = file.doc.data.get("cases") if isinstance(file.doc.data, dict) else None
    for index, case in enumerate(cases if isinstance(cases, list) else []):
        case_name = case.get("name") if isinstance(case, dict) else None
        if isinstance(case_name, str):
            if case_name in seen:
                file.problem(
                    ("cases", index, "name"),
                    f"duplicate case name {case_name!r} (also cases[{seen[case_name]}])",
                )
            seen.setdefault(case_name, index)
    if file.problems or not isinstance(model, PolicyTestFile):
        raise PolicyError(file.problems)
    return model, file


def run_test_file(path: str | Path, *, now: datetime) -> SuiteResult:
    """Run every case of one test file; ``PolicyError`` if the file or its policy is invalid.

    ``now`` is used by cases when neither the case nor the file sets ``now``.
    """
    spec, file = load_test_file(path)
    base = Path(path).parent
    policy = load_policy([base / p for p in spec.policy])
    known = {r.id for r in policy.rules} | {DEFAULT_RULE, FAIL_CLOSED_RULE}
    problems = [
        Problem(
            file.name,
            *file.doc.locate(("cases", i, "expect", "rule")),
            fmt_path(("cases", i, "expect", "rule")),
            f"{case.expect.rule!r} is not a rule of the policy (rules: {', '.join(sorted(known))})",
        )
        for i, case in enumerate(spec.cases)
        if case.expect.rule is not None and case.expect.rule not in known
    ]
    if problems:
        raise PolicyError(problems)
    results = []
    for index, case in enumerate(spec.cases):
        svc, conn = case.service, case.connection
        decision = decide(
            Connection(conn.id, conn.domain_id, conn.status, conn.description),
            Service(svc.id, svc.name, svc.tags),
            policy,
            case.now or spec.now or now,
            case.domain_usage if case.domain_usage is not None else {},
        )
        line, _ = file.doc.locate(("cases", index))
        results.append(
            CaseResult(case.name, line, case.expect, decision, _check_case(case, decision))
        )
    exercised = {r.decision.rule_id for r in results}
    uncovered = tuple(r.id for r in policy.rules if r.id not in exercised)
    return SuiteResult(file.name, policy, tuple(results), uncovered)


def find_test_files(paths: list[str | Path]) -> list[Path]:
    """Test files as given, and ``*.test.yaml``/``*.test.yml`` inside directories (sorted)."""
    out: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            out.extend(sorted(p for p in path.iterdir() if p.name.endswith(TEST_SUFFIXES)))
        else:
            out.append(path)
    return out
