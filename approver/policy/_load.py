"""``load_policy``: files → validated, compiled ``Policy``, or every problem at once.

Three passes per load, each collecting problems instead of stopping at the first:

1. read each file safely (``_yaml``): size cap, UTF-8, safe tags, duplicate keys, alias cap;
2. validate each file's shape with the pydantic models (``_models``);
3. check what only the whole set of files can tell: duplicate rule ids and domain sets,
   undefined set names, impossible windows, conflicting defaults and limits, an unconfirmed
   ``accept`` default, an empty rule set.

Files that fail pass 2 still take part in pass 3 as far as their valid parts go (each rule is
validated on its own), so one run reports everything.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from approver.policy import _yaml
from approver.policy._engine import Limits, Policy, Rule, TagCondition, fmt_time
from approver.policy._models import (
    ANY_VALUE,
    DOMAIN_ID_RE,
    ActionName,
    AwareTime,
    DomainId,
    DomainRef,
    LimitsModel,
    PolicyFile,
    RuleId,
    RuleModel,
    When,
    kind,
)
from approver.policy._types import Action, PolicyError, Problem

SUFFIXES: Final = (".yaml", ".yml")
TEST_SUFFIXES: Final = (".test.yaml", ".test.yml")

Loc = tuple[int | str, ...]


# -- reading ---------------------------------------------------------------------------------


def expand(paths: Sequence[str | Path]) -> tuple[list[tuple[str, Path]], list[Problem]]:
    """Files to load, in order: files as given, directories' ``*.yaml``/``*.yml`` by name.

    In a directory, hidden files and policy test files (``*.test.yaml``) are skipped.
    """
    files: list[tuple[str, Path]] = []
    problems: list[Problem] = []
    if not paths:
        problems.append(Problem("<policy>", None, None, "", "no policy file given"))
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.is_file()
                and p.name.endswith(SUFFIXES)
                and not p.name.endswith(TEST_SUFFIXES)
                and not p.name.startswith(".")
            )
            if not found:
                problems.append(Problem(str(given), None, None, "", "no *.yaml files here"))
            files.extend((str(p), p) for p in found)
        else:
            files.append((str(given), path))
    return files, problems


def read(name: str, path: Path) -> bytes | Problem:
    """A file's bytes (at most one byte over the cap), or why it cannot be read."""
    try:
        with path.open("rb") as fh:
            return fh.read(_yaml.MAX_BYTES + 1)
    except FileNotFoundError:
        return Problem(name, None, None, "", "no such file")
    except OSError as exc:
        return Problem(name, None, None, "", f"cannot read: {exc.strerror or exc}")


def digest(sources: Iterable[tuple[str, bytes]]) -> str:
    """sha256 over each file's base name and bytes, in load order, each length-prefixed.

    The base name (not the directory) is hashed so the same files deployed elsewhere keep
    their digest, while renaming (which can change the load order) changes it.
    """
    h = hashlib.sha256()
    for name, raw in sources:
        base = Path(name).name.encode("utf-8", "surrogateescape")
        for part in (base, raw):
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
    return h.hexdigest()


# -- mapping validation errors to file positions -------------------------------------------


def fmt_path(loc: Sequence[int | str]) -> str:
    """``("rules", 2, "when", "domains", 0)`` → ``rules[2].when.domains[0]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            out += ("." if out else "") + part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        else:
            return tp


def model_at(root: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model class validating the mapping at ``loc`` (for "valid keys" hints)."""
    tp: Any = root
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            fields = tp.model_fields
            if not isinstance(part, str) or part not in fields:
                return None
            tp = fields[part].annotation
        elif typing.get_origin(tp) is list:
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def suggest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _message(root: type[BaseModel], err: ErrorDetails, loc: Loc) -> str:
    typ, value = err["type"], err.get("input")
    ctx = err.get("ctx") or {}
    if typ == "policy":
        return str(ctx.get("message", err["msg"]))
    if typ == "extra_forbidden":
        key = str(loc[-1])
        model = model_at(root, loc[:-1])
        valid = list(model.model_fields) if model else []
        hint = suggest(key, valid) or (f" (valid keys: {', '.join(valid)})" if valid else "")
        return f"unknown key {key!r}{hint}"
    if typ == "missing":
        return f"missing required key {str(loc[-1])!r}"
    if typ in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping, got {kind(value)}"
    if typ == "list_type":
        return f"expected a list, got {kind(value)}"
    if typ == "string_type":
        hint = "; put it in quotes" if isinstance(value, bool | int | float) else ""
        return f"expected text, got {kind(value)}{hint}"
    if typ in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {kind(value)}"
    if typ == "bool_type":
        return f"expected true or false, got {kind(value)}"
    if typ == "literal_error":
        return f"expected {ctx.get('expected', '?')}, got {kind(value)}"
    if typ == "too_short":
        if "when" in loc:
            return "must not be empty (an empty list never matches; remove the key instead)"
        return "must not be empty"
    if typ == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}, got {kind(value)}"
    return str(err["msg"])


