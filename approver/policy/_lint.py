"""Warnings about a valid policy: rules that cannot matter, or whose order matters a lot.

* **expired**: ``valid_until`` is past; the rule never matches again.
* **never matches**: its ``domains`` expand to no domain id at all (only empty sets).
* **shadowed**: an earlier rule matches everything this one does (so it is never reached).
* **accept/reject overlap**: an accept rule and a reject rule can both match one connection,
  so only their order decides between the two opposite actions.
* **unused domain set**: defined, never referenced.

These are judgements on the rules' text (globs and regexes are compared as written, so the
checks are conservative: "shadowed" is only said when it is certain for literal values).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from datetime import datetime

from approver.policy._engine import Policy, Rule, TagCondition, fmt_time
from approver.policy._types import Problem


def lint(policy: Policy, now: datetime) -> tuple[Problem, ...]:
    """Every warning for ``policy`` as of ``now`` (an aware time), in rule order."""
    out: list[Problem] = []
    live: list[Rule] = []
    for rule in policy.rules:

        def warn(message: str, rule: Rule = rule) -> None:
            out.append(Problem(rule.source, rule.line, rule.column, rule.path, message, "warning"))

        if rule.valid_until is not None and rule.valid_until <= now:
            warn(f"rule {rule.id!r} expired {fmt_time(rule.valid_until)}; remove it")
            continue
        if rule.domains is not None and not rule.domains:
            warn(
                f"rule {rule.id!r} can never match: its domains "
                f"({', '.join(rule.domain_refs)}) hold no domain id"
            )
            continue
        _against_earlier(rule, live, warn)
        live.append(rule)
    used = {ref for rule in policy.rules for ref in rule.domain_refs}
    for name, (file, line, column) in policy.set_origins.items():
        if name not in used:
            out.append(
                Problem(
                    file,
                    line,
                    column,
                    f"domain_sets.{name}",
                    f"domain set {name!r} is not used by any rule",
                    "warning",
                )
            )
    return tuple(out)


def _against_earlier(rule: Rule, earlier: list[Rule], warn: Callable[[str], None]) -> None:
    for first in earlier:
        if covers(first, rule):
            warn(
                f"rule {rule.id!r} is shadowed by rule {first.id!r} ({_at(first)}), which "
                "matches everything it does: it is never reached"
            )
            return
    for first in earlier:
        if {first.action, rule.action} == {"accept", "reject"} and overlaps(first, rule):
            warn(
                f"rule {rule.id!r} ({rule.action}) overlaps rule {first.id!r} ({first.action}, "
                f"{_at(first)}): a connection matching both gets {first.action} only because "
                f"{first.id!r} comes first"
            )


def _at(rule: Rule) -> str:
    return f"{rule.source}:{rule.line}" if rule.line is not None else rule.source


def _glob_covers(outer: str, inner: str) -> bool:
    """Every name matching ``inner`` matches ``outer`` (exact for literal ``inner``)."""
    return outer == inner or fnmatch.fnmatchcase(inner, outer)


def _has_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def _tag_covers(outer: TagCondition, inner: tuple[TagCondition, ...]) -> bool:
    for tag in inner:
        if tag.key == outer.key:
            return outer.values is None or (tag.values is not None and tag.values <= outer.values)
    return False


def covers(a: Rule, b: Rule) -> bool:
    """Rule ``a`` matches every connection rule ``b`` matches (conservatively)."""
    if a.service_ids is not None and not (b.service_ids and b.service_ids <= a.service_ids):
        return False
    if a.service_names is not None and not (
        b.service_names
        and all(any(_glob_covers(x, y) for x in a.service_names) for y in b.service_names)
    ):
        return False
    if not all(_tag_covers(t, b.service_tags) for t in a.service_tags):
        return False
    if a.domains is not None and not (b.domains is not None and b.domains <= a.domains):
        return False
    if a.description_regex is not None and a.description_regex != b.description_regex:
        return False
    if a.valid_from is not None and (b.valid_from is None or b.valid_from < a.valid_from):
        return False
    return a.valid_until is None or (b.valid_until is not None and b.valid_until <= a.valid_until)


def overlaps(a: Rule, b: Rule) -> bool:
    """Some connection could match both rules (when in doubt, yes)."""
    if (
        a.service_ids is not None
        and b.service_ids is not None
        and not a.service_ids & b.service_ids
    ):
        return False
    if (
        a.service_names is not None
        and b.service_names is not None
        and not any(
            (_has_glob(x) and _has_glob(y)) or _glob_covers(x, y) or _glob_covers(y, x)
            for x in a.service_names
            for y in b.service_names
        )
    ):
        return False
    for x in a.service_tags:
        for y in b.service_tags:
            if x.key == y.key and x.values and y.values and not x.values & y.values:
                return False
    if a.domains is not None and b.domains is not None and not a.domains & b.domains:
        return False
    start = max((t for t in (a.valid_from, b.valid_from) if t is not None), default=None)
    end = min((t for t in (a.valid_until, b.valid_until) if t is not None), default=None)
    return start is None or end is None or start < end
