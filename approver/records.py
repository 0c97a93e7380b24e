"""What the cloud tells us about services and connections, as plain frozen values.

This is the innermost module: ``policy`` decides over these, ``cloud`` parses API JSON into
them, and neither needs the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Final

# Connection statuses the API documents; anything else is "unknown" and never acted on.
PENDING: Final = "pendingAcceptance"
CONNECTION_STATUSES: Final = frozenset(
    {PENDING, "creating", "accepted", "rejected", "failed", "deleting"}
)
# What max_connections_per_domain counts: connections that hold (or are taking) a slot.
COUNTED_STATUSES: Final = frozenset({"accepted", "creating"})


def _frozen(tags: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(tags))


@dataclass(frozen=True)
class Service:
    """An endpoint service the daemon watches (ServiceList / ListServiceDetails)."""

    id: str
    name: str
    tags: Mapping[str, str] = field(default_factory=dict)
    approval_enabled: bool = True
    status: str = "available"

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", _frozen(self.tags))


@dataclass(frozen=True)
class Connection:
    """One consumer endpoint's connection to a service (ConnectionEndpoints).

    ``id`` is the consumer's VPC endpoint id, the one the accept/reject call takes.
    """

    id: str
    domain_id: str
    status: str
    description: str = ""
    marker_id: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
