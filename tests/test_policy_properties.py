"""Property tests of ``decide`` (Hypothesis): total, deterministic, fail-closed, exact."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from approver.policy import (
    DEFAULT_RULE,
    FAIL_CLOSED_RULE,
    LIMITS_RULE,
    Limits,
    Policy,
    Rule,
    TagCondition,
    decide,
)
from approver.policy._engine import reference
from approver.records import CONNECTION_STATUSES, PENDING, Connection, Service

DOMAINS = [
    "0c1f2e3d4c5b6a798877665544332211",
    "7ab2c3d4e5f60718293a4b5c6d7e8f01",
    "deadbeefdeadbeefdeadbeefdeadbeef",
    "1d2d3d4d5d6d7d8d9dadbdcdddedfd0d",
]
SERVICE_IDS = [
    "4189d3c2-8882-4871-a3c2-d380272eed88",
    "7f3e1a2b-0c4d-4e5f-8a9b-1c2d3e4f5a6b",
    "2b6c9d10-3e4f-4a5b-9c8d-7e6f5a4b3c2d",
]
NAMES = ["orders-api", "billing-api", "sandbox-api", "Orders-api"]
GLOBS = ["orders-*", "*-api", "billing-api", "*", "sand?ox-api", "[ob]*"]
TAG_VALUES = ["prod", "dev", "orders", "Prod", ""]
REGEXES = ["^SEC-[0-9]+", "x", "(?i)sec", "^$"]
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
LOOKALIKES = {"a": "а", "c": "с", "e": "е", "0": "О", "1": "l", "d": "ԁ", "b": "Ь", "f": "ƒ"}

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def lookalike(draw: st.DrawFn, original: str) -> str:
    """``original`` changed by case, whitespace, an invisible or a look-alike character."""
    kind = draw(st.sampled_from(["upper", "space", "zero-width", "lookalike", "fullwidth", "cut"]))
    if kind == "upper":
        changed = original.upper() if original != original.upper() else original + "A"
    elif kind == "space":
        changed = draw(
            st.sampled_from([" " + original, original + " ", original + "\n", original + "\t"])
        )
    elif kind == "zero-width":
        i = draw(st.integers(0, len(original)))
        changed = original[:i] + "\u200b" + original[i:]
    elif kind == "fullwidth":
        changed = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in original)
        changed = changed if changed != original else original + "\uff10"
    elif kind == "cut":
        changed = original[:-1]
    else:
        spots = [i for i, c in enumerate(original) if c in LOOKALIKES]
        if not spots:
            return original + "\u0430"
        i = draw(st.sampled_from(spots))
        changed = original[:i] + LOOKALIKES[original[i]] + original[i + 1 :]
    assert changed != original
    return changed


times = st.one_of(
    st.none(),
    st.builds(lambda days: NOW + timedelta(days=days), st.integers(-3, 3)),
)


@st.composite
def rules(draw: st.DrawFn, index: int) -> Rule:
    start, end = draw(times), draw(times)
    if start is not None and end is not None and start >= end:
        start, end = end - timedelta(days=1), end
    tag_keys = draw(st.lists(st.sampled_from(["env", "team"]), unique=True, max_size=2))
    return Rule(
        id=f"r{index}",
        action=draw(st.sampled_from(["accept", "reject", "hold"])),
        service_ids=draw(st.none() | st.frozensets(st.sampled_from(SERVICE_IDS), min_size=1)),
        service_names=draw(
            st.none() | st.lists(st.sampled_from(GLOBS), min_size=1, max_size=2).map(tuple)
        ),
        service_tags=tuple(
            TagCondition(
                k, draw(st.none() | st.frozensets(st.sampled_from(TAG_VALUES), min_size=1))
            )
            for k in tag_keys
        ),
        domains=draw(st.none() | st.frozensets(st.sampled_from(DOMAINS), max_size=3)),
        description_regex=draw(st.none() | st.sampled_from(REGEXES)),
        valid_from=start,
        valid_until=end,
    )


@st.composite
def policies(draw: st.DrawFn, *, default: str | None = None) -> Policy:
    count = draw(st.integers(0, 8))
    limit = draw(st.none() | st.integers(0, 3))
    return Policy(
        digest="d" * 64,
        sources=("generated.yaml",),
        default=default or draw(st.sampled_from(["hold", "reject", "accept"])),  # type: ignore[arg-type]
        rules=tuple(draw(rules(i)) for i in range(count)),
        limits=Limits(max_connections_per_domain=limit),
    )


domains = st.one_of(st.sampled_from(DOMAINS), st.text(max_size=40))
statuses = st.one_of(
    st.sampled_from(sorted(CONNECTION_STATUSES)), st.just(PENDING), st.text(max_size=20)
)
descriptions = st.one_of(
    st.sampled_from(["SEC-1 x", "sec-9", "", "x", "see SEC-2"]), st.text(max_size=60)
)
connections = st.builds(Connection, st.text(max_size=8), domains, statuses, descriptions)
services = st.builds(
    Service,
    st.one_of(st.sampled_from(SERVICE_IDS), st.text(max_size=40)),
    st.one_of(st.sampled_from(NAMES), st.text(max_size=20)),
    st.dictionaries(
        st.sampled_from(["env", "team", "x"]),
        st.sampled_from(TAG_VALUES) | st.text(max_size=5),
        max_size=3,
    ),
)
nows = st.one_of(
    st.sampled_from([NOW + timedelta(days=d) for d in range(-3, 4)]),  # exactly on window edges
    st.builds(lambda h: NOW + timedelta(hours=h), st.integers(-100, 100)),
    st.builds(
        lambda h, off: (NOW + timedelta(hours=h)).astimezone(timezone(timedelta(hours=off))),
        st.integers(-100, 100),
        st.integers(-12, 14),
    ),
)
usages = st.none() | st.dictionaries(domains, st.integers(0, 5), max_size=4)


@SETTINGS
@given(policies(), connections, services, nows | st.datetimes(), usages)
def test_decide_is_total_and_its_trace_too(
    policy: Policy,
    connection: Connection,
    service: Service,
    now: datetime,
    usage: dict[str, int] | None,
) -> None:
    """decide never raises, returns a known action, and its trace serialises to JSON."""
    decision = decide(connection, service, policy, now, usage)
    assert decision.action in ("accept", "reject", "hold")
    json.dumps(decision.to_dict())


@SETTINGS
@given(policies(), connections, services, nows, usages)
def test_decide_is_deterministic(
    policy: Policy,
    connection: Connection,
    service: Service,
    now: datetime,
    usage: dict[str, int] | None,
) -> None:
    """The same inputs give the same decision, from a warm or a fresh policy object."""
    fresh = Policy(policy.digest, policy.sources, policy.default, policy.rules, policy.limits)
    first = decide(connection, service, policy, now, usage)
    assert decide(connection, service, policy, now, usage) == first
    assert decide(connection, service, fresh, now, usage) == first


@SETTINGS
@given(policies(), connections, services, nows, usages)
def test_fast_path_agrees_with_the_reference_evaluator(
    policy: Policy,
    connection: Connection,
    service: Service,
    now: datetime,
    usage: dict[str, int] | None,
) -> None:
    """The compiled fast path picks the rule the rule-by-rule reference evaluator picks."""
    decision = decide(connection, service, policy, now, usage)
    if decision.rule_id == FAIL_CLOSED_RULE:
        assert decision.action == "hold"
        return
    index, trace = reference(policy.rules, connection, service, now)
    expected = DEFAULT_RULE if index is None else policy.rules[index].id
    assert decision.rule_id == expected
    action = policy.default if index is None else policy.rules[index].action
    assert decision.action == action or (action == "accept" and decision.action == "hold")
    assert [t for t in decision.trace if t.rule_id != LIMITS_RULE] == trace


@SETTINGS
@given(policies(default="hold") | policies(default="reject"), connections, services, nows, usages)
def test_a_hold_or_reject_default_never_accepts(
    policy: Policy,
    connection: Connection,
    service: Service,
    now: datetime,
    usage: dict[str, int] | None,
) -> None:
    """Only a matching accept rule accepts; the default (hold/reject) never does."""
    decision = decide(connection, service, policy, now, usage)
    if decision.action == "accept":
        rule = policy.rule(decision.rule_id)
        assert rule is not None and rule.action == "accept"
    if decision.rule_id == DEFAULT_RULE:
        assert decision.action == policy.default


@SETTINGS
@given(policies(), st.sampled_from(DOMAINS), descriptions, services, nows, usages)
def test_a_reject_rule_placed_first_is_never_overridden(
    policy: Policy,
    domain: str,
    description: str,
    service: Service,
    now: datetime,
    usage: dict[str, int] | None,
) -> None:
    """A pending connection from a domain a first reject rule names is rejected, come what may."""
    deny = Rule(id="deny-first", action="reject", domains=frozenset({domain}))
    guarded = Policy(
        policy.digest, policy.sources, policy.default, (deny, *policy.rules), policy.limits
    )
    decision = decide(Connection("ep", domain, PENDING, description), service, guarded, now, usage)
    if decision.rule_id != FAIL_CLOSED_RULE:  # a malformed generated service holds instead
        assert (decision.action, decision.rule_id) == ("reject", "deny-first")


@SETTINGS
@given(policies(), connections, services, nows, usages)
def test_a_connection_that_is_not_pending_is_never_acted_on(
    policy: Policy,
    connection: Connection,
    service: Service,
    now: datetime,
    usage: dict[str, int] | None,
) -> None:
    """Any status but pendingAcceptance (known or not) holds."""
    decision = decide(connection, service, policy, now, usage)
    if connection.status != PENDING:
        assert (decision.action, decision.rule_id) == ("hold", FAIL_CLOSED_RULE)


@st.composite
def domain_and_lookalike(draw: st.DrawFn) -> tuple[str, str]:
    domain = draw(st.sampled_from(DOMAINS))
    return domain, draw(lookalike(domain))


@SETTINGS
@given(domain_and_lookalike(), descriptions, nows)
def test_lookalike_domain_ids_never_match(
    pair: tuple[str, str], description: str, now: datetime
) -> None:
    """A domain id differing by case, whitespace, invisibles or look-alikes is not the domain."""
    domain, other = pair
    policy = Policy(
        "d" * 64, ("p",), "hold", (Rule(id="allow", action="accept", domains=frozenset({domain})),)
    )
    service = Service(SERVICE_IDS[0], "orders-api", {})
    decision = decide(Connection("ep", other, PENDING, description), service, policy, now, {})
    assert (decision.action, decision.rule_id) == ("hold", DEFAULT_RULE)


@st.composite
def service_and_lookalike(draw: st.DrawFn) -> tuple[Service, Service]:
    sid, name, env = draw(st.sampled_from(SERVICE_IDS)), "orders-api", "prod"
    which = draw(st.sampled_from(["id", "name", "tag"]))
    return Service(sid, name, {"env": env}), Service(
        draw(lookalike(sid)) if which == "id" else sid,
        draw(lookalike(name)) if which == "name" else name,
        {"env": draw(lookalike(env)) if which == "tag" else env},
    )


@SETTINGS
@given(service_and_lookalike(), nows)
def test_lookalike_service_identifiers_never_match(
    pair: tuple[Service, Service], now: datetime
) -> None:
    """Service ids, names and tag values are compared exactly too."""
    real, fake = pair
    allow = Rule(
        id="allow",
        action="accept",
        service_ids=frozenset({real.id}),
        service_names=(real.name,),
        service_tags=(TagCondition("env", frozenset({real.tags["env"]})),),
    )
    policy = Policy("d" * 64, ("p",), "hold", (allow,))
    connection = Connection("ep", DOMAINS[0], PENDING, "")
    assert decide(connection, real, policy, now, {}).action == "accept"
    assert decide(connection, fake, policy, now, {}).rule_id == DEFAULT_RULE


@SETTINGS
@given(
    st.lists(st.tuples(times, times, st.sampled_from(["accept", "reject", "hold"])), max_size=5),
    nows,
)
def test_windows_agree_with_the_reference_on_their_edges(
    windows: list[tuple[datetime | None, datetime | None, str]], now: datetime
) -> None:
    """valid_from is inclusive and valid_until exclusive in the fast path as in the reference."""
    rules_ = tuple(
        Rule(id=f"w{i}", action=action, valid_from=lo, valid_until=hi)  # type: ignore[arg-type]
        for i, (lo, hi, action) in enumerate(windows)
        if lo is None or hi is None or lo < hi
    )
    policy = Policy("d" * 64, ("p",), "hold", rules_)
    decision = decide(
        Connection("ep", DOMAINS[0], PENDING, ""), Service("s", "n", {}), policy, now, {}
    )
    index, _ = reference(
        rules_, Connection("ep", DOMAINS[0], PENDING, ""), Service("s", "n", {}), now
    )
    assert decision.rule_id == (DEFAULT_RULE if index is None else rules_[index].id)
