"""The policy file's shape, as pydantic models: validation and the published JSON Schema.

Every model forbids unknown keys and is strict (no ``"5"`` → ``5``, no ``1`` → ``"1"``).
Value types that need more than a type check (domain ids, regexes, timestamps, …) are
``Annotated`` strings with one validator each and an explicit JSON Schema, so the schema an
editor uses says the same thing the loader enforces. References *between* values (undefined
domain sets, duplicate rule ids, windows, defaults across files) are checked after this, in
``_load``, where every file is known.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from approver.policy._types import RESERVED_RULE_IDS

DOMAIN_ID_RE: Final = re.compile(r"[0-9a-f]{32}")
SET_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
RULE_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
SERVICE_ID_RE: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MAX_REGEX: Final = 1024
ANY_VALUE: Final = "*"


def fail(message: str) -> PydanticCustomError:
    """A validation error whose message is ``message`` verbatim (braces and all)."""
    return PydanticCustomError("policy", "{message}", {"message": message})


def kind(value: object) -> str:
    """How a YAML value reads to a person, for "expected X, got Y" messages."""
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()} (YAML reads yes/no/on/off/true/false so)"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, datetime | date):
        return "a date/time"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, str):
        return f"the text {value!r}"
    return type(value).__name__


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        hint = "; put it in quotes" if isinstance(value, bool | int | float | date) else ""
        raise fail(f"expected {what}, got {kind(value)}{hint}")
    return value


def _why_not_domain_id(value: str) -> str:
    if value != value.strip():
        return "it has leading or trailing whitespace"
    if not value.isascii():
        return "it contains non-ASCII characters (look-alikes?)"
    if DOMAIN_ID_RE.fullmatch(value.lower()):
        return "it has upper-case letters; domain ids are compared exactly"
    if len(value) != 32:
        return f"it has {len(value)} characters"
    return "it has characters other than 0-9 and a-f"


def check_domain_id(value: Any) -> str:
    text = _text(value, "a domain id (32 lower-case hex characters)")
    if not DOMAIN_ID_RE.fullmatch(text):
        raise fail(
            f"malformed domain id {text!r}: expected 32 lower-case hex characters "
            f"({_why_not_domain_id(text)})"
        )
    return text


def looks_like_domain_id(value: str) -> bool:
    """Hex-ish text of about a domain id's length: a typo'd id rather than a set name."""
    core = value.strip()
    return len(core) >= 16 and all(c in "0123456789abcdefABCDEF" for c in core)


def check_domain_ref(value: Any) -> str:
    text = _text(value, "a domain id or a domain-set name")
    if DOMAIN_ID_RE.fullmatch(text):
        return text
    if looks_like_domain_id(text) or not SET_NAME_RE.fullmatch(text):
        raise fail(
            f"{text!r} is neither a domain id (32 lower-case hex characters: "
            f"{_why_not_domain_id(text)}) nor a domain-set name"
        )
    return text


def check_set_name(value: Any) -> str:
    text = _text(value, "a domain-set name")
    if not SET_NAME_RE.fullmatch(text) or DOMAIN_ID_RE.fullmatch(text):
        raise fail(
            f"invalid domain-set name {text!r}: use a letter or _, then letters, digits, "
            "_ . - (at most 64), and not something that reads as a domain id"
        )
    return text


def check_rule_id(value: Any) -> str:
    text = _text(value, "a rule id")
    if not RULE_ID_RE.fullmatch(text):
        raise fail(
            f"invalid rule id {text!r}: use letters, digits and _ . : - "
            "(starting with a letter or digit, at most 128)"
        )
    if text in RESERVED_RULE_IDS:
        raise fail(f"rule id {text!r} is reserved (decisions use it); choose another")
    return text


def check_service_id(value: Any) -> str:
    text = _text(value, "a service id")
    if not SERVICE_ID_RE.fullmatch(text):
        raise fail(
            f"malformed service id {text!r}: expected a lower-case UUID "
            "(8-4-4-4-12 hex digits); service ids are compared exactly"
        )
    return text


def _trimmed(what: str, max_len: int, *, empty: bool = False) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        text = _text(value, what)
        if not text and not empty:
            raise fail(f"{what} must not be empty")
        if text != text.strip():
            raise fail(f"{what} {text!r} has leading or trailing whitespace; it would never match")
        if len(text) > max_len:
            raise fail(f"{what} is longer than {max_len} characters")
        return text

    return check


def check_regex(value: Any) -> str:
    text = _text(value, "a regular expression")
    if len(text) > MAX_REGEX:
        raise fail(f"regular expression is longer than {MAX_REGEX} characters")
    try:
        re.compile(text)
    except re.error as exc:
        where = f" at position {exc.pos}" if exc.pos is not None else ""
        raise fail(f"invalid regular expression {text!r}: {exc.msg}{where}") from None
    return text


def check_tag_value(value: Any) -> str | list[str]:
    tag_value = _trimmed("tag value", 255, empty=True)
    if isinstance(value, list):
        if not value:
            raise fail("an empty list of tag values never matches; list values or use '*'")
        items = [tag_value(v) for v in value]
        if ANY_VALUE in items:
            raise fail("'*' (any value) cannot be one of a list; write it alone")
        return items
    if not isinstance(value, str):
        raise fail(f"expected a tag value, a list of them, or '*', got {kind(value)}")
    return tag_value(value)


def parse_time(value: Any) -> datetime:
    """An aware datetime from YAML (a timestamp or an ISO 8601 string); naive ones refused."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise fail(
                f"unreadable time {value!r}: write ISO 8601 with a timezone, "
                "e.g. 2026-01-01T00:00:00Z"
            ) from None
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise fail(
                f"time {value.isoformat()} has no timezone: add one, e.g. "
                f"{value.isoformat()}Z (naive times are ambiguous)"
            )
        return value
    if isinstance(value, date):
        raise fail(
            f"{value.isoformat()} is a date; write a time with a timezone, e.g. "
            f"{value.isoformat()}T00:00:00Z"
        )
    raise fail(f"expected a time such as 2026-01-01T00:00:00Z, got {kind(value)}")


