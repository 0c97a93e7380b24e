"""The loaded policy and ``decide``: a compiled fast path, and the reference evaluator.

Two evaluators implement the one semantics:

* ``Rule.trace`` / ``reference`` walk every rule in order and record every condition: this is
  the readable definition, and it produces ``Decision.trace`` (what ``explain`` prints);
* ``_Engine.decide`` gets the same answer quickly: rules are indexed by service (ids, then one
  tag key) and, per service, by consumer domain, so a connection only scans the few rules that
  could match it; the trace is computed by the reference evaluator when first read.

Tests check that both agree on every generated input.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Final

from approver.policy._types import (
    DEFAULT_RULE,
    FAIL_CLOSED_RULE,
    LIMITS_RULE,
    Action,
    Check,
    Decision,
    RuleTrace,
    Trace,
    lazy_decision,
)
from approver.records import CONNECTION_STATUSES, PENDING, Connection, Service

MAX_PLANS: Final = 4096  # cached per-service plans (a policy covers this many services fast)
ABSENT: Final = "(absent)"


def fmt_time(value: datetime) -> str:
    """RFC 3339 in UTC with ``Z``, as audit records and notes write times."""
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _show(value: object, limit: int = 80) -> str:
    """A short, never-failing rendering of any value (records may hold anything)."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[: limit - 1] + "…"
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__ must not make decide raise
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _listing(items: tuple[str, ...] | list[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", … ({len(items)} in all)" if len(items) > limit else "")


@dataclass(frozen=True)
class TagCondition:
    """``key`` must be present; with ``values``, its value must be one of them."""

    key: str
    values: frozenset[str] | None

    def expected(self) -> str:
        if self.values is None:
            return "present (any value)"
        values = sorted(self.values)
        return values[0] if len(values) == 1 else "one of: " + _listing(values)

    def holds(self, tags: Mapping[str, str]) -> bool:
        value = tags.get(self.key)
        return value is not None and (self.values is None or value in self.values)


@dataclass(frozen=True)
class Limits:
    """Blast-radius guards; ``None`` means no limit."""

    max_actions_per_sweep: int | None = None
    max_connections_per_domain: int | None = None


@dataclass(frozen=True)
class Rule:
    """One compiled rule. ``None`` for a condition means the rule does not constrain it.

    ``domains`` is the set of domain ids the rule's ``when.domains`` expands to;
    ``domain_refs`` is what the file wrote (set names and literal ids), for traces.
    """

    id: str
    action: Action
    description: str | None = None
    service_ids: frozenset[str] | None = None
    service_names: tuple[str, ...] | None = None
    service_tags: tuple[TagCondition, ...] = ()
    domains: frozenset[str] | None = None
    domain_refs: tuple[str, ...] = ()
    description_regex: str | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    source: str = ""
    line: int | None = None
    column: int | None = None
    path: str = ""
    _names: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)
    _search: Callable[[str], object] | None = field(
        init=False, repr=False, compare=False, default=None
    )

    def __post_init__(self) -> None:
        if self.service_names is not None:
            pattern = "|".join(f"(?:{fnmatch.translate(g)})" for g in self.service_names)
            object.__setattr__(self, "_names", re.compile(pattern))
        if self.description_regex is not None:
            object.__setattr__(self, "_search", re.compile(self.description_regex).search)

    # -- the semantics, one condition at a time ---------------------------------------------

    def matches_service(self, service: Service) -> bool:
        """All service conditions hold (``service`` is well-formed: str id, name, tags)."""
        if self.service_ids is not None and service.id not in self.service_ids:
            return False
        if self._names is not None and self._names.match(service.name) is None:
            return False
        return all(t.holds(service.tags) for t in self.service_tags)

    def window_note(self, now: datetime) -> str | None:
        """Why the rule is not in force at ``now`` (``valid_from <= now < valid_until``)."""
        if self.valid_from is not None and now < self.valid_from:
            return f"not valid before {fmt_time(self.valid_from)}"
        if self.valid_until is not None and now >= self.valid_until:
            return f"expired {fmt_time(self.valid_until)}"
        return None

    def checks(self, connection: Connection, service: Service, now: datetime) -> list[Check]:
        """Every condition of the rule, evaluated (the reference semantics)."""
        out: list[Check] = []
        if self.service_ids is not None:
            out.append(
                Check(
                    "service.ids",
                    "one of: " + _listing(sorted(self.service_ids)),
                    _show(service.id),
                    service.id in self.service_ids,
                )
            )
        if self.service_names is not None:
            ok = any(fnmatch.fnmatchcase(service.name, g) for g in self.service_names)
            out.append(
                Check(
                    "service.names",
                    "matches one of: " + _listing(self.service_names),
                    _show(service.name),
                    ok,
                )
            )
        for tag in self.service_tags:
            value = service.tags.get(tag.key)
            out.append(
                Check(
                    f"service.tags.{tag.key}",
                    tag.expected(),
                    ABSENT if value is None else _show(value),
                    tag.holds(service.tags),
                )
            )
        if self.domains is not None:
            out.append(
                Check(
                    "domains",
                    f"one of: {_listing(self.domain_refs)} ({_count(len(self.domains), 'id')})",
                    _show(connection.domain_id),
                    connection.domain_id in self.domains,
                )
            )
        if self.description_regex is not None:
            assert self._search is not None
            found = self._search(connection.description) is not None
            out.append(
                Check(
                    "description",
                    f"matches /{self.description_regex}/",
                    _show(connection.description, 200),
                    found,
                )
            )
        if self.valid_from is not None or self.valid_until is not None:
            lo = fmt_time(self.valid_from) if self.valid_from else "any time"
            hi = fmt_time(self.valid_until) if self.valid_until else "no end"
            out.append(
                Check("window", f"from {lo} until {hi}", fmt_time(now), not self.window_note(now))
            )
        return out

    def trace(self, connection: Connection, service: Service, now: datetime) -> RuleTrace:
        checks = tuple(self.checks(connection, service, now))
        note = self.window_note(now)
        return RuleTrace(self.id, all(c.ok for c in checks), checks, note)

    def reason(self) -> str:
        why = f" ({self.description.strip().rstrip('.')})" if self.description else ""
        return f"Rule '{self.id}' matched{why}."


