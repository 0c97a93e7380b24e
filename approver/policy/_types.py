"""The values the policy module hands out: decisions with their trace, and load problems."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Action = Literal["accept", "reject", "hold"]
ACTIONS: tuple[Action, ...] = ("accept", "reject", "hold")

# Pseudo rule ids a Decision can carry besides the policy's own rule ids (reserved there).
DEFAULT_RULE = "default"  # no rule matched: the policy default applied
FAIL_CLOSED_RULE = "fail-closed"  # the input was not decidable (not pending, malformed): hold
LIMITS_RULE = "limits.max_connections_per_domain"  # trace entry of the per-domain quota
RESERVED_RULE_IDS = frozenset({DEFAULT_RULE, FAIL_CLOSED_RULE, "limits"})


@dataclass(frozen=True)
class Check:
    """One condition of one rule, as evaluated: what it wanted, what it saw, whether it held."""

    condition: str
    expected: str
    observed: str
    ok: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "condition": self.condition,
            "expected": self.expected,
            "observed": self.observed,
            "ok": self.ok,
        }


@dataclass(frozen=True)
class RuleTrace:
    """How one rule fared: ``matched`` only if every check held and the rule was in force."""

    rule_id: str
    matched: bool
    checks: tuple[Check, ...]
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "matched": self.matched,
            "checks": [c.to_dict() for c in self.checks],
            "note": self.note,
        }


Trace = tuple[RuleTrace, ...]


class _Lazy:
    """Slots where a lazily traced decision keeps the inputs of its trace."""

    __slots__ = ("_connection", "_count", "_engine", "_index", "_now", "_service")


@dataclass(frozen=True, slots=True)
class Decision(_Lazy):
    """What to do with one connection, which rule said so, why, and under which policy.

    ``rule_id`` is the matching rule's id, ``"default"`` when no rule matched, or
    ``"fail-closed"`` when the connection could not be decided (not pending, malformed); the
    action is then always ``hold``. ``trace`` lists every rule evaluated, in order.
    """

    action: Action
    rule_id: str
    reason: str
    trace: Trace
    policy_digest: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for audit records and ``explain --output json``."""
        return {
            "action": self.action,
            "rule_id": self.rule_id,
            "reason": self.reason,
            "policy_digest": self.policy_digest,
            "trace": [t.to_dict() for t in self.trace],
        }


_TRACE_SLOT: Any = Decision.__dict__["trace"]


class _TraceField:
    """``Decision.trace``: set by ``__init__``, or computed on first read.

    The compiled fast path decides without building a trace (one ``RuleTrace`` per evaluated
    rule costs more than the decision itself). ``lazy_decision`` leaves the trace slot empty
    and keeps the decision's immutable inputs in slots instead (the engine, connection,
    service, time, matched rule index and the one domain count read), so the value is the
    same whenever it is read. Slots rather than a closure: one object per decision keeps the
    garbage collector's work low when a sweep holds many decisions.
    """

    def __get__(self, obj: Decision | None, owner: type | None = None) -> Trace:
        if obj is None:
            raise AttributeError("trace")  # tells dataclasses "no default"
        try:
            value: Trace = _TRACE_SLOT.__get__(obj, owner)
        except AttributeError:
            o: Any = obj
            value = tuple(o._engine.trace(o._connection, o._service, o._now, o._index, o._count))
            _TRACE_SLOT.__set__(obj, value)
        return value

    def __set__(self, obj: Decision, value: Trace) -> None:
        _TRACE_SLOT.__set__(obj, tuple(value))


setattr(Decision, "trace", _TraceField())  # noqa: B010 -- after @dataclass, so it stays a field
_new = object.__new__
_set = object.__setattr__


def lazy_decision(
    action: Action,
    rule_id: str,
    reason: str,
    digest: str,
    engine: Any,
    connection: Any,
    service: Any,
    now: Any,
    index: int,
    count: int | None,
) -> Decision:
    """A ``Decision`` whose trace is ``engine.trace(connection, service, now, index, count)``,
    computed when first read."""
    decision: Decision = _new(Decision)
    _set(decision, "action", action)
    _set(decision, "rule_id", rule_id)
    _set(decision, "reason", reason)
    _set(decision, "policy_digest", digest)
    _set(decision, "_engine", engine)
    _set(decision, "_connection", connection)
    _set(decision, "_service", service)
    _set(decision, "_now", now)
    _set(decision, "_index", index)
    _set(decision, "_count", count)
    return decision


Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a policy (or policy test) file, where it is, and how bad."""

    file: str
    line: int | None
    column: int | None
    path: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        parts = [where]
        if self.path:
            parts.append(self.path)
        parts.append(("warning: " if self.severity == "warning" else "") + self.message)
        return ": ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "message": self.message,
            "severity": self.severity,
        }


class PolicyError(Exception):
    """The policy could not be loaded; ``problems`` holds every problem found, in file order."""

    def __init__(self, problems: tuple[Problem, ...] | list[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)
