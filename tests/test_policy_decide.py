"""``decide``: first match, conditions, windows, quota, fail-closed guards and the trace."""

from __future__ import annotations

import dataclasses
import json
import pickle
from datetime import UTC, datetime, timedelta, timezone

import pytest

from approver.policy import (
    DEFAULT_RULE,
    FAIL_CLOSED_RULE,
    LIMITS_RULE,
    Check,
    Decision,
    Policy,
    RuleTrace,
    decide,
    load_policy_text,
)
from approver.records import CONNECTION_STATUSES, PENDING, Connection, Service

ACME = "0c1f2e3d4c5b6a798877665544332211"
GLOBEX = "7ab2c3d4e5f60718293a4b5c6d7e8f01"
BLOCKED = "deadbeefdeadbeefdeadbeefdeadbeef"
ORDERS_ID = "4189d3c2-8882-4871-a3c2-d380272eed88"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
ORDERS = Service(ORDERS_ID, "orders-api", {"env": "prod", "team": "orders"})


def policy(rules: str, *, head: str = "", default: str = "hold") -> Policy:
    text = f"version: 1\ndefault: {default}\n{head}rules:\n{rules}"
    return load_policy_text(text, allow_accept_default=True)


def conn(domain: str = ACME, description: str = "", status: str = PENDING) -> Connection:
    return Connection("ep-1", domain, status, description)


def rule(rule_id: str, when: str, action: str = "accept", extra: str = "") -> str:
    return f"  - id: {rule_id}\n    when: {when}\n    action: {action}\n{extra}"


def matched(p: Policy, service: Service = ORDERS, connection: Connection | None = None) -> str:
    return decide(connection or conn(), service, p, NOW, {}).rule_id


def test_first_matching_rule_wins() -> None:
    """Of two rules matching the same connection, the earlier one decides."""
    p = policy(
        rule("deny", f"{{domains: [{ACME}]}}", "reject") + rule("allow", f"{{domains: [{ACME}]}}")
    )
    d = decide(conn(), ORDERS, p, NOW, {})
    assert (d.action, d.rule_id) == ("reject", "deny")
    assert [t.rule_id for t in d.trace] == ["deny"]


def test_no_match_applies_the_default() -> None:
    """When no rule matches, the default decides with rule id 'default'."""
    for default in ("hold", "reject"):
        p = policy(rule("x", f"{{domains: [{GLOBEX}]}}"), default=default)
        d = decide(conn(), ORDERS, p, NOW, {})
        assert (d.action, d.rule_id) == (default, DEFAULT_RULE)
        assert d.reason == f"No rule matched; the policy default is {default}."
        assert [t.rule_id for t in d.trace] == ["x"]


@pytest.mark.parametrize(
    "tags, service_tags, matches",
    [
        ("{env: prod}", {"env": "prod"}, True),
        ("{env: prod}", {"env": "Prod"}, False),
        ("{env: prod}", {"env": "prod "}, False),
        ("{env: prod}", {}, False),
        ("{team: [orders, billing]}", {"team": "billing"}, True),
        ("{team: [orders, billing]}", {"team": "payments"}, False),
        ('{owner: "*"}', {"owner": ""}, True),
        ('{owner: "*"}', {"owner": "anyone"}, True),
        ('{owner: "*"}', {"other": "x"}, False),
        ('{env: prod, owner: "*"}', {"env": "prod"}, False),
        ('{env: prod, owner: "*"}', {"env": "prod", "owner": "me"}, True),
        ('{env: ""}', {"env": ""}, True),
    ],
)
def test_service_tags(tags: str, service_tags: dict[str, str], matches: bool) -> None:
    """A tag value must equal, a list is any-of, '*' means present, and keys are AND-ed."""
    p = policy(rule("r", f"{{service: {{tags: {tags}}}}}"))
    assert matched(p, Service(ORDERS_ID, "x", service_tags)) == ("r" if matches else "default")


