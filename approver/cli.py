"""``vpcep-approver``: argument parsing, exit codes and human output.

Exit codes: 0 ok, 1 a sweep had errors, 2 usage, 78 (EX_CONFIG) bad config, policy or
credentials. Bad input never produces a traceback: one line per problem on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from approver import __version__, cli_audit, cli_policy
from approver.audit import AuditLog, AuditWriteError, configure_logging
from approver.cloud.client import ClientSettings, VpcepClient
from approver.cloud.credentials import CredentialFiles, CredentialsError, resolve
from approver.cloud.regions import EndpointError
from approver.config import ConfigError, Settings, Target, load_settings
from approver.daemon import AuditRecorder, Daemon, PolicyHolder, utcnow
from approver.emulator import register as register_emulator
from approver.notify import Notifier
from approver.policy import PolicyError, load_policy
from approver.report import summary, table
from approver.sweep import Sweeper, SweepResult

EX_OK, EX_SWEEP_ERRORS, EX_USAGE, EX_CONFIG = 0, 1, 2, 78

EPILOG = """\
examples:
  vpcep-approver run --config /etc/vpcep-approver/config.yaml
  vpcep-approver run --once --dry-run --config config.yaml     # one sweep, no POSTs
  vpcep-approver plan --config config.yaml --output plan.json  # what would happen now
  vpcep-approver apply --config config.yaml --plan plan.json   # do exactly that, if still valid
  vpcep-approver check policies/example.yaml                   # validate and lint a policy
  vpcep-approver explain policies/example.yaml --domain 0c1f... --service-name orders-api
  vpcep-approver test policies/*.test.yaml                     # policy unit tests
  vpcep-approver emulator                                      # a local VPCEP API to try it on
  vpcep-approver demo --sweeps 3                               # emulator + daemon, end to end

exit codes: 0 ok, 1 sweep had errors, 2 usage, 78 bad config/policy/credentials
"""


class Failure(Exception):
    """A clean, expected failure: message for stderr and an exit code."""

    def __init__(self, message: str, code: int = EX_CONFIG) -> None:
        super().__init__(message)
        self.code = code


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        default=os.environ.get("VPCEP_APPROVER_CONFIG"),
        help="config file (YAML); env VPCEP_APPROVER_CONFIG",
    )
    parser.add_argument(
        "-p",
        "--policy",
        type=Path,
        action="append",
        help="policy file or directory (repeatable); overrides the config's policy:",
    )
    parser.add_argument(
        "--log-format", choices=["auto", "json", "console"], help="default: json unless on a TTY"
    )
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vpcep-approver",
        description=(
            "Approve, reject or hold Huawei Cloud VPC Endpoint connections by policy, "
            "and keep an audit trail of every decision."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser(
        "run",
        help="run the daemon (sweep on an interval until stopped)",
        description="Sweep every target on an interval: list pending connections, decide each "
        "by policy, accept/reject/hold, audit. SIGHUP reloads the policy; SIGTERM stops.",
    )
    _common(run)
    run.add_argument(
        "--once", action="store_true", help="one sweep; exit 0 if it was clean, else 1"
    )
    run.add_argument("--dry-run", action="store_true", help="decide and audit, but send no POST")
    run.add_argument("--interval", type=float, help="seconds between sweeps (default 30)")
    run.add_argument("--sweeps", type=int, default=0, help="stop after N sweeps (0: never)")
    run.set_defaults(handler=cmd_run)

    plan = sub.add_parser(
        "plan",
        help="one live sweep without acting: what would be accepted, rejected, held",
        description="List and decide like a sweep, but write nothing and POST nothing.",
    )
    _common(plan)
    plan.add_argument("--output", type=Path, help="also write the plan as JSON to this file")
    plan.set_defaults(handler=cmd_plan)

    apply = sub.add_parser(
        "apply",
        help="execute exactly the decisions of a reviewed plan file (from plan --output)",
        description="Accept/reject exactly what a plan file says. Refuses the whole plan if the "
        "policy changed since it was made, and any connection no longer pending.",
    )
    _common(apply)
    apply.add_argument("--plan", type=Path, required=True, help="plan JSON from plan --output")
    apply.add_argument("--dry-run", action="store_true", help="check and audit, send no POST")
    apply.set_defaults(handler=cmd_apply)

    demo = sub.add_parser(
        "demo",
        help="start the emulator with a demo scenario and run the daemon against it",
        description="Everything local: an emulated VPCEP API on loopback with seeded services "
        "and connections, and the daemon running the example policy against it.",
    )
    demo.add_argument("--sweeps", type=int, default=0, help="stop after N sweeps (0: until Ctrl-C)")
    demo.add_argument("--interval", type=float, default=5.0, help="seconds between sweeps")
    demo.add_argument("--policy", type=Path, action="append", help="policy to use instead")
    demo.add_argument(
        "--state-dir", type=Path, default=Path("demo-state"), help="where the audit log goes"
    )
    demo.set_defaults(handler=cmd_demo)

    cli_policy.register(sub)
    cli_audit.register(sub)
    register_emulator(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except Failure as exc:
        print(f"vpcep-approver: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


# -- building the runtime ---------------------------------------------------------------------


def settings_from(args: argparse.Namespace, **cli: Any) -> Settings:
    overrides = dict(cli)
    if getattr(args, "policy", None):
        overrides["policy"] = [str(p) for p in args.policy]
    for name in ("log_format", "log_level"):
        if getattr(args, name, None):
            overrides[name] = getattr(args, name)
    try:
        settings, warnings = load_settings(args.config, os.environ, overrides)
    except ConfigError as exc:
        raise Failure(str(exc)) from None
    for warning in warnings:
        print(f"vpcep-approver: warning: {warning}", file=sys.stderr)
    return settings


@dataclass
class Runtime:
    settings: Settings
    policies: PolicyHolder
    sweepers: list[Sweeper]
    clients: list[VpcepClient]
    audit: AuditLog | None

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()
        if self.audit is not None:
            self.audit.close()


def load_policies(paths: Sequence[Path]) -> PolicyHolder:
    try:
        return PolicyHolder(paths, load_policy(paths))
    except PolicyError as exc:
        raise Failure(str(exc)) from None


def build_runtime(
    settings: Settings,
    *,
    dry_run: bool,
    credentials: Callable[[], Any] | None = None,
    with_audit: bool = True,
) -> Runtime:
    """Everything a sweep needs, validated before any API call is made."""
    policies = load_policies(settings.policy)
    if credentials is None:
        files = None
        if settings.credentials.ak_file or settings.credentials.sk_file:
            if not (settings.credentials.ak_file and settings.credentials.sk_file):
                raise Failure("credentials: set both ak_file and sk_file")
            files = CredentialFiles(
                settings.credentials.ak_file,
                settings.credentials.sk_file,
                settings.credentials.security_token_file,
            )
        try:
            credentials, _ = resolve(files, os.environ)
        except CredentialsError as exc:
            raise Failure(str(exc)) from None
    audit = None
    if with_audit and settings.audit_path is not None:
        try:
            settings.audit_path.parent.mkdir(parents=True, exist_ok=True)
            audit = AuditLog(settings.audit_path, clock=utcnow)
        except (AuditWriteError, OSError) as exc:
            raise Failure(f"audit log: {exc}") from None
    recorder = AuditRecorder(audit, structlog.get_logger("vpcep_approver.audit"))
    sweepers, clients = [], []
    for target in settings.targets:
        client = VpcepClient(_client_settings(settings, target), credentials, clock=utcnow)
        clients.append(client)
        sweepers.append(
            Sweeper(target.label, target.services, client, recorder, utcnow, dry_run=dry_run)
        )
    return Runtime(settings, policies, sweepers, clients, audit)


def _client_settings(settings: Settings, target: Target) -> ClientSettings:
    try:
        url = target.url
    except EndpointError as exc:
        raise Failure(str(exc)) from None
    http = settings.http
    return ClientSettings(
        endpoint=url,
        project_id=target.project_id,
        connect_timeout=http.connect_timeout,
        read_timeout=http.read_timeout,
        attempts=http.attempts,
        backoff_base=http.backoff_base,
        backoff_cap=http.backoff_cap,
        page_limit=http.page_limit,
        max_pages=http.max_pages,
        concurrency=http.concurrency,
    )


def _configure_logs(settings: Settings, stream: Any = None) -> None:
    json_logs = {"auto": None, "json": True, "console": False}[settings.log_format]
    configure_logging(json=json_logs, level=settings.log_level, stream=stream or sys.stdout)


# -- commands -------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    cli: dict[str, Any] = {}
    if args.dry_run:
        cli["dry_run"] = True
    if args.interval:
        cli["interval_seconds"] = args.interval
    settings = settings_from(args, **cli)
    _configure_logs(settings)
    runtime = build_runtime(settings, dry_run=settings.dry_run)
    return asyncio.run(_run(runtime, once=args.once, sweeps=args.sweeps))


async def _run(
    runtime: Runtime,
    *,
    once: bool,
    sweeps: int = 0,
    on_sweep: Callable[[SweepResult], None] | None = None,
) -> int:
    daemon = Daemon(
        runtime.sweepers,
        runtime.policies,
        AuditRecorder(runtime.audit, structlog.get_logger("vpcep_approver.audit")),
        interval=runtime.settings.interval_seconds,
        jitter=runtime.settings.jitter_seconds,
        on_sweep=on_sweep,
        notifier=Notifier(),
    )
    try:
        if runtime.audit is not None:
            # A crash between an intent and its outcome: read those endpoints again first,
            # so an accept that went through is confirmed, never sent a second time.
            intents = runtime.audit.unresolved_intents()
            for sweeper in runtime.sweepers if intents else ():
                await sweeper.resolve_intents(intents)
        if once:
            results = await daemon.sweep_once()
            return EX_OK if all(r.clean for r in results) else EX_SWEEP_ERRORS
        return await daemon.run(max_sweeps=sweeps or None)
    finally:
        await runtime.aclose()


def cmd_plan(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    _configure_logs(settings, sys.stderr)
    runtime = build_runtime(settings, dry_run=True, with_audit=False)
    results = asyncio.run(_plan(runtime))
    for result in results:
        print(table(result.rows))
        print(summary(result))
    if args.output:
        plan = {
            "version": 1,
            "created_at": utcnow().isoformat().replace("+00:00", "Z"),
            "policy_digest": runtime.policies.policy.digest,
            "targets": [
                {
                    "target": r.target,
                    "errors": r.errors,
                    "decisions": [
                        {
                            "service_id": row.service_id,
                            "service_name": row.service_name,
                            "endpoint_id": row.endpoint_id,
                            "domain_id": row.domain_id,
                            "action": row.action,
                            "rule_id": row.rule_id,
                            "reason": row.reason,
                            "status": row.connection.status if row.connection else None,
                            "description": row.connection.description if row.connection else None,
                        }
                        for row in r.rows
                    ],
                }
                for r in results
            ],
        }
        args.output.write_text(json.dumps(plan, indent=2) + "\n", encoding="utf-8")
        print(f"plan written to {args.output}")
    return EX_OK if all(r.clean for r in results) else EX_SWEEP_ERRORS


async def _plan(runtime: Runtime) -> list[SweepResult]:
    try:
        return [await s.run(runtime.policies.policy, act=False) for s in runtime.sweepers]
    finally:
        await runtime.aclose()


def cmd_apply(args: argparse.Namespace) -> int:
    try:
        plan = json.loads(args.plan.read_text(encoding="utf-8"))
        targets = {t["target"]: t["decisions"] for t in plan["targets"]}
        digest = plan["policy_digest"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise Failure(f"{args.plan}: not a plan file ({type(exc).__name__}: {exc})") from None
    settings = settings_from(args, **({"dry_run": True} if args.dry_run else {}))
    _configure_logs(settings, sys.stderr)
    runtime = build_runtime(settings, dry_run=settings.dry_run)
    current = runtime.policies.policy.digest
    if digest != current:
        asyncio.run(runtime.aclose())
        raise Failure(
            f"{args.plan}: made under policy {digest[:12]}, the policy is now {current[:12]}: "
            "run plan again and review it",
            EX_SWEEP_ERRORS,
        )
    results = asyncio.run(_apply(runtime, targets))
    for result in results:
        print(table(result.rows))
        print(summary(result))
        for error in result.errors:
            print(f"  ! {error}")
    stale = any(row.outcome == "stale" for r in results for row in r.rows)
    return EX_OK if all(r.clean for r in results) and not stale else EX_SWEEP_ERRORS


async def _apply(runtime: Runtime, targets: dict[str, Any]) -> list[SweepResult]:
    policy = runtime.policies.policy
    try:
        return [await s.apply(policy, targets.get(s.target, [])) for s in runtime.sweepers]
    finally:
        await runtime.aclose()


def cmd_demo(args: argparse.Namespace) -> int:
    from approver.demo import run_demo  # the emulator is only started for the demo

    return run_demo(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
