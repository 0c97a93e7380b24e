"""Parse the API's JSON into ``approver.records`` values, refusing what does not fit.

A record that cannot be parsed is never guessed at: the caller gets a ``Malformed`` entry,
skips it (no action) and audits why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from approver.records import Connection, Service


class RecordError(ValueError):
    """One API record does not have the documented shape."""


@dataclass(frozen=True)
class Malformed:
    """A record that was skipped, with what little could be read of it."""

    id: str | None
    reason: str


def parse_time(value: Any) -> datetime | None:
    """Timestamps come as ``2018-01-30T07:42:01Z`` or ``2018-01-30T07:42:01.174`` (UTC either way)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RecordError(f"timestamp is {type(value).__name__}, not a string")
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise RecordError(f"unreadable timestamp {value[:40]!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _str(data: dict[str, Any], key: str, *, required: bool = True) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise RecordError(f"field {key!r} missing or not a string")
    return value


def parse_connection(data: Any) -> Connection:
    if not isinstance(data, dict):
        raise RecordError("connection is not a JSON object")
    marker = data.get("marker_id")
    if marker is not None and (isinstance(marker, bool) or not isinstance(marker, int)):
        raise RecordError("field 'marker_id' is not an integer")
    return Connection(
        id=_str(data, "id"),
        domain_id=_str(data, "domain_id"),
        status=_str(data, "status"),
        description=_str(data, "description", required=False),
        marker_id=marker,
        created_at=parse_time(data.get("created_at")),
        updated_at=parse_time(data.get("updated_at")),
    )


def parse_tags(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise RecordError("field 'tags' is not a list")
    tags: dict[str, str] = {}
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise RecordError("a tag is not {key, value}")
        value = item.get("value", "")
        tags[item["key"]] = value if isinstance(value, str) else str(value)
    return tags


def parse_service(data: Any) -> Service:
    if not isinstance(data, dict):
        raise RecordError("service is not a JSON object")
    approval = data.get("approval_enabled")
    if not isinstance(approval, bool):
        raise RecordError("field 'approval_enabled' missing or not a boolean")
    return Service(
        id=_str(data, "id"),
        name=_str(data, "service_name", required=False) or _str(data, "id"),
        tags=parse_tags(data.get("tags")),
        approval_enabled=approval,
        status=_str(data, "status", required=False),
    )


def record_id(data: Any) -> str | None:
    """Best-effort id of a record that failed to parse, for the audit trail."""
    if isinstance(data, dict) and isinstance(data.get("id"), str):
        return str(data["id"])[:64]
    return None
