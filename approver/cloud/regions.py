"""Where a region's VPCEP API lives.

The table is the official SDK's ``VpcepRegion`` (huaweicloudsdkvpcep 3.1.219); the test suite
checks it against the SDK entry by entry. Lookup order, most specific first:

1. an explicit endpoint URL (a target's ``endpoint:``),
2. the SDK's environment override ``HUAWEICLOUD_SDK_REGION_VPCEP_{REGION}`` (comma-separated; the
   first endpoint is used), so an operator's existing SDK setup keeps working,
3. the static table.

Everything here is pure: the environment is a parameter (defaulting to ``os.environ``).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

ENV_PREFIX = "HUAWEICLOUD_SDK_REGION_VPCEP_"

_EU_HOST = "https://vpcep.eu-west-101.myhuaweicloud.eu"

# In VpcepRegion's declaration order.
_REGION_IDS = (
    "cn-north-4",
    "cn-north-1",
    "cn-east-2",
    "cn-east-3",
    "cn-south-1",
    "cn-southwest-2",
    "ap-southeast-1",
    "la-south-2",
    "na-mexico-1",
    "cn-north-9",
    "ap-southeast-3",
    "ap-southeast-2",
    "cn-north-2",
    "af-south-1",
    "cn-south-2",
    "sa-brazil-1",
    "la-north-2",
    "tr-west-1",
    "eu-west-101",
    "ap-southeast-4",
    "eu-west-0",
    "my-kualalumpur-1",
    "ae-ad-1",
    "ru-moscow-1",
    "cn-east-5",
    "cn-south-4",
    "me-east-1",
    "ru-northwest-2",
    "cn-north-11",
    "cn-east-4",
    "af-north-1",
    "ap-southeast-5",
    "cn-north-12",
    "cn-southwest-3",
)

REGIONS: Mapping[str, str] = {
    region: _EU_HOST if region == "eu-west-101" else f"https://vpcep.{region}.myhuaweicloud.com"
    for region in _REGION_IDS
}


class EndpointError(ValueError):
    """No usable VPCEP endpoint URL for a target."""


class UnknownRegion(EndpointError):
    """A region id that is not in the table and has no endpoint override."""

    def __init__(self, region: str) -> None:
        self.region = region
        close = difflib.get_close_matches(region, REGIONS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        super().__init__(
            f"unknown region {region!r}{hint}; known regions: {', '.join(sorted(REGIONS))}. "
            f"For another region or a private endpoint, set endpoint: in the target "
            f"(e.g. endpoint: https://vpcep.{region}.myhuaweicloud.com) "
            f"or the environment variable {env_name(region)}"
        )


class InvalidEndpoint(EndpointError):
    """An endpoint override that is not a plain http(s) URL."""


def env_name(region: str) -> str:
    """The SDK's per-region override variable, e.g. ``HUAWEICLOUD_SDK_REGION_VPCEP_CN_NORTH_4``."""
    return ENV_PREFIX + region.replace("-", "_").upper()


def validate_endpoint(url: str, source: str = "endpoint") -> str:
    """Return ``url`` without a trailing slash if it is an http(s) URL with a host and nothing else.

    A path prefix is allowed (a reverse proxy); user info, a query or a fragment is not, since
    the client appends paths and queries itself and signs the host it sends.
    """
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError as exc:
        raise InvalidEndpoint(f"{source}: {url!r} is not a valid URL ({exc})") from None
    del port
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidEndpoint(f"{source}: {url!r} must start with https:// (or http://)")
    if not parts.hostname:
        raise InvalidEndpoint(f"{source}: {url!r} has no host")
    if "@" in parts.netloc:
        raise InvalidEndpoint(f"{source}: {url!r} must not contain user info")
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise InvalidEndpoint(f"{source}: {url!r} must not have a query or fragment")
    if any(ch.isspace() for ch in text):
        raise InvalidEndpoint(f"{source}: {url!r} must not contain whitespace")
    return text.rstrip("/")


def endpoint_for(
    region: str,
    override: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> str:
    """The base URL (no trailing slash) for the VPCEP API of ``region``.

    Raises ``InvalidEndpoint`` for a malformed override and ``UnknownRegion`` for a region that
    is neither in the table nor overridden.
    """
    if override is not None and override.strip():
        return validate_endpoint(override)
    name = env_name(region)
    from_env = [e.strip() for e in environ.get(name, "").split(",") if e.strip()]
    if from_env:
        return validate_endpoint(from_env[0], source=name)
    try:
        return REGIONS[region]
    except KeyError:
        raise UnknownRegion(region) from None
