"""The durable audit log: chain fields, durability failures, rotation, recovery, the lock."""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from approver.audit import AuditLog, AuditWriteError, verify

ZERO = "0" * 64


class StepClock:
    """A fake UTC clock that moves one millisecond per reading."""

    def __init__(self) -> None:
        self.now = datetime(2026, 7, 1, 12, 0, 0, 123456, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


def decision(n: int, action: str = "accept", *, dry_run: bool = False) -> dict[str, Any]:
    return {"event": "decision", "decision_id": f"d-{n}", "action": action, "dry_run": dry_run}


def outcome(n: int, result: str = "ok") -> dict[str, Any]:
    return {"event": "outcome", "decision_id": f"d-{n}", "outcome": result}


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def open_log(path: Path, **kw: Any) -> AuditLog:
    kw.setdefault("clock", StepClock())
    return AuditLog(path, **kw)


class TestAppend:
    def test_first_record_starts_a_chain(self, tmp_path: Path) -> None:
        """The first record of a new log gets seq 1, 64-zero prev and a UTC Z timestamp."""
        with open_log(tmp_path / "audit.jsonl") as log:
            written = log.append({"event": "daemon", "phase": "start"})
        assert written["seq"] == 1
        assert written["prev"] == ZERO
        assert written["ts"] == "2026-07-01T12:00:00.124456Z"

    def test_each_line_hashes_its_predecessor(self, tmp_path: Path) -> None:
        """Every line's prev is the sha256 of the previous line's exact bytes."""
        path = tmp_path / "audit.jsonl"
        with open_log(path) as log:
            for n in range(5):
                log.append(decision(n))
        raw = lines(path)
        for before, after in itertools.pairwise(raw):
            assert hashlib.sha256(before).hexdigest() == json.loads(after)["prev"]
        assert [json.loads(line)["seq"] for line in raw] == [1, 2, 3, 4, 5]

    def test_canonical_encoding(self, tmp_path: Path) -> None:
        """Lines are sorted-key, compact, UTF-8 JSON (non-ASCII kept as is)."""
        path = tmp_path / "audit.jsonl"
        with open_log(path) as log:
            written = log.append({"event": "daemon", "z": 1, "a": "ünïcødé ✓"})
        expected = json.dumps(written, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert expected.encode() + b"\n" == path.read_bytes()

    def test_returns_the_record_as_written(self, tmp_path: Path) -> None:
        """append returns exactly what the line holds, chain fields included."""
        path = tmp_path / "audit.jsonl"
        with open_log(path) as log:
            written = log.append({"event": "sweep", "sweep_id": "s", "phase": "start"})
        assert json.loads(path.read_bytes()) == written

    @pytest.mark.parametrize("field", ["ts", "seq", "prev"])
    def test_chain_fields_are_reserved(self, tmp_path: Path, field: str) -> None:
        """A caller cannot set ts/seq/prev; nothing is written."""
        path = tmp_path / "audit.jsonl"
        with open_log(path) as log, pytest.raises(AuditWriteError, match="chain field"):
            log.append({"event": "daemon", field: 1})
        assert path.read_bytes() == b""

    @pytest.mark.parametrize(
        "record",
        [{"event": "daemon", "when": datetime(2026, 1, 1)}, {"event": "daemon", "x": float("nan")}],
        ids=["datetime", "nan"],
    )
    def test_non_json_values_are_refused(self, tmp_path: Path, record: dict[str, Any]) -> None:
        """A value that is not plain JSON raises AuditWriteError and writes nothing."""
        path = tmp_path / "audit.jsonl"
        with open_log(path) as log, pytest.raises(AuditWriteError, match="not plain JSON"):
            log.append(record)
        assert path.read_bytes() == b""

    def test_event_name_required(self, tmp_path: Path) -> None:
        """A record without an event name is refused."""
        with open_log(tmp_path / "a.jsonl") as log, pytest.raises(AuditWriteError, match="event"):
            log.append({"decision_id": "x"})

    def test_naive_clock_refused(self, tmp_path: Path) -> None:
        """A clock returning naive datetimes cannot produce UTC timestamps: refused."""
        with (
            AuditLog(tmp_path / "a.jsonl", clock=lambda: datetime(2026, 1, 1)) as log,
            pytest.raises(AuditWriteError, match="naive"),
        ):
            log.append({"event": "daemon"})

    def test_other_timezones_are_converted_to_utc(self, tmp_path: Path) -> None:
        """An aware non-UTC clock reading is written in UTC with Z."""
        cst = timezone(timedelta(hours=8))
        with AuditLog(
            tmp_path / "a.jsonl", clock=lambda: datetime(2026, 1, 1, 8, tzinfo=cst)
        ) as log:
            assert log.append({"event": "daemon"})["ts"] == "2026-01-01T00:00:00.000000Z"

    def test_closed_log_refuses(self, tmp_path: Path) -> None:
        """After close, append raises AuditWriteError."""
        log = open_log(tmp_path / "a.jsonl")
        log.close()
        log.close()
        with pytest.raises(AuditWriteError, match="closed"):
            log.append({"event": "daemon"})


class TestDurability:
    def test_fsync_before_append_returns(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The directory is fsynced on create and the file after each write, before returning."""
        calls: list[str] = []
        real_fsync, real_write = os.fsync, os.write

        def fsync(fd: int) -> None:
            calls.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
            real_fsync(fd)

        def write(fd: int, data: Any) -> int:
            calls.append("write")
            return real_write(fd, data)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "write", write)
        log = open_log(tmp_path / "audit.jsonl", max_bytes=150)
        assert "fsync-dir" in calls
        calls.clear()
        log.append(decision(1))
        assert calls == ["write", "fsync-file"]
        calls.clear()
        log.append(decision(2))  # rotates first
        assert calls == ["fsync-dir", "write", "fsync-file"]
        log.close()

    def test_fsync_off_skips_file_fsync(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """fsync=False (tests, benchmarks) writes without fsyncing the file."""
        with open_log(tmp_path / "audit.jsonl", fsync=False) as log:
            calls: list[int] = []
            monkeypatch.setattr(os, "fsync", calls.append)
            log.append(decision(1))
            assert calls == []


class TestReopen:
    def test_reopen_resumes_the_chain(self, tmp_path: Path) -> None:
        """A second writer (after the first closed) continues seq and prev; verify passes."""
        path = tmp_path / "audit.jsonl"
        with open_log(path) as log:
            log.append(decision(1))
            head = log.head
        with open_log(path) as log:
            assert head == log.head
            written = log.append(decision(2))
        assert written["seq"] == 2
        assert hashlib.sha256(lines(path)[0]).hexdigest() == written["prev"]
        assert verify([path]).ok

    def test_resume_from_rotated_file_when_live_file_missing(self, tmp_path: Path) -> None:
        """A crash between rotation's rename and the first write: the chain continues from .1."""
        path = tmp_path / "audit.jsonl"
        with open_log(path) as log:
            for n in range(3):
                log.append(decision(n))
        path.rename(tmp_path / "audit.jsonl.1")
        with open_log(path) as log:
            assert log.append(decision(4))["seq"] == 4
        report = verify([path])
        assert report.ok, report.problem
        assert report.records == 4

    def test_unparseable_last_line_refuses_to_open(self, tmp_path: Path) -> None:
        """A complete but garbage last line cannot anchor a chain: open fails closed."""
        path = tmp_path / "audit.jsonl"
        path.write_bytes(b"this is not json\n")
        with pytest.raises(AuditWriteError, match="not a chained audit record"):
            open_log(path)

    def test_truncated_log_refuses_to_open(self, tmp_path: Path) -> None:
        """Lines removed from the end (head anchor ahead) stop the writer: evidence is kept."""
        path = tmp_path / "audit.jsonl"
        with open_log(path) as log:
            for n in range(4):
                log.append(decision(n))
        path.write_bytes(b"".join(line + b"\n" for line in lines(path)[:2]))
        with pytest.raises(AuditWriteError, match="truncated"):
            open_log(path)

    def test_altered_last_line_refuses_to_open(self, tmp_path: Path) -> None:
        """An edited newest line no longer matches the head anchor: open fails closed."""
        path = tmp_path / "audit.jsonl"
        with open_log(path) as log:
            log.append(decision(1))
            log.append(decision(2, "reject"))
        path.write_bytes(path.read_bytes().replace(b'"reject"', b'"accept"'))
        with pytest.raises(AuditWriteError, match="altered"):
            open_log(path)


class TestTornTail:
    @pytest.mark.parametrize(
        "tail",
        [b'{"action":"accept","decision_id":"d-', b"\0\0\0\0\0\0\0\0", b"x"],
        ids=["partial-json", "zero-filled", "one-byte"],
    )
    def test_torn_tail_repaired_on_open(self, tmp_path: Path, tail: bytes) -> None:
        """Bytes after the last newline are cut off and a log_repaired record notes them."""
        path = tmp_path / "audit.jsonl"
        with open_log(path) as log:
            log.append(decision(1))
            log.append(decision(2))
        with path.open("ab") as handle:
            handle.write(tail)
        assert verify([path]).torn_tail
        with open_log(path) as log:
            log.append(decision(3))
        records = [json.loads(line) for line in lines(path)]
        repaired = records[2]
        assert repaired["event"] == "log_repaired"
        assert len(tail) == repaired["torn_bytes"]
        assert hashlib.sha256(tail).hexdigest() == repaired["torn_sha256"]
        assert [r["seq"] for r in records] == [1, 2, 3, 4]
        report = verify([path])
        assert report.ok, report.problem
        assert any("repaired on open" in note for note in report.notes)

    def test_complete_json_without_newline_is_torn(self, tmp_path: Path) -> None:
        """A record is durable only with its newline: a missing newline counts as torn."""
        path = tmp_path / "audit.jsonl"
        anchor = tmp_path / "audit.jsonl.head"
        with open_log(path) as log:
            log.append(decision(1))
            log.append(decision(2))
            acknowledged = anchor.read_bytes()
            log.append(decision(3))
        # The crash: record 3 written but for its newline, never fsynced, never acknowledged.
        path.write_bytes(path.read_bytes()[:-1])
        anchor.write_bytes(acknowledged)
        assert verify([path]).torn_tail
        with open_log(path) as log:
            assert json.loads(lines(path)[-1])["event"] == "log_repaired"
            assert log.head[0] == 3
        assert verify([path]).ok

    def test_missing_newline_of_an_acknowledged_record_is_truncation(self, tmp_path: Path) -> None:
        """If the head anchor says the last record was acknowledged, a cut is not a crash."""
        path = tmp_path / "audit.jsonl"
        with open_log(path) as log:
            log.append(decision(1))
            log.append(decision(2))
        path.write_bytes(path.read_bytes()[:-1])
        with pytest.raises(AuditWriteError, match="truncated"):
            open_log(path)


class TestRotation:
    def test_chain_continues_across_rotation(self, tmp_path: Path) -> None:
        """Rotated files keep one chain: seq monotonic, first line links to the rotated one."""
        path = tmp_path / "audit.jsonl"
        with open_log(path, max_bytes=400) as log:
            for n in range(12):
                log.append(decision(n))
        rotated = len(list(tmp_path.glob("audit.jsonl.[0-9]*")))
        assert rotated >= 3
        files = [tmp_path / f"audit.jsonl.{n}" for n in range(rotated, 0, -1)] + [path]
        assert all(f.exists() for f in files)
        chained = [line for f in files for line in lines(f)]
        assert list(range(1, 13)) == [json.loads(line)["seq"] for line in chained]
        for before, after in itertools.pairwise(chained):
            assert hashlib.sha256(before).hexdigest() == json.loads(after)["prev"]
        report = verify([path])
        assert report.ok, report.problem
        assert (12, rotated + 1) == (report.records, len(report.files))

    def test_files_stay_under_max_bytes(self, tmp_path: Path) -> None:
        """A file is rotated before a line would take it past max_bytes."""
        path = tmp_path / "audit.jsonl"
        with open_log(path, max_bytes=1000) as log:
            for n in range(40):
                log.append(decision(n))
        for f in tmp_path.glob("audit.jsonl*"):
            if f.suffix not in (".lock", ".head"):
                assert f.stat().st_size <= 1000

    def test_rotation_after_reopen(self, tmp_path: Path) -> None:
        """Rotation shifts existing .N files up, also after a restart."""
        path = tmp_path / "audit.jsonl"
        for _ in range(3):
            with open_log(path, max_bytes=300) as log:
                for n in range(3):
                    log.append(decision(n))
        report = verify([path])
        assert report.ok, report.problem
        assert report.records == 9

    def test_no_rotation_without_limit(self, tmp_path: Path) -> None:
        """max_bytes=None never rotates."""
        path = tmp_path / "audit.jsonl"
        with open_log(path, max_bytes=None) as log:
            for n in range(50):
                log.append(decision(n))
        assert not (tmp_path / "audit.jsonl.1").exists()


class TestUnresolvedIntents:
    def test_decisions_without_outcome(self, tmp_path: Path) -> None:
        """Accept/reject intents with no outcome are returned, oldest first."""
        with open_log(tmp_path / "audit.jsonl") as log:
            log.append(decision(1))
            log.append(decision(2, "reject"))
            log.append(outcome(1))
            log.append(decision(3))
            found = log.unresolved_intents()
        assert [r["decision_id"] for r in found] == ["d-2", "d-3"]
        assert all("seq" in r for r in found)

    def test_dry_run_and_hold_are_not_intents(self, tmp_path: Path) -> None:
        """Dry-run decisions and holds never cause a POST, so they are never unresolved."""
        with open_log(tmp_path / "audit.jsonl") as log:
            log.append(decision(1, dry_run=True))
            log.append(decision(2, "hold"))
            log.append(decision(3, "reject", dry_run=True))
            assert log.unresolved_intents() == []

    def test_any_outcome_resolves(self, tmp_path: Path) -> None:
        """An ambiguous or error outcome still resolves the intent (the sweep re-reads state)."""
        with open_log(tmp_path / "audit.jsonl") as log:
            for n, result in enumerate(["ambiguous", "error", "already_in_state"]):
                log.append(decision(n))
                log.append(outcome(n, result))
            assert log.unresolved_intents() == []

    def test_across_rotation_and_restart(self, tmp_path: Path) -> None:
        """An intent in a rotated file, resolved or not, is seen after a restart."""
        path = tmp_path / "audit.jsonl"
        with open_log(path, max_bytes=300) as log:
            log.append(decision(1))
            log.append(decision(2))
            for n in range(5):
                log.append({"event": "sweep", "sweep_id": f"s{n}", "phase": "end"})
            log.append(outcome(2))
        assert (tmp_path / "audit.jsonl.2").exists()
        with open_log(path, max_bytes=300) as log:
            assert [r["decision_id"] for r in log.unresolved_intents()] == ["d-1"]


class TestUnwritable:
    def test_parent_is_a_regular_file(self, tmp_path: Path) -> None:
        """A log path under a regular file fails with AuditWriteError naming the path."""
        (tmp_path / "state").write_text("not a dir")
        with pytest.raises(AuditWriteError, match=r"state is not a directory"):
            open_log(tmp_path / "state" / "audit.jsonl")

    def test_grandparent_is_a_regular_file(self, tmp_path: Path) -> None:
        """A path through a regular file deeper up fails cleanly too."""
        (tmp_path / "state").write_text("not a dir")
        with pytest.raises(AuditWriteError, match="ENOTDIR"):
            open_log(tmp_path / "state" / "sub" / "audit.jsonl")

    def test_directory_at_log_path(self, tmp_path: Path) -> None:
        """A directory where the log should be fails with EISDIR in a one-line message."""
        (tmp_path / "audit.jsonl").mkdir()
        with pytest.raises(AuditWriteError) as info:
            open_log(tmp_path / "audit.jsonl")
        assert "EISDIR" in str(info.value)
        assert str(tmp_path / "audit.jsonl") in str(info.value)
        assert "\n" not in str(info.value)

    def test_full_device(self, tmp_path: Path) -> None:
        """A write failing with ENOSPC (/dev/full) raises AuditWriteError before returning."""
        path = tmp_path / "audit.jsonl"
        path.symlink_to("/dev/full")
        with open_log(path) as log, pytest.raises(AuditWriteError, match="ENOSPC"):
            log.append(decision(1))

    def test_partial_write_rolled_back(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A write that fails halfway leaves no partial line; the next append still chains."""
        path = tmp_path / "audit.jsonl"
        real_write = os.write
        with open_log(path) as log:
            log.append(decision(1))

            def half_then_enospc(fd: int, data: Any) -> int:
                if len(data) > 10:
                    return real_write(fd, bytes(data[: len(data) // 2]))
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(os, "write", half_then_enospc)
            with pytest.raises(AuditWriteError, match="ENOSPC"):
                log.append(decision(2))
            monkeypatch.setattr(os, "write", real_write)
            assert len(lines(path)) == 1
            assert log.append(decision(3))["seq"] == 2
        assert verify([path]).ok

    def test_fsync_failure_breaks_the_log(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """After a failed fsync every append refuses until the log is reopened."""
        path = tmp_path / "audit.jsonl"
        real_fsync = os.fsync
        log = open_log(path)

        def eio(fd: int) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(os, "fsync", eio)
        with pytest.raises(AuditWriteError, match="EIO"):
            log.append(decision(1))
        monkeypatch.setattr(os, "fsync", real_fsync)
        with pytest.raises(AuditWriteError, match="restart to recover"):
            log.append(decision(2))
        log.close()
        with open_log(path) as log:
            log.append(decision(3))
        assert verify([path]).ok


class TestLock:
    def test_second_writer_refused(self, tmp_path: Path) -> None:
        """While one AuditLog is open, a second one on the same path is refused."""
        path = tmp_path / "audit.jsonl"
        with open_log(path), pytest.raises(AuditWriteError, match="another vpcep-approver holds"):
            open_log(path)
        with open_log(path) as log:
            log.append(decision(1))

    def test_second_process_refused(self, tmp_path: Path) -> None:
        """A writer in another process is refused by the flock too."""
        path = tmp_path / "audit.jsonl"
        code = textwrap.dedent(
            f"""
            from pathlib import Path
            from approver.audit import AuditLog, AuditWriteError
            try:
                AuditLog(Path({str(path)!r}))
            except AuditWriteError as exc:
                print(exc)
                raise SystemExit(7)
            """
        )
        with open_log(path):
            result = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=False
            )
        assert result.returncode == 7, result.stderr
        assert "another vpcep-approver holds the audit log" in result.stdout


class TestCrash:
    def test_kill_9_during_appends_leaves_a_verifiable_log(self, tmp_path: Path) -> None:
        """SIGKILL mid-stream: the log verifies (at most a torn tail) and reopening repairs it."""
        path = tmp_path / "audit.jsonl"
        code = textwrap.dedent(
            f"""
            from pathlib import Path
            from approver.audit import AuditLog
            with AuditLog(Path({str(path)!r}), max_bytes=20000) as log:
                n = 0
                while True:
                    n += 1
                    log.append({{"event": "decision", "decision_id": f"d-{{n}}",
                                "action": "accept", "dry_run": False, "pad": "x" * 300}})
            """
        )
        child = subprocess.Popen([sys.executable, "-c", code])
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if (tmp_path / "audit.jsonl.2").exists():
                    break
                time.sleep(0.01)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        report = verify([path])
        assert report.ok or (report.torn_tail and not report.tampered), report.problem
        with open_log(path) as log:
            pending = log.unresolved_intents()
            assert pending
            log.append(outcome(0))
        report = verify([path])
        assert report.ok, report.problem
