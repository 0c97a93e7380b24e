"""The command as a user runs it: a real process, real files, real signals, a real notify socket."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DEMO_SCENARIO, EXAMPLE_POLICY, PROJECT

from approver.emulator import Emulator, load_scenario

DEMO_AK = "DEMOAK00000000000001"
DEMO_SK = "demo-secret-key-not-for-production-000000"
WAIT = 60.0  # generous upper bound for a process to answer; tests never sleep


@pytest.fixture(name="live")
def _live() -> Iterator[Emulator]:
    """The emulator on the real clock: a child process signs with the real time."""
    with Emulator(load_scenario(DEMO_SCENARIO)) as emu:
        yield emu


def write_config(tmp_path: Path, emulator: Emulator, **extra: object) -> Path:
    config = {
        "policy": [str(EXAMPLE_POLICY)],
        "interval_seconds": 1,
        "jitter_seconds": 0,
        "state_dir": str(tmp_path / "state"),
        "targets": [
            {"name": "emu", "region": "cn-north-4", "project_id": PROJECT, "endpoint": emulator.url}
        ],
        **extra,
    }
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def env(**extra: str) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VPCEP_APPROVER_", "HUAWEICLOUD_", "NOTIFY_SOCKET"))
    }
    base.update(
        HUAWEICLOUD_SDK_AK=DEMO_AK, HUAWEICLOUD_SDK_SK=DEMO_SK, VPCEP_APPROVER_LOG_FORMAT="json"
    )
    base.update(extra)
    return base


def approver(*args: str, **env_extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "approver", *args],
        capture_output=True,
        text=True,
        env=env(**env_extra),
        timeout=WAIT,
        check=False,
    )


def records(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_help_teaches_the_commands() -> None:
    """--help names every subcommand and the exit codes."""
    result = approver("--help")
    assert result.returncode == 0
    for command in ("run", "plan", "check", "explain", "test", "emulator", "audit", "demo"):
        assert command in result.stdout
    assert "78" in result.stdout


def test_run_once_acts_and_logs_every_decision(tmp_path: Path, live: Emulator) -> None:
    """run --once accepts/rejects per policy, exits 0, and logs one JSON record per decision."""
    result = approver("run", "--once", "--config", str(write_config(tmp_path, live)))
    assert result.returncode == 0, result.stderr
    assert live.count("AcceptOrRejectEndpoint") == 4
    decisions = [r for r in records(result.stdout) if r.get("event") == "decision"]
    assert len(decisions) == 7
    audit = (tmp_path / "state" / "audit.jsonl").read_text().splitlines()
    assert sum('"event":"outcome"' in line for line in audit) == 4
    verify = approver("audit", "verify", str(tmp_path / "state" / "audit.jsonl"))
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_run_once_dry_run_sends_nothing(tmp_path: Path, live: Emulator) -> None:
    """--dry-run on the command line: zero POSTs, records marked dry_run."""
    result = approver("run", "--once", "--dry-run", "--config", str(write_config(tmp_path, live)))
    assert result.returncode == 0, result.stderr
    assert live.count("AcceptOrRejectEndpoint") == 0
    outcomes = [r for r in records(result.stdout) if r.get("event") == "outcome"]
    assert outcomes and {r["outcome"] for r in outcomes} == {"skipped_dry_run"}


def test_environment_overrides_the_file_and_cli_overrides_both(
    tmp_path: Path, live: Emulator
) -> None:
    """VPCEP_APPROVER_DRY_RUN=true beats the file's dry_run: false."""
    config = write_config(tmp_path, live, dry_run=False)
    result = approver("run", "--once", "--config", str(config), VPCEP_APPROVER_DRY_RUN="true")
    assert result.returncode == 0, result.stderr
    assert live.count("AcceptOrRejectEndpoint") == 0


def test_plan_prints_a_table_and_writes_json(tmp_path: Path, live: Emulator) -> None:
    """plan shows every pending connection's decision, acts on nothing, and writes the plan file."""
    out = tmp_path / "plan.json"
    result = approver("plan", "--config", str(write_config(tmp_path, live)), "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert "ACCEPT" in result.stdout and "REJECT" in result.stdout and "HOLD" in result.stdout
    assert live.count("AcceptOrRejectEndpoint") == 0
    plan = json.loads(out.read_text())
    decisions = plan["targets"][0]["decisions"]
    assert sorted(d["action"] for d in decisions) == ["accept"] * 3 + ["hold"] * 3 + ["reject"]
    assert plan["policy_digest"]


def test_invalid_policy_stops_before_any_api_call(tmp_path: Path, live: Emulator) -> None:
    """A broken policy: exit 78, one line naming file and line, no traceback, zero requests."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ndefault: hold\nrules:\n  - id: x\n    action: acept\n")
    config = write_config(tmp_path, live, policy=[str(bad)])
    result = approver("run", "--once", "--config", str(config))
    assert result.returncode == 78
    assert "Traceback" not in result.stderr
    assert f"{bad}:5:" in result.stderr
    assert live.requests == []


def test_invalid_config_names_file_line_and_field(tmp_path: Path, live: Emulator) -> None:
    """An unknown setting is a config error with file:line:col and the field path."""
    config = tmp_path / "config.yaml"
    config.write_text(f"policy: [{EXAMPLE_POLICY}]\nintervall_seconds: 3\n")
    result = approver("run", "--once", "--config", str(config))
    assert result.returncode == 78
    assert f"{config}:2:1: intervall_seconds: unknown setting" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_credentials_is_a_config_error(tmp_path: Path, live: Emulator) -> None:
    """No credentials anywhere: exit 78 with what to set, before any API call."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "approver",
            "run",
            "--once",
            "--config",
            str(write_config(tmp_path, live)),
        ],
        capture_output=True,
        text=True,
        env={k: v for k, v in env().items() if not k.startswith("HUAWEICLOUD_")},
        timeout=WAIT,
        check=False,
    )
    assert result.returncode == 78
    assert "HUAWEICLOUD_SDK_AK" in result.stderr
    assert live.requests == []


