"""Runs every shipped policy test file (``policies/*.test.yaml``) under pytest (``make test``).

The same runner as ``vpcep-approver test``: any difference between a case's expected and
actual decision fails, with the runner's readable report as the message.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from approver.policy.testing import run_test_file

HERE = Path(__file__).resolve().parent
TEST_FILES = sorted(HERE.glob("*.test.yaml"))
POLICY_FILES = sorted(p for p in HERE.glob("*.yaml") if not p.name.endswith(".test.yaml"))


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_policy_cases_pass(path: Path) -> None:
    """Every case of the test file gets exactly the decision it expects."""
    result = run_test_file(path, now=datetime.now(UTC))
    assert result.cases, f"{path.name} has no cases"
    assert result.failed == 0, "\n" + result.report()


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.name)
def test_every_policy_has_tests_covering_every_rule(path: Path) -> None:
    """Each shipped policy has a test file next to it, and its cases exercise every rule."""
    tests = path.with_name(path.stem + ".test.yaml")
    assert tests.exists(), f"{path.name} has no {tests.name}"
    result = run_test_file(tests, now=datetime.now(UTC))
    assert result.uncovered == (), f"rules no case exercises: {', '.join(result.uncovered)}"


def test_the_examples_are_found() -> None:
    """The globs find the shipped files (an empty parametrisation would pass silently)."""
    assert {p.name for p in TEST_FILES} >= {"example.test.yaml", "strict-reject.test.yaml"}
