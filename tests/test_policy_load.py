"""Loading policies: every problem at once, each at its exact file:line:column."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from approver.policy import Policy, PolicyError, load_policy, load_policy_text

ACME = "0c1f2e3d4c5b6a798877665544332211"
GLOBEX = "7ab2c3d4e5f60718293a4b5c6d7e8f01"

GOOD = f"""\
version: 1
default: hold
domain_sets:
  partners: [{ACME}]
rules:
  - id: r1
    when:
      domains: [partners]
    action: accept
"""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def write(name: str, text: str) -> str:
    Path(name).write_text(textwrap.dedent(text), encoding="utf-8")
    return name


def problems(*texts: str, **kwargs: bool) -> list[str]:
    """Load texts as p.yaml (q.yaml, …) and return the problems as strings."""
    names = [write(f"{'pqrs'[i]}.yaml", t) for i, t in enumerate(texts)]
    with pytest.raises(PolicyError) as info:
        load_policy(names, **kwargs)
    assert str(info.value) == "\n".join(str(p) for p in info.value.problems)
    return [str(p) for p in info.value.problems]


BROKEN = {
    "unknown key with a suggestion": (
        GOOD.replace("      domains:", "      domians:"),
        "p.yaml:8:7: rules[0].when.domians: unknown key 'domians' (did you mean 'domains'?)",
    ),
    "unknown top-level key lists the valid ones": (
        GOOD + "colour: blue\n",
        "p.yaml:10:1: colour: unknown key 'colour' (valid keys: version, default, "
        "default_accept_confirmed, domain_sets, rules, limits)",
    ),
    "wrong type": (
        GOOD.replace("action: accept", "action: 5"),
        "p.yaml:9:13: rules[0].action: expected 'accept', 'reject' or 'hold', got the number 5",
    ),
    "misspelt action": (
        GOOD.replace("action: accept", "action: acept"),
        "p.yaml:9:13: rules[0].action: expected 'accept', 'reject' or 'hold', got the text 'acept'",
    ),
    "a list where a mapping belongs": (
        GOOD.replace("    when:\n      domains: [partners]", "    when: [partners]"),
        "p.yaml:7:11: rules[0].when: expected a mapping, got a list",
    ),
    "missing required key": (
        GOOD.replace("    action: accept\n", ""),
        "p.yaml:6:5: rules[0].action: missing required key 'action'",
    ),
    "bad regex": (
        GOOD.replace("domains: [partners]", 'description: "^SEC-(["'),
        "p.yaml:8:20: rules[0].when.description: invalid regular expression '^SEC-([': "
        "unterminated character set at position 6",
    ),
    "upper-case domain id": (
        GOOD.replace(ACME, ACME.upper()),
        f"p.yaml:4:14: domain_sets.partners[0]: malformed domain id '{ACME.upper()}': "
        "expected 32 lower-case hex characters (it has upper-case letters; domain ids are "
        "compared exactly)",
    ),
    "short domain id": (
        GOOD.replace(ACME, ACME[:-1]),
        f"p.yaml:4:14: domain_sets.partners[0]: malformed domain id '{ACME[:-1]}': "
        "expected 32 lower-case hex characters (it has 31 characters)",
    ),
    "domain id with a space": (
        GOOD.replace(f"[{ACME}]", f'["{ACME} "]'),
        f"p.yaml:4:14: domain_sets.partners[0]: malformed domain id '{ACME} ': "
        "expected 32 lower-case hex characters (it has leading or trailing whitespace)",
    ),
    "domain id with a look-alike character": (
        GOOD.replace(ACME, ACME[:-1] + "\u0431"),
        f"p.yaml:4:14: domain_sets.partners[0]: malformed domain id '{ACME[:-1]}\u0431': "
        "expected 32 lower-case hex characters (it contains non-ASCII characters "
        "(look-alikes?))",
    ),
    "all-digit domain id read as a number": (
        GOOD.replace(ACME, "1" * 32),
        "p.yaml:4:14: domain_sets.partners[0]: expected a domain id (32 lower-case hex "
        "characters), got the number 11111111111111111111111111111111; put it in quotes",
    ),
    "malformed literal domain id in a rule": (
        GOOD.replace("domains: [partners]", f"domains: [{ACME}0]"),
        f"p.yaml:8:17: rules[0].when.domains[0]: '{ACME}0' is neither a domain id "
        "(32 lower-case hex characters: it has 33 characters) nor a domain-set name",
    ),
    "undefined domain set with a suggestion": (
        GOOD.replace("domains: [partners]", "domains: [partner]"),
        "p.yaml:8:17: rules[0].when.domains[0]: undefined domain set 'partner' "
        "(did you mean 'partners'?)",
    ),
    "undefined domain set lists the defined ones": (
        GOOD.replace("domains: [partners]", "domains: [strangers]"),
        "p.yaml:8:17: rules[0].when.domains[0]: undefined domain set 'strangers'; "
        "defined sets: partners",
    ),
    "impossible window": (
        GOOD + "    valid_from: 2027-01-01T00:00:00Z\n    valid_until: 2026-01-01T00:00:00Z\n",
        "p.yaml:11:18: rules[0].valid_until: impossible window: valid_until "
        "2026-01-01T00:00:00Z is not after valid_from 2027-01-01T00:00:00Z",
    ),
    "empty window": (
        GOOD + "    valid_from: 2027-01-01T00:00:00Z\n    valid_until: 2027-01-01T01:00:00+01:00\n",
        "p.yaml:11:18: rules[0].valid_until: impossible window: valid_until "
        "2027-01-01T00:00:00Z is not after valid_from 2027-01-01T00:00:00Z",
    ),
    "naive datetime": (
        GOOD + "    valid_until: 2027-01-01 00:00:00\n",
        "p.yaml:10:18: rules[0].valid_until: time 2027-01-01T00:00:00 has no timezone: add "
        "one, e.g. 2027-01-01T00:00:00Z (naive times are ambiguous)",
    ),
    "date without time": (
        GOOD + "    valid_until: 2027-01-01\n",
        "p.yaml:10:18: rules[0].valid_until: 2027-01-01 is a date; write a time with a "
        "timezone, e.g. 2027-01-01T00:00:00Z",
    ),
    "accept default unconfirmed": (
        GOOD.replace("default: hold", "default: accept"),
        "p.yaml:2:10: default: default: accept lets in every connection no rule matches; if "
        "that is really meant, add default_accept_confirmed: true to this file (or use hold)",
    ),
    "unconditional accept rule unconfirmed": (
        GOOD.replace("    when:\n      domains: [partners]", "    when: {}"),
        "p.yaml:7:11: rules[0].when: rule 'r1' accepts every connection (its when: is empty); "
        "if that is really meant, add default_accept_confirmed: true to this file",
    ),
    "YAML syntax error": (
        GOOD.replace("domains: [partners]", "domains: [partners"),
        "p.yaml:9:11: YAML syntax error: while parsing a flow sequence expected ',' or ']', "
        "but got ':'",
    ),
    "bad indentation": (
        GOOD.replace("    action: accept", "   action: accept"),
        "p.yaml:9:4: YAML syntax error: while parsing a block collection expected <block end>, "
        "but found '<block mapping start>'",
    ),
    "python object tag": (
        GOOD + "limits: !!python/object/apply:os.system [echo pwned]\n",
        "p.yaml:10:9: limits: YAML tag '!!python/object/apply:os.system' is not allowed",
    ),
    "local tag": (
        GOOD.replace("action: accept", "action: !shout accept"),
        "p.yaml:9:13: rules[0].action: YAML tag '!shout' is not allowed",
    ),
    "duplicate key": (
        GOOD.replace("    action: accept", "    action: accept\n    action: reject"),
        "p.yaml:10:5: rules[0].action: duplicate key 'action' (first at line 9)",
    ),
    "null value": (
        GOOD.replace("domains: [partners]", "domains:"),
        "p.yaml:8:15: rules[0].when.domains: empty value (null); write a value or remove the key",
    ),
    "merge key": (
        GOOD.replace("    when:\n", "    <<: {description: x}\n    when:\n"),
        "p.yaml:7:5: rules[0]: YAML merge keys (<<) are not supported; write the keys out",
    ),
    "empty rule set": (
        GOOD[: GOOD.index("rules:")] + "rules: []\n",
        "p.yaml:5:8: rules: the policy has no rules (add at least one under rules:)",
    ),
    "reserved rule id": (
        GOOD.replace("id: r1", "id: default"),
        "p.yaml:6:9: rules[0].id: rule id 'default' is reserved (decisions use it); choose another",
    ),
    "empty condition list": (
        GOOD.replace("domains: [partners]", "domains: []"),
        "p.yaml:8:16: rules[0].when.domains: must not be empty (an empty list never matches; "
        "remove the key instead)",
    ),
    "YAML boolean as a tag value": (
        GOOD.replace("domains: [partners]", "service: {tags: {public: yes}}"),
        "p.yaml:8:32: rules[0].when.service.tags.public: expected a tag value, a list of "
        "them, or '*', got the boolean true (YAML reads yes/no/on/off/true/false so)",
    ),
    "malformed service id": (
        GOOD.replace("domains: [partners]", "service: {ids: [ORDERS]}"),
        "p.yaml:8:23: rules[0].when.service.ids[0]: malformed service id 'ORDERS': expected a "
        "lower-case UUID (8-4-4-4-12 hex digits); service ids are compared exactly",
    ),
    "negative limit": (
        GOOD + "limits: {max_connections_per_domain: -1}\n",
        "p.yaml:10:38: limits.max_connections_per_domain: must be at least 0, got the number -1",
    ),
    "wrong version": (
        GOOD.replace("version: 1", "version: 2"),
        "p.yaml:1:10: version: expected 1, got the number 2",
    ),
    "empty file": ("", "p.yaml:1:1: file is empty"),
    "not a mapping": ("- just\n- a list\n", "p.yaml:1:1: expected a mapping, got a list"),
}


@pytest.mark.parametrize("text, expected", BROKEN.values(), ids=list(BROKEN))
def test_broken_input_is_reported_at_its_position(text: str, expected: str) -> None:
    """Each kind of broken policy gives exactly one problem, at file:line:column, with a path."""
    assert problems(text) == [expected]


def test_every_problem_is_reported_at_once() -> None:
    """Problems anywhere in a file (and in cross-references) are all reported in one run."""
    text = f"""\
        version: 1
        default: hold
        domain_sets:
          partners: [{ACME}, {ACME.upper()}]
        rules:
          - id: a
            when: {{domians: [partners]}}
            action: accept
          - id: b
            when: {{domains: [partnrs], description: "("}}
            action: reject
            valid_until: 2026-01-01 00:00:00
            extra: 1
        """
    found = problems(text)
    assert [p.split(": ")[0] for p in found] == [
        "p.yaml:4:48",
        "p.yaml:7:12",
        "p.yaml:10:22",
        "p.yaml:10:45",
        "p.yaml:12:18",
        "p.yaml:13:5",
    ]
    assert "did you mean 'partners'" in found[2]
    assert "unknown key 'extra'" in found[5]


def test_duplicate_rule_id_across_files_names_both_locations() -> None:
    """A rule id used in two files is an error at the second, naming the first."""
    found = problems(GOOD, GOOD.replace("partners", "others"))
    assert found == ["q.yaml:6:9: rules[0].id: duplicate rule id 'r1': also at p.yaml:6:9"]


def test_duplicate_rule_id_within_a_file() -> None:
    """Two rules with one id in the same file are an error naming the first."""
    text = GOOD + "  - id: r1\n    when: {domains: [partners]}\n    action: hold\n"
    assert problems(text) == [
        "p.yaml:10:9: rules[1].id: duplicate rule id 'r1': also at p.yaml:6:9"
    ]


def test_domain_set_defined_twice_across_files() -> None:
    """A domain set defined in two files is an error at the second definition."""
    second = f"version: 1\ndomain_sets:\n  partners: [{GLOBEX}]\n"
    assert problems(GOOD, second) == [
        "q.yaml:3:3: domain_sets.partners: domain set 'partners' is already defined at p.yaml:4:3"
    ]


def test_conflicting_defaults_across_files() -> None:
    """Two files setting different defaults conflict; the same default twice is fine."""
    second = "version: 1\ndefault: reject\n"
    assert problems(GOOD, second) == [
        "q.yaml:2:10: default: 'reject' conflicts with 'hold' set at p.yaml:2:10"
    ]
    write("a.yaml", GOOD)
    write("b.yaml", "version: 1\ndefault: hold\nlimits: {max_actions_per_sweep: 3}\n")
    policy = load_policy(["a.yaml", "b.yaml"])
    assert policy.default == "hold"
    assert policy.limits.max_actions_per_sweep == 3


def test_conflicting_limits_across_files() -> None:
    """A limit set to different values in two files is an error."""
    first = GOOD + "limits: {max_connections_per_domain: 5}\n"
    second = "version: 1\nlimits: {max_connections_per_domain: 6}\n"
    assert problems(first, second) == [
        "q.yaml:2:38: limits.max_connections_per_domain: 6 conflicts with 5 set at p.yaml:10:38"
    ]


def test_sets_from_one_file_serve_rules_in_another() -> None:
    """Domain sets are shared by every loaded file."""
    write("a.yaml", f"version: 1\ndomain_sets:\n  partners: [{ACME}]\n")
    write(
        "b.yaml", "version: 1\nrules:\n  - {id: x, when: {domains: [partners]}, action: accept}\n"
    )
    policy = load_policy(["a.yaml", "b.yaml"])
    assert policy.rules[0].domains == frozenset({ACME})
    assert policy.default == "hold"


def test_accept_default_allowed_when_confirmed_or_by_flag() -> None:
    """default: accept loads with default_accept_confirmed: true, or allow_accept_default."""
    text = GOOD.replace("default: hold", "default: accept")
    write("a.yaml", text)
    assert load_policy(["a.yaml"], allow_accept_default=True).default == "accept"
    write("b.yaml", text.replace("version: 1", "version: 1\ndefault_accept_confirmed: true"))
    assert load_policy(["b.yaml"]).default == "accept"


def test_default_is_hold_when_no_file_sets_it() -> None:
    """Without a default anywhere, the policy holds (fail closed, never accept)."""
    policy = load_policy_text(GOOD.replace("default: hold\n", ""))
    assert policy.default == "hold"


def test_alias_bomb_is_refused() -> None:
    """A billion-laughs file is refused before it is expanded."""
    lines = ["version: 1", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join(f'*a{i - 1}' for _ in range(10))}]" for i in range(1, 9)]
    found = problems("\n".join(lines) + "\n")
    assert len(found) == 1
    assert "document expands to more than 200000 values (aliases?); refused" in found[0]


def test_self_referencing_alias_is_refused() -> None:
    """An alias that contains itself is refused, not followed forever."""
    found = problems("version: 1\nrules: &r [*r]\n")
    assert len(found) == 1 and "too deep nesting" in found[0]


def test_small_aliases_are_fine() -> None:
    """Anchors and aliases reused a few times load normally."""
    text = GOOD + "  - id: r2\n    when: {domains: &d [partners]}\n    action: hold\n"
    text += "  - id: r3\n    when: {domains: *d}\n    action: hold\n"
    assert [r.id for r in load_policy_text(text).rules] == ["r1", "r2", "r3"]


def test_oversize_file_is_refused() -> None:
    """A file over 1 MiB is refused without being parsed."""
    assert problems(GOOD + "#" * (1024 * 1024)) == [
        "p.yaml: file is larger than 1048576 bytes; refused"
    ]


def test_non_utf8_file_is_refused() -> None:
    """A file that is not UTF-8 is a problem, not a crash."""
    Path("p.yaml").write_bytes(b"version: 1\n# \xff\n")
    with pytest.raises(PolicyError) as info:
        load_policy(["p.yaml"])
    assert str(info.value) == "p.yaml: file is not UTF-8 (invalid start byte)"


def test_missing_file_and_broken_file_are_both_reported() -> None:
    """A missing file does not hide the problems of the files that exist."""
    write("p.yaml", GOOD.replace("action: accept", "action: maybe"))
    with pytest.raises(PolicyError) as info:
        load_policy(["nope.yaml", "p.yaml"])
    assert [str(p).split(":")[0] for p in info.value.problems] == ["nope.yaml", "p.yaml"]
    assert str(info.value.problems[0]) == "nope.yaml: no such file"


def test_directory_loads_yaml_files_sorted_by_name() -> None:
    """A directory contributes *.yaml/*.yml sorted by name; tests and hidden files skipped."""
    Path("d").mkdir()
    write(
        "d/20-b.yml", "version: 1\nrules:\n  - {id: b, when: {domains: [partners]}, action: hold}\n"
    )
    write("d/10-a.yaml", GOOD)
    write("d/30-c.test.yaml", "policy: x\n")
    write("d/.swap.yaml", "not: valid")
    write("d/notes.txt", "ignored")
    policy = load_policy(["d"])
    assert policy.sources == ("d/10-a.yaml", "d/20-b.yml")
    assert [r.id for r in policy.rules] == ["r1", "b"]


def test_files_merge_in_the_order_given() -> None:
    """Rules from several files are evaluated file by file, in the order given."""
    write("a.yaml", GOOD)
    write("b.yaml", "version: 1\nrules:\n  - {id: b, when: {domains: [partners]}, action: hold}\n")
    assert [r.id for r in load_policy(["b.yaml", "a.yaml"]).rules] == ["b", "r1"]
    assert [r.id for r in load_policy(["a.yaml", "b.yaml"]).rules] == ["r1", "b"]


def test_empty_directory_is_a_problem() -> None:
    """A directory without policy files is an error, not an empty policy."""
    Path("empty").mkdir()
    with pytest.raises(PolicyError) as info:
        load_policy(["empty"])
    assert str(info.value) == "empty: no *.yaml files here"


def test_no_paths_is_a_problem() -> None:
    """Loading nothing is an error."""
    with pytest.raises(PolicyError, match="no policy file given"):
        load_policy([])


class TestDigest:
    def digest(self, *files: tuple[str, str]) -> str:
        for name, text in files:
            write(name, text)
        policy: Policy = load_policy([name for name, _ in files])
        return policy.digest

    def test_stable_for_the_same_bytes(self) -> None:
        """Loading the same files twice gives the same digest."""
        assert self.digest(("a.yaml", GOOD)) == self.digest(("a.yaml", GOOD))

    def test_changes_with_any_byte(self) -> None:
        """A changed comment (semantically nothing) still changes the digest."""
        assert self.digest(("a.yaml", GOOD)) != self.digest(("a.yaml", GOOD + "# note\n"))

    def test_changes_with_the_file_name_and_order(self) -> None:
        """Renaming a file or reordering files changes the digest."""
        other = "version: 1\nrules:\n  - {id: b, when: {domains: [" + ACME + "]}, action: hold}\n"
        one = self.digest(("a.yaml", GOOD), ("b.yaml", other))
        assert one != self.digest(("b.yaml", other), ("a.yaml", GOOD))
        assert one != self.digest(("a.yaml", GOOD), ("c.yaml", other))

    def test_independent_of_the_directory(self) -> None:
        """The same files in another directory have the same digest."""
        Path("x").mkdir()
        Path("y").mkdir()
        assert self.digest(("x/a.yaml", GOOD)) == self.digest(("y/a.yaml", GOOD))

    def test_is_sha256_hex(self) -> None:
        """The digest is 64 lower-case hex characters."""
        value = self.digest(("a.yaml", GOOD))
        assert len(value) == 64 and set(value) <= set("0123456789abcdef")


def test_compiled_rule_keeps_its_source_position() -> None:
    """Each compiled rule knows its file, line and path, for lint and explain."""
    write("a.yaml", GOOD)
    rule = load_policy(["a.yaml"]).rules[0]
    assert (rule.source, rule.line, rule.column, rule.path) == ("a.yaml", 6, 5, "rules[0]")