@pytest.mark.parametrize(
    "names, name, matches",
    [
        ('["orders-*"]', "orders-api", True),
        ('["orders-*"]', "Orders-api", False),
        ('["orders-*"]', "my-orders-api", False),
        ('["orders-?pi"]', "orders-api", True),
        ('["*-api", "billing"]', "billing", True),
        ('["[ob]*"]', "billing-api", True),
        ('["orders-api"]', "orders-api2", False),
    ],
)
def test_service_name_globs(names: str, name: str, matches: bool) -> None:
    """Names are case-sensitive globs (* ? [seq]) matched against the whole name."""
    p = policy(rule("r", f"{{service: {{names: {names}}}}}"))
    assert matched(p, Service(ORDERS_ID, name, {})) == ("r" if matches else "default")


def test_service_ids() -> None:
    """Service ids match exactly, any of the list."""
    p = policy(
        rule("r", f"{{service: {{ids: [{ORDERS_ID}, 7f3e1a2b-0c4d-4e5f-8a9b-1c2d3e4f5a6b]}}}}")
    )
    assert matched(p) == "r"
    assert matched(p, Service(ORDERS_ID.upper(), "orders-api", {})) == "default"
    assert (
        matched(p, Service("2b6c9d10-3e4f-4a5b-9c8d-7e6f5a4b3c2d", "orders-api", {})) == "default"
    )


def test_service_conditions_are_and_ed() -> None:
    """ids, names and tags must all hold."""
    p = policy(
        rule("r", f'{{service: {{ids: [{ORDERS_ID}], names: ["orders-*"], tags: {{env: prod}}}}}}')
    )
    assert matched(p) == "r"
    assert matched(p, Service(ORDERS_ID, "orders-api", {"env": "dev"})) == "default"
    assert matched(p, Service(ORDERS_ID, "billing-api", {"env": "prod"})) == "default"


@pytest.mark.parametrize(
    "regex, description, matches",
    [
        ('"^SEC-[0-9]+"', "SEC-1201 acme", True),
        ('"^SEC-[0-9]+"', "see SEC-1201", False),
        ('"SEC-[0-9]+"', "see SEC-1201", True),
        ('"^SEC-[0-9]+"', "sec-1201", False),
        ('"(?i)^sec-[0-9]+"', "SEC-1201", True),
        ('"^SEC-[0-9]+$"', "SEC-12 x", False),
        ('"^$"', "", True),
    ],
)
def test_description_regex_is_searched(regex: str, description: str, matches: bool) -> None:
    """The description condition is re.search of a Python regex, case-sensitive by default."""
    p = policy(rule("r", f"{{description: {regex}}}"))
    assert matched(p, connection=conn(description=description)) == ("r" if matches else "default")


def test_domains_mix_sets_and_literal_ids() -> None:
    """domains may name sets and literal ids; any of them matches."""
    head = f"domain_sets:\n  partners: [{ACME}]\n"
    p = policy(rule("r", f"{{domains: [partners, {GLOBEX}]}}"), head=head)
    assert matched(p, connection=conn(ACME)) == "r"
    assert matched(p, connection=conn(GLOBEX)) == "r"
    assert matched(p, connection=conn(BLOCKED)) == "default"


@pytest.mark.parametrize(
    "domain",
    [ACME.upper(), f" {ACME}", f"{ACME}\n", ACME[:-1] + "\u0431", ACME[:-1], ACME + "0", ""],
)
def test_domain_ids_are_compared_exactly(domain: str) -> None:
    """A connection's domain id that differs by case, whitespace or a look-alike never matches."""
    p = policy(rule("r", f"{{domains: [{ACME}]}}"))
    d = decide(conn(domain), ORDERS, p, NOW, {})
    assert (d.action, d.rule_id) == ("hold", "default")