@dataclass
class _File:
    """One file while loading: its document, and problems found in it."""

    name: str
    doc: _yaml.Document
    problems: list[Problem] = field(default_factory=list)
    voided: set[Loc] = field(default_factory=set)  # values the reader replaced by None

    def problem(self, loc: Loc, message: str, *, key: bool = False, at: Loc | None = None) -> None:
        """A problem about ``loc``, positioned at ``at`` (default: ``loc``, or its key)."""
        line, column = self.doc.locate(loc if at is None else at, key=key)
        self.problems.append(Problem(self.name, line, column, fmt_path(loc), message))

    def where(self, loc: Loc, *, key: bool = False) -> str:
        line, column = self.doc.locate(loc, key=key)
        return f"{self.name}:{line}:{column}" if line is not None else self.name


def validation_problems(
    file: _File, root: type[BaseModel], exc: ValidationError, voided: set[Loc]
) -> None:
    """Add one problem per pydantic error, at the YAML position of its path."""
    for err in exc.errors(include_url=False):
        loc: Loc = tuple(err["loc"])
        key = err["type"] == "extra_forbidden"
        if loc and loc[-1] == "[key]":
            loc, key = loc[:-1], True
        if err["type"] != "extra_forbidden" and any(loc[: len(v)] == v for v in voided):
            continue  # already reported by the reader (null or a forbidden tag)
        message = _message(root, err, loc)
        # a missing key is reported where its mapping starts
        file.problem(loc, message, key=key, at=loc[:-1] if err["type"] == "missing" else None)


def parse_file(name: str, raw: bytes, root: type[BaseModel]) -> tuple[_File, BaseModel | None]:
    """Read and validate one file against ``root``: the file (with its problems), the model
    (``None`` if there were problems). An unreadable file raises ``PolicyError``."""
    try:
        doc, issues = _yaml.parse(raw)
    except _yaml.ReadError as exc:
        problems = [Problem(name, i.line, i.column, "", i.message) for i in exc.issues]
        raise PolicyError(problems) from None
    file = _File(name, doc, voided={i.loc for i in issues if i.voids})
    for i in issues:
        file.problems.append(Problem(name, i.line, i.column, fmt_path(i.loc), i.message))
    try:
        model = root.model_validate(doc.data)
    except ValidationError as exc:
        validation_problems(file, root, exc, file.voided)
        model = None
    return file, None if issues else model


# -- the policy's own view of a file (whole, or the valid parts of a broken one) -------------


@dataclass
class _View:
    file: _File
    default: Action | None = None
    confirmed: bool = False
    sets: dict[str, list[str] | None] = field(default_factory=dict)  # None: invalid members
    rules: list[tuple[int, RuleModel]] = field(default_factory=list)
    partial: set[int] = field(default_factory=set)  # rules with invalid parts (set to None)
    raw_rules: int = 0
    limits: LimitsModel | None = None


# Validators for the parts of a broken file (the whole file's model failed).
_ACTION: TypeAdapter[Any] = TypeAdapter(ActionName)
_LIMITS = TypeAdapter(LimitsModel)
_MEMBERS = TypeAdapter(list[DomainId])
_RULE = TypeAdapter(RuleModel)
_REF: TypeAdapter[Any] = TypeAdapter(DomainRef)
_RULE_ID: TypeAdapter[Any] = TypeAdapter(RuleId)
_TIME: TypeAdapter[Any] = TypeAdapter(AwareTime)


def _view(file: _File, model: PolicyFile | None) -> _View:
    if model is not None:
        return _View(
            file,
            default=model.default,
            confirmed=model.default_accept_confirmed,
            sets={k: list(v) for k, v in (model.domain_sets or {}).items()},
            rules=list(enumerate(model.rules or [])),
            raw_rules=len(model.rules or []),
            limits=model.limits,
        )
    data = file.doc.data if isinstance(file.doc.data, dict) else {}
    view = _View(file, confirmed=data.get("default_accept_confirmed") is True)
    view.default = _valid(_ACTION, data.get("default"))
    view.limits = _valid(_LIMITS, data.get("limits"))
    sets = data.get("domain_sets")
    if isinstance(sets, dict):
        view.sets = {str(k): _valid(_MEMBERS, v) for k, v in sets.items()}
    rules = data.get("rules")
    if isinstance(rules, list):
        view.raw_rules = len(rules)
        for index, raw in enumerate(rules):
            damaged = any(loc[:2] == ("rules", index) for loc in file.voided)
            rule = None if damaged else _valid(_RULE, raw)
            if rule is None and isinstance(raw, dict):
                rule = _partial_rule(raw)
                view.partial.add(index)
            if rule is not None:
                view.rules.append((index, rule))
    return view


