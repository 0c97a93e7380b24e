"""policies/schema.json: generated from the models, in sync, and agreeing with the loader."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from approver.policy import load_policy_text, schema
from approver.policy.testing import PolicyTestFile

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "policies"
REGENERATE = "python -m approver.policy.schema > policies/schema.json"


def as_editor_sees_it(source: Path | str) -> Any:
    """YAML as a JSON Schema validator in an editor sees it: timestamps are strings."""

    def plain(value: Any) -> Any:
        if isinstance(value, datetime | date):
            return value.isoformat()
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    text = source.read_text(encoding="utf-8") if isinstance(source, Path) else source
    return plain(yaml.safe_load(text))


def validator(name: str) -> jsonschema.Draft202012Validator:
    data = json.loads((POLICIES / name).read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(data)
    return jsonschema.Draft202012Validator(data, format_checker=jsonschema.FormatChecker())


def test_policy_schema_is_up_to_date() -> None:
    """policies/schema.json is exactly what the models generate (regenerate it if not)."""
    committed = (POLICIES / "schema.json").read_text(encoding="utf-8")
    assert committed == schema.render(), f"out of date: run `{REGENERATE}`"


def test_test_schema_is_up_to_date() -> None:
    """policies/test.schema.json is exactly what the test-file model generates."""
    committed = (POLICIES / "test.schema.json").read_text(encoding="utf-8")
    assert committed == schema.render(PolicyTestFile), (
        "out of date: run `python -m approver.policy.schema --tests > policies/test.schema.json`"
    )


POLICY_FILES = sorted(p for p in POLICIES.glob("*.yaml") if not p.name.endswith(".test.yaml"))
TEST_FILES = sorted(POLICIES.glob("*.test.yaml"))


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.name)
def test_example_policies_validate_against_the_schema(path: Path) -> None:
    """Every shipped policy is valid under the published schema and names it in a modeline."""
    validator("schema.json").validate(as_editor_sees_it(path))
    assert path.read_text().splitlines()[0] == "# yaml-language-server: $schema=./schema.json"


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_example_tests_validate_against_the_test_schema(path: Path) -> None:
    """Every shipped policy test file is valid under the test schema."""
    validator("test.schema.json").validate(as_editor_sees_it(path))
    assert path.read_text().splitlines()[0] == "# yaml-language-server: $schema=./test.schema.json"


@pytest.mark.parametrize(
    "change",
    [
        {"colour": "blue"},
        {"default": "maybe"},
        {"rules": [{"id": "x", "when": {"domians": []}, "action": "accept"}]},
        {"rules": [{"id": "x", "when": {"domains": ["0C1F"]}, "action": "accept"}]},
        {"rules": [{"id": "x", "when": {"domains": None}, "action": "accept"}]},
        {"domain_sets": {"p": ["0c1f2e3d4c5b6a79887766554433221"]}},
        {"limits": {"max_connections_per_domain": -1}},
    ],
)
def test_schema_rejects_what_the_loader_rejects(change: dict[str, Any]) -> None:
    """Unknown keys, bad enums, malformed ids, nulls and negative limits fail the schema too."""
    doc = as_editor_sees_it(POLICIES / "example.yaml") | change
    with pytest.raises(jsonschema.ValidationError):
        validator("schema.json").validate(doc)


def test_schema_main_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m approver.policy.schema` prints the policy schema (--tests: the test schema)."""
    assert schema.main([]) == 0
    assert capsys.readouterr().out == schema.render()
    assert schema.main(["--tests"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "vpcep-approver policy tests"


def test_readme_policy_example_loads_and_validates() -> None:
    """The complete file in policies/README.md is a valid policy under loader and schema."""
    readme = (POLICIES / "README.md").read_text(encoding="utf-8")
    block = readme.split("## A complete file", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    policy = load_policy_text(block, name="README.md")
    assert [r.id for r in policy.rules] == ["partners-prod"]
    doc = as_editor_sees_it(block)
    validator("schema.json").validate(doc)
