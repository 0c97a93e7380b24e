"""Decisions per second of the compiled policy, on one core.

    python bench/policy.py                              # 1,000 rules x 100,000 connections
    python bench/policy.py --rules 50 --connections 2000 --verify 2000   # quick, for CI

A synthetic multi-tenant policy: block-list rules first, then rules selecting services by
id, by tags and by name globs, over literal domain ids and domain sets, with description
regexes and validity windows (some expired), plus a per-domain quota. Connections spread
over the services and domains, a share of them from domains the rules know. The policy is
generated as YAML text and loaded through ``load_policy_text``, so the number includes no
shortcut the daemon would not take. ``--verify N`` also reads the full trace (the reference
evaluator) of N decisions and checks it names the same rule.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from approver.policy import (
    FAIL_CLOSED_RULE,
    LIMITS_RULE,
    Decision,
    decide,
    load_policy_text,
)
from approver.records import Connection, Service

NOW = datetime(2026, 11, 26, tzinfo=UTC)
ENVS = ("prod", "dev", "staging")


def _hex(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def build(rules: int, connections: int, seed: int) -> tuple[str, list[tuple[Connection, Service]]]:
    rng = random.Random(seed)
    n_services = max(10, rules // 5)
    services = [
        Service(
            str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            f"svc-{i:04d}",
            {"env": ENVS[i % 3], "team": f"team-{i % 50}", "cost-center": f"cc{i % 7}"},
        )
        for i in range(n_services)
    ]
    domains = [_hex(rng) for _ in range(3000)]
    sets = {f"set-{k}": rng.sample(domains, 40) for k in range(25)}
    lines = ["version: 1", "default: hold", "domain_sets:"]
    lines += [f"  {name}: [{', '.join(members)}]" for name, members in sets.items()]
    lines += ["limits: {max_actions_per_sweep: 1000, max_connections_per_domain: 5}", "rules:"]
    for i in range(rules):
        kind = (
            "block" if i < max(1, rules // 100) else rng.choice(["id", "id", "tag", "tag", "name"])
        )
        if kind == "block":
            when = f"domains: [{_hex(rng)}, {rng.choice(domains)}]"
            action = "reject"
        else:
            if kind == "id":
                ids = ", ".join(s.id for s in rng.sample(services, rng.randint(1, 3)))
                service = f"service: {{ids: [{ids}]}}"
            elif kind == "tag":
                svc = rng.choice(services)
                service = f"service: {{tags: {{team: {svc.tags['team']}, env: [prod, staging]}}}}"
            else:
                service = f'service: {{names: ["svc-{rng.randint(0, n_services // 10):03d}*"]}}'
            refs = (
                [rng.choice(list(sets))]
                if rng.random() < 0.5
                else rng.sample(domains, rng.randint(1, 5))
            )
            when = f"{service}, domains: [{', '.join(refs)}]"
            if rng.random() < 0.6:
                when += ', description: "^SEC-[0-9]+"'
            action = rng.choice(["accept", "accept", "accept", "hold", "reject"])
        lines.append(f"  - id: r{i:05d}")
        lines.append(f"    when: {{{when}}}")
        lines.append(f"    action: {action}")
        if rng.random() < 0.1:
            start = NOW + timedelta(days=rng.randint(-400, 30))
            lines.append(f"    valid_from: {start.isoformat()}")
            lines.append(f"    valid_until: {(start + timedelta(days=365)).isoformat()}")
    known = [d for members in sets.values() for d in members]
    work = []
    for j in range(connections):
        domain = rng.choice(known) if rng.random() < 0.6 else rng.choice(domains)
        text = f"SEC-{rng.randint(1, 9999)} request" if rng.random() < 0.7 else "please"
        work.append(
            (Connection(f"ep-{j}", domain, "pendingAcceptance", text), rng.choice(services))
        )
    return "\n".join(lines) + "\n", work


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--verify", type=int, default=50, help="decisions to cross-check")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs (best and median)")
    parser.add_argument(
        "--trace", action="store_true", help="also read every decision's full trace (to_dict)"
    )
    args = parser.parse_args(argv)

    text, work = build(args.rules, args.connections, args.seed)
    started = time.perf_counter()
    policy = load_policy_text(text, name="bench.yaml")
    load_s = time.perf_counter() - started
    # accepted+creating per domain and service, as the sweep lists them: some domains at quota
    rng = random.Random(args.seed)
    usage: dict[str, dict[str, int]] = {}
    for connection, service in work:
        usage.setdefault(service.id, {})[connection.domain_id] = rng.choice((0, 1, 2, 5))

    times = []
    decisions: list[Decision] = []
    for _ in range(args.repeat):
        decisions = []  # let the previous run's decisions go before timing the next
        fresh = load_policy_text(text, name="bench.yaml")  # cold caches every run
        started = time.perf_counter()
        decisions = [decide(c, s, fresh, NOW, usage[s.id]) for c, s in work]
        if args.trace:
            for decision in decisions:
                decision.to_dict()
        times.append(time.perf_counter() - started)
        del fresh
    best, median = min(times), statistics.median(times)

    counts = Counter(d.action for d in decisions)
    for decision in decisions[: args.verify]:
        named = [t.rule_id for t in decision.trace if t.matched and t.rule_id != LIMITS_RULE]
        expected = [] if decision.rule_id == "default" else [decision.rule_id]
        if named != expected or decision.rule_id == FAIL_CLOSED_RULE:
            print(f"MISMATCH: decided {decision.rule_id}, trace says {named}", file=sys.stderr)
            return 1

    services = len({s.id for _, s in work})
    print(
        f"policy: {len(policy.rules)} rules, {len(policy.domain_sets)} domain sets "
        f"(loaded and compiled in {load_s:.2f} s)"
    )
    print(f"input:  {len(work)} connections over {services} services")
    print(f"result: {dict(sorted(counts.items()))}; {min(args.verify, len(work))} traces verified")
    traces = "every trace read" if args.trace else "traces built lazily, none read"
    print(
        f"speed:  {len(work) / best:,.0f} decisions/s best, {len(work) / median:,.0f} median of "
        f"{args.repeat} runs ({best:.3f} s for {len(work)}; one core; {traces})"
    )
    print(
        f"reproduce: python bench/policy.py --rules {args.rules} "
        f"--connections {args.connections} --seed {args.seed} --repeat {args.repeat}"
        + (" --trace" if args.trace else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
