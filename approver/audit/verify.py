"""``audit verify``: walk the hash chain through a log and its rotated files.

What it reports, first problem only (as ``file:line: ...``):

* an edited line: the next line's ``prev`` no longer matches its hash;
* a deleted line: a ``seq`` gap (at a file boundary: the older file was truncated);
* reordered or duplicated lines: a ``seq`` out of order, or the same line twice;
* a truncated end: the log ends before the seq its head anchor records, or a rotated file
  ends in a partial line;
* a torn last line: bytes without a newline at the end of the newest file and nothing else
  wrong. That is what a crash during a write leaves: reported as "torn last line (crash during
  write), not tampering" with its own flag and exit code.

Exit codes (``VerifyReport.exit_code``): 0 intact, 1 tampered/broken, 2 usage (no such file),
3 torn last line only.

Speed: lines are streamed as bytes; each is hashed once, and its ``seq``/``prev`` are checked as
exact byte strings in the writer's canonical encoding instead of parsing the JSON. That is
sound because any change to a line changes its hash, which the next line pins; the newest line,
which nothing pins, is parsed in full and checked against the head anchor. Only when a check
fails does a slower second pass parse lines to say what exactly is wrong.
"""

from __future__ import annotations

import errno
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from approver.audit._chain import (
    ZERO_HASH,
    Head,
    chain_fields,
    line_hash,
    read_head,
    rotated_siblings,
)

EXIT_OK: Final = 0
EXIT_BROKEN: Final = 1
EXIT_USAGE: Final = 2
EXIT_TORN_TAIL: Final = 3

