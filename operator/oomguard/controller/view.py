"""The cluster as the operator's indices hold it, turned into one node's engine snapshot.

Indices are kopf's in-memory caches, kept by list+watch: nothing here calls the API.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from oomguard.api import NodeMemoryReport, OOMDecision, OOMPolicy, OOMPriority
from oomguard.engine import Group, Owner, Pod, Snapshot
from oomguard.engine.grouping import Workloads, may_join
from oomguard.inputs import (
    Budget,
    Inputs,
    LastGood,
    budget_from_manifest,
    owner_from_manifest,
    pod_from_manifest,
)

ALL = "all"
"""The one key of indices that hold every object of their kind."""

Index = Mapping[Any, Collection[Any]]


def index_pod(body: Mapping[str, Any]) -> dict[tuple[str, str], Pod]:
    """A pod under its node and under its namespace (for group members on other nodes)."""
    try:
        pod = pod_from_manifest(dict(body))
    except ValidationError:
        return {}
    keys = {("ns", pod.namespace): pod}
    if pod.node_name:
        keys["node", pod.node_name] = pod
    return keys


def index_owner(body: Mapping[str, Any]) -> dict[str, Owner]:
    try:
        owner = owner_from_manifest(dict(body))
    except ValidationError:
        return {}
    return {owner.uid: owner}


def index_model(parse: LastGood[OOMPolicy] | LastGood[OOMPriority],
                body: Mapping[str, Any], key: str) -> dict[str, Any]:
    """An object of ours, parsed; where an edit does not parse, its last good version
    (housekeeping reports the refusal in its status and an Event); left out only if it
    never parsed."""
    parsed = parse.parse(body)
    return {} if parsed is None else {key: parsed}


def index_decision(body: Mapping[str, Any]) -> dict[str, OOMDecision]:
    try:
        decision = OOMDecision.model_validate(dict(body))
    except ValidationError:
        return {}
    return {decision.spec.node_name: decision}


def index_budget(body: Mapping[str, Any]) -> dict[str, Budget]:
    try:
        budget = budget_from_manifest(dict(body))
    except ValidationError:
        return {}
    return {budget.namespace: budget} if budget is not None else {}


@dataclass
class ClusterView:
    """The indices one decision reads."""

    pods: Index
    owners: Iterable[Index]
    policies: Index
    priorities: Index
    namespaces: Index
    nodes: Index
    """Node name -> its labels."""
    node_uids: Index
    """Node name -> its UID (what a mirror pod must name to be one)."""
    decisions: Index
    recent: Mapping[str, OOMDecision] = field(default_factory=dict)
    """Decisions this operator made that its decisions index may not show yet."""
    budgets: Index = field(default_factory=dict)

    def members_elsewhere(self, node: str, groups: Collection[Group]) -> list[Pod]:
        """Pods on other nodes that may be members of `groups` (the engine decides), out
        of the groups' namespaces, which may hold thousands of pods."""
        member = may_join(groups, Workloads(OwnerLookup(self.owners)))
        return [p for ns in sorted({g.namespace for g in groups})
                for p in self.pods.get(("ns", ns), ()) if p.node_name != node and member(p)]

    def snapshot(self, report: NodeMemoryReport, now: datetime) -> Snapshot:
        """The node's pods and what ranks them; members of victim groups on other nodes
        are found afterwards, for the victims only (`members_elsewhere`)."""
        assert report.status is not None
        node = report.metadata.name
        on_node = list(self.pods.get(("node", node), ()))
        namespaces = {p.namespace for p in on_node}
        decisions = {d.metadata.name: d for d in self.decisions.get(node, ())}
        recent = self.recent.get(node)
        if recent is not None:
            indexed = decisions.get(recent.metadata.name)
            if indexed is None or _progress(recent) > _progress(indexed):
                decisions[recent.metadata.name] = recent
        return Inputs(
            pods=on_node,
            owners=OwnerLookup(self.owners),
            namespaces={ns: _only(self.namespaces.get(ns, ())) or {} for ns in namespaces},
            nodes={node: _only(self.nodes.get(node, ())) or {}},
            node_uids={node: uid} if (uid := _only(self.node_uids.get(node, ()))) else {},
            policies=list(self.policies.get(ALL, ())),
            priorities=[p for ns in namespaces for p in self.priorities.get(ns, ())],
            decisions=list(decisions.values()),
            budgets=[b for ns in namespaces for b in self.budgets.get(ns, ())],
        ).snapshot(node, report.status.node, report.status.pods, now=now,
                   unmeasured=report.status.unmeasured_pods,
                   pressure_since=report.status.pressure_since)


class OwnerLookup(Mapping[str, Owner]):
    """Owners by UID across the owner indices, looked up only for the UIDs the engine
    follows, never copied."""

    def __init__(self, indices: Iterable[Index]) -> None:
        self._indices = list(indices)

    def __getitem__(self, uid: str) -> Owner:
        found = self.get(uid)
        if found is None:
            raise KeyError(uid)
        return found

    def get(self, uid: str, default: Owner | None = None) -> Owner | None:  # type: ignore[override]
        """Without a KeyError raised and caught per miss, as Mapping.get would: the
        engine asks for every top-level controller, which no index holds."""
        for index in self._indices:
            store = index.get(uid)
            if store:
                found: Owner = _only(store)
                return found
        return default

    def __iter__(self) -> Iterator[str]:
        return (uid for index in self._indices for uid in index)

    def __len__(self) -> int:
        return sum(len(index) for index in self._indices)


_PHASES = {"Pending": 1, "Executing": 2, "Completed": 3, "Failed": 3, "DryRun": 3}


def _progress(decision: OOMDecision) -> int:
    """How far a decision has come: the index may still hold an older status than the
    one this operator just wrote, or a newer one the agent wrote."""
    return _PHASES.get(decision.status.phase, 0) if decision.status is not None else 0


def _only(store: Collection[Any]) -> Any:
    return next(iter(store), None)
