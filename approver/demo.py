"""``vpcep-approver demo``: the emulator and the daemon, end to end, on one machine.

Starts the emulator on loopback with the packaged demo scenario (four services, pending
connections from partner, blocked and unknown accounts, a new one arriving every few
seconds) and runs the daemon against it with ``policies/example.yaml``, printing each sweep's
decisions as a table.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from approver.audit import configure_logging
from approver.cli import Failure, Runtime, _run, build_runtime
from approver.cloud.credentials import StaticCredentials
from approver.cloud.signer import Credentials
from approver.config import Settings, Target
from approver.emulator import Emulator, load_scenario
from approver.report import summary, table
from approver.sweep import SweepResult

SCENARIO = Path(__file__).parent / "emulator" / "scenarios" / "demo.yaml"
EXAMPLE_POLICY = Path(__file__).resolve().parent.parent / "policies" / "example.yaml"


def run_demo(args: argparse.Namespace) -> int:
    policy = tuple(args.policy or [EXAMPLE_POLICY])
    for path in policy:
        if not path.exists():
            raise Failure(f"{path}: policy not found (run the demo from the project's checkout)")
    scenario = load_scenario(SCENARIO)
    first = scenario.credentials[0]
    configure_logging(json=False, level="warning", stream=sys.stderr)
    with Emulator(scenario) as emulator:
        settings = Settings(
            policy=policy,
            targets=(
                Target(
                    name="demo",
                    region="cn-north-4",
                    project_id=first.project_id,
                    endpoint=emulator.url,
                ),
            ),
            interval_seconds=args.interval,
            jitter_seconds=0,
            state_dir=args.state_dir,
        )
        runtime: Runtime = build_runtime(
            settings,
            dry_run=False,
            credentials=StaticCredentials(Credentials(first.ak, first.sk)),
        )
        print(f"emulator: {emulator.url}  (project {first.project_id})")
        print(
            f"policy:   {', '.join(str(p) for p in policy)}  digest {runtime.policies.policy.digest[:12]}"
        )
        print(f"audit:    {settings.audit_path}")
        sweeps = args.sweeps or 0
        print(
            f"sweeping every {args.interval:g}s"
            + (f", {sweeps} sweeps" if sweeps else "; Ctrl-C to stop")
            + "\n",
            flush=True,
        )
        counter = [0]

        def show(result: SweepResult) -> None:
            counter[0] += 1
            print(f"── sweep {counter[0]} ─────────────────────────────────────────────")
            print(table(result.rows))
            print(summary(result))
            for error in result.errors:
                print(f"  ! {error}")
            print(flush=True)

        code = asyncio.run(_run(runtime, once=False, sweeps=sweeps, on_sweep=show))
        print(f"done: {emulator.count('AcceptOrRejectEndpoint')} accept/reject calls sent")
        return code
