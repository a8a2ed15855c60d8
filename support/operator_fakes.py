"""The operator without kopf and without an API server: its indices as plain mappings,
built by the same index functions as controller/handlers.py, and a `Cluster` that records
what the operator asked of the API. For fast unit tests of the decider
(tests/controller/test_deciding.py) and for the in-process operator benchmark
(bench/operator_load.py, part (b))."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from oomguard.api import OOMDecision, OOMPolicy, OOMPriority
from oomguard.controller.view import (
    ALL,
    ClusterView,
    index_model,
    index_owner,
    index_pod,
)
from oomguard.inputs import LastGood
from oomguard.kube import Cluster, Eviction

Obj = dict[str, Any]


class RecordingCluster(Cluster):
    """`Cluster` without HTTP: records the calls, serialises decisions as the real one does,
    and feeds created decisions into the decisions index (as the watch would)."""

    def __init__(self, decisions: dict[str, list[OOMDecision]] | None = None,
                 gone: set[str] | None = None, latency: float = 0.0) -> None:
        decisions = {} if decisions is None else decisions
        gone = set() if gone is None else gone
        self.decisions, self.gone, self.latency = decisions, gone, latency
        self.calls: dict[str, int] = defaultdict(int)
        self.created_at: dict[str, float] = {}
        self.evicted: list[str] = []
        """Pods evicted, as namespace/name, in order."""
        self.evicted_uids: list[str] = []
        """The UIDs each eviction was conditioned on, in the same order."""
        self.evictions: dict[str, Eviction] = {}
        """Answers other than Evicted, by namespace/name (a budget's Refused, say)."""
        self.statuses: list[tuple[str, dict[str, Any]]] = []
        """Decision status writes, in order."""
        self.settings_statuses: dict[tuple[str, str], dict[str, Any]] = {}
        """The last status written for each policy ("", name) and priority (ns, name)."""
        self.events: list[tuple[dict[str, str], str, str]] = []
        """Events made: involved object, reason, message."""

    def _call(self, name: str) -> None:
        """Count the call, and wait as long as an API server would answer."""
        self.calls[name] += 1
        if self.latency:
            time.sleep(self.latency)

    def create_decision(self, decision: OOMDecision) -> dict[str, Any]:
        self._call("create_decision")
        self.created_at[decision.metadata.name] = time.perf_counter()
        body = decision.wire()
        self.decisions.setdefault(decision.spec.node_name, []).append(decision)
        return body

    def patch_decision_status(self, name: str, status: dict[str, Any]) -> dict[str, Any]:
        self._call("patch_decision_status")
        self.statuses.append((name, status))
        return {"status": status}

    def patch_policy_status(self, name: str, status: dict[str, Any]) -> None:
        self.calls["patch_policy_status"] += 1
        self.settings_statuses[("", name)] = status

    def patch_priority_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.calls["patch_priority_status"] += 1
        self.settings_statuses[(namespace, name)] = status

    def delete_decision(self, name: str) -> None:
        self.calls["delete_decision"] += 1

    def evict(self, namespace: str, name: str, uid: str) -> Eviction:
        self._call("evict")
        self.evicted.append(f"{namespace}/{name}")
        self.evicted_uids.append(uid)
        return self.evictions.get(f"{namespace}/{name}", Eviction("Evicted"))

    def event(self, involved: dict[str, str], reason: str, message: str,
              kind: Any = "Warning") -> None:
        self._call("event")
        self.events.append((involved, reason, message))


@dataclass
class Indices:
    """The operator's kopf indices, as plain mappings of key -> values."""

    pods: dict[Any, list[Any]] = field(default_factory=lambda: defaultdict(list))
    replicasets: dict[Any, list[Any]] = field(default_factory=lambda: defaultdict(list))
    jobs: dict[Any, list[Any]] = field(default_factory=lambda: defaultdict(list))
    policies: dict[Any, list[Any]] = field(default_factory=lambda: defaultdict(list))
    priorities: dict[Any, list[Any]] = field(default_factory=lambda: defaultdict(list))
    namespaces: dict[Any, list[Any]] = field(default_factory=lambda: defaultdict(list))
    nodes: dict[Any, list[Any]] = field(default_factory=lambda: defaultdict(list))
    node_uids: dict[Any, list[Any]] = field(default_factory=lambda: defaultdict(list))
    decisions: dict[Any, list[Any]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def of(cls, *, pods: Iterable[Obj] = (), owners: Iterable[Obj] = (),
           policies: Iterable[Obj] = (), priorities: Iterable[Obj] = (),
           namespaces: Mapping[str, dict[str, str]] | None = None,
           nodes: Mapping[str, dict[str, str]] | None = None) -> Indices:
        """Through the same index_* functions as handlers.py, from full object bodies."""
        indices = cls()

        def add(index: dict[Any, list[Any]], entries: dict[Any, Any]) -> None:
            for key, value in entries.items():
                index[key].append(value)

        for pod in pods:
            add(indices.pods, index_pod(pod))
        for owner in owners:
            add(indices.replicasets if owner["kind"] == "ReplicaSet" else indices.jobs,
                index_owner(owner))
        parsed_policies = LastGood("OOMPolicy", OOMPolicy.model_validate)
        parsed_priorities = LastGood("OOMPriority", OOMPriority.model_validate)
        for policy in policies:
            add(indices.policies, index_model(parsed_policies, policy, ALL))
        for priority in priorities:
            add(indices.priorities, index_model(parsed_priorities, priority,
                                                priority["metadata"]["namespace"]))
        for namespace, labels in (namespaces or {}).items():
            add(indices.namespaces, {namespace: {
                **labels, "kubernetes.io/metadata.name": namespace}})
        for node, labels in (nodes or {}).items():
            add(indices.nodes, {node: labels})
            add(indices.node_uids, {node: f"uid-node-{node}"})
        for index in (indices.pods, indices.replicasets, indices.jobs, indices.policies,
                      indices.priorities, indices.namespaces, indices.nodes,
                      indices.node_uids, indices.decisions):
            index.default_factory = None  # type: ignore[attr-defined]
        return indices

    def view(self) -> ClusterView:
        """What handlers.py builds for every event."""
        return ClusterView(pods=self.pods, owners=(self.replicasets, self.jobs),
                           policies=self.policies, priorities=self.priorities,
                           namespaces=self.namespaces, nodes=self.nodes,
                           node_uids=self.node_uids, decisions=self.decisions)
