"""The long-running process: APScheduler drives sweeps; signals stop and reload it.

* Sweeps run on an interval with jitter and never overlap (``max_instances=1``,
  ``coalesce=True``): a sweep that overruns makes the scheduler skip, not stack, the next one.
* SIGTERM/SIGINT: no new POST starts; the sweep in flight finishes its current call, records
  it, and the process exits 0.
* SIGHUP: reload the policy. An invalid policy never replaces the running one.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from approver.audit import AuditLog, log_record
from approver.notify import Notifier
from approver.policy import Policy, PolicyError, load_policy
from approver.sweep import Sweeper, SweepResult

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class AuditRecorder:
    """Durable log first (fsync'd), then the log stream. A failed durable write raises."""

    def __init__(self, log: AuditLog | None, logger: Any, clock: Clock = utcnow) -> None:
        self._log = log
        self._logger = logger
        self._clock = clock

    def write(self, record: dict[str, Any]) -> dict[str, Any]:
        if self._log is not None:
            full = self._log.append(record)
        else:
            ts = self._clock().isoformat(timespec="microseconds").replace("+00:00", "Z")
            full = {"ts": ts, **record}
        log_record(self._logger, full)
        return full


class PolicyHolder:
    """The active policy; ``reload`` swaps it only for a valid one (last known good stays)."""

    def __init__(self, paths: Sequence[Path], policy: Policy) -> None:
        self.paths = tuple(paths)
        self.policy = policy
        self.last_error: str | None = None

    def reload(self) -> bool:
        try:
            candidate = load_policy(self.paths)
        except PolicyError as exc:
            self.last_error = str(exc).splitlines()[0]
            return False
        self.policy = candidate
        self.last_error = None
        return True


class Daemon:
    def __init__(
        self,
        sweepers: Sequence[Sweeper],
        policies: PolicyHolder,
        recorder: AuditRecorder,
        *,
        interval: float,
        jitter: float,
        logger: Any = None,
        on_sweep: Callable[[SweepResult], None] | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.sweepers = list(sweepers)
        self.notify = notifier or Notifier({})
        self.ready = False
        self.policies = policies
        self.recorder = recorder
        self.interval = interval
        self.jitter = jitter
        self.log = logger or structlog.get_logger("vpcep_approver")
        self.on_sweep = on_sweep
        self.sweeps_done = 0
        self.failed_sweeps = 0
        self._stop = asyncio.Event()
        self._max_sweeps: int | None = None
        self._in_flight: asyncio.Task[Any] | None = None
        for sweeper in self.sweepers:
            sweeper.stop_requested = lambda: self.stopping

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        if not self._stop.is_set():
            self.log.info("stopping", reason="signal")
            self.notify.stopping()
        self._stop.set()

    def reload(self) -> None:
        old = self.policies.policy.digest
        self.notify.reloading(time.monotonic_ns() // 1000)
        if self.policies.reload():
            self.log.info(
                "policy_reloaded", old_digest=old, policy_digest=self.policies.policy.digest
            )
            self.notify.ready(f"policy reloaded ({self.policies.policy.digest[:12]})")
        else:
            self.log.error(
                "policy_reload_failed",
                error=self.policies.last_error,
                policy_digest=old,
                note="keeping the last valid policy",
            )
            self.notify.ready(
                f"reload failed, still on policy {old[:12]}: {self.policies.last_error}"
            )

    async def sweep_once(self) -> list[SweepResult]:
        """One sweep of every target, concurrently; never raises for a target's failure."""
        policy = self.policies.policy
        outcomes = await asyncio.gather(
            *(s.run(policy) for s in self.sweepers), return_exceptions=True
        )
        results: list[SweepResult] = []
        for sweeper, outcome in zip(self.sweepers, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                # A bug, not a cloud error: report it, keep the daemon alive, act on nothing more.
                self.log.error("sweep_crashed", target=sweeper.target, error=repr(outcome))
                failed = SweepResult("-", sweeper.target, policy.digest)
                failed.errors.append(f"internal error: {type(outcome).__name__}")
                results.append(failed)
            else:
                results.append(outcome)
        for result in results:
            self.log.info(
                "sweep_done",
                target=result.target,
                sweep_id=result.sweep_id,
                clean=result.clean,
                pending=result.pending,
                services=result.services_swept,
                api_calls=result.api_calls,
                errors=result.errors[:10],
                policy_digest=result.policy_digest,
            )
            if self.on_sweep:
                self.on_sweep(result)
        return results

    async def _tick(self) -> None:
        if self._stop.is_set():
            return
        self._in_flight = asyncio.current_task()
        try:
            results = await self.sweep_once()
        finally:
            self._in_flight = None
        self.sweeps_done += 1
        self.failed_sweeps = 0 if all(r.clean for r in results) else self.failed_sweeps + 1
        # Progress of the sweep loop is what feeds the watchdog: a hung sweep stops the pings.
        self.notify.watchdog()
        status = "; ".join(
            f"{r.target}: {r.pending} pending, {'clean' if r.clean else 'errors'}" for r in results
        )
        if not self.ready and any(r.services_seen or r.clean for r in results):
            # READY only once an authenticated call went through.
            self.ready = True
            self.notify.ready(f"ready; {status}")
        else:
            self.notify.status(status)
        if self._max_sweeps and self.sweeps_done >= self._max_sweeps:
            self._stop.set()

    async def run(self, *, max_sweeps: int | None = None) -> int:
        """Sweep on the schedule until stopped (or after ``max_sweeps``). Returns the exit code."""
        self._max_sweeps = max_sweeps
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        scheduler = AsyncIOScheduler(event_loop=loop, timezone=UTC)
        scheduler.add_job(
            self._tick,
            IntervalTrigger(seconds=self.interval, jitter=self.jitter or None),
            id="sweep",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            next_run_time=utcnow(),
        )
        scheduler.start()
        self.log.info(
            "started",
            targets=[s.target for s in self.sweepers],
            interval_seconds=self.interval,
            policy_digest=self.policies.policy.digest,
            dry_run=any(s.dry_run for s in self.sweepers),
        )
        try:
            await self._stop.wait()
        finally:
            scheduler.shutdown(wait=False)
            if self._in_flight is not None:
                # The sweep checks stop_requested before each POST; let the one in flight land.
                await asyncio.wait({self._in_flight}, timeout=60)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        self.log.info("stopped", sweeps=self.sweeps_done)
        return 0
