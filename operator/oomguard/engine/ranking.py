"""Rank groups, first killed first, with small composable rules.

Each rule gives a sort key (smaller: killed earlier) and says in words why one group goes
before another. A ranking is an ordered tuple of rules, compared lexicographically, as the
kubelet's eviction ranking chains its comparators; keys are computed once per group so
that 10,000 groups sort in milliseconds.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from oomguard.engine.model import Group, Ranked

PREFERENCE_ORDER = {"Prefer": 0, None: 1, "Avoid": 2}


def size(n: int) -> str:
    """Bytes as a short human figure: 1.5Gi, 300Mi, 12Ki."""
    for unit, scale in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if abs(n) >= scale:
            return f"{n / scale:.1f}{unit}".replace(".0", "")
    return f"{n}B"


@dataclass(frozen=True)
class Rule:
    name: str
    key: Callable[[Group], Any]
    why: Callable[[Group, Group], str]
    """Why `a` goes before `b`, given that this rule separates them."""


def _pref(g: Group) -> str:
    return g.preference or "none"


PREFERENCE = Rule(
    "preference",
    lambda g: PREFERENCE_ORDER[g.preference],
    lambda a, b: f"preference {_pref(a)} goes before {_pref(b)}",
)
PRIORITY = Rule(
    "priority",
    lambda g: g.priority,
    lambda a, b: f"priority {a.priority} is lower than {b.priority}",
)
OVER_ALLOWANCE = Rule(
    "overAllowance",
    lambda g: 0 if g.usage_bytes > g.allowance_bytes else 1,
    lambda a, b: f"uses {size(a.usage_bytes)}, over its allowance of "
    f"{size(a.allowance_bytes)}; the next is within its allowance",
)
EXCESS = Rule(
    "excess",
    lambda g: -g.excess_bytes,
    lambda a, b: f"{size(a.excess_bytes)} over its allowance against {size(b.excess_bytes)}",
)
USAGE = Rule(
    "usage",
    lambda g: -g.usage_bytes,
    lambda a, b: f"uses {size(a.usage_bytes)} against {size(b.usage_bytes)}",
)
YOUNGER = Rule(
    "younger",
    lambda g: -g.created,
    lambda a, b: "younger than the next group",
)
NAME = Rule("name", lambda g: g.name, lambda a, b: "name sorts first (all else equal)")

RANKINGS: dict[str, tuple[Rule, ...]] = {
    "Priority": (PREFERENCE, PRIORITY, OVER_ALLOWANCE, EXCESS, USAGE, YOUNGER, NAME),
    "KubeletCompatible": (OVER_ALLOWANCE, PREFERENCE, PRIORITY, EXCESS, USAGE, YOUNGER, NAME),
}


def _keyed(groups: list[Group], rules: tuple[Rule, ...]) -> list[tuple[tuple[Any, ...], Group]]:
    """Groups with their keys, sorted; keys computed rule by rule (a column at a time)."""
    keys = zip(*(map(rule.key, groups) for rule in rules), strict=True)
    return sorted(zip(keys, groups, strict=True), key=lambda kg: kg[0])


def _namespace_key(usage: int, allowance: int, name: str) -> tuple[int, int, int, str]:
    return (0 if usage > allowance else 1, allowance - usage, -usage, name)


def _by_namespace(
    groups: list[Group], rules: tuple[Rule, ...], counted: Iterable[Group]
) -> list[tuple[tuple[Any, ...], Group]]:
    """Pick the namespace most over its allowance, take its first group, account the
    group as gone, and pick again: the order in which victims would be taken."""
    usage: dict[str, int] = {}
    allowance: dict[str, int] = {}
    for g in counted:
        usage[g.namespace] = usage.get(g.namespace, 0) + g.usage_bytes
        allowance[g.namespace] = allowance.get(g.namespace, 0) + g.allowance_bytes
    queues: dict[str, list[tuple[tuple[Any, ...], Group]]] = {}
    for keyed in _keyed(groups, rules):
        queues.setdefault(keyed[1].namespace, []).append(keyed)
    for queue in queues.values():
        queue.reverse()
    heap = [(_namespace_key(usage[ns], allowance[ns], ns), ns) for ns in queues]
    heapq.heapify(heap)
    ordered = []
    while heap:
        _, ns = heapq.heappop(heap)
        keyed = queues[ns].pop()
        ordered.append(keyed)
        usage[ns] -= keyed[1].usage_bytes
        allowance[ns] -= keyed[1].allowance_bytes
        if queues[ns]:
            heapq.heappush(heap, (_namespace_key(usage[ns], allowance[ns], ns), ns))
    return ordered


def rank(
    groups: list[Group],
    ranking: Literal["Priority", "KubeletCompatible"],
    hierarchy: Literal["Flat", "Namespace"],
    namespace_members: Iterable[Group] = (),
) -> list[Ranked]:
    """Order groups, first killed first, each with the reason it stands above the next.

    With the Namespace hierarchy, namespaces compete by the usage over allowance of all
    their groups on the node (`namespace_members`: the candidates and the Never groups)."""
    rules = RANKINGS[ranking]
    if hierarchy == "Namespace":
        ordered = _by_namespace(groups, rules, namespace_members)
    else:
        ordered = _keyed(groups, rules)
    last = len(ordered) - 1
    return [
        Ranked(i + 1, group, partial(
            _reason, rules, hierarchy, (key, group), ordered[i + 1] if i < last else None
        ))
        for i, (key, group) in enumerate(ordered)
    ]


def _reason(
    rules: tuple[Rule, ...],
    hierarchy: str,
    this: tuple[tuple[Any, ...], Group],
    after: tuple[tuple[Any, ...], Group] | None,
) -> str:
    """Why `this` stands just above `after`: the first rule that tells them apart."""
    if after is None:
        return "last candidate"
    (key, group), (next_key, next_group) = this, after
    if hierarchy == "Namespace" and next_group.namespace != group.namespace:
        return f"namespace {group.namespace} is the most over its allowance"
    return next(
        rule.why(group, next_group)
        for rule, a, b in zip(rules, key, next_key, strict=True)
        if a != b
    )
