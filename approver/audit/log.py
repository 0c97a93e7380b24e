"""The durable, append-only, hash-chained decision log (JSON lines).

The safety rule it serves: *a durable audit record of the intent exists before the POST; no
durable audit, no action.* :meth:`AuditLog.append` returns only after the line is written and
fsynced; if anything goes wrong it raises :class:`AuditWriteError` and the caller must not act.

Format, one JSON object per line (sorted keys, compact separators, UTF-8), with three fields the
log adds to whatever the caller passes:

``ts``
    UTC RFC 3339 with microseconds and ``Z`` (from the injected clock).
``seq``
    1, 2, 3, … for the whole life of the chain, across rotations.
``prev``
    sha256 hex of the previous line's exact bytes without its newline; 64 zeros for the first
    record of a new chain. There is no per-line ``hash`` field: the next line's ``prev`` *is*
    this line's hash, and the head anchor (see ``_chain``) covers the newest line.

Files: ``audit.jsonl`` is written; when the next line would push it past ``max_bytes`` it is
renamed to ``audit.jsonl.1`` (older ones shift to ``.2``, ``.3``, …; all are kept: pruning
or archiving old audit files is the operator's decision) and a new ``audit.jsonl`` continues
the same chain. ``audit.jsonl.lock`` holds an exclusive ``flock`` for the writer's lifetime;
``audit.jsonl.head`` is the head anchor.

On open the chain resumes from the last complete line. A torn last line (crash during a write:
bytes after the last newline) is cut off and a ``log_repaired`` record notes its length and
sha256, so ``audit verify`` can tell a repaired crash from tampering. A log that ends *before*
its head anchor lost lines a crash cannot lose; the writer refuses to continue it (the anchor
would be overwritten and the evidence with it).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from approver.audit._chain import (
    CHAIN_FIELDS,
    LOCK_SUFFIX,
    ZERO_HASH,
    Head,
    chain_fields,
    encode_line,
    head_path,
    line_hash,
    read_head,
    rotated_siblings,
)

MiB: Final = 1024 * 1024
DEFAULT_MAX_BYTES: Final = 64 * MiB
_READ_CHUNK: Final = 64 * 1024
_INTENT_ACTIONS: Final = frozenset({"accept", "reject"})
_FILE_MODE: Final = 0o640


class AuditWriteError(Exception):
    """The audit log could not be written durably: the caller must NOT act."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _describe(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "")
    text = exc.strerror or str(exc)
    return f"{text} [{name}]" if name else text


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _last_complete_line(fd: int, size: int) -> tuple[bytes | None, int]:
    """The last newline-terminated line (without its newline) and the offset just after it.

    ``(None, 0)`` when the file holds no complete line. Bytes after the returned offset are a
    torn tail.
    """
    buf = b""
    pos = size
    while True:
        last_nl = buf.rfind(b"\n")
        if last_nl != -1:
            before = buf.rfind(b"\n", 0, last_nl)
            if before != -1 or pos == 0:
                return buf[before + 1 : last_nl], pos + last_nl + 1
        if pos == 0:
            return None, 0
        start = max(0, pos - _READ_CHUNK)
        chunk = os.pread(fd, pos - start, start)
        if len(chunk) != pos - start:  # the file shrank under us: nobody else may write it
            raise OSError(errno.EIO, "short read while recovering the log tail")
        buf = chunk + buf
        pos = start