class TestWindows:
    WINDOW = "    valid_from: 2026-01-01T00:00:00Z\n    valid_until: 2027-01-01T00:00:00+01:00\n"

    def decide_at(self, now: datetime) -> Decision:
        p = policy(rule("timed", f"{{domains: [{ACME}]}}", extra=self.WINDOW))
        return decide(conn(), ORDERS, p, now, {})

    def test_inside_the_window_the_rule_matches(self) -> None:
        """valid_from is inclusive: the rule matches from that instant."""
        assert self.decide_at(datetime(2026, 1, 1, tzinfo=UTC)).rule_id == "timed"

    def test_before_the_window_the_rule_is_skipped_with_a_note(self) -> None:
        """Before valid_from the rule is skipped and the trace says since when it applies."""
        d = self.decide_at(datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC))
        assert d.rule_id == "default"
        assert d.trace[0].note == "not valid before 2026-01-01T00:00:00Z"
        assert not d.trace[0].matched
        window = d.trace[0].checks[-1]
        assert (window.condition, window.ok) == ("window", False)

    def test_at_valid_until_the_rule_has_expired(self) -> None:
        """valid_until is exclusive and compared as an instant across time zones."""
        d = self.decide_at(datetime(2026, 12, 31, 23, 0, tzinfo=UTC))
        assert d.rule_id == "default"
        assert d.trace[0].note == "expired 2026-12-31T23:00:00Z"
        just_before = datetime(2026, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=1)))
        assert self.decide_at(just_before).rule_id == "timed"

    def test_an_expired_reject_lets_a_later_rule_decide(self) -> None:
        """Skipped rules are skipped: the next matching rule decides."""
        extra = "    valid_until: 2026-01-01T00:00:00Z\n"
        p = policy(
            rule("old-block", f"{{domains: [{ACME}]}}", "reject", extra)
            + rule("ok", f"{{domains: [{ACME}]}}")
        )
        assert decide(conn(), ORDERS, p, NOW, {}).rule_id == "ok"


class TestQuota:
    HEAD = "limits: {max_connections_per_domain: 5}\n"

    def p(self, default: str = "hold") -> Policy:
        return policy(rule("partners", f"{{domains: [{ACME}]}}"), head=self.HEAD, default=default)

    def test_below_the_limit_accepts(self) -> None:
        """An accept for a domain below its limit stays an accept, and the trace shows the count."""
        d = decide(conn(), ORDERS, self.p(), NOW, {ACME: 4})
        assert (d.action, d.rule_id) == ("accept", "partners")
        assert d.trace[-1] == RuleTrace(
            LIMITS_RULE, False, (Check("accepted+creating of this domain", "< 5", "4", True),)
        )

    def test_at_the_limit_holds_with_a_quota_reason(self) -> None:
        """At the limit the accept becomes hold; the rule id stays, the reason says quota."""
        d = decide(conn(), ORDERS, self.p(), NOW, {ACME: 5, GLOBEX: 0})
        assert (d.action, d.rule_id) == ("hold", "partners")
        assert d.reason.startswith("Held by quota: rule 'partners' would accept")
        assert "already has 5 accepted or creating connections" in d.reason
        assert d.trace[-1].matched and d.trace[-1].note == "quota"

    def test_unknown_usage_holds(self) -> None:
        """Without domain_usage an accept under a per-domain limit holds (fail closed)."""
        d = decide(conn(), ORDERS, self.p(), NOW, None)
        assert (d.action, d.rule_id) == ("hold", "partners")
        assert "unknown" in d.reason and "quota" in d.reason

    def test_an_absent_domain_counts_zero(self) -> None:
        """A domain missing from domain_usage has no connections yet."""
        assert decide(conn(), ORDERS, self.p(), NOW, {GLOBEX: 9}).action == "accept"

    def test_the_accept_default_is_limited_too(self) -> None:
        """An accept by the default is subject to the same quota."""
        d = decide(conn(GLOBEX), ORDERS, self.p("accept"), NOW, {GLOBEX: 5})
        assert (d.action, d.rule_id) == ("hold", DEFAULT_RULE)
        assert "the default would accept" in d.reason

    def test_reject_and_hold_are_not_limited(self) -> None:
        """Quota only ever turns an accept into a hold."""
        p = policy(rule("deny", f"{{domains: [{ACME}]}}", "reject"), head=self.HEAD)
        d = decide(conn(), ORDERS, p, NOW, None)
        assert d.action == "reject"
        assert all(t.rule_id != LIMITS_RULE for t in d.trace)

    def test_only_the_count_at_decision_time_is_read(self) -> None:
        """Changing the usage mapping after deciding changes neither decision nor trace."""
        usage = {ACME: 4}
        d = decide(conn(), ORDERS, self.p(), NOW, usage)
        usage[ACME] = 5
        assert d.action == "accept"
        assert d.trace[-1].checks[0].observed == "4"

    def test_no_limit_ignores_usage(self) -> None:
        """Without max_connections_per_domain, usage is not needed and not read."""
        p = policy(rule("partners", f"{{domains: [{ACME}]}}"))
        assert decide(conn(), ORDERS, p, NOW, None).action == "accept"