def reference(
    rules: tuple[Rule, ...], connection: Connection, service: Service, now: datetime
) -> tuple[int | None, list[RuleTrace]]:
    """The reference evaluator: every rule in order until the first match, fully traced."""
    trace: list[RuleTrace] = []
    for index, rule in enumerate(rules):
        entry = rule.trace(connection, service, now)
        trace.append(entry)
        if entry.matched:
            return index, trace
    return None, trace


# -- the compiled fast path -----------------------------------------------------------------

# (rule index, valid_from, valid_until, description search): what the hot loop reads
_Fast = tuple[int, datetime | None, datetime | None, Callable[[str], object] | None]
_ServiceKey = tuple[object, object, tuple[tuple[object, object], ...]]


@dataclass(frozen=True)
class _Plan:
    """The rules that can match one service, indexed by consumer domain, in policy order."""

    by_domain: Mapping[str, tuple[_Fast, ...]]
    any_domain: tuple[_Fast, ...]
    accepts: bool


def _well_formed(service: Service) -> bool:
    tags = service.tags
    return (
        type(service.id) is str
        and type(service.name) is str
        and isinstance(tags, Mapping)
        and all(type(k) is str and type(v) is str for k, v in tags.items())
    )


class _Engine:
    """The compiled policy: rule indexes, and bounded memos that never change a result."""

    def __init__(self, rules: tuple[Rule, ...], default: Action, limits: Limits, digest: str):
        self.rules = rules
        self.default = default
        self.limit = limits.max_connections_per_domain
        self.digest = digest
        self.reasons = tuple(r.reason() for r in rules)
        self.default_reason = f"No rule matched; the policy default is {default}."
        self.by_id: dict[str, list[int]] = {}
        self.by_tag: dict[tuple[str, str], list[int]] = {}
        self.unindexed: list[int] = []
        for index, rule in enumerate(rules):
            indexed_tag = next((t for t in rule.service_tags if t.values is not None), None)
            if rule.service_ids is not None:
                for sid in rule.service_ids:
                    self.by_id.setdefault(sid, []).append(index)
            elif indexed_tag is not None and indexed_tag.values is not None:
                for value in indexed_tag.values:
                    self.by_tag.setdefault((indexed_tag.key, value), []).append(index)
            else:
                self.unindexed.append(index)
        # Memos (the only state; they change no result): plans by service content, the same
        # by service object identity (cheaper; the entry keeps the object alive, so its id
        # cannot be reused while cached), and the last `now` found to be an aware datetime.
        self.plans: dict[_ServiceKey, _Plan | None] = {}
        self.by_object: dict[int, tuple[Service, _Plan | None]] = {}
        self.aware: object = None

    def plan(self, service: Service) -> _Plan | None:
        """The service's plan (``None``: the service record is malformed)."""
        hit = self.by_object.get(id(service))
        if hit is not None and hit[0] is service:
            return hit[1]
        key: _ServiceKey = (service.id, service.name, tuple(service.tags.items()))
        try:
            plan = self.plans[key]
        except KeyError:
            plan = self._build(service) if _well_formed(service) else None
        except TypeError:  # unhashable junk in the record: no caching, and it is malformed
            return None
        if len(self.plans) >= MAX_PLANS or len(self.by_object) >= MAX_PLANS:
            self.plans.clear()
            self.by_object.clear()
        self.plans[key] = plan
        self.by_object[id(service)] = (service, plan)
        return plan

    def _build(self, service: Service) -> _Plan:
        found = set(self.unindexed)
        found.update(self.by_id.get(service.id, ()))
        for pair in service.tags.items():
            found.update(self.by_tag.get(pair, ()))
        fast = [
            (r, (i, r.valid_from, r.valid_until, r._search))
            for i in sorted(found)
            if (r := self.rules[i]).matches_service(service)
        ]
        any_domain = tuple(f for r, f in fast if r.domains is None)
        # per domain: the rules naming it and the rules naming no domain, in policy order
        lists: dict[str, list[_Fast]] = {
            d: [] for r, _ in fast if r.domains is not None for d in r.domains
        }
        for rule, entry in fast:
            for domain in lists if rule.domains is None else rule.domains:
                lists[domain].append(entry)
        by_domain = {d: tuple(entries) for d, entries in lists.items()}
        accepts = any(r.action == "accept" for r, _ in fast)
        return _Plan(MappingProxyType(by_domain), any_domain, accepts)

    def needs_domain_usage(self, service: Service) -> bool:
        if self.limit is None:
            return False
        if self.default == "accept":
            return True
        plan = self.plan(service)
        return plan is not None and plan.accepts

    def decide(
        self,
        connection: Connection,
        service: Service,
        now: datetime,
        usage: Mapping[str, int] | None,
    ) -> Decision:
        status = connection.status
        if type(status) is not str or status != PENDING:
            return self._not_pending(status)
        domain, text = connection.domain_id, connection.description
        if type(domain) is not str or type(text) is not str:
            return self._closed(
                "The connection record is malformed (domain_id or description is not text)",
                Check("connection", "domain_id and description as text", _show(domain), False),
            )
        if now is not self.aware and (not isinstance(now, datetime) or now.utcoffset() is None):
            return self._closed(
                "The clock reading has no timezone", Check("now", "aware time", _show(now), False)
            )
        plan = self.plan(service)
        if plan is None:
            return self._closed(
                "The service record is malformed (id, name or tags are not text)",
                Check("service", "id, name and tags as text", _show(service.id), False),
            )
        self.aware = now  # checked: the next decision of the same sweep skips the check
        for index, lo, hi, search in plan.by_domain.get(domain, plan.any_domain):
            if (lo is not None and now < lo) or (hi is not None and now >= hi):
                continue
            if search is None or search(text) is not None:
                action: Action = self.rules[index].action
                rule_id, reason = self.rules[index].id, self.reasons[index]
                break
        else:
            index, action, rule_id, reason = -1, self.default, DEFAULT_RULE, self.default_reason
        count: int | None = None
        if action == "accept" and self.limit is not None:
            count = usage.get(domain, 0) if usage is not None else None
            if type(count) is not int:
                count = None
            if count is None or count >= self.limit:
                action, reason = "hold", self._quota_reason(rule_id, domain, count)
        return lazy_decision(
            action, rule_id, reason, self.digest, self, connection, service, now, index, count
        )

    # -- slow paths: guards, quota, and the trace ------------------------------------------

    def _quota_reason(self, rule_id: str, domain: str, count: int | None) -> str:
        who = "the default" if rule_id == DEFAULT_RULE else f"rule '{rule_id}'"
        if count is None:
            return (
                f"Held by quota: {who} would accept, but the domain's connection count on this "
                "service is unknown (max_connections_per_domain applies)."
            )
        return (
            f"Held by quota: {who} would accept, but domain {domain} already has {count} "
            f"accepted or creating connections on this service "
            f"(max_connections_per_domain {self.limit})."
        )

    def trace(
        self,
        connection: Connection,
        service: Service,
        now: datetime,
        index: int,
        count: int | None,
    ) -> Trace:
        try:
            found, trace = reference(self.rules, connection, service, now)
        except Exception as exc:  # never expected; the trace must not raise either
            note = f"trace unavailable: {type(exc).__name__}"
            return (RuleTrace(FAIL_CLOSED_RULE, False, (), note),)
        if found != (index if index >= 0 else None):  # pragma: no cover - a bug, say so
            note = "the fast path and the reference evaluator disagree; please report"
            trace.append(RuleTrace(FAIL_CLOSED_RULE, False, (), note))
        rule_action = self.rules[index].action if index >= 0 else self.default
        if rule_action == "accept" and self.limit is not None:
            ok = count is not None and count < self.limit
            observed = "unknown" if count is None else str(count)
            check = Check("accepted+creating of this domain", f"< {self.limit}", observed, ok)
            trace.append(RuleTrace(LIMITS_RULE, not ok, (check,), None if ok else "quota"))
        return tuple(trace)

    def _not_pending(self, status: object) -> Decision:
        known = type(status) is str and status in CONNECTION_STATUSES
        reason = (
            f"Connection status is {_show(status)!r}, not '{PENDING}': no action."
            if known
            else f"Connection status {_show(status)!r} is unknown: no action (fail closed)."
        )
        check = Check("status", PENDING, _show(status), False)
        return self._guard(reason, check, "only pending connections are decided")

    def _closed(self, what: str, check: Check) -> Decision:
        return self._guard(f"{what}: no action (fail closed).", check, "not decidable")

    def _guard(self, reason: str, check: Check, note: str) -> Decision:
        trace = (RuleTrace(FAIL_CLOSED_RULE, True, (check,), note),)
        return Decision("hold", FAIL_CLOSED_RULE, reason, trace, self.digest)

    def failed(self, exc: BaseException) -> Decision:
        """The decision when deciding itself raised: hold, and say so."""
        check = Check("evaluation", "completes", type(exc).__name__, False)
        return self._closed(f"Deciding failed ({type(exc).__name__})", check)


