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

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from oomguard.api import NodeMemoryReport, OOMDecision, VictimStatus
from oomguard.controller.metrics import OperatorMetrics
from oomguard.controller.view import ALL, ClusterView
from oomguard.decisions import (
    EVICT_WITHIN,
    DryRunMark,
    VictimResult,
    decision_from_outcome,
    dry_run_due,
    escalated,
    evictions_expired,
    finished,
    is_finished,
    left_to_evict,
    too_late_to_evict,
    with_evictions,
)
from oomguard.engine import decide, join_members_elsewhere
from oomguard.engine.pressure import assess_node
from oomguard.engine.ranking import size
from oomguard.kube import Cluster

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

WRITERS = 16
"""Threads for the per-pod writes (evictions, Events), one decision's at a time each.
Apart from the loop's default executor, so that a decision whose groups span hundreds of
pods never holds back the creation of another node's decision."""


STALE_AFTER = 60.0
"""Seconds after its heartbeat a pressured report stops counting: under pressure an agent
writes every second, so a pressured report this old means the agent has stopped."""


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Decider:
    cluster: Cluster
    clock: Callable[[], datetime] = _now
    recent: dict[str, OOMDecision] = field(default_factory=dict)
    """The latest decision per node, until the decisions index has caught up."""
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    stale_after: float = STALE_AFTER
    """A pressured report whose heartbeat is older than this many seconds starts no
    decision (see STALE_AFTER)."""
    evict_within: float = EVICT_WITHIN
    """After a kill, what is left to evict is evicted within this many seconds of its
    end or not at all (see decisions.EVICT_WITHIN)."""
    _pressure: dict[str, str] = field(default_factory=dict)
    _finished: set[str] = field(default_factory=set)
    _stale: set[str] = field(default_factory=set)
    _dry_runs: dict[str, DryRunMark] = field(default_factory=dict)
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
        age = None if seen is None else (now - seen).total_seconds()
        if age is not None:
            self.metrics.report_age.observe(max(age, 0.0))
        pressure = assess_node(report.status.node, list(view.policies.get(ALL, ())), node,
                               next(iter(view.nodes.get(node, ())), {})).pressure
        # Dated ahead of this clock by more than the bound counts as stale too: a skewed
        # or forged clock must not keep a dead agent's last report fresh for ever.
        if pressure != "None" and (age is None or abs(age) > self.stale_after):
            # The agent stopped writing (or never said when): its last word is no reason
            # to act now. An operator started long after would otherwise evict on it.
            self._count_pressure(node, "Stale")
            self.metrics.stale_reports.inc()
            if node not in self._stale:
                self._stale.add(node)
                log.warning("node %s: report says %s pressure but %s (bound %gs): no "
                            "decision until a fresh one", node, pressure,
                            "says not when it was observed" if age is None
                            else f"is {age:.0f}s old" if age > 0
                            else f"is dated {-age:.0f}s ahead", self.stale_after)
            return None
        self._stale.discard(node)
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
        if outcome.mode == "DryRun":
            victims = tuple(v.group.name for v in outcome.victims)
            if not dry_run_due(self._dry_runs.get(node), victims, at=arrived,
                               cooldown_seconds=outcome.cooldown_seconds):
                return None
            self._dry_runs[node] = (victims, arrived)
        decision = decision_from_outcome(outcome, decided_by="operator", at=now,
                                         report_time=report.status.observed_time)
        try:
            await asyncio.to_thread(self.cluster.create_decision, decision)
        except ApiException as error:
            if error.status != 409:
                raise
            log.info("decision %s: already made for this report (another replica, or "
                     "before a restart)", decision.metadata.name)
            return None
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
        status = decision.status
        if is_finished(status) and decision.metadata.name not in self._finished:
            assert status is not None
            self._finished.add(decision.metadata.name)
            self.metrics.outcomes.labels(decision.spec.action, status.phase).inc()
        evicting = left_to_evict(decision)
        if not evicting:
            return
        now = self.clock()
        if too_late_to_evict(decision, now=now, within=self.evict_within):
            log.warning("decision %s: %d pods not evicted: the kill finished more than %gs "
                        "ago", decision.metadata.name, len(evicting), self.evict_within)
            await asyncio.to_thread(
                self.cluster.patch_decision_status, decision.metadata.name,
                evictions_expired(decision, at=now, within=self.evict_within))
            return
        results = dict(zip((v.uid for v in evicting), await self._each(
            self._evicted, evicting), strict=True))
        await asyncio.to_thread(self.cluster.patch_decision_status, decision.metadata.name,
                                with_evictions(decision, results, at=self.clock()))

    def close(self) -> None:
        """The operator stops: no more writes are started."""
        self._writers.shutdown(wait=False, cancel_futures=True)

    def forget(self, name: str) -> None:
        """A decision was deleted: nothing about it needs remembering."""
        self._finished.discard(name)

    def forget_node(self, node: str) -> None:
        """A node's report was deleted (with its node): the node is no longer counted
        under pressure, and nothing about it is kept."""
        self._count_pressure(node, "None")
        self._pressure.pop(node, None)
        self._stale.discard(node)
        self._dry_runs.pop(node, None)
        self.recent.pop(node, None)

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
        victims = decision.status.victims
        results = dict(zip((v.uid for v in victims), await self._each(
            self._timed_eviction, victims), strict=True))
        status = finished(decision.status, results, now=self.clock())
        await asyncio.to_thread(self.cluster.patch_decision_status, name, status.wire())
        decision = decision.model_copy(update={"status": status})
        self.recent[decision.spec.node_name] = decision
        refused = [v for v in status.victims if v.outcome == "Refused"]
        if refused and decision.spec.trigger.pressure == "Hard":
            await self._escalate(decision)
        return decision

    def _evicted(self, victim: VictimStatus) -> VictimResult:
        eviction = self.cluster.evict(victim.namespace, victim.name, victim.uid)
        return VictimResult(eviction.outcome, eviction.message)

    def _timed_eviction(self, victim: VictimStatus) -> VictimResult:
        start = self.clock()
        result = self._evicted(victim)
        return VictimResult(result.outcome, result.message,
                            duration_seconds=(self.clock() - start).total_seconds())

    async def _escalate(self, refused: OOMDecision) -> None:
        """The same victims, killed: under Hard pressure a budget cannot stand in the way."""
        kill = escalated(refused, at=self.clock())
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
