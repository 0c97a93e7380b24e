"""``vpcep-approver audit verify FILE...``: check the audit log's hash chain.

Exit codes: 0 chain intact, 1 tampered or broken (edited, deleted, reordered, duplicated lines,
truncated file), 2 usage (no such file), 3 only a torn last line (a crash during a write, not
tampering; the daemon repairs it on its next start).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from approver.audit.verify import EXIT_USAGE, VerifyReport, verify

EPILOG = """\
exit codes: 0 chain intact, 1 tampered or broken, 2 usage (no such file),
            3 torn last line only (crash during write, not tampering)

Given just the live log (audit.jsonl), its rotated files audit.jsonl.N are verified too.
"""


def register(subparsers: Any) -> None:
    """Add ``audit`` (with ``verify``) to the top-level subcommands."""
    audit = subparsers.add_parser(
        "audit",
        help="work with the audit log (verify its hash chain)",
        description="Work with the audit log.",
    )
    audit.set_defaults(handler=lambda args: _usage(audit))
    sub = audit.add_subparsers(dest="audit_command", metavar="COMMAND")
    check = sub.add_parser(
        "verify",
        help="verify the hash chain of an audit log and its rotated files",
        description="Verify that no audit record was edited, deleted, reordered or cut off.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("files", nargs="+", type=Path, metavar="FILE", help="audit.jsonl[.N]")
    check.add_argument(
        "--partial",
        action="store_true",
        help="accept a chain whose older files were archived (its first link is unchecked)",
    )
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(handler=cmd_verify)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_usage(sys.stderr)
    print("vpcep-approver audit: a command is required (verify)", file=sys.stderr)
    return EXIT_USAGE


def cmd_verify(args: argparse.Namespace) -> int:
    """Run ``audit verify``; print one summary line (or the first problem) and notes."""
    try:
        report = verify(args.files, allow_partial_start=args.partial)
    except (OSError, ValueError) as exc:
        name = getattr(exc, "filename", None)
        reason = getattr(exc, "strerror", None) or str(exc)
        where = f"{name}: " if name else ""
        print(f"vpcep-approver audit verify: {where}{reason}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        data = asdict(report)
        data["exit_code"] = report.exit_code
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        print(render(report, str(args.files[0])))
    return report.exit_code


def render(report: VerifyReport, name: str) -> str:
    """Human output: a summary line, then notes."""
    nfiles = len(report.files)
    counted = (
        f"{report.records:,} record{'s' if report.records != 1 else ''} "
        f"in {nfiles} file{'s' if nfiles != 1 else ''}"
    )
    if report.ok:
        lines = [f"{name}: {counted}, chain intact"]
    elif report.tampered:
        lines = [f"{name}: CHAIN BROKEN after {counted}", f"  {report.problem}"]
    else:
        lines = [f"{name}: {counted}, chain intact up to a torn last line", f"  {report.problem}"]
    lines.extend(f"  note: {note}" for note in report.notes)
    return "\n".join(lines)