@dataclass(frozen=True)
class Policy:
    """A loaded, validated policy. Build it with ``load_policy``; it never changes.

    ``digest`` is the sha256 of what was loaded (see ``load_policy``); ``sources`` the files
    in load order; ``rules`` in evaluation order (files in order, rules in file order).
    """

    digest: str
    sources: tuple[str, ...]
    default: Action
    rules: tuple[Rule, ...]
    limits: Limits = field(default_factory=Limits)
    domain_sets: Mapping[str, frozenset[str]] = field(default_factory=dict)
    set_origins: Mapping[str, tuple[str, int | None, int | None]] = field(
        default_factory=dict, repr=False, compare=False
    )  # where each domain set is defined: (file, line, column)
    _engine: _Engine = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", tuple(self.rules))
        object.__setattr__(self, "domain_sets", MappingProxyType(dict(self.domain_sets)))
        object.__setattr__(self, "set_origins", MappingProxyType(dict(self.set_origins)))
        engine = _Engine(self.rules, self.default, self.limits, self.digest)
        object.__setattr__(self, "_engine", engine)

    def needs_domain_usage(self, service: Service) -> bool:
        """Whether a per-domain connection limit could apply to an accept on this service.

        Only then does ``decide`` need ``domain_usage`` for it (an accept without it holds).
        """
        try:
            return self._engine.needs_domain_usage(service)
        except Exception:  # a malformed service: ask for the usage, decide will hold anyway
            return self.limits.max_connections_per_domain is not None

    def rule(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)


def decide(
    connection: Connection,
    service: Service,
    policy: Policy,
    now: datetime,
    domain_usage: Mapping[str, int] | None = None,
) -> Decision:
    """Decide one connection; total, deterministic and pure (no I/O, no clock).

    Only a ``pendingAcceptance`` connection is decided: anything else holds (rule
    ``fail-closed``). The first rule (in order) whose conditions all hold and whose window
    contains ``now`` decides; if none does, the policy default. An ``accept`` when
    ``limits.max_connections_per_domain`` is set holds with a "quota" reason if
    ``domain_usage[connection.domain_id]`` (accepted + creating connections of that domain on
    this service) has reached the limit, or if ``domain_usage`` is ``None``. Only the one count
    is read, at call time: the caller may update its mapping afterwards.
    """
    engine = policy._engine
    try:
        return engine.decide(connection, service, now, domain_usage)
    except Exception as exc:  # total: an exception is a hold, never a crash or an action
        return engine.failed(exc)
