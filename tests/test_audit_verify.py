"""`audit verify`: every kind of damage is found, named, and mapped to its exit code."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from approver import cli_audit
from approver.audit import AuditLog, verify

OK, BROKEN, USAGE, TORN = 0, 1, 2, 3


class StepClock:
    """A fake UTC clock that moves one millisecond per reading."""

    def __init__(self) -> None:
        self.now = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


def write_log(path: Path, count: int, *, max_bytes: int | None = None) -> None:
    with AuditLog(path, fsync=False, max_bytes=max_bytes, clock=StepClock()) as log:
        for n in range(1, count + 1):
            log.append(
                {
                    "event": "decision",
                    "decision_id": f"d-{n}",
                    "action": "accept" if n % 2 else "reject",
                    "dry_run": False,
                    "reason": f"rule {n} ✓",
                }
            )


def read_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="vpcep-approver")
    cli_audit.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["audit", "verify", *argv])
    code = args.handler(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(name="log")
def _log(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    write_log(path, 10)
    return path


class TestIntact:
    def test_chain_verifies(self, log: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """An untouched log verifies: exit 0 and the one-line summary."""
        code, out, _ = run_cli(capsys, str(log))
        assert code == OK
        assert out.startswith(f"{log}: 10 records in 1 file, chain intact")

    def test_thousands_separator_and_files(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Counts are printed with thousands separators and the number of files."""
        path = tmp_path / "audit.jsonl"
        write_log(path, 1200, max_bytes=100_000)
        code, out, _ = run_cli(capsys, str(path))
        assert code == OK
        assert "1,200 records in 3 files, chain intact" in out

    def test_empty_log(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """An empty log file is a valid (empty) chain."""
        path = tmp_path / "audit.jsonl"
        path.write_bytes(b"")
        code, out, _ = run_cli(capsys, str(path))
        assert (code, "0 records in 1 file, chain intact" in out) == (OK, True)

    def test_no_head_anchor_is_noted(self, log: Path) -> None:
        """Without the head anchor the chain still verifies, with a note on what is unchecked."""
        (log.parent / "audit.jsonl.head").unlink()
        report = verify([log])
        assert report.ok
        assert any("no head anchor" in note for note in report.notes)

    def test_json_output(self, log: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--json prints the report as JSON with the exit code."""
        code, out, _ = run_cli(capsys, "--json", str(log))
        data = json.loads(out)
        assert (code, data["ok"], data["records"], data["exit_code"]) == (OK, True, 10, 0)


class TestTampering:
    def test_edited_value(self, log: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Editing a value in line 4 is reported at line 4 as altered, exit 1."""
        lines = read_lines(log)
        lines[3] = lines[3].replace(b'"reject"', b'"accept"')
        write_lines(log, lines)
        code, out, _ = run_cli(capsys, str(log))
        assert code == BROKEN
        assert f"{log}:4: record seq 4 was altered" in out
        assert "CHAIN BROKEN" in out

    def test_edited_prev_field(self, log: Path) -> None:
        """A rewritten prev field is blamed on its own line."""
        lines = read_lines(log)
        record = json.loads(lines[5])
        record["prev"] = "f" * 64
        lines[5] = json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        write_lines(log, lines)
        report = verify([log])
        assert report.tampered
        assert f"{log}:6: record seq 6 was altered" in (report.problem or "")

    def test_reformatted_line(self, log: Path) -> None:
        """The same record re-serialised with spaces is an edit too."""
        lines = read_lines(log)
        lines[2] = json.dumps(json.loads(lines[2])).encode() + b"\n"
        write_lines(log, lines)
        report = verify([log])
        assert report.tampered
        assert f"{log}:3:" in (report.problem or "")

    def test_edited_last_line(self, log: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """The newest line has no successor: the head anchor catches its edit."""
        lines = read_lines(log)
        lines[-1] = lines[-1].replace(b'"reject"', b'"accept"')
        write_lines(log, lines)
        code, out, _ = run_cli(capsys, str(log))
        assert code == BROKEN
        assert "does not match the head anchor" in out

    def test_deleted_line(self, log: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A deleted middle line is a seq gap: reported as missing (deleted), exit 1."""
        lines = read_lines(log)
        del lines[4]
        write_lines(log, lines)
        code, out, _ = run_cli(capsys, str(log))
        assert code == BROKEN
        assert f"{log}:5: seq 5 missing before this line: record(s) deleted" in out

    def test_deleted_lines(self, log: Path) -> None:
        """Several deleted lines are reported as a range."""
        lines = read_lines(log)
        del lines[2:5]
        write_lines(log, lines)
        assert "seq 3..5 missing" in (verify([log]).problem or "")

    def test_deleted_last_line(self, log: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Removing the newest line is caught by the head anchor as removal from the end."""
        write_lines(log, read_lines(log)[:-1])
        code, out, _ = run_cli(capsys, str(log))
        assert code == BROKEN
        assert "log ends at seq 9 but its head anchor records seq 10" in out

    def test_reordered_lines(self, log: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Two swapped lines are reported as reordered, not as a deletion."""
        lines = read_lines(log)
        lines[3], lines[4] = lines[4], lines[3]
        write_lines(log, lines)
        code, out, _ = run_cli(capsys, str(log))
        assert code == BROKEN
        assert f"{log}:4: lines reordered: seq 5 comes before seq 4 ({log}:5)" in out

    def test_moved_line(self, log: Path) -> None:
        """A line moved further back is reported as reordered."""
        lines = read_lines(log)
        moved = lines.pop(1)
        lines.insert(6, moved)
        write_lines(log, lines)
        assert "lines reordered" in (verify([log]).problem or "")

    def test_duplicated_line(self, log: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A line copied right after itself is reported as duplicated."""
        lines = read_lines(log)
        lines.insert(3, lines[2])
        write_lines(log, lines)
        code, out, _ = run_cli(capsys, str(log))
        assert code == BROKEN
        assert f"{log}:4: duplicated line: identical to {log}:3 (seq 3)" in out

    def test_duplicated_line_elsewhere(self, log: Path) -> None:
        """A copy of an old line appended later is still a duplicate."""
        lines = read_lines(log)
        lines.insert(7, lines[1])
        write_lines(log, lines)
        assert f"duplicated line: identical to {log}:2" in (verify([log]).problem or "")

    def test_garbage_line(self, log: Path) -> None:
        """A line that is not JSON is reported as corrupted at its line."""
        lines = read_lines(log)
        lines[4] = b"hello\n"
        write_lines(log, lines)
        assert f"{log}:5: not a valid audit record" in (verify([log]).problem or "")

    def test_missing_start(self, log: Path) -> None:
        """A log whose first lines were removed does not start a chain."""
        write_lines(log, read_lines(log)[3:])
        report = verify([log])
        assert report.tampered
        assert "the log starts at seq 4" in (report.problem or "")


class TestTruncation:
    def test_truncated_mid_line_is_not_a_crash(
        self, log: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Cut mid-line two records before the head anchor: truncation (1), not torn (3)."""
        data = log.read_bytes()
        cut = sum(len(line) for line in read_lines(log)[:8]) + 20
        log.write_bytes(data[:cut])
        code, out, _ = run_cli(capsys, str(log))
        assert code == BROKEN
        assert "removed from the end (truncated)" in out

    def test_truncated_rotated_file(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A rotated file cut at a line boundary: the gap at the file boundary says truncated."""
        path = tmp_path / "audit.jsonl"
        write_log(path, 12, max_bytes=900)
        rotated = tmp_path / "audit.jsonl.1"
        write_lines(rotated, read_lines(rotated)[:-1])
        code, out, _ = run_cli(capsys, str(path))
        assert code == BROKEN
        assert f"missing at the end of {rotated}: file truncated" in out

    def test_rotated_file_cut_mid_line(self, tmp_path: Path) -> None:
        """A partial line at the end of a rotated file is truncation: a crash cannot do that."""
        path = tmp_path / "audit.jsonl"
        write_log(path, 12, max_bytes=900)
        rotated = tmp_path / "audit.jsonl.1"
        rotated.write_bytes(rotated.read_bytes()[:-7])
        report = verify([path])
        assert report.tampered
        assert "partial last line in rotated file" in (report.problem or "")

    def test_deleted_oldest_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Without its oldest file the chain does not start at seq 1; --partial accepts that."""
        path = tmp_path / "audit.jsonl"
        write_log(path, 12, max_bytes=900)
        oldest = sorted(tmp_path.glob("audit.jsonl.[0-9]*"))[-1]
        oldest.unlink()
        code, out, _ = run_cli(capsys, str(path))
        assert code == BROKEN
        assert "earlier records or files are missing" in out
        code, out, _ = run_cli(capsys, "--partial", str(path))
        assert code == OK
        assert "chain starts at seq" in out


class TestTornTail:
    def test_torn_last_line(self, log: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A partial last line the head anchor never acknowledged is a crash: exit 3."""
        with log.open("ab") as handle:
            handle.write(b'{"action":"accept","decision_id":"d-11","dry')
        code, out, _ = run_cli(capsys, str(log))
        assert code == TORN
        assert f"{log}:11: torn last line (crash during write), not tampering" in out
        report = verify([log])
        assert (report.ok, report.torn_tail, report.tampered) == (False, True, False)

    def test_torn_tail_and_tampering(self, log: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Tampering earlier in the log wins over a torn tail: exit 1."""
        lines = read_lines(log)
        lines[1] = lines[1].replace(b"rule 2", b"rule 9")
        write_lines(log, [*lines, b'{"partial'])
        code, _, _ = run_cli(capsys, str(log))
        assert code == BROKEN

    def test_repaired_torn_tail_verifies(
        self, log: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """After the writer repaired a torn tail, verify passes and notes the repair."""
        with log.open("ab") as handle:
            handle.write(b'{"torn')
        AuditLog(log, clock=StepClock()).close()
        code, out, _ = run_cli(capsys, str(log))
        assert code == OK
        assert "11 records in 1 file, chain intact" in out
        assert "torn last line of 6 bytes" in out


class TestFiles:
    def test_missing_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A missing file is a usage error (2) with one clear line, no traceback."""
        code, out, err = run_cli(capsys, str(tmp_path / "nope.jsonl"))
        assert code == USAGE
        assert "nope.jsonl: no such audit log" in err
        assert "Traceback" not in out + err

    def test_directory(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A directory is a usage error (2)."""
        code, _, err = run_cli(capsys, str(tmp_path))
        assert code == USAGE
        assert "not a regular file" in err

    def test_explicit_files_in_any_order(self, tmp_path: Path) -> None:
        """Listed files are put in chain order (highest .N first, live file last)."""
        path = tmp_path / "audit.jsonl"
        write_log(path, 12, max_bytes=900)
        rotated = sorted(tmp_path.glob("audit.jsonl.[0-9]*"))
        report = verify([path, *rotated])
        assert report.ok, report.problem
        assert str(path) == report.files[-1]

    def test_rotated_files_only(self, tmp_path: Path) -> None:
        """Verifying only rotated files checks their part of the chain."""
        path = tmp_path / "audit.jsonl"
        write_log(path, 12, max_bytes=900)
        rotated = sorted(tmp_path.glob("audit.jsonl.[0-9]*"))
        report = verify(rotated)
        assert report.ok, report.problem
        assert report.records < 12

    def test_audit_without_subcommand(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`audit` alone prints usage and exits 2."""
        parser = argparse.ArgumentParser(prog="vpcep-approver")
        cli_audit.register(parser.add_subparsers(dest="command"))
        args = parser.parse_args(["audit"])
        assert args.handler(args) == USAGE
        assert "a command is required" in capsys.readouterr().err


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    texts=st.lists(st.text(min_size=0, max_size=40), min_size=2, max_size=8),
    data=st.data(),
)
def test_any_single_byte_change_is_detected(
    tmp_path_factory: pytest.TempPathFactory, texts: list[str], data: st.DataObject
) -> None:
    """Changing any one byte anywhere in the log is reported as tampering."""
    path = tmp_path_factory.mktemp("prop") / "audit.jsonl"
    with AuditLog(path, fsync=False, clock=StepClock()) as log:
        for text in texts:
            log.append({"event": "daemon", "note": text})
    raw = bytearray(path.read_bytes())
    assert verify([path]).ok
    index = data.draw(st.integers(0, len(raw) - 1), label="offset")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != raw[index]), label="byte")
    raw[index] = new
    path.write_bytes(bytes(raw))
    report = verify([path])
    assert not report.ok
    assert report.tampered, report.problem