_ROTATED = re.compile(r"(.*)\.([0-9]+)")
_BUFFER: Final = 1024 * 1024
_REPAIRED: Final = b'"event":"log_repaired"'


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :func:`verify`.

    ``ok`` is True only for an intact chain with nothing torn. ``problem`` is the first problem
    found (``file:line: ...``). ``torn_tail`` flags a partial last line left by a crash;
    ``tampered`` flags everything a crash cannot explain. ``notes`` lists what is fine but
    worth knowing (torn tails the writer repaired, a missing head anchor).
    """

    ok: bool
    records: int
    files: tuple[str, ...]
    problem: str | None
    torn_tail: bool
    tampered: bool = False
    notes: tuple[str, ...] = ()
    last_seq: int = 0

    @property
    def exit_code(self) -> int:
        """0 intact, 1 tampered or broken, 3 torn last line only."""
        if self.ok:
            return EXIT_OK
        return EXIT_BROKEN if self.tampered else EXIT_TORN_TAIL


def resolve_paths(paths: Sequence[Path]) -> list[Path]:
    """The files of one chain, oldest first.

    A single live log (``audit.jsonl``) brings its rotated ``audit.jsonl.N`` siblings along;
    explicitly listed files are put in chain order (highest N first, the live file last).
    Raises ``FileNotFoundError`` for a file that does not exist.
    """
    if not paths:
        raise ValueError("no audit log given")
    given = [Path(p) for p in paths]
    if len(given) == 1 and not _ROTATED.fullmatch(given[0].name):
        siblings = rotated_siblings(given[0])
        if given[0].exists() or not siblings:
            _must_exist(given[0])
            return [*siblings, given[0]]
        return siblings  # the live file is missing right after a rotation: verify the rest

    def order(path: Path) -> int:
        match = _ROTATED.fullmatch(path.name)
        return -int(match.group(2)) if match else 1

    for path in given:
        _must_exist(path)
    return sorted(dict.fromkeys(given), key=order)


def _must_exist(path: Path) -> None:
    if not path.is_file():
        if path.exists():
            raise IsADirectoryError(errno.EISDIR, "not a regular file", str(path))
        raise FileNotFoundError(errno.ENOENT, "no such audit log", str(path))


@dataclass
class _Line:
    file: int
    number: int
    body: bytes
    complete: bool


def _lines(files: Sequence[Path]) -> Iterator[_Line]:
    for index, path in enumerate(files):
        with path.open("rb", buffering=_BUFFER) as handle:
            for number, raw in enumerate(handle, 1):
                complete = raw.endswith(b"\n")
                yield _Line(index, number, raw[:-1] if complete else raw, complete)


def _parse(body: bytes) -> object:
    try:
        parsed: object = json.loads(body)
    except ValueError:
        return None
    return parsed


def _seq_of(body: bytes) -> int | None:
    fields = chain_fields(_parse(body))
    return fields[0] if fields else None


def verify(paths: Sequence[Path], *, allow_partial_start: bool = False) -> VerifyReport:
    """Verify the chain through ``paths`` (see :func:`resolve_paths`).

    ``allow_partial_start`` accepts a chain whose first available record is not the start of
    the chain (older files archived elsewhere); its first link then cannot be checked.
    Raises ``OSError`` when a file is missing or unreadable (a usage problem, not a verdict).
    """
    files = resolve_paths(paths)
    return _Verifier(files, allow_partial_start).run()


class _Verifier:
    def __init__(self, files: list[Path], allow_partial_start: bool) -> None:
        self.files = files
        self.names = tuple(str(p) for p in files)
        self.allow_partial_start = allow_partial_start
        newest = files[-1]
        self.head: Head | None = None
        if not _ROTATED.fullmatch(newest.name):
            self.head = read_head(newest)
        self.notes: list[str] = []
        self.records = 0
        self.last_seq = 0

    def loc(self, file: int, number: int) -> str:
        return f"{self.names[file]}:{number}"

    def report(self, problem: str | None = None, *, torn: bool = False) -> VerifyReport:
        return VerifyReport(
            ok=problem is None,
            records=self.records,
            files=self.names,
            problem=problem,
            torn_tail=torn,
            tampered=problem is not None and not torn,
            notes=tuple(self.notes),
            last_seq=self.last_seq,
        )

    def run(self) -> VerifyReport:
        head = self.head
        head_seq = head.seq if head else -1
        expected_prev = ZERO_HASH.encode()
        expected_seq = 1
        last_body: bytes | None = None
        last_at = (0, 0)
        for index, path in enumerate(self.files):
            newest = index == len(self.files) - 1
            with path.open("rb", buffering=_BUFFER) as handle:
                for number, raw in enumerate(handle, 1):
                    if raw[-1:] != b"\n":
                        return self.partial_line(index, number, len(raw), newest)
                    body = raw[:-1]
                    if self.records == 0 and self.allow_partial_start:
                        start = chain_fields(_parse(body))
                        if start is not None and start[0] != 1:
                            expected_seq, expected_prev = start[0], start[1].encode()
                            self.notes.append(
                                f"{self.loc(index, number)}: chain starts at seq {start[0]}; "
                                "earlier records were not given, so its first link is unchecked"
                            )
                    if (b'"prev":"' + expected_prev + b'"') not in body or (
                        (b'"seq":%d,' % expected_seq) not in body
                        and not body.endswith(b'"seq":%d}' % expected_seq)
                    ):
                        return self.report(
                            self.diagnose(index, number, body, expected_seq, expected_prev)
                        )
                    digest = line_hash(body)
                    if expected_seq == head_seq and head is not None and digest != head.hash:
                        return self.report(
                            f"{self.loc(index, number)}: record seq {expected_seq} does not "
                            "match the head anchor: the newest record was altered"
                        )
                    if _REPAIRED in body:
                        self.note_repair(index, number, body)
                    expected_prev = digest.encode()
                    self.last_seq = expected_seq
                    expected_seq += 1
                    self.records += 1
                    last_body, last_at = body, (index, number)
        return self.finish(last_body, last_at)

    def partial_line(self, index: int, number: int, size: int, newest: bool) -> VerifyReport:
        loc = self.loc(index, number)
        if not newest:
            return self.report(
                f"{loc}: partial last line in rotated file {self.names[index]}: "
                "the file was truncated (a crash cannot tear a rotated file)"
            )
        if self.head is not None and self.head.seq > self.last_seq:
            return self.report(
                f"{loc}: log ends at seq {self.last_seq} and a partial line, but the head anchor "
                f"records seq {self.head.seq}: records were removed from the end (truncated), "
                "which a crash cannot do"
            )
        return self.report(
            f"{loc}: torn last line (crash during write), not tampering: {size} bytes without "
            "a newline; vpcep-approver removes it on its next start and records log_repaired",
            torn=True,
        )

    def finish(self, last_body: bytes | None, last_at: tuple[int, int]) -> VerifyReport:
        if last_body is not None and chain_fields(_parse(last_body)) is None:
            return self.report(
                f"{self.loc(*last_at)}: the last record is not valid JSON with seq/prev: "
                "it was edited or corrupted"
            )
        head = self.head
        if head is not None and head.seq > self.last_seq:
            missing = head.seq - self.last_seq
            return self.report(
                f"{self.names[-1]}:{last_at[1] + 1}: log ends at seq {self.last_seq} but its head "
                f"anchor records seq {head.seq}: {missing} record(s) removed from the end "
                "(file truncated or last lines deleted)"
            )
        if head is None and not _ROTATED.fullmatch(self.files[-1].name):
            self.notes.append(
                f"{self.names[-1]}: no head anchor ({self.files[-1].name}.head): "
                "removal of the newest lines cannot be detected"
            )
        return self.report()

    def note_repair(self, index: int, number: int, body: bytes) -> None:
        record = _parse(body)
        if isinstance(record, dict) and record.get("event") == "log_repaired":
            self.notes.append(
                f"{self.loc(index, number)}: torn last line of {record.get('torn_bytes')} bytes "
                f"(sha256 {record.get('torn_sha256')}) was repaired on open: a crash, "
                "not tampering"
            )

    # -- the slow path: say precisely what is wrong --------------------------------------

    def find(self, predicate: Callable[[_Line], bool]) -> _Line | None:
        for line in _lines(self.files):
            if predicate(line):
                return line
        return None

    def diagnose(
        self, index: int, number: int, body: bytes, expected_seq: int, expected_prev: bytes
    ) -> str:
        loc = self.loc(index, number)
        fields = chain_fields(_parse(body))
        if fields is None:
            return f"{loc}: not a valid audit record (bad JSON or no seq/prev): line corrupted"
        seq, prev = fields
        here = (index, number)

        def after(line: _Line) -> bool:
            return (line.file, line.number) > here

        def before(line: _Line) -> bool:
            return (line.file, line.number) < here

        if expected_seq == 1 and expected_prev == ZERO_HASH.encode() and seq != 1:
            return (
                f"{loc}: the log starts at seq {seq}, not at the start of a chain: earlier "
                "records or files are missing (use --partial for a log whose older files "
                "were archived)"
            )
        if seq == expected_seq:
            previous = self.loc(*self.previous_position(index, number))
            if prev == expected_prev.decode():
                return f"{loc}: record seq {seq} is not in the writer's encoding: line edited"
            if expected_seq == 1:
                return f"{loc}: the first record's prev is not 64 zeros: earlier records missing"
            successor = self.find(lambda line: after(line) and line.complete)
            mine = line_hash(body)
            if successor is not None:
                nxt = chain_fields(_parse(successor.body))
                if nxt is not None and nxt[1] == mine:
                    return (
                        f"{previous}: record seq {seq - 1} was altered: its sha256 no longer "
                        f"matches the prev recorded by seq {seq} ({loc})"
                    )
                return (
                    f"{loc}: record seq {seq} was altered: its prev does not match seq "
                    f"{seq - 1} ({previous}) and its hash does not match the next record"
                )
            return (
                f"{loc}: broken link: the prev of seq {seq} does not match the hash of seq "
                f"{seq - 1} ({previous}): one of the two was altered"
            )
        if seq < expected_seq:
            earlier = self.find(lambda line: before(line) and _seq_of(line.body) == seq)
            if earlier is not None and earlier.body == body:
                return (
                    f"{loc}: duplicated line: identical to "
                    f"{self.loc(earlier.file, earlier.number)} (seq {seq})"
                )
            return f"{loc}: lines reordered: seq {seq} comes after seq {expected_seq - 1}"
        later = self.find(
            lambda line: after(line) and expected_seq <= (_seq_of(line.body) or 0) < seq
        )
        if later is not None:
            return (
                f"{loc}: lines reordered: seq {seq} comes before seq "
                f"{_seq_of(later.body)} ({self.loc(later.file, later.number)})"
            )
        gap = f"seq {expected_seq}" if seq == expected_seq + 1 else f"seq {expected_seq}..{seq - 1}"
        if number == 1 and index > 0:
            return (
                f"{loc}: {gap} missing at the end of {self.names[index - 1]}: "
                "file truncated (or records deleted)"
            )
        return f"{loc}: {gap} missing before this line: record(s) deleted"

    def previous_position(self, index: int, number: int) -> tuple[int, int]:
        if number > 1:
            return index, number - 1
        prior = index - 1
        while prior >= 0:
            count = sum(1 for _ in _lines([self.files[prior]]))
            if count:
                return prior, count
            prior -= 1
        return index, number
