"""Region -> VPCEP endpoint: the static table (checked against the official SDK's VpcepRegion),
the target's ``endpoint:`` override, the SDK's environment override, and the error for an
unknown region."""

from __future__ import annotations

from typing import Any

import pytest

from approver.cloud.regions import (
    REGIONS,
    EndpointError,
    InvalidEndpoint,
    UnknownRegion,
    endpoint_for,
    env_name,
)

NO_ENV: dict[str, str] = {}


def sdk_static_table() -> dict[str, list[str]]:
    from huaweicloudsdkvpcep.v1.region.vpcep_region import VpcepRegion

    fields: dict[str, Any] = VpcepRegion.static_fields
    return {region_id: list(region.endpoints) for region_id, region in fields.items()}


def test_table_matches_the_official_sdk() -> None:
    """Every region id and host in our table is the SDK's VpcepRegion static table, and no more."""
    sdk = sdk_static_table()
    assert set(REGIONS) == set(sdk)
    for region_id, endpoints in sdk.items():
        assert sdk_attribute_id(region_id) == region_id
        assert [REGIONS[region_id]] == endpoints, region_id


def sdk_attribute_id(region_id: str) -> str:
    """The id of the SDK's class attribute named after ``region_id`` (e.g. CN_NORTH_4)."""
    from huaweicloudsdkvpcep.v1.region.vpcep_region import VpcepRegion

    return str(getattr(VpcepRegion, region_id.replace("-", "_").upper()).id)


def test_table_has_the_34_documented_regions() -> None:
    """The table has the 34 regions of vpcep-api.md §1, with the .eu host for eu-west-101 only."""
    assert len(REGIONS) == 34
    assert REGIONS["eu-west-101"] == "https://vpcep.eu-west-101.myhuaweicloud.eu"
    for region_id, url in REGIONS.items():
        if region_id != "eu-west-101":
            assert url == f"https://vpcep.{region_id}.myhuaweicloud.com"


@pytest.mark.parametrize(
    ("region", "url"),
    [
        ("cn-north-4", "https://vpcep.cn-north-4.myhuaweicloud.com"),
        ("ap-southeast-1", "https://vpcep.ap-southeast-1.myhuaweicloud.com"),
        ("eu-west-101", "https://vpcep.eu-west-101.myhuaweicloud.eu"),
        ("my-kualalumpur-1", "https://vpcep.my-kualalumpur-1.myhuaweicloud.com"),
    ],
)
def test_known_region_resolves_from_the_table(region: str, url: str) -> None:
    """A known region without overrides gets its table host."""
    assert endpoint_for(region, environ=NO_ENV) == url


def test_explicit_endpoint_wins_over_table_and_environment() -> None:
    """A target's endpoint: beats both the environment override and the table."""
    env = {env_name("cn-north-4"): "https://from-env.example"}
    assert endpoint_for("cn-north-4", "https://proxy.example:8443/", env) == (
        "https://proxy.example:8443"
    )


def test_explicit_endpoint_serves_an_unknown_region() -> None:
    """An unknown region is fine when the target names its endpoint (path prefix kept)."""
    assert endpoint_for("xx-new-9", "http://127.0.0.1:8080/vpcep", NO_ENV) == (
        "http://127.0.0.1:8080/vpcep"
    )


def test_blank_endpoint_counts_as_absent() -> None:
    """An empty or blank endpoint: falls back to the table instead of failing."""
    assert endpoint_for("cn-east-3", "  ", NO_ENV) == REGIONS["cn-east-3"]
    assert endpoint_for("cn-east-3", "", NO_ENV) == REGIONS["cn-east-3"]


@pytest.mark.parametrize(
    "bad",
    [
        "vpcep.cn-north-4.myhuaweicloud.com",  # no scheme
        "ftp://vpcep.example",
        "https://",
        "https:///v1",
        "https://user:pw@vpcep.example",
        "https://vpcep.example?x=1",
        "https://vpcep.example/#frag",
        "https://vpcep.example:notaport",
        "https://vpcep.example:99999",
        "https://vpc ep.example",
    ],
)
def test_malformed_endpoint_is_refused(bad: str) -> None:
    """An endpoint that is not a plain http(s) URL raises InvalidEndpoint naming the value."""
    with pytest.raises(InvalidEndpoint) as info:
        endpoint_for("cn-north-4", bad, NO_ENV)
    assert repr(bad) in str(info.value)
    assert isinstance(info.value, EndpointError) and isinstance(info.value, ValueError)


