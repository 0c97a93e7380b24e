"""What the writer and the verifier must agree on: line encoding, chain fields, file names.

The chain is *prev-hash only*: every line carries ``prev``, the sha256 (hex) of the exact bytes
of the line before it (without its newline), and ``seq``, one more than the line before it.
The first record of a brand-new chain has ``prev`` = 64 zeros and ``seq`` = 1. Rotation does
not restart anything: the first line of a new file links to the last line of the file rotated
away, so one chain runs through ``audit.jsonl.N`` … ``audit.jsonl.1``, ``audit.jsonl``.

Editing, deleting or reordering any line breaks the link to it from the next line. The newest
line has no successor, so the writer also keeps a *head anchor* (``audit.jsonl.head``: the seq
and hash of the newest line, rewritten after every durable append, itself not fsynced). It can
lag the log after a power loss but never lead it, so "log ends before the anchor" means lines
were removed from the end (truncation), which a crash cannot do.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

ZERO_HASH: Final = "0" * 64
CHAIN_FIELDS: Final = frozenset({"ts", "seq", "prev"})
HEAD_SUFFIX: Final = ".head"
LOCK_SUFFIX: Final = ".lock"
_HEX64 = re.compile(r"[0-9a-f]{64}")


def encode_line(record: dict[str, Any]) -> bytes:
    """The one canonical encoding: sorted keys, compact, UTF-8, no NaN, newline-terminated."""
    text = json.dumps(
        record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8") + b"\n"


def line_hash(body: bytes) -> str:
    """sha256 hex of one line's bytes without its newline: the next line's ``prev``."""
    return hashlib.sha256(body).hexdigest()


def is_hash(value: object) -> bool:
    """True for a lowercase 64-digit hex string."""
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


def chain_fields(record: object) -> tuple[int, str] | None:
    """``(seq, prev)`` of a parsed line, or None when it is not a chained audit record."""
    if not isinstance(record, dict):
        return None
    seq, prev = record.get("seq"), record.get("prev")
    if type(seq) is not int or seq < 1 or not is_hash(prev):
        return None
    assert isinstance(prev, str)
    return seq, prev


def rotated_siblings(path: Path) -> list[Path]:
    """Existing ``<path>.N`` files, oldest (highest N) first; gaps in N are tolerated."""
    pattern = re.compile(re.escape(path.name) + r"\.([0-9]+)")
    found: list[tuple[int, Path]] = []
    try:
        entries = list(os.scandir(path.parent))
    except FileNotFoundError:
        return []
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match:
            found.append((int(match.group(1)), path.parent / entry.name))
    found.sort(key=lambda item: item[0], reverse=True)
    return [p for _, p in found]


@dataclass(frozen=True)
class Head:
    """The head anchor: seq and line hash of the newest durable record."""

    seq: int
    hash: str

    def encode(self) -> bytes:
        """Fixed width (so an in-place rewrite is one same-size write) with a checksum."""
        core = f"{self.seq:020d} {self.hash}"
        check = hashlib.sha256(core.encode("ascii")).hexdigest()[:16]
        return f"{core} {check}\n".encode("ascii")

    @classmethod
    def decode(cls, data: bytes) -> Head | None:
        """Parse an anchor; None when it is missing, garbled or half-written."""
        try:
            seq_s, hash_s, check = data.decode("ascii").rstrip("\n").split(" ")
        except (UnicodeDecodeError, ValueError):
            return None
        core = f"{seq_s} {hash_s}"
        if hashlib.sha256(core.encode("ascii")).hexdigest()[:16] != check:
            return None
        if not seq_s.isdigit() or not is_hash(hash_s):
            return None
        return cls(int(seq_s), hash_s)


def head_path(log_path: Path) -> Path:
    """Where the head anchor of ``log_path`` lives."""
    return log_path.with_name(log_path.name + HEAD_SUFFIX)


def read_head(log_path: Path) -> Head | None:
    """The head anchor next to ``log_path``, or None if absent or unreadable."""
    try:
        data = head_path(log_path).read_bytes()
    except OSError:
        return None
    return Head.decode(data)
