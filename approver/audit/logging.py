"""Operational logs: one structlog + stdlib processor chain, JSON or console, with redaction.

Everything (structlog events and stdlib loggers such as ``httpx``, ``httpcore``,
``apscheduler``) goes through the root logger's single handler and a
``structlog.stdlib.ProcessorFormatter``, so every line gets the same fields, the same UTC
timestamps and the same redaction, whoever emitted it.

Chain: contextvars, level, logger name, ``timestamp`` (UTC ISO, ``Z``) → stack info →
exception rendering (JSON: ``ExceptionDictTransformer(show_locals=False)``; console: a plain
traceback, never locals) → :class:`Redactor` → renderer. The redactor runs last before the
renderer, *after* exceptions became data, so an exception message holding a secret is caught
too.
"""

from __future__ import annotations

import base64
import logging
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Protocol, TextIO
from urllib.parse import quote, quote_plus

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED: Final = "[REDACTED]"
# Keys whose values are never logged, compared case-insensitively with "-" read as "_".
SENSITIVE_KEYS: Final = frozenset(
    {
        "ak",
        "sk",
        "secret",
        "password",
        "token",
        "authorization",
        "proxy_authorization",
        "x_security_token",
        "security_token",
        "access_key",
        "secret_key",
        "secret_access_key",
        "cookie",
        "set_cookie",
    }
)
SENSITIVE_SUFFIXES: Final = ("_token", "_secret", "_password", "_secret_key")
# Shorter secret values are not searched for in text: they would redact ordinary words.
MIN_SECRET_LENGTH: Final = 6
_MAX_DEPTH: Final = 32
_NOISY_LOGGERS: Final = ("httpx", "httpcore")
_PERCENT = re.compile(r"%[0-9A-F]{2}")


def is_sensitive_key(key: object) -> bool:
    """True for a key whose value must never be logged (``SK``, ``x-security-token``, …)."""
    if isinstance(key, bytes):
        key = key.decode("latin-1")
    if not isinstance(key, str):
        return False
    norm = key.lower().replace("-", "_")
    return norm in SENSITIVE_KEYS or norm.endswith(SENSITIVE_SUFFIXES)