def _partial_rule(raw: dict[str, Any]) -> RuleModel:
    """The valid parts of an invalid rule (others ``None``), for cross-reference checks."""
    when_raw = raw.get("when")
    refs = when_raw.get("domains") if isinstance(when_raw, dict) else None
    # None keeps the position of an invalid entry (already reported) in the list
    domains = [_valid(_REF, d) for d in refs] if isinstance(refs, list) else None
    return RuleModel.model_construct(
        id=_valid(_RULE_ID, raw.get("id")),
        when=When.model_construct(service=None, domains=domains, description=None),
        action=_valid(_ACTION, raw.get("action")),
        valid_from=_valid(_TIME, raw.get("valid_from")),
        valid_until=_valid(_TIME, raw.get("valid_until")),
    )


def _valid(adapter: TypeAdapter[Any], value: Any) -> Any:
    if value is None:
        return None
    try:
        return adapter.validate_python(value, strict=True)
    except ValidationError:
        return None


# -- pass 3: what only all files together can tell -------------------------------------------


def _check(views: list[_View], allow_accept_default: bool) -> tuple[Action, Limits]:
    sets: dict[str, tuple[_View, Loc]] = {}
    for view in views:
        for name in view.sets:
            loc: Loc = ("domain_sets", name)
            if name in sets:
                first, first_loc = sets[name]
                there = first.file.where(first_loc, key=True)
                view.file.problem(
                    loc, f"domain set {name!r} is already defined at {there}", key=True
                )
            else:
                sets[name] = (view, loc)

    rule_ids: dict[str, tuple[_View, Loc]] = {}
    for view in views:
        for index, rule in view.rules:
            loc = ("rules", index, "id")
            _check_rule(view, index, rule, sets, allow_accept_default)
            if rule.id is None:
                continue
            if rule.id in rule_ids:
                first, first_loc = rule_ids[rule.id]
                view.file.problem(
                    loc,
                    f"duplicate rule id {rule.id!r}: also at {first.file.where(first_loc)}",
                )
            else:
                rule_ids[rule.id] = (view, loc)

    default = _agree([(v, v.default, ("default",)) for v in views])
    limits = Limits(
        **{
            name: _agree([(v, getattr(v.limits, name, None), ("limits", name)) for v in views])
            for name in ("max_actions_per_sweep", "max_connections_per_domain")
        }
    )
    action: Action = default if default is not None else "hold"
    if action == "accept" and not allow_accept_default:
        setter = next(v for v in views if v.default == "accept")
        if not setter.confirmed:
            setter.file.problem(
                ("default",),
                "default: accept lets in every connection no rule matches; if that is really "
                "meant, add default_accept_confirmed: true to this file (or use hold)",
            )
    countable = all(
        isinstance(v.file.doc.data, dict) and isinstance(v.file.doc.data.get("rules", []), list)
        for v in views
    )
    if views and countable and sum(v.raw_rules for v in views) == 0:
        first = views[0]
        loc = ("rules",) if ("rules",) in first.file.doc.values else ()
        first.file.problem(loc, "the policy has no rules (add at least one under rules:)")
    return action, limits


def _agree(settings: list[tuple[_View, Any, Loc]]) -> Any:
    """The one value files set for a setting; differing values are problems."""
    chosen: tuple[_View, Any, Loc] | None = None
    for view, value, loc in settings:
        if value is None:
            continue
        if chosen is None:
            chosen = (view, value, loc)
        elif value != chosen[1]:
            view.file.problem(
                loc,
                f"{value!r} conflicts with {chosen[1]!r} set at {chosen[0].file.where(chosen[2])}",
            )
    return chosen[1] if chosen else None


