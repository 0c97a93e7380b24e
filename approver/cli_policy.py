"""``check``, ``explain`` and ``test``: the policy author's commands.

Exit codes: 0 ok; 1 failures (test cases failed, warnings with ``--strict``, rules no case
exercised with ``test --strict``); 2 usage (bad flags, unreadable ``--json`` input);
78 (EX_CONFIG) invalid policy or policy test file. Results go to stdout, problems to stderr,
and bad input never produces a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from approver.policy import (
    DEFAULT_RULE,
    LIMITS_RULE,
    Decision,
    Policy,
    PolicyError,
    Problem,
    decide,
    lint,
    load_policy,
)
from approver.policy.testing import (
    ExplainInput,
    SuiteResult,
    find_test_files,
    run_test_file,
)
from approver.records import PENDING, Connection, Service

EX_OK, EX_FAILED, EX_USAGE, EX_CONFIG = 0, 1, 2, 78


class Usage(Exception):
    """Bad command-line input: a message for stderr, exit 2."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``check``, ``explain`` and ``test`` to the top-level subcommands."""
    check = subparsers.add_parser(
        "check",
        help="validate and lint policy files",
        description="Validate policy files (every problem, with file:line:column) and warn "
        "about rules that are expired, shadowed, can never match, or where an accept and a "
        "reject rule overlap.",
        epilog="exit codes: 0 valid (warnings allowed), 1 warnings with --strict, "
        "78 invalid policy. Several POLICY arguments form one policy (files merged in order), "
        "as with the daemon's --policy; --each checks them one by one.",
    )
    check.add_argument("policy", nargs="+", metavar="POLICY", help="policy file or directory")
    check.add_argument("--strict", action="store_true", help="exit 1 when there are warnings")
    check.add_argument(
        "--each",
        action="store_true",
        help="check each POLICY argument as a policy of its own (default: all together, as "
        "the daemon loads them)",
    )
    _at(check, "judge expiry as of this time (default: now)")
    _output(check)
    check.set_defaults(handler=cmd_check)

    explain = subparsers.add_parser(
        "explain",
        help="show how the policy decides one connection, rule by rule",
        description="Decide one connection and print every rule evaluated: each condition, "
        "what it expected, what it observed, and whether it held. Give the connection with "
        "flags, or as JSON with --json.",
        epilog='--json input: {"service": {"id", "name", "tags": {k: v}}, "connection": '
        '{"domain_id", "description", "status", "id"}, "domain_usage": {domain: n}, "at": '
        "time}; exit codes: 0 decided, 2 usage, 78 invalid policy",
    )
    explain.add_argument("policy", nargs="+", metavar="POLICY", help="policy file or directory")
    explain.add_argument(
        "--json", metavar="FILE", help="read service + connection JSON (- : stdin)"
    )
    explain.add_argument("--domain", help="the consumer's domain id (exactly as the API gives it)")
    explain.add_argument("--description", default="", help="the connection's description")
    explain.add_argument("--status", default=PENDING, help=f"connection status (default {PENDING})")
    explain.add_argument("--service-id", default="", help="endpoint service id")
    explain.add_argument("--service-name", default="", help="endpoint service name")
    explain.add_argument(
        "--service-tag", action="append", default=[], metavar="KEY=VALUE", help="repeatable"
    )
    explain.add_argument(
        "--usage",
        action="append",
        default=[],
        metavar="DOMAIN=N",
        help="accepted+creating connections of a domain on the service (repeatable)",
    )
    _at(explain, "decide as of this time (default: now)")
    _output(explain)
    explain.set_defaults(handler=cmd_explain)

    test = subparsers.add_parser(
        "test",
        help="run policy unit tests (*.test.yaml)",
        description="Run policy test files: each case gives a service and a connection and "
        "the decision expected. Any difference fails. Reports rule coverage.",
        epilog="exit codes: 0 all passed, 1 failures (or uncovered rules with --strict), "
        "78 invalid test file or policy",
    )
    test.add_argument("paths", nargs="+", metavar="PATH", help="test file or directory")
    test.add_argument("-v", "--verbose", action="store_true", help="list passing cases too")
    test.add_argument(
        "--strict", action="store_true", help="fail when a rule is exercised by no case"
    )
    _at(test, "the time for cases whose file sets no now: (default: now)")
    _output(test)
    test.set_defaults(handler=cmd_test)