def secret_forms(secret: str) -> frozenset[str]:
    """The text forms a secret can take in a log line: raw, URL-encoded and base64.

    Base64 is covered at all three byte alignments (the secret inside a larger encoded blob,
    as in ``Basic base64(ak:sk)``): for each, the characters that depend on the secret's bytes
    only.
    """
    raw = secret.encode("utf-8")
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}
    forms |= {_PERCENT.sub(lambda m: m.group(0).lower(), form) for form in forms}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for offset in range(3):
            encoded = encode(b"\0" * offset + raw).decode("ascii")
            first = -(-8 * offset // 6)
            last = 8 * (offset + len(raw)) // 6
            forms.add(encoded[first:last])
    return frozenset(form for form in forms if len(form) >= MIN_SECRET_LENGTH)


class Redactor:
    """structlog processor: hide secrets by key and by value, recursively.

    * By key: values under :data:`SENSITIVE_KEYS` (or ending in :data:`SENSITIVE_SUFFIXES`),
      in dicts at any depth and in ``(name, value)`` pairs such as header lists, become
      ``"[REDACTED]"``.
    * By value: any string containing a current secret (from ``secrets()``, called per event so
      rotated credentials are covered at once) raw, URL-encoded or base64-encoded becomes
      ``"[REDACTED]"``. A multi-line string (a rendered traceback) loses only the lines that
      contain a secret. Other objects are redacted when their ``str``/``repr`` would leak.
    """

    def __init__(self, secrets: Callable[[], Iterable[str]] = lambda: ()) -> None:
        self._secrets = secrets
        self._cache: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())

    def _forms(self) -> tuple[str, ...]:
        try:
            current = tuple(
                sorted(
                    {
                        s
                        for s in self._secrets()
                        if isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH
                    }
                )
            )
        except Exception:
            return self._cache[1]  # never let a failing secret source break logging
        cached_key, cached_forms = self._cache
        if current != cached_key:
            forms: set[str] = set()
            for secret in current:
                forms |= secret_forms(secret)
            cached_forms = tuple(sorted(forms, key=len))
            self._cache = (current, cached_forms)
        return cached_forms

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        forms = self._forms()
        return {
            self._key(key, forms): REDACTED
            if is_sensitive_key(key)
            else self._value(value, forms, 0)
            for key, value in event_dict.items()
        }

    @staticmethod
    def _leaks(text: str, forms: tuple[str, ...]) -> bool:
        return any(form in text for form in forms)

    def _key(self, key: Any, forms: tuple[str, ...]) -> Any:
        if isinstance(key, str) and self._leaks(key, forms):
            return REDACTED
        return key

    def _text(self, text: str, forms: tuple[str, ...]) -> str:
        if not self._leaks(text, forms):
            return text
        if "\n" not in text:
            return REDACTED
        return "\n".join(
            REDACTED if self._leaks(line, forms) else line for line in text.split("\n")
        )

    def _value(self, value: Any, forms: tuple[str, ...], depth: int) -> Any:
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, str):
            return self._text(value, forms) if forms else value
        if depth < _MAX_DEPTH:
            if isinstance(value, Mapping):
                return {
                    self._key(k, forms): REDACTED
                    if is_sensitive_key(k)
                    else self._value(v, forms, depth + 1)
                    for k, v in value.items()
                }
            if isinstance(value, list | tuple | set | frozenset):
                if (
                    len(value) == 2
                    and isinstance(value, list | tuple)
                    and is_sensitive_key(value[0])
                ):
                    pair = [self._value(value[0], forms, depth + 1), REDACTED]
                    return tuple(pair) if isinstance(value, tuple) else pair
                items = [self._value(v, forms, depth + 1) for v in value]
                return items if isinstance(value, list) else tuple(items)
        if not forms:
            return value
        return REDACTED if self._object_leaks(value, forms) else value

    def _object_leaks(self, value: Any, forms: tuple[str, ...]) -> bool:
        renderings: list[str] = []
        try:
            if isinstance(value, bytes | bytearray):
                renderings.append(bytes(value).decode("latin-1"))
            renderings.append(repr(value))
            renderings.append(str(value))
            hook = getattr(value, "__structlog__", None)
            if callable(hook):
                renderings.append(str(hook()))
        except Exception:
            return True  # cannot tell what it would render as: do not render it
        return any(self._leaks(text, forms) for text in renderings)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one root handler ``configure_logging`` installs (found again by its type)."""

    def handleError(self, record: logging.LogRecord) -> None:
        # logging's default prints the record's message and arguments to stderr, unredacted.
        try:
            exc_type = sys.exc_info()[0]
            name = exc_type.__name__ if exc_type else "error"
            sys.stderr.write(f"vpcep-approver: a log line could not be rendered ({name})\n")
        except Exception:
            pass


def _parse_level(level: str) -> int:
    names = logging.getLevelNamesMapping()
    value = names.get(level.upper()) if isinstance(level, str) else None
    if value is None:
        raise ValueError(f"unknown log level {level!r} (debug, info, warning, error, critical)")
    return value


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def configure_logging(
    *,
    json: bool | None = None,
    level: str = "info",
    stream: TextIO = sys.stdout,
    secrets: Callable[[], Iterable[str]] = lambda: (),
) -> None:
    """Set up structlog and stdlib logging to write redacted lines to ``stream``.

    JSON lines when ``json`` is True, or when it is None and ``stream`` is not a TTY
    (journald, containers); otherwise structlog's console lines, colored only on a TTY.
    ``httpx`` and ``httpcore`` are held at WARNING (httpcore DEBUG prints headers).
    Idempotent: calling it again replaces the previous setup.
    """
    threshold = _parse_level(level)
    tty = _isatty(stream)
    use_json = (not tty) if json is None else json

    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    pre_chain: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        timestamper,
    ]
    renderer: Processor
    exceptions: Processor
    if use_json:
        exceptions = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False, use_rich=False)
        )
        renderer = structlog.processors.JSONRenderer()
    else:
        exceptions = structlog.processors.ExceptionRenderer()  # plain text, no locals
        renderer = structlog.dev.ConsoleRenderer(
            colors=tty, exception_formatter=structlog.dev.plain_traceback
        )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=pre_chain,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.StackInfoRenderer(),
            exceptions,
            Redactor(secrets),
            renderer,
        ],
    )
    handler = _Handler(stream)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    _remove_handlers(root)
    root.addHandler(handler)
    root.setLevel(threshold)
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, threshold))

    structlog.configure(
        processors=[*pre_chain, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )


def reset_logging() -> None:
    """Undo :func:`configure_logging` (for tests and embedding)."""
    _remove_handlers(logging.getLogger())
    logging.getLogger().setLevel(logging.WARNING)
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    structlog.reset_defaults()


def _remove_handlers(root: logging.Logger) -> None:
    for old in list(root.handlers):
        if isinstance(old, _Handler):
            root.removeHandler(old)
            old.close()


class _InfoLogger(Protocol):
    def info(self, event: str, *args: Any, **kw: Any) -> Any: ...


def log_record(logger: _InfoLogger, record: Mapping[str, Any]) -> None:
    """Emit an audit record on the log stream: ``event`` is its name, the rest are fields."""
    fields = dict(record)
    event = fields.pop("event", "audit")
    logger.info(str(event), **fields)
