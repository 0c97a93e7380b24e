"""Decision records: the durable hash-chained audit log, its verifier, and log setup.

Inner layer: imports only the standard library and structlog.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from approver.audit.log import AuditLog, AuditWriteError
from approver.audit.logging import Redactor, configure_logging, log_record, reset_logging
from approver.audit.verify import VerifyReport, verify

__all__ = [
    "AuditLog",
    "AuditWriteError",
    "Redactor",
    "VerifyReport",
    "configure_logging",
    "load_record_schema",
    "log_record",
    "reset_logging",
    "verify",
]


def load_record_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of audit records, as shipped in the package."""
    text = resources.files(__package__).joinpath("record.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