class AuditLog:
    """One writer's handle on the hash-chained audit log at ``path``.

    Usage::

        with AuditLog(state_dir / "audit.jsonl", clock=clock) as audit:
            intent = audit.append({"event": "decision", "action": "accept", ...})
            ...  # only now may the POST happen
            audit.append({"event": "outcome", "decision_id": intent["decision_id"], ...})

    Thread-safe; one instance per process (a second writer, in this process or another, is
    refused by the lock). ``fsync=False`` is for tests and benchmarks only: without it nothing
    is durable and the head anchor may get ahead of the log after a power loss.
    """

    def __init__(
        self,
        path: Path,
        *,
        fsync: bool = True,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if max_bytes is not None and max_bytes <= 0:
            raise ValueError("max_bytes must be positive or None")
        self._path = Path(path)
        self._fsync = fsync
        self._max_bytes = max_bytes
        self._clock = clock
        self._mutex = threading.Lock()
        self._fd = -1
        self._lock_fd = -1
        self._head_fd = -1
        self._size = 0
        self._seq = 0
        self._prev = ZERO_HASH
        self._broken: str | None = None
        self._closed = False
        try:
            self._open()
        except BaseException:
            self._close_fds()
            raise

    # -- public ---------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The live log file (rotated files are its ``.N`` siblings)."""
        return self._path

    @property
    def head(self) -> tuple[int, str]:
        """``(seq, sha256)`` of the newest durable line: log it elsewhere as an external anchor."""
        return self._seq, self._prev

    def append(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Write ``record`` plus ``ts``/``seq``/``prev`` durably; return the record as written.

        Raises :class:`AuditWriteError` (and writes nothing) when the record is not plain JSON,
        uses a chain field name, or the file cannot be written and fsynced.
        """
        with self._mutex:
            self._check_usable()
            full = self._chain(record)
            try:
                data = encode_line(full)
            except (TypeError, ValueError) as exc:
                raise AuditWriteError(
                    f"audit record for {self._path} is not plain JSON: {exc}"
                ) from None
            if (
                self._max_bytes is not None
                and self._size > 0
                and self._size + len(data) > self._max_bytes
            ):
                self._rotate()
            self._write(data)
            self._seq = full["seq"]
            self._prev = line_hash(data[:-1])
            self._size += len(data)
            self._write_head()
            written: dict[str, Any] = json.loads(data)
            return written

    def unresolved_intents(self) -> list[dict[str, Any]]:
        """Accept/reject decisions (not dry-run) with no outcome record, oldest first.

        Reads every file of the chain (rotated ones too). After a crash these are the
        endpoints whose live state must be re-read before anything else happens to them.
        """
        with self._mutex:
            if self._closed:
                raise AuditWriteError(f"audit log {self._path} is closed")
            pending: dict[str, dict[str, Any]] = {}
            for path in [*rotated_siblings(self._path), self._path]:
                self._scan_intents(path, pending)
            return list(pending.values())

    def close(self) -> None:
        """Release the file and the writer lock. Idempotent."""
        with self._mutex:
            self._closed = True
            self._close_fds()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("broken" if self._broken else "open")
        return f"<AuditLog {str(self._path)!r} seq={self._seq} {state}>"

    # -- opening and recovery -----------------------------------------------------------

    def _fail(self, action: str, exc: OSError) -> AuditWriteError:
        return AuditWriteError(f"audit log {self._path}: {action} failed: {_describe(exc)}")

    def _open(self) -> None:
        path = self._path
        if path.parent.exists() and not path.parent.is_dir():
            raise AuditWriteError(f"audit log {path}: {path.parent} is not a directory")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._fail(f"creating directory {path.parent}", exc) from None
        lock_path = path.with_name(path.name + LOCK_SUFFIX)
        try:
            self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
        except OSError as exc:
            raise self._fail(f"opening lock file {lock_path}", exc) from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AuditWriteError(
                f"another vpcep-approver holds the audit log {path} (lock {lock_path}); "
                "only one writer may run at a time"
            ) from None
        except OSError as exc:
            raise self._fail(f"locking {lock_path}", exc) from None

        created = not os.path.lexists(path)
        try:
            self._fd = os.open(
                path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE
            )
            if created:
                _fsync_dir(path.parent)
            size = os.fstat(self._fd).st_size
            last, good_size = _last_complete_line(self._fd, size)
        except OSError as exc:
            raise self._fail("opening", exc) from None

        source = path
        if last is None:  # empty (or only torn bytes): the chain may continue from .1
            rotated = rotated_siblings(path)
            if rotated:
                source = rotated[-1]
                last = self._last_line_of(source)
        if last is not None:
            fields = chain_fields(self._parse(last))
            if fields is None:
                raise AuditWriteError(
                    f"audit log {source}: the last complete line is not a chained audit record; "
                    f"run `vpcep-approver audit verify {path}`, and move the log files aside "
                    "to start a new chain"
                )
            self._seq, self._prev = fields[0], line_hash(last)
        self._check_head()

        self._size = good_size
        torn = size - good_size
        if torn > 0:
            self._repair(good_size, torn)
        try:
            self._head_fd = os.open(
                head_path(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE
            )
        except OSError:
            self._head_fd = -1  # the anchor is best-effort; the log itself is what counts
        self._write_head()

    def _last_line_of(self, path: Path) -> bytes | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise self._fail(f"reading {path}", exc) from None
        try:
            return _last_complete_line(fd, os.fstat(fd).st_size)[0]
        except OSError as exc:
            raise self._fail(f"reading {path}", exc) from None
        finally:
            os.close(fd)

    @staticmethod
    def _parse(line: bytes) -> object:
        try:
            parsed: object = json.loads(line)
        except ValueError:
            return None
        return parsed

    def _check_head(self) -> None:
        head = read_head(self._path)
        if head is None or head.seq < self._seq:
            return  # no anchor, or one that lags (not fsynced): nothing to hold against the log
        remedy = (
            f"run `vpcep-approver audit verify {self._path}`; to start a new chain, move "
            "audit.jsonl* aside"
        )
        if head.seq > self._seq:
            raise AuditWriteError(
                f"audit log {self._path} ends at seq {self._seq} but its head anchor records "
                f"seq {head.seq}: records were removed from the end (truncated); {remedy}"
            )
        if head.hash != self._prev:
            raise AuditWriteError(
                f"audit log {self._path}: the last record (seq {self._seq}) does not match its "
                f"head anchor: it was altered; {remedy}"
            )

    def _repair(self, good_size: int, torn: int) -> None:
        try:
            torn_bytes = os.pread(self._fd, torn, good_size)
            os.ftruncate(self._fd, good_size)
            if self._fsync:
                os.fsync(self._fd)
        except OSError as exc:
            raise self._fail("repairing the torn last line", exc) from None
        note = {
            "event": "log_repaired",
            "file": self._path.name,
            "offset": good_size,
            "torn_bytes": torn,
            "torn_sha256": hashlib.sha256(torn_bytes).hexdigest(),
            "reason": "torn last line (crash during write) removed; it was never acknowledged",
        }
        full = self._chain(note)
        data = encode_line(full)
        self._write(data)
        self._seq = full["seq"]
        self._prev = line_hash(data[:-1])
        self._size += len(data)

    # -- writing --------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._closed:
            raise AuditWriteError(f"audit log {self._path} is closed")
        if self._broken is not None:
            raise AuditWriteError(self._broken)

    def _chain(self, record: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(record, Mapping):
            raise AuditWriteError(f"audit record for {self._path} must be a mapping")
        reserved = CHAIN_FIELDS.intersection(record)
        if reserved:
            raise AuditWriteError(
                f"audit record for {self._path} sets chain field(s) {sorted(reserved)}"
            )
        event = record.get("event")
        if not isinstance(event, str) or not event:
            raise AuditWriteError(f"audit record for {self._path} has no 'event' name")
        now = self._clock()
        if now.tzinfo is None or now.utcoffset() is None:
            raise AuditWriteError("the audit clock returned a naive datetime; it must be aware")
        full = dict(record)
        full["ts"] = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        full["seq"] = self._seq + 1
        full["prev"] = self._prev
        return full

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            self._roll_back()
            raise self._fail("write", exc) from None
        if self._fsync:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                # After a failed fsync the page cache no longer tells the truth about the disk:
                # only a reopen (which re-reads the file) may continue the chain.
                self._broken = (
                    f"audit log {self._path}: fsync failed earlier ({_describe(exc)}); "
                    "restart to recover"
                )
                raise self._fail("fsync", exc) from None

    def _roll_back(self) -> None:
        """Cut a partial line off so the next append starts on a line boundary."""
        try:
            os.ftruncate(self._fd, self._size)
            if self._fsync:
                os.fsync(self._fd)
        except OSError as exc:
            self._broken = (
                f"audit log {self._path}: a partial line could not be removed "
                f"({_describe(exc)}); restart to recover"
            )

    def _rotate(self) -> None:
        path = self._path
        try:
            for older in rotated_siblings(path):  # highest N first, so nothing is overwritten
                number = int(older.name.rsplit(".", 1)[1])
                os.rename(older, path.with_name(f"{path.name}.{number + 1}"))
            os.rename(path, path.with_name(f"{path.name}.1"))
        except OSError as exc:
            raise self._fail("rotation (rename)", exc) from None
        # From here the open fd is audit.jsonl.1: writing on would put records in the wrong file.
        os.close(self._fd)
        self._fd = -1
        try:
            self._fd = os.open(
                path,
                os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                _FILE_MODE,
            )
            _fsync_dir(path.parent)
        except OSError as exc:
            self._broken = (
                f"audit log {path}: rotation could not create a new file ({_describe(exc)}); "
                "restart to recover"
            )
            raise self._fail("rotation (create)", exc) from None
        self._size = 0

    def _write_head(self) -> None:
        if self._head_fd < 0:
            return
        try:
            os.pwrite(self._head_fd, Head(self._seq, self._prev).encode(), 0)
        except OSError:
            pass  # best-effort: a missing anchor weakens end-of-log checks, never the log

    def _scan_intents(self, path: Path, pending: dict[str, dict[str, Any]]) -> None:
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self._fail(f"reading {path}", exc) from None
        with handle:
            for lineno, line in enumerate(handle, 1):
                if not line.endswith(b"\n") or b'"decision_id"' not in line:
                    continue
                record = self._parse(line)
                if not isinstance(record, dict):
                    raise AuditWriteError(
                        f"{path}:{lineno}: unreadable audit line; intents cannot be resolved "
                        f"(run `vpcep-approver audit verify {self._path}`)"
                    )
                decision_id = record.get("decision_id")
                if not isinstance(decision_id, str):
                    continue
                event = record.get("event")
                if (
                    event == "decision"
                    and record.get("action") in _INTENT_ACTIONS
                    and record.get("dry_run") is not True
                ):
                    pending[decision_id] = record
                elif event == "outcome":
                    pending.pop(decision_id, None)

    def _close_fds(self) -> None:
        for name in ("_fd", "_head_fd", "_lock_fd"):  # the lock goes last
            fd = getattr(self, name)
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, name, -1)
