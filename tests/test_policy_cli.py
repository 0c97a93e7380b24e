"""``check``, ``explain`` and ``test`` through ``register`` and argparse, with real files."""

from __future__ import annotations

import argparse
import io
import json
import shutil
import textwrap
from pathlib import Path

import pytest

from approver import cli_policy
from approver.policy import load_policy

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "policies" / "example.yaml"
ACME = "0c1f2e3d4c5b6a798877665544332211"
UNKNOWN = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="vpcep-approver")
    sub = parser.add_subparsers(dest="command", required=True)
    cli_policy.register(sub)
    args = parser.parse_args(argv)
    code = args.handler(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shipped examples in a temporary directory, as the current directory."""
    for name in ("example.yaml", "example.test.yaml"):
        shutil.copy(ROOT / "policies" / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: Path, text: str) -> str:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path.name


class TestCheck:
    def test_valid_policy_prints_a_summary_and_exits_0(
        self, work: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A clean policy: one summary line (rules, sets, digest), exit 0."""
        digest = load_policy(["example.yaml"]).digest
        code, out, err = run(["check", "example.yaml"], capsys)
        assert (code, err) == (0, "")
        assert out == f"example.yaml: 3 rules, 3 domain sets, digest {digest[:12]}…: ok\n"

    def test_warnings_exit_0_or_1_with_strict(
        self, work: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Warnings are printed and exit 0; with --strict they exit 1."""
        text = (
            (work / "example.yaml")
            .read_text()
            .replace(
                "    action: reject\n",
                "    action: reject\n    valid_until: 2026-01-01T00:00:00Z\n",
            )
        )
        write(work / "old.yaml", text)
        argv = ["check", "old.yaml", "--at", "2026-11-26T00:00:00Z"]
        code, out, _ = run(argv, capsys)
        lines = out.splitlines()
        assert code == 0
        assert lines[0] == (
            "old.yaml:23:5: rules[0]: warning: rule 'block-listed' expired "
            "2026-01-01T00:00:00Z; remove it"
        )
        assert lines[-1].endswith(": ok, 1 warning")
        assert run([*argv, "--strict"], capsys)[0] == 1

    def test_invalid_policy_exits_78_with_every_problem_on_stderr(
        self, work: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Errors go to stderr as file:line:col lines, with a count, and exit 78."""
        text = (work / "example.yaml").read_text()
        write(
            work / "bad.yaml",
            text.replace("domains: [partners]", "domians: [partners]").replace(
                "action: reject", "action: rejekt"
            ),
        )
        code, out, err = run(["check", "bad.yaml"], capsys)
        assert (code, out) == (78, "")
        assert err.splitlines() == [
            "bad.yaml:27:13: rules[0].action: expected 'accept', 'reject' or 'hold', got the "
            "text 'rejekt'",
            "bad.yaml:33:7: rules[1].when.domians: unknown key 'domians' (did you mean 'domains'?)",
            "bad.yaml: invalid, 2 problems",
        ]

    def test_several_files_are_one_policy_unless_each(
        self, work: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Files given together merge like the daemon's; --each checks them one by one."""
        shutil.copy(ROOT / "policies" / "strict-reject.yaml", work / "strict.yaml")
        code, out, err = run(["check", "example.yaml", "strict.yaml"], capsys)
        assert (code, out) == (78, "")
        assert (
            "strict.yaml:7:10: default: 'reject' conflicts with 'hold' set at example.yaml:10:10"
            in err
        )
        code, out, err = run(["check", "--each", "example.yaml", "strict.yaml"], capsys)
        assert (code, err) == (0, "")
        assert [line.split(":")[0] for line in out.splitlines()] == ["example.yaml", "strict.yaml"]
        write(work / "bad.yaml", "version: 1\n")
        code, out, err = run(
            ["check", "--each", "example.yaml", "bad.yaml", "--output", "json"], capsys
        )
        reports = json.loads(out)
        assert code == 78
        assert [r["valid"] for r in reports] == [True, False]
        assert reports[1]["problems"][0]["message"].startswith("the policy has no rules")

    def test_json_output(self, work: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--output json gives sources, digest, counts and problems."""
        code, out, _ = run(["check", "example.yaml", "--output", "json"], capsys)
        data = json.loads(out)
        assert code == 0
        assert data["rules"] == 3 and data["valid"] is True and data["problems"] == []
        assert data["digest"] == load_policy(["example.yaml"]).digest

    def test_missing_file_is_invalid_policy(
        self, work: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A policy path that does not exist exits 78 with the reason."""
        code, _, err = run(["check", "nope.yaml"], capsys)
        assert code == 78 and err.startswith("nope.yaml: no such file\n")

    def test_bad_time_is_a_usage_error(
        self, work: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--at without a timezone exits 2 and says how to fix it."""
        code, _, err = run(["check", "example.yaml", "--at", "2026-01-01T00:00:00"], capsys)
        assert code == 2
        assert "add a timezone" in err


class TestExplain:
    ARGS: tuple[str, ...] = (
        "explain",
        "example.yaml",
        "--domain",
        ACME,
        "--service-name",
        "orders-api",
        "--service-tag",
        "env=prod",
        "--description",
        "SEC-1201 acme orders",
        "--at",
        "2026-11-26T00:00:00Z",
    )

    def test_prints_the_decision_and_every_rule_evaluated(
        self, work: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The text output names decision, rule and reason, then each rule's checks ✓/✗."""
        code, out, err = run(list(self.ARGS), capsys)
        assert (code, err) == (0, "")
        lines = out.splitlines()
        assert lines[0] == "decision:   ACCEPT"
        assert lines[1] == "rule:       partners-prod"
        assert "  ✗ block-listed → reject  [example.yaml:23]" in lines
        assert f'      ✗ domains  expected one of: blocked (1 id); observed "{ACME}"' in lines
        assert "  ✓ partners-prod → accept  [example.yaml:29]" in lines
        assert (
            "      ✓ description       expected matches /^SEC-[0-9]+/; "
            'observed "SEC-1201 acme orders"' in lines
        )
        assert '      ✓ accepted+creating of this domain  expected < 5; observed "0"' in lines

    def test_default_and_lookalikes_are_visible(
        self, work: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A look-alike domain id shows escaped, and the default is named when no rule matched."""
        argv = list(self.ARGS)
        argv[3] = ACME[:-1] + "\u0431"
        code, out, _ = run(argv, capsys)
        assert code == 0
        assert "decision:   HOLD" in out
        assert f'observed "{ACME[:-1]}\\u0431"' in out
        assert out.rstrip().endswith("→ no rule matched: default hold")

    def test_quota_from_usage(self, work: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--usage feeds domain counts: at the limit the accept is held with a quota reason."""
        code, out, _ = run([*self.ARGS, "--usage", f"{ACME}=5"], capsys)
        assert code == 0
        assert "decision:   HOLD" in out and "Held by quota" in out

    def test_json_output(self, work: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--output json is the decision's to_dict plus the input and the policy."""
        code, out, _ = run([*self.ARGS, "--output", "json"], capsys)
        data = json.loads(out)
        assert code == 0
        assert data["decision"]["action"] == "accept"
        assert [t["rule_id"] for t in data["decision"]["trace"]][:2] == [
            "block-listed",
            "partners-prod",
        ]
        assert data["connection"]["domain_id"] == ACME
        assert data["policy"]["sources"] == ["example.yaml"]

    def test_reads_a_json_file(self, work: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--json FILE gives service, connection, usage and time in one document."""
        spec = {
            "service": {"name": "sandbox-api", "tags": {"env": "dev"}},
            "connection": {
                "domain_id": "1d2d3d4d5d6d7d8d9dadbdcdddedfd0d",
                "description": "SEC-77",
            },
            "at": "2026-11-26T00:00:00Z",
        }
        (work / "c.json").write_text(json.dumps(spec))
        code, out, _ = run(["explain", "example.yaml", "--json", "c.json"], capsys)
        assert code == 0 and "rule:       dev-team-sandbox" in out

    def test_reads_json_from_stdin(
        self, work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """--json - reads the document from standard input."""
        spec = {"connection": {"domain_id": UNKNOWN, "status": "accepted"}}
        monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(spec)))
        code, out, _ = run(["explain", "example.yaml", "--json", "-"], capsys)
        assert code == 0
        assert "rule:       fail-closed" in out

    @pytest.mark.parametrize(
        "extra, message",
        [
            (["--json", "c.json", "--domain", ACME], "either with --json or with flags"),
            (["--json", "missing.json"], "--json missing.json: No such file or directory"),
            (["--json", "bad.json"], "not JSON"),
            (["--json", "extra.json"], "connection.colour: Extra inputs are not permitted"),
            (["--domain", ACME, "--service-tag", "env"], "expected KEY=VALUE"),
            (["--domain", ACME, "--usage", f"{ACME}=many"], "N must be a whole number"),
            ([], "--domain (or --json) is required"),
        ],
    )
    def test_bad_input_is_a_usage_error(
        self, work: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
    ) -> None:
        """Bad flags or JSON exit 2 with one clear line, never a traceback."""
        (work / "c.json").write_text("{}")
        (work / "bad.json").write_text("{nope")
        (work / "extra.json").write_text(
            json.dumps({"connection": {"domain_id": ACME, "colour": 1}})
        )
        code, out, err = run(["explain", "example.yaml", *extra], capsys)
        assert (code, out) == (2, "")
        assert message in err and "Traceback" not in err

    def test_invalid_policy_exits_78(self, work: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """explain on an invalid policy reports its problems and exits 78."""
        write(work / "bad.yaml", "version: 2\n")
        code, _, err = run(["explain", "bad.yaml", "--domain", ACME], capsys)
        assert code == 78 and "bad.yaml:1:10: version: expected 1" in err


class TestTest:
    def test_passing_suite(self, work: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """All cases pass: counts and full coverage, exit 0."""
        code, out, err = run(["test", "example.test.yaml"], capsys)
        assert (code, err) == (0, "")
        assert "  11 passed, 0 failed; rules covered 3/3" in out
        assert out.splitlines()[-1] == "1 test file: 11 passed, 0 failed"

    def test_mismatch_fails_with_expected_and_actual(
        self, work: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A case whose decision differs fails (exit 1) and shows expected, actual and trace."""
        write(
            work / "wrong.test.yaml",
            f"""\
            policy: example.yaml
            now: 2026-11-26T00:00:00Z
            cases:
              - name: unknown is accepted (it is not)
                service: {{name: orders-api, tags: {{env: prod}}}}
                connection: {{domain_id: "{UNKNOWN}"}}
                expect: {{action: accept, rule: partners-prod}}
            """,
        )
        code, out, _ = run(["test", "wrong.test.yaml"], capsys)
        assert code == 1
        lines = out.splitlines()
        start = lines.index("  FAIL  unknown is accepted (it is not) (wrong.test.yaml:4)")
        assert lines[start + 1 : start + 5] == [
            "          expected: action=accept rule=partners-prod",
            "          actual:   action=hold rule=default",
            "          - action: expected accept, got hold",
            "          - rule: expected partners-prod, got default",
        ]
        assert (
            "          trace:    ✗ block-listed: domains (expected one of: blocked (1 id), "
            f"observed '{UNKNOWN}')" in lines
        )
        assert (
            "  0 passed, 1 failed; rules covered 0/3 (not exercised: block-listed, "
            "partners-prod, dev-team-sandbox)" in lines
        )

    def test_reason_mismatch_fails(self, work: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """reason_contains must be found in the reason."""
        write(
            work / "reason.test.yaml",
            f"""\
            policy: example.yaml
            cases:
              - name: unknown holds for the wrong reason
                connection: {{domain_id: "{UNKNOWN}"}}
                expect: {{action: hold, rule: default, reason_contains: quota}}
            """,
        )
        code, out, _ = run(["test", "reason.test.yaml"], capsys)
        assert code == 1 and "- reason: expected to contain 'quota'" in out

    def test_unknown_key_in_a_test_file_is_an_error(
        self, work: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A misspelt key (a test that could never fail) is an error, exit 78."""
        write(
            work / "typo.test.yaml",
            f"""\
            policy: example.yaml
            cases:
              - name: typo
                connection: {{domain_id: "{UNKNOWN}"}}
                expcet: {{action: accept}}
            """,
        )
        code, _, err = run(["test", "typo.test.yaml"], capsys)
        assert code == 78
        assert err.splitlines()[:2] == [
            "typo.test.yaml:3:5: cases[0].expect: missing required key 'expect'",
            "typo.test.yaml:5:5: cases[0].expcet: unknown key 'expcet' (did you mean 'expect'?)",
        ]

    def test_unknown_expected_rule_is_an_error(
        self, work: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """expect.rule must name a rule of the policy (or default / fail-closed)."""
        write(
            work / "rule.test.yaml",
            f"""\
            policy: example.yaml
            cases:
              - name: misspelt rule
                connection: {{domain_id: "{ACME}"}}
                expect: {{action: hold, rule: partner-prod}}
            """,
        )
        code, _, err = run(["test", "rule.test.yaml"], capsys)
        assert code == 78
        assert err.startswith(
            "rule.test.yaml:5:34: cases[0].expect.rule: 'partner-prod' is not a rule of the policy"
        )

    def test_duplicate_case_names_and_empty_cases(
        self, work: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Case names are unique; a file with no cases is an error, not a pass."""
        case = (
            f'  - {{name: same, connection: {{domain_id: "{ACME}"}}, expect: {{action: hold}}}}\n'
        )
        write(work / "dup.test.yaml", "policy: example.yaml\ncases:\n" + case + case)
        write(work / "empty.test.yaml", "policy: example.yaml\ncases: []\n")
        code, _, err = run(["test", "dup.test.yaml", "empty.test.yaml"], capsys)
        assert code == 78
        assert (
            "dup.test.yaml:4:12: cases[1].name: duplicate case name 'same' (also cases[0])" in err
        )
        assert "empty.test.yaml:2:8: cases: must not be empty\n" in err

    def test_strict_fails_on_uncovered_rules(
        self, work: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--strict exits 1 when some rule is exercised by no case."""
        write(
            work / "one.test.yaml",
            f"""\
            policy: example.yaml
            cases:
              - name: unknown holds
                connection: {{domain_id: "{UNKNOWN}"}}
                expect: {{action: hold, rule: default}}
            """,
        )
        assert run(["test", "one.test.yaml"], capsys)[0] == 0
        code, out, _ = run(["test", "one.test.yaml", "--strict"], capsys)
        assert code == 1 and "rules covered 0/3" in out

    def test_directory_and_json_output(
        self, work: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A directory runs every *.test.yaml in it; --output json reports each case."""
        code, out, _ = run(["test", ".", "--output", "json"], capsys)
        data = json.loads(out)
        assert code == 0
        assert (data["passed"], data["failed"]) == (11, 0)
        first = data["files"][0]["cases"][0]
        assert first["expected"] == {"action": "accept", "rule": "partners-prod"}
        assert first["actual"]["rule"] == "partners-prod"

    def test_no_test_files_is_a_usage_error(
        self, work: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An empty directory exits 2 rather than passing vacuously."""
        (work / "none").mkdir()
        code, _, err = run(["test", "none"], capsys)
        assert code == 2 and "no *.test.yaml files found" in err


def test_subcommands_require_their_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    """argparse rejects a missing POLICY with exit 2 (usage)."""
    with pytest.raises(SystemExit) as info:
        run(["check"], capsys)
    assert info.value.code == 2
