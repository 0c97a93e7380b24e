"""Load a YAML file safely and remember where every value came from.

Config and policy errors must name file, line and column; pydantic reports a path
(``("targets", 0, "region")``), so we keep the start mark of every node by path.
Safety: ``SafeLoader`` only (no ``!!python`` tags), a size cap, an alias cap (no
billion-laughs expansion), and duplicate keys refused instead of silently overwritten.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1024 * 1024
MAX_ALIASES = 100

Loc = tuple[int | str, ...]


class YamlError(Exception):
    """A file could not be read as YAML; ``str()`` is one ``file:line:col: message`` line."""

    def __init__(self, file: str, line: int | None, column: int | None, message: str) -> None:
        self.file, self.line, self.column, self.message = file, line, column, message
        super().__init__(f"{file}:{line or 0}:{column or 0}: {message}")


@dataclass(frozen=True)
class YamlDocument:
    """Plain Python data plus the (line, column) of each path, 1-based."""

    file: str
    data: Any
    raw: bytes
    marks: dict[Loc, tuple[int, int]] = field(default_factory=dict)

    def locate(self, loc: Sequence[int | str]) -> tuple[int | None, int | None]:
        """The closest known position for a path (its longest known prefix)."""
        path = tuple(loc)
        while True:
            if path in self.marks:
                return self.marks[path]
            if not path:
                return None, None
            path = path[:-1]


def load(path: str | Path, *, max_bytes: int = MAX_BYTES) -> YamlDocument:
    name = str(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(max_bytes + 1)
    except OSError as exc:
        raise YamlError(name, None, None, f"cannot read: {exc.strerror}") from None
    if len(raw) > max_bytes:
        raise YamlError(name, None, None, f"larger than {max_bytes} bytes; refused")
    return parse(raw, name)


def parse(raw: bytes, name: str) -> YamlDocument:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlError(name, None, None, f"not UTF-8 (byte {exc.start})") from None
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
            raise YamlError(name, line, col, f"YAML syntax: {exc.problem or exc.context}") from None
        except yaml.YAMLError as exc:
            raise YamlError(name, None, None, f"YAML: {exc}") from None
        if node is None:
            return YamlDocument(name, None, raw)
        marks: dict[Loc, tuple[int, int]] = {}
        data = _Builder(loader, name, marks).build(node, ())
        return YamlDocument(name, data, raw, marks)
    finally:
        loader.dispose()


class _Builder:
    """Turns a composed node tree into plain data, recording marks and capping aliases."""

    def __init__(self, loader: yaml.SafeLoader, name: str, marks: dict[Loc, tuple[int, int]]):
        self.loader, self.name, self.marks = loader, name, marks
        self.seen: set[int] = set()
        self.aliases = 0

    def fail(self, node: yaml.Node, message: str) -> YamlError:
        return YamlError(self.name, node.start_mark.line + 1, node.start_mark.column + 1, message)

    def build(self, node: yaml.Node, path: Loc) -> Any:
        self.marks.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if id(node) in self.seen:
            # The same node reached twice is an alias; cap them so expansion stays small.
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise self.fail(node, f"more than {MAX_ALIASES} aliases; refused")
        self.seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.scalar(key_node)
                if key == "<<":
                    raise self.fail(key_node, "merge keys (<<) are not supported")
                if key in out:
                    raise self.fail(key_node, f"duplicate key {key!r}")
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                self.marks[(*path, key)] = (line, col)
                out[key] = self.build(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.scalar(node)

    def scalar(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, "a mapping key must be a plain value")
        try:
            return self.loader.construct_object(node)
        except yaml.MarkedYAMLError as exc:
            raise self.fail(node, f"YAML: {exc.problem}") from None
