"""Read a policy (or policy test) YAML file into plain data, keeping every value's position.

Safety, in the order a file meets it:

* size: at most ``MAX_BYTES``; the file must be UTF-8;
* ``yaml.SafeLoader`` composes the node graph (no object construction, no ``!!python`` tags);
* only the standard tags of plain data are allowed (map, seq, str, int, float, bool,
  timestamp); any other tag, explicit ``null`` values and ``<<`` merge keys are problems;
* duplicate mapping keys are problems (PyYAML would silently keep the last one);
* aliases are allowed but the *expanded* document may hold at most ``MAX_NODES`` nodes and nest
  at most ``MAX_DEPTH`` levels, so a billion-laughs file is refused before anything walks it.

Mapping keys are kept as the text written in the file (``on:`` is the key ``"on"``, not
``True``): every key in the policy language is a name. Values keep YAML's types, so a
validator can tell ``env: 1`` (a number) from ``env: "1"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import yaml

MAX_BYTES: Final = 1024 * 1024
MAX_NODES: Final = 200_000
MAX_DEPTH: Final = 64

Loc = tuple[int | str, ...]

_T = "tag:yaml.org,2002:"
_MAP, _SEQ, _STR, _NULL, _MERGE = (_T + t for t in ("map", "seq", "str", "null", "merge"))
_SCALAR_TAGS: Final = frozenset(_T + t for t in ("str", "int", "float", "bool", "timestamp"))


@dataclass(frozen=True)
class Issue:
    """A problem found while reading: a position (1-based, may be unknown) and a message."""

    loc: Loc
    line: int | None
    column: int | None
    message: str
    voids: bool = False  # the value was replaced by None (validation must not report it again)


@dataclass(frozen=True)
class Document:
    """Plain data plus where each path starts in the file.

    ``values`` maps a path to the (line, column) of its value; ``keys`` maps the path of a
    mapping entry to the position of its key (to point at an unknown or duplicate key).
    """

    data: Any
    values: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Loc, tuple[int, int]] = field(default_factory=dict)

    def locate(
        self, loc: Sequence[int | str], *, key: bool = False
    ) -> tuple[int | None, int | None]:
        """Where ``loc`` (its key, with ``key=True``) or its longest known prefix starts."""
        path = tuple(loc)
        if key and path in self.keys:
            return self.keys[path]
        while path:
            if path in self.values:
                return self.values[path]
            path = path[:-1]
        return self.values.get((), (None, None))


class ReadError(Exception):
    """The file could not be read as YAML at all; ``issues`` says why (usually one)."""

    def __init__(self, issues: Sequence[Issue]) -> None:
        super().__init__("; ".join(i.message for i in issues))
        self.issues = tuple(issues)


def _pos(mark: yaml.Mark | None) -> tuple[int | None, int | None]:
    return (mark.line + 1, mark.column + 1) if mark is not None else (None, None)


def _at(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _yaml_error(exc: yaml.YAMLError) -> Issue:
    if isinstance(exc, yaml.MarkedYAMLError):
        text = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        line, column = _pos(exc.problem_mark or exc.context_mark)
        return Issue((), line, column, f"YAML syntax error: {text}")
    if isinstance(exc, yaml.reader.ReaderError):
        return Issue((), None, None, f"YAML syntax error: {exc}")
    return Issue((), None, None, f"YAML error: {exc}")


def decode(raw: bytes) -> str:
    """UTF-8 text of a file's bytes, or ``ReadError``."""
    if len(raw) > MAX_BYTES:
        raise ReadError([Issue((), None, None, f"file is larger than {MAX_BYTES} bytes; refused")])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReadError([Issue((), None, None, f"file is not UTF-8 ({exc.reason})")]) from None


def parse(raw: bytes) -> tuple[Document, tuple[Issue, ...]]:
    """Parse one file's bytes; syntax problems raise ``ReadError``, content problems are returned.

    Returned issues (bad tags, nulls, duplicate keys) leave the affected value in ``data`` as
    ``None`` so validation can go on and report everything else in the same run.
    """
    text = decode(raw)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as exc:
        raise ReadError([_yaml_error(exc)]) from None
    except RecursionError:
        raise ReadError([Issue((), None, None, "YAML nesting is too deep")]) from None
    finally:
        loader.dispose()
    if node is None:
        raise ReadError([Issue((), 1, 1, "file is empty")])
    walker = _Walker(loader)
    try:
        data = walker.walk(node, (), 0)
    except _TooLarge as exc:
        raise ReadError([exc.issue]) from None
    return Document(data, walker.values, walker.keys), tuple(walker.issues)


class _TooLarge(Exception):
    def __init__(self, issue: Issue) -> None:
        self.issue = issue


class _Walker:
    def __init__(self, loader: yaml.SafeLoader) -> None:
        self.loader = loader
        self.values: dict[Loc, tuple[int, int]] = {}
        self.keys: dict[Loc, tuple[int, int]] = {}
        self.issues: list[Issue] = []
        self.count = 0

    def issue(self, loc: Loc, node: yaml.Node, message: str, *, voids: bool = True) -> None:
        self.issues.append(Issue(loc, *_at(node), message, voids))

    def walk(self, node: yaml.Node, loc: Loc, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES or depth > MAX_DEPTH:
            what = f"more than {MAX_NODES} values" if depth <= MAX_DEPTH else "too deep nesting"
            raise _TooLarge(
                Issue(loc, *_at(node), f"document expands to {what} (aliases?); refused")
            )
        self.values.setdefault(loc, _at(node))
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, loc, depth)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ:
                self.issue(loc, node, f"YAML tag {_short(node.tag)!r} is not allowed")
                return None
            return [self.walk(item, (*loc, i), depth + 1) for i, item in enumerate(node.value)]
        return self.scalar(node, loc)

    def mapping(self, node: yaml.MappingNode, loc: Loc, depth: int) -> Any:
        if node.tag != _MAP:
            self.issue(loc, node, f"YAML tag {_short(node.tag)!r} is not allowed")
            return None
        out: dict[str, Any] = {}
        first: dict[str, int | None] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in (
                _SCALAR_TAGS | {_MERGE, _NULL}
            ):
                self.issue(loc, key_node, "mapping keys must be plain names", voids=False)
                continue
            if key_node.tag == _MERGE:
                self.issue(
                    loc, key_node, "YAML merge keys (<<) are not supported; write the keys out"
                )
                continue
            key = str(key_node.value)
            here = (*loc, key)
            if key in first:
                self.issue(here, key_node, f"duplicate key {key!r} (first at line {first[key]})")
                continue
            first[key] = key_node.start_mark.line + 1
            self.keys[here] = _at(key_node)
            out[key] = self.walk(value_node, here, depth + 1)
        return out

    def scalar(self, node: yaml.Node, loc: Loc) -> Any:
        if node.tag == _NULL:
            self.issue(loc, node, "empty value (null); write a value or remove the key")
            return None
        if node.tag not in _SCALAR_TAGS:
            self.issue(loc, node, f"YAML tag {_short(node.tag)!r} is not allowed")
            return None
        try:
            return self.loader.construct_object(node)
        except (yaml.YAMLError, ValueError, OverflowError) as exc:
            self.issue(loc, node, f"unreadable value: {exc}")
            return None


def _short(tag: str) -> str:
    return "!!" + tag[len(_T) :] if tag.startswith(_T) else tag
