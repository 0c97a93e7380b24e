"""Settings: one YAML file, every setting also an environment variable, CLI over env over file.

The result is a frozen ``Settings`` built once at start-up and passed in; nothing reads the
environment or the file afterwards.

Environment variables are ``VPCEP_APPROVER_<FIELD>`` for top-level fields and
``VPCEP_APPROVER_<SECTION>__<FIELD>`` for nested ones (``VPCEP_APPROVER_HTTP__READ_TIMEOUT``).
A single target can be given entirely by environment (containers): ``VPCEP_APPROVER_REGION``,
``VPCEP_APPROVER_PROJECT_ID`` (or the SDK's ``HUAWEICLOUD_SDK_PROJECT_ID``),
``VPCEP_APPROVER_ENDPOINT``, ``VPCEP_APPROVER_SERVICE_NAMES`` (comma-separated globs).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from approver.cloud.regions import EndpointError, InvalidEndpoint, endpoint_for
from approver.policy import yaml_source

ENV_PREFIX = "VPCEP_APPROVER_"
PROJECT_ID = re.compile(r"^[0-9a-f]{32}$")
TARGET_ENV = ("REGION", "PROJECT_ID", "ENDPOINT", "SERVICE_NAMES")


class ConfigError(Exception):
    """Bad configuration. ``str()`` is one line per problem: ``file:line:col: field: message``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServiceSelector(_Model):
    """Which of a project's endpoint services to watch (all with approval enabled, by default)."""

    ids: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    tags: Mapping[str, str] = Field(default_factory=dict)


class Target(_Model):
    """One (region, project) to sweep, optionally at another endpoint URL."""

    name: str = ""
    region: str = "cn-north-4"
    project_id: str
    endpoint: str | None = None
    services: ServiceSelector = ServiceSelector()

    @field_validator("project_id")
    @classmethod
    def _project(cls, value: str) -> str:
        if not PROJECT_ID.match(value):
            raise ValueError("a project id is 32 lower-case hex characters")
        return value

    @property
    def url(self) -> str:
        return endpoint_for(self.region, self.endpoint)

    @property
    def label(self) -> str:
        return self.name or f"{self.region}/{self.project_id[:8]}"


class CredentialsConfig(_Model):
    ak_file: Path | None = None
    sk_file: Path | None = None
    security_token_file: Path | None = None


class HttpConfig(_Model):
    connect_timeout: Annotated[float, Field(gt=0)] = 5.0
    read_timeout: Annotated[float, Field(gt=0)] = 30.0
    attempts: Annotated[int, Field(ge=1, le=10)] = 4
    backoff_base: Annotated[float, Field(gt=0)] = 0.5
    backoff_cap: Annotated[float, Field(gt=0)] = 20.0
    page_limit: Annotated[int, Field(ge=1, le=1000)] = 1000
    max_pages: Annotated[int, Field(ge=1)] = 200
    concurrency: Annotated[int, Field(ge=1, le=64)] = 8


class Settings(_Model):
    """Everything the daemon needs to know, validated."""

    policy: tuple[Path, ...] = ()
    targets: tuple[Target, ...] = ()
    interval_seconds: Annotated[float, Field(gt=0)] = 30.0
    jitter_seconds: Annotated[float, Field(ge=0)] = 3.0
    dry_run: bool = False
    state_dir: Path | None = None
    audit_log: Path | None = None
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    credentials: CredentialsConfig = CredentialsConfig()
    http: HttpConfig = HttpConfig()

    @property
    def audit_path(self) -> Path | None:
        if self.audit_log is not None:
            return self.audit_log
        return self.state_dir / "audit.jsonl" if self.state_dir else None


def _env_value(field_type: Any, raw: str) -> Any:
    """Environment strings for list fields are comma-separated; pydantic coerces the rest."""
    text = str(field_type)
    if "tuple" in text:
        return [item.strip() for item in raw.split(",") if item.strip()]
    return raw