def test_group_readable_key_file_is_refused(tmp_path: Path, live: Emulator) -> None:
    """A secret file readable by others is refused with the chmod to run."""
    ak, sk = tmp_path / "ak", tmp_path / "sk"
    ak.write_text(DEMO_AK)
    sk.write_text(DEMO_SK)
    ak.chmod(0o600)
    sk.chmod(0o644)
    config = write_config(tmp_path, live, credentials={"ak_file": str(ak), "sk_file": str(sk)})
    result = approver("run", "--once", "--config", str(config))
    assert result.returncode == 78
    assert "chmod 600" in result.stderr


class NotifySocket:
    """A real AF_UNIX datagram socket standing in for systemd's."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(WAIT)

    def wait_for(self, key: str) -> list[str]:
        seen: list[str] = []
        while True:
            message = self.sock.recv(4096).decode()
            seen.append(message)
            if key in message.splitlines():
                return seen


def test_daemon_notifies_reloads_safely_and_stops_on_sigterm(
    tmp_path: Path, live: Emulator
) -> None:
    """READY=1 after a sweep; SIGHUP with a broken policy keeps the old one; SIGTERM exits 0."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(EXAMPLE_POLICY.read_text())
    config = write_config(tmp_path, live, policy=[str(policy)], interval_seconds=3600)
    notify = NotifySocket(tmp_path / "notify.sock")
    proc = subprocess.Popen(
        [sys.executable, "-m", "approver", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(NOTIFY_SOCKET=str(notify.path)),
    )
    try:
        notify.wait_for("READY=1")
        assert live.count("AcceptOrRejectEndpoint") == 4
        policy.write_text("version: 1\nrules: [")  # half-written
        proc.send_signal(signal.SIGHUP)
        reload_messages = notify.wait_for("READY=1")
        assert any("reload failed" in m for m in reload_messages)
        proc.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1")
        out, err = proc.communicate(timeout=WAIT)
    finally:
        notify.sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    events = [r.get("event") for r in records(out)]
    assert "policy_reload_failed" in events
    assert "Traceback" not in err


def test_apply_executes_the_reviewed_plan_and_refuses_stale_entries(
    tmp_path: Path, live: Emulator
) -> None:
    """apply --plan acts on exactly the planned accepts/rejects; one decided meanwhile is refused."""
    config = write_config(tmp_path, live)
    plan_file = tmp_path / "plan.json"
    assert approver("plan", "--config", str(config), "--output", str(plan_file)).returncode == 0
    planned = json.loads(plan_file.read_text())["targets"][0]["decisions"]
    first = next(d for d in planned if d["action"] == "accept")
    live.set_status(first["service_id"], first["endpoint_id"], "rejected")  # a human was faster
    live.add_connection(
        first["service_id"], domain_id="0c1f2e3d4c5b6a798877665544332211", description="SEC-9 late"
    )
    result = approver("apply", "--config", str(config), "--plan", str(plan_file))
    assert result.returncode == 1, result.stderr
    assert "stale" in result.stdout
    assert live.count("AcceptOrRejectEndpoint") == 3  # 4 planned, 1 stale, the late one not planned
    assert live.connection(first["service_id"], first["endpoint_id"])["status"] == "rejected"


def test_apply_refuses_a_plan_made_under_another_policy(tmp_path: Path, live: Emulator) -> None:
    """If the policy changed since the plan, nothing is applied."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(EXAMPLE_POLICY.read_text())
    config = write_config(tmp_path, live, policy=[str(policy)])
    plan_file = tmp_path / "plan.json"
    assert approver("plan", "--config", str(config), "--output", str(plan_file)).returncode == 0
    policy.write_text(EXAMPLE_POLICY.read_text() + "\n# edited\n")
    result = approver("apply", "--config", str(config), "--plan", str(plan_file))
    assert result.returncode == 1
    assert "run plan again" in result.stderr
    assert live.count("AcceptOrRejectEndpoint") == 0


def test_bad_endpoint_url_names_the_endpoint_field(tmp_path: Path, live: Emulator) -> None:
    """A malformed endpoint: URL is exit 78 pointing at targets[0].endpoint, not at the region."""
    config = tmp_path / "config.yaml"
    config.write_text(
        f"policy: [{EXAMPLE_POLICY}]\ntargets:\n  - project_id: {PROJECT}\n    endpoint: ftp://x\n"
    )
    result = approver("run", "--once", "--config", str(config))
    assert result.returncode == 78
    assert f"{config}:4:15: targets[0].endpoint:" in result.stderr
    assert "Traceback" not in result.stderr
    assert live.requests == []
