"""What the operator does with a pressured report and with a finished kill: decide, record,
evict, escalate, tell. kopf handlers (handlers.py) call it; it calls the API through
`Cluster`, in threads, since the `kubernetes` client is synchronous."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import ValidationError

from oomguard.api import NodeMemoryReport, OOMDecision, VictimStatus
from oomguard.api.meta import Condition
from oomguard.controller.metrics import OperatorMetrics
from oomguard.controller.view import ALL, ClusterView
from oomguard.decisions import decision_from_outcome, decision_name
from oomguard.engine import decide, join_members_elsewhere
from oomguard.engine.pressure import assess, select_policy
from oomguard.engine.ranking import size
from oomguard.kube import Cluster

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

WRITERS = 16
"""Threads for the per-pod writes (evictions, Events), one decision's at a time each.
Apart from the loop's default executor, so that a decision whose groups span hundreds of
pods never holds back the creation of another node's decision."""
EVICTED = "Evicted"
"""Condition the operator adds once it has evicted a kill's pods (KillAndEvict, and group
members on other nodes)."""


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Decider:
    cluster: Cluster
    clock: Callable[[], datetime] = _now
    recent: dict[str, OOMDecision] = field(default_factory=dict)
    """The latest decision per node, until the decisions index has caught up."""
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    _pressure: dict[str, str] = field(default_factory=dict)
    _finished: set[str] = field(default_factory=set)
    _writers: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(
        WRITERS, thread_name_prefix="oomguard-writes"))

    async def on_report(self, body: dict[str, Any], view: ClusterView) -> OOMDecision | None:
        """Decide for a pressured node; at most one decision per node is made at a time
        (kopf handles one object's events in order) and in-flight victims are the
        engine's to respect."""
        try:
            report = NodeMemoryReport.model_validate(body)
        except ValidationError as error:
            log.warning("ignoring invalid NodeMemoryReport %s: %s",
                        body.get("metadata", {}).get("name"), error)
            return None
        if report.status is None:
            return None
        node = report.metadata.name
        arrived = time.monotonic()
        now = self.clock()
        seen = report.status.heartbeat_time or report.status.observed_time
        if seen is not None:
            self.metrics.report_age.observe(max((now - seen).total_seconds(), 0.0))
        policy = select_policy(list(view.policies.get(ALL, ())), node,
                               next(iter(view.nodes.get(node, ())), {}))
        pressure = assess(report.status.node, policy).pressure
        self._count_pressure(node, pressure)
        if pressure == "None":
            return None  # the common case: no snapshot, no engine
        view.recent = self.recent
        snapshot = view.snapshot(report, now)
        outcome = decide(snapshot)
        if not outcome.victims:
            return None
        spanning = [v.group for v in outcome.victims if v.group.group_by != "Pod"]
        if spanning:
            join_members_elsewhere(spanning, view.members_elsewhere(node, spanning), snapshot)
        decision = decision_from_outcome(outcome, decided_by="operator", at=now,
                                         report_time=report.status.observed_time)
        await asyncio.to_thread(self.cluster.create_decision, decision)
        self.recent[node] = decision
        self.metrics.latency.observe(time.monotonic() - arrived)
        self.metrics.decisions.labels(decision.spec.action, decision.spec.mode).inc()
        if decision.spec.mode == "Enforce" and decision.spec.action == "Evict":
            evicted = await self._evict(decision)  # memory first, then the story
            await self._announce(decision)
            return evicted
        await self._announce(decision)
        return decision

    async def on_decision(self, body: dict[str, Any]) -> None:
        """After the agent's kill: evict what the kill leaves to the operator (all pods for
        KillAndEvict, so that controllers reschedule; group members on other nodes)."""
        try:
            decision = OOMDecision.model_validate(body)
        except ValidationError:
            return
        spec, status = decision.spec, decision.status
        if status is not None and status.phase in ("Completed", "Failed") and (
            decision.metadata.name not in self._finished
        ):
            self._finished.add(decision.metadata.name)
            self.metrics.outcomes.labels(spec.action, status.phase).inc()
        if (spec.mode != "Enforce" or spec.action not in ("Kill", "KillAndEvict")
                or status is None or status.phase not in ("Completed", "Failed")
                or any(c.type == EVICTED for c in status.conditions)):
            return
        node_of = {p.uid: p.node_name for v in spec.victims for p in v.pods}
        elsewhere = {v.uid for v in status.victims
                     if node_of.get(v.uid) not in ("", spec.node_name)}
        evicting = [v for v in status.victims if v.uid in elsewhere or (
            spec.action == "KillAndEvict" and v.outcome == "Killed")]
        if not evicting:
            return
        evictions = dict(zip((v.uid for v in evicting), await self._each(
            lambda v: self.cluster.evict(v.namespace, v.name), evicting), strict=True))
        victims = [v.model_copy(update={"outcome": evictions[v.uid].outcome,
                                        "message": evictions[v.uid].message})
                   if v.uid in elsewhere else v for v in status.victims]
        evicted = Condition(type=EVICTED, status="True", reason="Evicted",
                            message="pods evicted so that their controllers replace them",
                            last_transition_time=self.clock())
        await asyncio.to_thread(self.cluster.patch_decision_status, decision.metadata.name, {
            "victims": [v.wire() for v in victims],
            "conditions": [c.wire() for c in [*status.conditions, evicted]],
        })

    def close(self) -> None:
        """The operator stops: no more writes are started."""
        self._writers.shutdown(wait=False, cancel_futures=True)

    def forget(self, name: str) -> None:
        """A decision was deleted: nothing about it needs remembering."""
        self._finished.discard(name)

    async def _each(self, write: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """`write` for every item, one after another, on one of the writers: one thread
        hop (a hop per pod costs the loop more than the call), and one request at a time
        per decision, as an API server shared with every node would have it."""
        def write_all() -> list[R]:
            return [write(item) for item in items]

        return await asyncio.get_running_loop().run_in_executor(self._writers, write_all)

    def _count_pressure(self, node: str, pressure: str) -> None:
        before = self._pressure.get(node, "None")
        if before != pressure:
            if before != "None":
                self.metrics.pressured.labels(before).dec()
            if pressure != "None":
                self.metrics.pressured.labels(pressure).inc()
            self._pressure[node] = pressure

    async def _evict(self, decision: OOMDecision) -> OOMDecision:
        """Evict every victim pod. A disruption budget's refusal under Hard pressure
        escalates to a Kill decision; under Soft, the engine takes the next candidate on
        the next report (refused pods are left alone for the cooldown)."""
        assert decision.status is not None
        name = decision.metadata.name
        await asyncio.to_thread(self.cluster.patch_decision_status, name,
                                {"phase": "Executing"})
        victims = await self._each(self._evict_one, decision.status.victims)
        done = all(v.outcome in ("Evicted", "AlreadyGone") for v in victims)
        status = decision.status.model_copy(update={
            "phase": "Completed" if done else "Failed", "victims": victims,
            "completion_time": self.clock(),
        })
        await asyncio.to_thread(self.cluster.patch_decision_status, name, status.wire())
        decision = decision.model_copy(update={"status": status})
        self.recent[decision.spec.node_name] = decision
        refused = [v for v in victims if v.outcome == "Refused"]
        if refused and decision.spec.trigger.pressure == "Hard":
            await self._escalate(decision)
        return decision

    def _evict_one(self, victim: VictimStatus) -> VictimStatus:
        start = self.clock()
        eviction = self.cluster.evict(victim.namespace, victim.name)
        return victim.model_copy(update={
            "outcome": eviction.outcome, "message": eviction.message,
            "duration_seconds": (self.clock() - start).total_seconds(),
        })

    async def _escalate(self, refused: OOMDecision) -> None:
        """The same victims, killed: under Hard pressure a budget cannot stand in the way."""
        at = self.clock()
        assert refused.status is not None
        kill = refused.model_copy(update={
            "metadata": refused.metadata.model_copy(update={
                "name": decision_name(refused.spec.node_name, at), "creation_timestamp": at}),
            "spec": refused.spec.model_copy(update={"action": "Kill"}),
            "status": refused.status.model_copy(update={
                "phase": "Pending", "start_time": at, "completion_time": None,
                "victims": [VictimStatus(namespace=v.namespace, name=v.name, uid=v.uid)
                            for v in refused.status.victims],
                "conditions": [Condition(
                    type="Escalated", status="True", reason="EvictionRefused",
                    message=f"decision {refused.metadata.name} could not evict under Hard "
                    "pressure: a disruption budget refused", last_transition_time=at)],
            }),
        })
        await asyncio.to_thread(self.cluster.create_decision, kill)
        self.recent[kill.spec.node_name] = kill
        await self._announce(kill)

    async def _announce(self, decision: OOMDecision) -> None:
        """Events on the node and on every victim pod, so that `kubectl describe` and
        `kubectl get events` tell the story."""
        spec = decision.spec
        trigger = spec.trigger
        verb = "would" if spec.mode == "DryRun" else "will"
        names = ", ".join(v.name for v in spec.victims)
        events: list[tuple[dict[str, str], str, str]] = [(
            # The node's uid as the kubelet writes it in its Events (the name):
            # `kubectl describe node` finds them by that.
            {"kind": "Node", "name": spec.node_name, "uid": spec.node_name, "apiVersion": "v1"},
            "OOMGuardDecision",
            f"{trigger.pressure} memory pressure: {size(trigger.available_bytes)} available, "
            f"need {size(trigger.need_bytes)}; {spec.action} {names} "
            f"(decision {decision.metadata.name})")]
        events += [(
            {"kind": "Pod", "namespace": pod.namespace, "name": pod.name, "uid": pod.uid,
             "apiVersion": "v1"},
            "OOMGuardVictim",
            f"oomguard {verb} {spec.action} group {group.name}: priority "
            f"{group.priority}, uses {size(group.usage_bytes)} of an allowance of "
            f"{size(group.allowance_bytes)}, on node {spec.node_name} under "
            f"{trigger.pressure} pressure (decision {decision.metadata.name})")
            for group in spec.victims for pod in group.pods]
        await self._each(lambda e: self.cluster.event(*e, "Warning"), events)