def _at(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--at", metavar="ISO8601", help=help + "; needs a timezone, e.g. Z")


def _output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", choices=["text", "json"], default="text", help="format")


def _now(args: argparse.Namespace) -> datetime:
    if args.at is None:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(args.at)
    except ValueError:
        raise Usage(f"--at {args.at!r}: not an ISO 8601 time") from None
    if value.utcoffset() is None:
        raise Usage(f"--at {args.at!r}: add a timezone, e.g. {args.at}Z")
    return value


def _problems(problems: Sequence[Problem], stream: TextIO) -> None:
    for problem in problems:
        print(problem, file=stream)


def _json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _run(handler: Any, args: argparse.Namespace) -> int:
    try:
        code: int = handler(args)
        return code
    except Usage as exc:
        print(f"vpcep-approver {getattr(args, 'command', '')}: {exc}", file=sys.stderr)
        return EX_USAGE
    except PolicyError as exc:
        _invalid(exc.problems)
        return EX_CONFIG


def _invalid(problems: Sequence[Problem]) -> None:
    """Every problem on stderr, then ``file: invalid, N problems``."""
    _problems(problems, sys.stderr)
    names = ", ".join(dict.fromkeys(p.file for p in problems))
    print(f"{names}: invalid, {_plural(len(problems), 'problem')}", file=sys.stderr)


# -- check -----------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    return _run(_check, args)


def _check(args: argparse.Namespace) -> int:
    now = _now(args)
    groups = [[path] for path in args.policy] if args.each else [args.policy]
    reports, code = [], EX_OK
    for paths in groups:
        try:
            policy = load_policy(paths)
        except PolicyError as exc:
            reports.append({"sources": paths, "valid": False, "problems": _dicts(exc.problems)})
            if args.output == "text":
                _invalid(exc.problems)
            code = EX_CONFIG
            continue
        warnings = lint(policy, now)
        if warnings and args.strict:
            code = max(code, EX_FAILED)
        reports.append(
            {
                "sources": list(policy.sources),
                "digest": policy.digest,
                "rules": len(policy.rules),
                "domain_sets": len(policy.domain_sets),
                "valid": True,
                "problems": _dicts(warnings),
            }
        )
        if args.output == "text":
            _problems(warnings, sys.stdout)
            print(_summary(policy, len(warnings)))
    if args.output == "json":
        _json(reports if args.each else reports[0])
    return code


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' * (count != 1)}"


def _summary(policy: Policy, warnings: int) -> str:
    """``policies/example.yaml: 3 rules, 3 domain sets, digest 580a1d3694a4…: ok, 1 warning``"""
    status = "ok" + (f", {_plural(warnings, 'warning')}" if warnings else "")
    return (
        f"{', '.join(policy.sources)}: {_plural(len(policy.rules), 'rule')}, "
        f"{_plural(len(policy.domain_sets), 'domain set')}, digest {policy.digest[:12]}…: {status}"
    )


def _dicts(problems: Sequence[Problem]) -> list[dict[str, Any]]:
    return [p.to_dict() for p in problems]


# -- explain ---------------------------------------------------------------------------------


def _pairs(items: list[str], flag: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise Usage(f"{flag} {item!r}: expected KEY=VALUE")
        out.append((key, value))
    return out


def _explain_input(
    args: argparse.Namespace,
) -> tuple[Connection, Service, dict[str, int], datetime]:
    flags = args.domain is not None or args.service_tag or args.usage
    if args.json is not None:
        if flags:
            raise Usage("give the connection either with --json or with flags, not both")
        return _read_json(args)
    if args.domain is None:
        raise Usage("--domain (or --json) is required")
    usage = {}
    for domain, count in _pairs(args.usage, "--usage"):
        if not count.isdigit():
            raise Usage(f"--usage {domain}={count}: N must be a whole number")
        usage[domain] = int(count)
    connection = Connection("explain", args.domain, args.status, args.description)
    service = Service(
        args.service_id, args.service_name, dict(_pairs(args.service_tag, "--service-tag"))
    )
    return connection, service, usage, _now(args)


def _read_json(args: argparse.Namespace) -> tuple[Connection, Service, dict[str, int], datetime]:
    try:
        if args.json == "-":
            data = json.load(sys.stdin)
        else:
            with Path(args.json).open(encoding="utf-8") as fh:
                data = json.load(fh)
    except OSError as exc:
        raise Usage(f"--json {args.json}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise Usage(f"--json {args.json}: not JSON ({exc})") from None
    try:
        spec = ExplainInput.model_validate(data)
    except ValidationError as exc:
        errors = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise Usage(f"--json {args.json}: {errors}") from None
    c, s = spec.connection, spec.service
    now = spec.at if spec.at is not None and args.at is None else _now(args)
    return (
        Connection(c.id, c.domain_id, c.status, c.description),
        Service(s.id, s.name, s.tags),
        dict(spec.domain_usage or {}),
        now,
    )


def cmd_explain(args: argparse.Namespace) -> int:
    return _run(_explain, args)


def _explain(args: argparse.Namespace) -> int:
    connection, service, usage, now = _explain_input(args)
    policy = load_policy(args.policy)
    decision = decide(connection, service, policy, now, usage)
    if args.output == "json":
        _json(
            {
                "decision": decision.to_dict(),
                "at": now.isoformat(),
                "policy": {"sources": list(policy.sources), "digest": policy.digest},
                "service": {"id": service.id, "name": service.name, "tags": dict(service.tags)},
                "connection": {
                    "id": connection.id,
                    "domain_id": connection.domain_id,
                    "status": connection.status,
                    "description": connection.description,
                },
                "domain_usage": usage,
            }
        )
    else:
        print(render_explanation(decision, policy, connection, service, now))
    return EX_OK


def _q(value: str) -> str:
    """Quoted with escapes, so whitespace and look-alike characters are visible."""
    return json.dumps(value, ensure_ascii=True)


def render_explanation(
    decision: Decision, policy: Policy, connection: Connection, service: Service, now: datetime
) -> str:
    """The human ``explain`` output: the decision, the input, every rule evaluated."""
    tags = ", ".join(f"{k}={v}" for k, v in service.tags.items()) or "(none)"
    lines = [
        f"decision:   {decision.action.upper()}",
        f"rule:       {decision.rule_id}",
        f"reason:     {decision.reason}",
        f"policy:     {', '.join(policy.sources)} (digest {policy.digest[:12]}…)",
        f"at:         {now.isoformat()}",
        f"service:    name {_q(service.name)}, id {_q(service.id)}, tags {tags}",
        f"connection: domain {_q(connection.domain_id)}, status {_q(connection.status)}, "
        f"description {_q(connection.description)}",
        "",
        "rules evaluated, in order (first match wins):",
    ]
    for entry in decision.trace:
        rule = policy.rule(entry.rule_id)
        action = f" → {rule.action}" if rule else ""
        # a limits entry "matches" when the limit fired: show it as a failed check
        mark = "✓" if entry.matched != (entry.rule_id == LIMITS_RULE) else "✗"
        note = f"  ({entry.note})" if entry.note else ""
        where = f"  [{rule.source}:{rule.line}]" if rule and rule.line else ""
        lines.append(f"  {mark} {entry.rule_id}{action}{note}{where}")
        width = max((len(c.condition) for c in entry.checks), default=0)
        for check in entry.checks:
            lines.append(
                f"      {'✓' if check.ok else '✗'} {check.condition.ljust(width)}  "
                f"expected {check.expected}; observed {_q(check.observed)}"
            )
        if not entry.checks:
            lines.append("      (no conditions: matches every connection)")
    if decision.rule_id == DEFAULT_RULE:
        lines.append(f"  → no rule matched: default {policy.default}")
    return "\n".join(lines)


# -- test ------------------------------------------------------------------------------------


def cmd_test(args: argparse.Namespace) -> int:
    return _run(_test, args)


def _test(args: argparse.Namespace) -> int:
    now = _now(args)
    files = find_test_files(args.paths)
    if not files:
        raise Usage("no *.test.yaml files found")
    results: list[SuiteResult] = []
    invalid: list[Problem] = []
    for path in files:
        try:
            results.append(run_test_file(path, now=now))
        except PolicyError as exc:
            invalid.extend(exc.problems)
    passed = sum(r.passed for r in results)
    failed = sum(r.failed for r in results)
    uncovered = sum(len(r.uncovered) for r in results)
    if args.output == "json":
        _json(
            {
                "files": [_suite_dict(r) for r in results],
                "passed": passed,
                "failed": failed,
                "problems": [p.to_dict() for p in invalid],
            }
        )
    else:
        for result in results:
            print(result.report(verbose=args.verbose))
        total = len(files)
        print(
            f"{_plural(total, 'test file')}: {passed} passed, {failed} failed"
            + (f", {_plural(len(invalid), 'problem')}" if invalid else "")
        )
    if invalid:
        _problems(invalid, sys.stderr)
        return EX_CONFIG
    if failed or (args.strict and uncovered):
        return EX_FAILED
    return EX_OK


def _suite_dict(result: SuiteResult) -> dict[str, Any]:
    return {
        "file": result.file,
        "policy": {"sources": list(result.policy.sources), "digest": result.policy.digest},
        "cases": [
            {
                "name": c.name,
                "line": c.line,
                "passed": c.passed,
                "expected": c.expect.model_dump(exclude_none=True),
                "actual": {
                    "action": c.decision.action,
                    "rule": c.decision.rule_id,
                    "reason": c.decision.reason,
                },
                "failures": list(c.failures),
            }
            for c in result.cases
        ],
        "uncovered_rules": list(result.uncovered),
    }