class TestNeedsDomainUsage:
    def test_true_when_an_accept_rule_applies_to_the_service(self) -> None:
        """Usage is needed for services an accept rule selects, under a per-domain limit."""
        p = policy(
            rule("prod", "{service: {tags: {env: prod}}}"),
            head="limits: {max_connections_per_domain: 2}\n",
        )
        assert p.needs_domain_usage(ORDERS)
        assert not p.needs_domain_usage(Service(ORDERS_ID, "sandbox", {"env": "dev"}))

    def test_false_without_a_limit(self) -> None:
        """Without a per-domain limit no listing of accepted connections is needed."""
        assert not policy(rule("prod", "{service: {tags: {env: prod}}}")).needs_domain_usage(ORDERS)

    def test_false_when_only_reject_rules_apply(self) -> None:
        """Reject and hold rules never need usage."""
        p = policy(
            rule("deny", "{service: {tags: {env: prod}}}", "reject"),
            head="limits: {max_connections_per_domain: 2}\n",
        )
        assert not p.needs_domain_usage(ORDERS)

    def test_true_with_an_accept_default(self) -> None:
        """An accept default can accept on any service."""
        p = policy(
            rule("deny", f"{{domains: [{BLOCKED}]}}", "reject"),
            head="limits: {max_connections_per_domain: 2}\n",
            default="accept",
        )
        assert p.needs_domain_usage(Service("x", "y", {}))


class TestFailClosed:
    P = policy(rule("any-acme", f"{{domains: [{ACME}]}}"), default="reject")

    @pytest.mark.parametrize("status", sorted(CONNECTION_STATUSES - {PENDING}))
    def test_a_connection_that_is_not_pending_is_held(self, status: str) -> None:
        """Only pendingAcceptance is decided: any other status holds, even with a reject default."""
        d = decide(conn(status=status), ORDERS, self.P, NOW, {})
        assert (d.action, d.rule_id) == ("hold", FAIL_CLOSED_RULE)
        assert d.reason == f"Connection status is '{status}', not 'pendingAcceptance': no action."
        assert d.trace == (
            RuleTrace(
                FAIL_CLOSED_RULE,
                True,
                (Check("status", PENDING, status, False),),
                "only pending connections are decided",
            ),
        )

    @pytest.mark.parametrize("status", ["PendingAcceptance", "pendingAcceptance ", "", "approved"])
    def test_an_unknown_status_is_held(self, status: str) -> None:
        """A status the API does not document holds, and the reason says it is unknown."""
        d = decide(conn(status=status), ORDERS, self.P, NOW, {})
        assert (d.action, d.rule_id) == ("hold", FAIL_CLOSED_RULE)
        assert "unknown" in d.reason

    def test_a_clock_without_timezone_holds(self) -> None:
        """A naive `now` cannot be compared with rule windows: hold."""
        d = decide(conn(), ORDERS, self.P, datetime(2026, 1, 1), {})
        assert (d.action, d.rule_id) == ("hold", FAIL_CLOSED_RULE)
        assert "timezone" in d.reason

    def test_a_malformed_connection_holds(self) -> None:
        """A domain id that is not text holds instead of raising."""
        bad = Connection("ep", None, PENDING, "")  # type: ignore[arg-type]
        d = decide(bad, ORDERS, self.P, NOW, {})
        assert (d.action, d.rule_id) == ("hold", FAIL_CLOSED_RULE)

    def test_a_malformed_service_holds(self) -> None:
        """A service whose tags are not text holds instead of raising."""
        bad = Service(ORDERS_ID, "orders-api", {"env": ["prod"]})  # type: ignore[dict-item]
        d = decide(conn(), bad, self.P, NOW, {})
        assert (d.action, d.rule_id) == ("hold", FAIL_CLOSED_RULE)
        assert "service record is malformed" in d.reason

    def test_a_failure_inside_evaluation_holds(self) -> None:
        """If evaluation itself raises, the decision is a hold that names the error."""

        class Odd(str):
            def __hash__(self) -> int:
                raise RuntimeError("boom")

        bad = Service(Odd(ORDERS_ID), "orders-api", {})
        d = decide(conn(), bad, self.P, NOW, {})
        assert (d.action, d.rule_id) == ("hold", FAIL_CLOSED_RULE)
        assert "RuntimeError" in d.reason


