"""``vpcep-approver emulator`` (also ``python -m approver.emulator``): serve a scenario locally."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
from importlib import resources
from pathlib import Path
from types import FrameType
from typing import Final

from approver.emulator.scenario import ScenarioError, load_scenario
from approver.emulator.server import Emulator, RequestLog

DEFAULT_PORT: Final = 18080  # plain HTTP, so not 443/8443; high enough to need no privilege
EX_CONFIG: Final = 78


def demo_scenario_path() -> Path:
    """The packaged demo scenario (four services, seeded connections, arrivals)."""
    return Path(str(resources.files("approver.emulator") / "scenarios" / "demo.yaml"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario",
        type=Path,
        default=None,
        metavar="FILE",
        help="scenario YAML (default: the packaged demo scenario)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any)"
    )
    parser.add_argument(
        "--print-url-file",
        type=Path,
        metavar="PATH",
        help="write the base URL to PATH once listening (for scripts)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="one line per request on stderr"
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``emulator`` subcommand; its handler is ``args.handler(args) -> int``."""
    parser = subparsers.add_parser(
        "emulator",
        help="serve a local VPCEP API (the real wire format) from a scenario file",
        description="A local stand-in for Huawei Cloud VPCEP on loopback: real paths, JSON, "
        "pagination, status transitions, error codes and AK/SK signature checks. "
        "Serves until SIGINT or SIGTERM.",
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, *, stop: threading.Event | None = None) -> int:
    """Serve until SIGINT/SIGTERM (or ``stop`` is set); 0 on a clean stop."""
    path = args.scenario or demo_scenario_path()
    try:
        scenario = load_scenario(path)
    except ScenarioError as exc:
        print(f"vpcep-approver emulator: {exc}", file=sys.stderr)
        return EX_CONFIG
    on_request = _print_request if args.verbose else None
    emulator = Emulator(scenario, host=args.host, port=args.port, on_request=on_request)
    try:
        emulator.start()
    except OSError as exc:
        print(
            f"vpcep-approver emulator: cannot listen on {args.host}:{args.port}: {exc}",
            file=sys.stderr,
        )
        return 1
    stop = stop or threading.Event()
    restore = _on_signals(stop)
    try:
        keys = "; ".join(f"ak {c.ak} project_id {c.project_id}" for c in scenario.credentials)
        if args.print_url_file:
            _write_atomically(args.print_url_file, emulator.url + "\n")
        print(
            f"VPCEP emulator listening on {emulator.url} ({Path(path).name}; {keys})",
            flush=True,
        )
        while not stop.wait(0.2):
            pass
    finally:
        restore()
        emulator.stop()
    return 0


def _on_signals(stop: threading.Event) -> _Restore:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        return _Restore({})
    return _Restore({sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)})


class _Restore:
    def __init__(self, previous: dict[signal.Signals, object]) -> None:
        self._previous = previous

    def __call__(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent or Path("."), prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _print_request(entry: RequestLog) -> None:
    query = f"?{entry.query}" if entry.query else ""
    code = f" {entry.error_code}" if entry.error_code else ""
    print(
        f"{entry.at:%H:%M:%S} {entry.method} {entry.path}{query} -> {entry.status}{code} "
        f"[{entry.operation}]",
        file=sys.stderr,
        flush=True,
    )
