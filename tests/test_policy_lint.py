"""``lint``: warnings about valid policies (expired, shadowed, never matching, overlapping)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from approver.policy import lint, load_policy, load_policy_text

ACME = "0c1f2e3d4c5b6a798877665544332211"
GLOBEX = "7ab2c3d4e5f60718293a4b5c6d7e8f01"
NOW = datetime(2026, 11, 26, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]


def warnings(rules: str, head: str = "") -> list[str]:
    text = f"version: 1\ndefault: hold\n{head}rules:\n{rules}"
    return [str(p) for p in lint(load_policy_text(text, name="p.yaml"), NOW)]


def test_shipped_examples_are_clean() -> None:
    """The example policies lint without warnings."""
    for name in ("example.yaml", "strict-reject.yaml"):
        assert lint(load_policy([ROOT / "policies" / name]), NOW) == ()


def test_expired_rule() -> None:
    """A rule whose valid_until is past is reported with its position."""
    rules = f"  - id: old\n    when: {{domains: [{ACME}]}}\n    action: accept\n"
    rules += "    valid_until: 2026-01-01T00:00:00Z\n"
    assert warnings(rules) == [
        "p.yaml:4:5: rules[0]: warning: rule 'old' expired 2026-01-01T00:00:00Z; remove it"
    ]


def test_rule_not_yet_valid_is_fine() -> None:
    """A grant scheduled for the future is not a warning."""
    rules = f"  - id: later\n    when: {{domains: [{ACME}]}}\n    action: accept\n"
    rules += "    valid_from: 2027-01-01T00:00:00Z\n"
    assert warnings(rules) == []


def test_shadowed_by_a_broader_earlier_rule() -> None:
    """A rule whose every match an earlier rule already takes is never reached."""
    rules = (
        f"  - id: all-partners\n    when: {{domains: [{ACME}, {GLOBEX}]}}\n    action: hold\n"
        f"  - id: acme-prod\n    when: {{domains: [{ACME}], service: {{tags: {{env: prod}}}}}}\n"
        "    action: accept\n"
    )
    assert warnings(rules) == [
        "p.yaml:7:5: rules[1]: warning: rule 'acme-prod' is shadowed by rule 'all-partners' "
        "(p.yaml:4), which matches everything it does: it is never reached"
    ]


def test_narrower_earlier_rule_does_not_shadow() -> None:
    """An earlier rule that matches less does not shadow a later, broader one."""
    rules = (
        f"  - id: acme-prod\n    when: {{domains: [{ACME}], service: {{tags: {{env: prod}}}}}}\n"
        "    action: accept\n"
        f"  - id: all-partners\n    when: {{domains: [{ACME}, {GLOBEX}]}}\n    action: hold\n"
    )
    assert warnings(rules) == []


def test_globs_and_tag_presence_shadow() -> None:
    """'*' covers any name glob, and a tag '*' covers any value of that tag."""
    rules = (
        '  - id: any\n    when: {service: {names: ["*"], tags: {env: "*"}}}\n    action: hold\n'
        '  - id: orders\n    when: {service: {names: ["orders-*"], tags: {env: prod}}}\n'
        "    action: hold\n"
    )
    found = warnings(rules)
    assert len(found) == 1
    assert found[0].startswith(
        "p.yaml:7:5: rules[1]: warning: rule 'orders' is shadowed by rule 'any'"
    )


def test_a_narrower_window_does_not_shadow() -> None:
    """An earlier rule in force for less time does not shadow an open-ended later one."""
    rules = (
        f"  - id: temp\n    when: {{domains: [{ACME}]}}\n    action: accept\n"
        "    valid_until: 2027-01-01T00:00:00Z\n"
        f"  - id: forever\n    when: {{domains: [{ACME}]}}\n    action: hold\n"
    )
    assert warnings(rules) == []


def test_rule_over_empty_domain_sets_never_matches() -> None:
    """A rule whose domains expand to no id at all can never match."""
    head = "domain_sets:\n  nobody: []\n"
    rules = "  - id: r\n    when: {domains: [nobody]}\n    action: accept\n"
    assert warnings(rules, head) == [
        "p.yaml:6:5: rules[0]: warning: rule 'r' can never match: its domains (nobody) hold no "
        "domain id"
    ]


def test_overlapping_accept_and_reject() -> None:
    """An accept and a reject rule that can match one connection are flagged: order decides."""
    rules = (
        '  - id: deny-sandbox\n    when: {service: {names: ["sandbox-*"]}}\n    action: reject\n'
        f"  - id: acme\n    when: {{domains: [{ACME}]}}\n    action: accept\n"
    )
    assert warnings(rules) == [
        "p.yaml:7:5: rules[1]: warning: rule 'acme' (accept) overlaps rule 'deny-sandbox' "
        "(reject, p.yaml:4): a connection matching both gets reject only because "
        "'deny-sandbox' comes first"
    ]


def test_disjoint_accept_and_reject_are_fine() -> None:
    """Rules over different domains, or different values of one tag, cannot both match."""
    by_domain = (
        f"  - id: deny\n    when: {{domains: [{GLOBEX}]}}\n    action: reject\n"
        f"  - id: acme\n    when: {{domains: [{ACME}]}}\n    action: accept\n"
    )
    by_tag = (
        "  - id: dev\n    when: {service: {tags: {env: dev}}}\n    action: reject\n"
        "  - id: prod\n    when: {service: {tags: {env: prod}}}\n    action: accept\n"
    )
    assert warnings(by_domain) == []
    assert warnings(by_tag) == []


def test_unused_domain_set() -> None:
    """A domain set no rule names is reported at its definition."""
    head = f"domain_sets:\n  spare: [{GLOBEX}]\n"
    rules = f"  - id: r\n    when: {{domains: [{ACME}]}}\n    action: accept\n"
    assert warnings(rules, head) == [
        "p.yaml:4:3: domain_sets.spare: warning: domain set 'spare' is not used by any rule"
    ]