class TestTrace:
    P = policy(
        rule("blocked", f"{{domains: [{BLOCKED}]}}", "reject")
        + rule(
            "prod",
            '{service: {tags: {env: prod}, names: ["orders-*"]}, '
            f'domains: [{ACME}], description: "^SEC-"}}',
        )
        + rule("never-reached", "{description: x}", "hold")
    )

    def test_lists_every_rule_up_to_the_match_with_every_check(self) -> None:
        """The trace has each evaluated rule with every condition's expected and observed value."""
        d = decide(conn(description="SEC-1 hi"), ORDERS, self.P, NOW, {})
        assert d.trace == (
            RuleTrace(
                "blocked",
                False,
                (Check("domains", f"one of: {BLOCKED} (1 id)", ACME, False),),
            ),
            RuleTrace(
                "prod",
                True,
                (
                    Check("service.names", "matches one of: orders-*", "orders-api", True),
                    Check("service.tags.env", "prod", "prod", True),
                    Check("domains", f"one of: {ACME} (1 id)", ACME, True),
                    Check("description", "matches /^SEC-/", "SEC-1 hi", True),
                ),
            ),
        )

    def test_a_failed_rule_shows_all_its_checks(self) -> None:
        """A rule that fails one check still shows the others (what would have matched)."""
        d = decide(conn(description="no"), Service(ORDERS_ID, "orders-api", {}), self.P, NOW, {})
        checks = {c.condition: c for c in d.trace[1].checks}
        assert checks["service.tags.env"].observed == "(absent)"
        assert not checks["description"].ok and checks["domains"].ok
        assert [t.rule_id for t in d.trace] == ["blocked", "prod", "never-reached"]

    def test_to_dict_is_json_ready(self) -> None:
        """to_dict has the decision, digest and full trace, and serialises to JSON."""
        d = decide(conn(description="SEC-1"), ORDERS, self.P, NOW, {})
        data = json.loads(json.dumps(d.to_dict()))
        assert data["action"] == "accept" and data["rule_id"] == "prod"
        assert data["policy_digest"] == self.P.digest
        assert data["trace"][1]["checks"][0] == {
            "condition": "service.names",
            "expected": "matches one of: orders-*",
            "observed": "orders-api",
            "ok": True,
        }

    def test_decisions_are_deterministic_and_comparable(self) -> None:
        """The same inputs give equal decisions (trace included) that hash alike."""
        a = decide(conn(description="SEC-1"), ORDERS, self.P, NOW, {})
        b = decide(conn(description="SEC-1"), ORDERS, self.P, NOW, {})
        assert a == b and hash(a) == hash(b)
        assert a != decide(conn(description="x"), ORDERS, self.P, NOW, {})

    def test_decisions_are_frozen_dataclasses(self) -> None:
        """Decision supports replace, pickle and refuses assignment."""
        d = decide(conn(description="SEC-1"), ORDERS, self.P, NOW, {})
        assert dataclasses.replace(d, action="hold").trace == d.trace
        assert pickle.loads(pickle.dumps(d)) == d
        with pytest.raises(dataclasses.FrozenInstanceError):
            d.action = "reject"  # type: ignore[misc]
        eager = Decision("hold", "x", "why", (), "digest")
        assert eager.trace == () and eager.to_dict()["trace"] == []

    def test_plans_are_per_service_content_not_id(self) -> None:
        """Two services with one id but different tags are decided by their own tags."""
        a = Service(ORDERS_ID, "orders-api", {"env": "prod"})
        b = Service(ORDERS_ID, "orders-api", {"env": "dev"})
        c = conn(description="SEC-1")
        assert [decide(c, s, self.P, NOW, {}).rule_id for s in (a, b, a, b)] == [
            "prod",
            "default",
            "prod",
            "default",
        ]