def _check_rule(
    view: _View,
    index: int,
    rule: RuleModel,
    sets: dict[str, tuple[_View, Loc]],
    allow_accept_default: bool,
) -> None:
    base: Loc = ("rules", index)
    for j, ref in enumerate(rule.when.domains or []):
        if ref is None or DOMAIN_ID_RE.fullmatch(ref) or ref in sets:
            continue
        hint = suggest(ref, sets)
        defined = f"; defined sets: {', '.join(sets)}" if sets and not hint else ""
        view.file.problem(
            (*base, "when", "domains", j), f"undefined domain set {ref!r}{hint}{defined}"
        )
    if rule.valid_from and rule.valid_until and rule.valid_from >= rule.valid_until:
        view.file.problem(
            (*base, "valid_until"),
            f"impossible window: valid_until {fmt_time(rule.valid_until)} is not after "
            f"valid_from {fmt_time(rule.valid_from)}",
        )
    w = rule.when
    unconditional = w.service is None and w.domains is None and w.description is None
    if index in view.partial or (allow_accept_default or view.confirmed):
        return
    if rule.action == "accept" and unconditional:
        view.file.problem(
            (*base, "when"),
            f"rule {rule.id!r} accepts every connection (its when: is empty); if that is really "
            "meant, add default_accept_confirmed: true to this file",
        )


# -- compiling -------------------------------------------------------------------------------


def _compile_rule(
    view: _View, index: int, rule: RuleModel, sets: dict[str, frozenset[str]]
) -> Rule:
    w = rule.when
    selector = w.service
    tags: tuple[TagCondition, ...] = ()
    if selector is not None and selector.tags:
        tags = tuple(
            TagCondition(
                key,
                None
                if value == ANY_VALUE
                else frozenset([value] if isinstance(value, str) else value),
            )
            for key, value in selector.tags.items()
        )
    domains: frozenset[str] | None = None
    if w.domains is not None:
        domains = frozenset(d for ref in w.domains for d in sets.get(ref, {ref}))
    line, column = view.file.doc.locate(("rules", index))
    return Rule(
        id=rule.id,
        action=rule.action,
        description=rule.description,
        service_ids=frozenset(selector.ids) if selector and selector.ids else None,
        service_names=tuple(selector.names) if selector and selector.names else None,
        service_tags=tags,
        domains=domains,
        domain_refs=tuple(w.domains or ()),
        description_regex=w.description,
        valid_from=rule.valid_from,
        valid_until=rule.valid_until,
        source=view.file.name,
        line=line,
        column=column,
        path=fmt_path(("rules", index)),
    )


def load_sources(
    sources: Sequence[tuple[str, bytes]], *, allow_accept_default: bool = False
) -> Policy:
    """The policy from (name, bytes) pairs, in order; ``PolicyError`` lists every problem."""
    problems: list[Problem] = []
    views: list[_View] = []
    for name, raw in sources:
        try:
            file, model = parse_file(name, raw, PolicyFile)
        except PolicyError as exc:
            problems.extend(exc.problems)
            continue
        views.append(_view(file, model if isinstance(model, PolicyFile) else None))
    if not sources:
        problems.append(Problem("<policy>", None, None, "", "no policy file given"))
    default, limits = _check(views, allow_accept_default)
    problems.extend(p for v in views for p in v.file.problems)
    if problems:
        order = {name: i for i, (name, _) in enumerate(sources)}
        problems.sort(key=lambda p: (order.get(p.file, -1), p.line or 0, p.column or 0))
        raise PolicyError(problems)
    sets = {name: frozenset(members or ()) for v in views for name, members in v.sets.items()}
    rules = tuple(_compile_rule(v, i, r, sets) for v in views for i, r in v.rules)
    origins = {
        name: (v.file.name, *v.file.doc.locate(("domain_sets", name), key=True))
        for v in views
        for name in v.sets
    }
    return Policy(
        digest=digest(sources),
        sources=tuple(name for name, _ in sources),
        default=default,
        rules=rules,
        limits=limits,
        domain_sets=sets,
        set_origins=origins,
    )


def load_policy(paths: Sequence[str | Path], *, allow_accept_default: bool = False) -> Policy:
    """Load, validate and compile policy files and directories, in the order given.

    A directory contributes its ``*.yaml`` and ``*.yml`` files sorted by name (hidden files and
    ``*.test.yaml`` skipped). Raises ``PolicyError`` with every problem found in every file.
    ``allow_accept_default`` accepts ``default: accept`` without ``default_accept_confirmed``.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    files, problems = expand(paths)
    sources: list[tuple[str, bytes]] = []
    for name, path in files:
        raw = read(name, path)
        if isinstance(raw, Problem):
            problems.append(raw)
        else:
            sources.append((name, raw))
    if problems:
        if sources:  # report the readable files' problems too
            try:
                load_sources(sources, allow_accept_default=allow_accept_default)
            except PolicyError as exc:
                problems.extend(exc.problems)
        raise PolicyError(problems)
    return load_sources(sources, allow_accept_default=allow_accept_default)


def load_policy_text(
    text: str, *, name: str = "<policy>", allow_accept_default: bool = False
) -> Policy:
    """``load_policy`` for one policy given as text (tests, tools)."""
    return load_sources([(name, text.encode())], allow_accept_default=allow_accept_default)
