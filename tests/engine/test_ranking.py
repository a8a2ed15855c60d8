"""Every ranking rule, table-driven: two groups that differ in what the rule looks at, and
the one that must be killed first."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from oomguard.engine import decide

from builders import Gi, Mi, pod, policy, priority, snapshot


@dataclass
class Case:
    id: str
    first: dict[str, Any]
    second: dict[str, Any]
    reason: str
    policy_spec: dict[str, Any] = field(default_factory=dict)


def _setup(name: str, spec: dict[str, Any]) -> tuple[Any, int, Any]:
    """A pod `name` of its own namespace, with usage, requests, age and an OOMPriority."""
    usage = spec.get("usage", 100 * Mi)
    p = pod(name, name, requests_bytes=spec.get("requests", 0), created=spec.get("created", 0.0))
    prio_spec = {k: v for k, v in spec.items() if k in ("priority", "preference", "allowance")}
    return p, usage, priority(name, name, **prio_spec)


CASES = [
    Case("Prefer before none", {"preference": "Prefer", "priority": 500},
         {"priority": -500}, "preference Prefer goes before none"),
    Case("none before Avoid", {"priority": 500},
         {"preference": "Avoid", "priority": -500}, "preference none goes before Avoid"),
    Case("lower priority first", {"priority": -10, "usage": 1 * Mi},
         {"priority": 10, "usage": 8 * Gi}, "priority -10 is lower than 10"),
    Case("over allowance before within", {"usage": 200 * Mi, "requests": 100 * Mi},
         {"usage": 4 * Gi, "requests": 8 * Gi}, "over its allowance"),
    Case("larger excess first", {"usage": 3 * Gi, "requests": 1 * Gi},
         {"usage": 4 * Gi, "requests": 3 * Gi}, "2Gi over its allowance against 1Gi"),
    Case("larger usage first, same excess", {"usage": 3 * Gi, "requests": 3 * Gi},
         {"usage": 2 * Gi, "requests": 2 * Gi}, "uses 3Gi against 2Gi"),
    Case("younger first, all else equal", {"created": 2000.0}, {"created": 1000.0},
         "younger than the next group"),
    Case("name last", {}, {}, "name sorts first"),
    Case("quantity allowance judges expected-big groups",
         {"usage": 1 * Gi, "allowance": "512Mi"}, {"usage": 6 * Gi, "allowance": "8Gi"},
         "over its allowance"),
    Case("Limits allowance", {"usage": 1 * Gi, "allowance": "Limits"},
         {"usage": 1 * Gi, "allowance": "Requests", "requests": 2 * Gi}, "over its allowance"),
    # KubeletCompatible: usage over allowance comes before preference and priority.
    Case("kubelet: over requests before priority",
         {"usage": 200 * Mi, "requests": 100 * Mi, "priority": 900},
         {"usage": 4 * Gi, "requests": 8 * Gi, "priority": -900, "preference": "Prefer"},
         "over its allowance", {"ranking": "KubeletCompatible"}),
    Case("kubelet: then preference", {"preference": "Prefer", "priority": 900},
         {"priority": -900}, "preference Prefer goes before none",
         {"ranking": "KubeletCompatible"}),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_rule_orders_two_groups(case: Case) -> None:
    a, a_usage, a_prio = _setup("a", case.first)
    b, b_usage, b_prio = _setup("b", case.second)
    # Present them in the "wrong" order: the rule, not the input order, must decide.
    s = snapshot(
        [(b, b_usage), (a, a_usage)],
        priorities=[b_prio, a_prio],
        policies=[policy(**case.policy_spec)],
    )
    outcome = decide(s)
    assert [r.group.name for r in outcome.ranking] == ["a/a", "b/b"]
    assert case.reason in outcome.ranking[0].reason


def test_priority_ranking_full_order() -> None:
    """The five steps of the contract, together, on one node."""
    specs = {
        "prefer-high": {"preference": "Prefer", "priority": 1000, "usage": 10 * Mi},
        "low-within": {"priority": -5, "usage": 1 * Gi, "requests": 2 * Gi},
        "low-over-small": {"priority": -5, "usage": 300 * Mi, "requests": 100 * Mi},
        "low-over-big": {"priority": -5, "usage": 3 * Gi, "requests": 1 * Gi},
        "mid": {"priority": 0, "usage": 5 * Gi},
        "avoid-low": {"preference": "Avoid", "priority": -1000, "usage": 9 * Gi},
    }
    setups = [_setup(n, spec) for n, spec in specs.items()]
    outcome = decide(snapshot([(p, u) for p, u, _ in setups], priorities=[x for *_, x in setups]))
    assert [r.group.namespace for r in outcome.ranking] == [
        "prefer-high", "low-over-big", "low-over-small", "low-within", "mid", "avoid-low",
    ]
    assert outcome.ranking[-1].reason == "last candidate"


def test_namespace_hierarchy_picks_namespace_most_over_allowance_first() -> None:
    """Namespace mode: a namespace far over its allowance loses its groups first, even
    to a lower-priority group elsewhere; after each pick the namespace is re-judged."""
    greedy = [pod(f"g{i}", "greedy", requests_bytes=100 * Mi) for i in range(3)]
    modest = pod("m", "modest", requests_bytes=2 * Gi)
    s = snapshot(
        [(greedy[0], 2 * Gi), (greedy[1], 1 * Gi), (greedy[2], 150 * Mi), (modest, 1 * Gi)],
        priorities=[priority("all", "greedy", priority=500), priority("all", "modest",
                                                                      priority=-500)],
        policies=[policy(hierarchy="Namespace")],
    )
    order = [r.group.name for r in decide(s).ranking]
    # greedy: 3.15Gi used vs 300Mi allowed -> its biggest group; still over -> next one;
    # after g0 and g1, greedy holds 150Mi of 100Mi: over by 50Mi, while modest is within.
    assert order == ["greedy/g0", "greedy/g1", "greedy/g2", "modest/m"]
    flat = [r.group.name for r in decide(
        snapshot([(greedy[0], 2 * Gi), (modest, 1 * Gi)],
                 priorities=[priority("all", "greedy", priority=500),
                             priority("all", "modest", priority=-500)])
    ).ranking]
    assert flat == ["modest/m", "greedy/g0"]


def test_namespace_hierarchy_counts_never_groups_in_namespace_usage() -> None:
    """A tenant cannot hide its usage behind Never: the namespace still competes with it."""
    big_never = pod("db", "t1", labels={"app": "db"})
    small = pod("job", "t1")
    other = pod("svc", "t2")
    s = snapshot(
        [(big_never, 8 * Gi), (small, 100 * Mi), (other, 2 * Gi)],
        priorities=[priority("db", "t1", podSelector={"matchLabels": {"app": "db"}},
                             preference="Never")],
        policies=[policy(hierarchy="Namespace", tenants=[{"allowNever": True}])],
    )
    outcome = decide(s)
    assert [r.group.name for r in outcome.ranking] == ["t1/job", "t2/svc"]
    assert {e.pod: e.reason for e in outcome.excluded}["t1/db"] == "Never"