DomainId = Annotated[
    str,
    PlainValidator(check_domain_id),
    WithJsonSchema(
        {"type": "string", "pattern": "^[0-9a-f]{32}$", "description": "a Huawei domain id"},
    ),
]
DomainRef = Annotated[
    str,
    PlainValidator(check_domain_ref),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^([0-9a-f]{32}|[A-Za-z_][A-Za-z0-9_.-]{0,63})$",
            "description": "a domain id (32 lower-case hex characters) or a domain_sets name",
        },
    ),
]
SetName = Annotated[
    str,
    PlainValidator(check_set_name),
    WithJsonSchema({"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"}),
]
RuleId = Annotated[
    str,
    PlainValidator(check_rule_id),
    WithJsonSchema({"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"}),
]
ServiceId = Annotated[
    str,
    PlainValidator(check_service_id),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
        },
    ),
]
NameGlob = Annotated[
    str,
    PlainValidator(_trimmed("service name pattern", 256)),
    WithJsonSchema(
        {"type": "string", "minLength": 1, "description": "a glob: * ? [seq], case-sensitive"},
    ),
]
TagKey = Annotated[
    str,
    PlainValidator(_trimmed("tag key", 128)),
    WithJsonSchema({"type": "string", "minLength": 1}),
]
TagValue = Annotated[
    str | list[str],
    PlainValidator(check_tag_value),
    WithJsonSchema(
        {
            "description": "a value, a list of values (any of), or '*' (key present)",
            "anyOf": [
                {"type": "string", "maxLength": 255},
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
            ],
        },
    ),
]
Regex = Annotated[
    str,
    PlainValidator(check_regex),
    WithJsonSchema(
        {"type": "string", "format": "regex", "maxLength": MAX_REGEX},
    ),
]
AwareTime = Annotated[
    datetime,
    PlainValidator(parse_time),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
ActionName = Literal["accept", "reject", "hold"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ServiceSelector(Strict):
    """Which endpoint services a rule applies to; every key given must hold."""

    ids: list[ServiceId] | None = Field(
        None, min_length=1, description="service ids (lower-case UUIDs), any of"
    )
    names: list[NameGlob] | None = Field(
        None, min_length=1, description="service name globs (* ? [seq], case-sensitive), any of"
    )
    tags: dict[TagKey, TagValue] | None = Field(
        None,
        min_length=1,
        description="service tags, all of: a value, a list of values (any of), or '*' (present)",
    )


class When(Strict):
    """A rule's conditions; every key given must hold (an empty mapping matches everything)."""

    service: ServiceSelector | None = Field(None, description="which endpoint services")
    domains: list[DomainRef] | None = Field(
        None, min_length=1, description="consumer domain ids or domain_sets names, any of"
    )
    description: Regex | None = Field(
        None, description="Python regex, searched in the connection's description"
    )


class RuleModel(Strict):
    """One rule: the first rule (in file order) whose conditions all hold decides."""

    id: RuleId = Field(description="unique across all loaded files")
    description: str | None = Field(None, description="why the rule exists (ticket, owner)")
    when: When
    action: ActionName
    valid_from: AwareTime | None = Field(None, description="in force from (inclusive)")
    valid_until: AwareTime | None = Field(None, description="in force until (exclusive)")


class LimitsModel(Strict):
    max_actions_per_sweep: int | None = Field(
        None, ge=0, description="above this many accepts+rejects in one sweep, act on none"
    )
    max_connections_per_domain: int | None = Field(
        None,
        ge=0,
        description="per service: an accept for a domain with this many accepted or creating "
        "connections becomes hold",
    )


class PolicyFile(Strict):
    """One policy file. Several files (or a directory of them) merge in order."""

    model_config = ConfigDict(title="vpcep-approver policy")

    version: Literal[1]
    default: ActionName | None = Field(
        None, description="when no rule matches: hold (the default) or reject"
    )
    default_accept_confirmed: bool = Field(
        False, description="required (true) for default: accept or an unconditional accept rule"
    )
    domain_sets: dict[SetName, list[DomainId]] | None = Field(
        None, description="named lists of consumer domain ids"
    )
    rules: list[RuleModel] | None = None
    limits: LimitsModel | None = None


def field_names(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)