def env_overrides(environ: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Settings from ``VPCEP_APPROVER_*``; also returns the names of unknown variables."""
    data: dict[str, Any] = {}
    unknown: list[str] = []
    nested: dict[str, type[BaseModel]] = {"credentials": CredentialsConfig, "http": HttpConfig}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key.upper() in TARGET_ENV:
            continue
        section, _, sub = key.partition("__")
        if sub and section in nested and sub in nested[section].model_fields:
            field = nested[section].model_fields[sub]
            data.setdefault(section, {})[sub] = _env_value(field.annotation, raw)
        elif not sub and key in Settings.model_fields and key not in nested and key != "targets":
            data[key] = _env_value(Settings.model_fields[key].annotation, raw)
        else:
            unknown.append(name)
    return data, sorted(unknown)


def _env_target(environ: Mapping[str, str]) -> dict[str, Any]:
    target: dict[str, Any] = {}
    if region := environ.get(ENV_PREFIX + "REGION"):
        target["region"] = region
    project = environ.get(ENV_PREFIX + "PROJECT_ID") or environ.get("HUAWEICLOUD_SDK_PROJECT_ID")
    if project:
        target["project_id"] = project
    if endpoint := environ.get(ENV_PREFIX + "ENDPOINT"):
        target["endpoint"] = endpoint
    if names := environ.get(ENV_PREFIX + "SERVICE_NAMES"):
        target["services"] = {"names": [n.strip() for n in names.split(",") if n.strip()]}
    return target


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def load_settings(
    path: str | Path | None,
    environ: Mapping[str, str],
    cli: Mapping[str, Any] | None = None,
) -> tuple[Settings, list[str]]:
    """Build the settings; returns them and warnings (e.g. unknown environment variables)."""
    doc: yaml_source.Document | None = None
    data: dict[str, Any] = {}
    if path is not None:
        try:
            doc, issues = yaml_source.parse(Path(path).read_bytes())
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read ({exc.strerror})"]) from None
        except yaml_source.ReadError as exc:
            raise ConfigError([_issue(path, i) for i in exc.issues]) from None
        if issues:
            # Same safe reader as policies: duplicate keys, nulls and tags are refused.
            raise ConfigError([_issue(path, i) for i in issues])
        if doc.data is not None and not isinstance(doc.data, dict):
            raise ConfigError([f"{path}:1:1: the config must be a mapping of settings"])
        data = dict(doc.data or {})
    env, unknown = env_overrides(environ)
    warnings = [f"unknown environment variable {name} (ignored)" for name in unknown]
    data = _merge(data, env)
    target_env = _env_target(environ)
    if target_env:
        targets = list(data.get("targets") or [])
        if len(targets) > 1:
            raise ConfigError(
                [
                    "VPCEP_APPROVER_REGION/PROJECT_ID/ENDPOINT describe one target, but the config "
                    "file has several: set them in the file instead"
                ]
            )
        first = targets[0] if targets and isinstance(targets[0], dict) else {}
        data["targets"] = [_merge(first, target_env)]
    data = _merge(data, {k: v for k, v in (cli or {}).items() if v is not None})
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, doc, str(path or "<environment>"))) from None
    problems = _check(settings, str(path or "<environment>"), doc)
    if problems:
        raise ConfigError(problems)
    return settings, warnings


def _check(settings: Settings, name: str, doc: yaml_source.Document | None) -> list[str]:
    problems = []
    if not settings.policy:
        problems.append(f"{name}: policy: no policy file given (set policy: or --policy)")
    if not settings.targets:
        problems.append(
            f"{name}: targets: no target (set targets: or VPCEP_APPROVER_PROJECT_ID and "
            "VPCEP_APPROVER_REGION)"
        )
    for i, target in enumerate(settings.targets):
        try:
            _ = target.url
        except EndpointError as exc:
            # Point at the field that is wrong: a bad URL, or a region with no known endpoint.
            field = "endpoint" if isinstance(exc, InvalidEndpoint) else "region"
            line, col = doc.locate(("targets", i, field)) if doc else (None, None)
            where = f"{name}:{line}:{col}" if line else name
            problems.append(f"{where}: targets[{i}].{field}: {exc}")
    return problems


def _issue(path: str | Path, issue: yaml_source.Issue) -> str:
    field = ".".join(str(p) for p in issue.loc)
    return f"{path}:{issue.line or 0}:{issue.column or 0}: {field + ': ' if field else ''}{issue.message}"


def _describe(exc: ValidationError, doc: yaml_source.Document | None, name: str) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        dotted = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(
            ".[", "["
        )
        line, col = doc.locate(loc, key=err["type"] == "extra_forbidden") if doc else (None, None)
        where = f"{name}:{line}:{col}" if line else name
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown setting"
        problems.append(f"{where}: {dotted}: {message}")
    return problems