def test_environment_override_uses_the_first_endpoint() -> None:
    """HUAWEICLOUD_SDK_REGION_VPCEP_<REGION> overrides the table; its first entry is used."""
    env = {"HUAWEICLOUD_SDK_REGION_VPCEP_CN_NORTH_4": "https://a.example, https://b.example"}
    assert endpoint_for("cn-north-4", environ=env) == "https://a.example"
    assert endpoint_for("cn-north-1", environ=env) == REGIONS["cn-north-1"]


def test_environment_override_serves_an_unknown_region() -> None:
    """The SDK checks the environment before its table, so an unlisted region can be defined."""
    env = {"HUAWEICLOUD_SDK_REGION_VPCEP_XX_NEW_9": "https://vpcep.xx-new-9.example/"}
    assert endpoint_for("xx-new-9", environ=env) == "https://vpcep.xx-new-9.example"


def test_empty_environment_override_is_ignored() -> None:
    """An empty or comma-only override variable falls through to the table."""
    for value in ("", " ", ",", " , "):
        env = {env_name("la-south-2"): value}
        assert endpoint_for("la-south-2", environ=env) == REGIONS["la-south-2"]


def test_malformed_environment_override_names_the_variable() -> None:
    """A bad override in the environment raises InvalidEndpoint naming the variable."""
    env = {env_name("cn-north-4"): "not a url"}
    with pytest.raises(InvalidEndpoint, match="HUAWEICLOUD_SDK_REGION_VPCEP_CN_NORTH_4"):
        endpoint_for("cn-north-4", environ=env)


def test_env_name_follows_the_sdk_pattern() -> None:
    """The variable name is the SDK's: prefix, service VPCEP, region upper-cased with '_'."""
    assert env_name("ap-southeast-1") == "HUAWEICLOUD_SDK_REGION_VPCEP_AP_SOUTHEAST_1"


def test_environment_override_agrees_with_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the same environment variable set, the SDK's value_of picks the same first endpoint."""
    from huaweicloudsdkvpcep.v1.region.vpcep_region import VpcepRegion

    name = env_name("ap-southeast-3")
    monkeypatch.setenv(name, "https://first.example,https://second.example")
    monkeypatch.setenv("HUAWEICLOUD_SDK_REGIONS_FILE", "/nonexistent/regions.yaml")
    sdk_first = VpcepRegion.value_of("ap-southeast-3").endpoints[0]
    assert endpoint_for("ap-southeast-3", environ={name: "https://first.example,x"}) == sdk_first


def test_default_environment_is_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an environ argument, os.environ is read at call time."""
    monkeypatch.setenv(env_name("tr-west-1"), "https://tr.example")
    assert endpoint_for("tr-west-1") == "https://tr.example"
    monkeypatch.delenv(env_name("tr-west-1"))
    assert endpoint_for("tr-west-1") == REGIONS["tr-west-1"]


def test_unknown_region_says_how_to_fix_it() -> None:
    """An unknown region raises UnknownRegion (a ValueError) naming endpoint: and the env var."""
    with pytest.raises(UnknownRegion) as info:
        endpoint_for("cn-nort-4", environ=NO_ENV)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert info.value.region == "cn-nort-4"
    assert "'cn-nort-4'" in message
    assert "did you mean cn-north-4?" in message
    assert "set endpoint: in the target" in message
    assert "HUAWEICLOUD_SDK_REGION_VPCEP_CN_NORT_4" in message
    assert "eu-west-101" in message  # the known regions are listed


def test_unknown_region_without_close_match_has_no_guess() -> None:
    """A region unlike any known one gets no "did you mean" guess, but still the fix."""
    with pytest.raises(UnknownRegion) as info:
        endpoint_for("zzzzzzzz", environ=NO_ENV)
    assert "did you mean" not in str(info.value)
    assert "set endpoint: in the target" in str(info.value)


@pytest.mark.parametrize("region", ["", "CN-NORTH-4", " cn-north-4"])
def test_region_ids_are_exact(region: str) -> None:
    """Region ids are matched exactly, as the SDK does (no case folding or trimming)."""
    with pytest.raises(UnknownRegion):
        endpoint_for(region, environ=NO_ENV)
