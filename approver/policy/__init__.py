"""Policy: the YAML rule language, its loader, and the pure ``decide``.

Language (``policies/README.md`` is the full reference)::

    version: 1
    default: hold                  # hold | reject (accept needs default_accept_confirmed: true)
    domain_sets: {partners: [<32 lower-case hex>, ...]}
    rules:                         # first match wins, files in the order given
      - id: partners-prod
        when:                      # every key given must hold; every list is "any of"
          service: {ids: [...], names: ["orders-*"], tags: {env: prod, team: [a, b], owner: "*"}}
          domains: [partners, <domain id>]
          description: "^SEC-[0-9]+"   # Python regex, re.search
        action: accept             # accept | reject | hold
        valid_from: 2026-01-01T00:00:00Z   # in force from (inclusive) ...
        valid_until: 2027-06-30T00:00:00Z  # ... until (exclusive); a timezone is required
    limits: {max_actions_per_sweep: 100, max_connections_per_domain: 5}

Semantics:

* Only ``pendingAcceptance`` connections are decided; any other status (known or not), a
  malformed record or a clock without timezone gives ``hold`` with rule id ``fail-closed``.
* Rules are tried in order; a rule matches when every condition holds and ``now`` is inside
  its window (rules outside it are skipped, and the trace says "expired …" / "not valid
  before …"). No match: the policy ``default`` (rule id ``default``).
* Identifiers are compared exactly, with no normalisation: domain ids must be written as 32
  lower-case hex characters (anything else is a load error), service ids as lower-case UUIDs,
  tag keys and values as exact strings, names as case-sensitive globs (``fnmatchcase``).
  A connection's ``domain_id`` that differs in case, whitespace or by a look-alike character
  therefore never matches.
* ``limits.max_connections_per_domain``: an ``accept`` (by a rule or the default) for a
  domain that already has that many accepted + creating connections on the service becomes
  ``hold`` with a "quota" reason; without ``domain_usage`` it holds too (fail closed).
  ``limits.max_actions_per_sweep`` is carried for the sweep, which enforces it.
* ``decide`` is pure and total: it never raises and never reads a clock or a file; an
  internal failure is a ``fail-closed`` hold.
"""

from approver.policy import _yaml as yaml_source  # the safe, position-keeping YAML reader
from approver.policy._engine import Limits, Policy, Rule, TagCondition, decide
from approver.policy._lint import lint
from approver.policy._load import load_policy, load_policy_text
from approver.policy._types import (
    DEFAULT_RULE,
    FAIL_CLOSED_RULE,
    LIMITS_RULE,
    Action,
    Check,
    Decision,
    PolicyError,
    Problem,
    RuleTrace,
)

__all__ = [
    "DEFAULT_RULE",
    "FAIL_CLOSED_RULE",
    "LIMITS_RULE",
    "Action",
    "Check",
    "Decision",
    "Limits",
    "Policy",
    "PolicyError",
    "Problem",
    "Rule",
    "RuleTrace",
    "TagCondition",
    "decide",
    "lint",
    "load_policy",
    "load_policy_text",
    "yaml_source",
]
