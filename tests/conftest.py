"""Shared fixtures: the emulator on loopback with the demo scenario, a fake clock, a client."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from approver.emulator import Emulator, load_scenario

ROOT = Path(__file__).resolve().parents[1]
DEMO_SCENARIO = ROOT / "approver" / "emulator" / "scenarios" / "demo.yaml"
EXAMPLE_POLICY = ROOT / "policies" / "example.yaml"

# The demo scenario's ids (see approver/emulator/scenarios/demo.yaml).
PROJECT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
ORDERS = "4189d3c2-8882-4871-a3c2-d380272eed88"
BILLING = "7f3e1a2b-0c4d-4e5f-8a9b-1c2d3e4f5a6b"
SANDBOX = "2b6c9d10-3e4f-4a5b-9c8d-7e6f5a4b3c2d"
LEGACY = "9a8b7c6d-5e4f-4321-8fed-cba987654321"
ACME = "0c1f2e3d4c5b6a798877665544332211"
GLOBEX = "7ab2c3d4e5f60718293a4b5c6d7e8f01"
BLOCKED = "deadbeefdeadbeefdeadbeefdeadbeef"
UNKNOWN = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e"
DEVTEAM = "1d2d3d4d5d6d7d8d9dadbdcdddedfd0d"


class FakeClock:
    """A settable UTC clock shared by the emulator and the daemon under test."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(name="clock")
def _clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(name="emulator")
def _emulator(clock: FakeClock) -> Iterator[Emulator]:
    with Emulator(load_scenario(DEMO_SCENARIO), clock=clock) as emu:
        yield emu


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's own cloud credentials or approver settings."""
    for name in list(os.environ):
        if name.startswith(
            ("VPCEP_APPROVER_", "HUAWEICLOUD_", "CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET")
        ):
            monkeypatch.delenv(name, raising=False)
