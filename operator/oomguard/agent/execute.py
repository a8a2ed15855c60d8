"""Executing the operator's Kill and KillAndEvict decisions for this node, at most once.

A decision is claimed before anything is killed: its status goes from Pending to Executing
in a write guarded by the resourceVersion the agent read, so that of two writers (two
agents, or an agent and its restarted self) only one wins, and a decision that is not
Pending is never acted on. Each victim pod on this node is then checked against the
agent's pod cache (still here, running, not terminating, mirror or critical) and killed by
UID through the cgroup layer, which refuses anything but a kubelet pod cgroup under the
agent's root. The outcome is written by the decision recorder. A decision too old to act
on (the agent was away, or the API server was) fails as Expired instead.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException

from oomguard.agent.loop import Clock, PodKiller
from oomguard.agent.metrics import AgentMetrics
from oomguard.api import DECISIONS, OOMDecision, OOMDecisionStatus, OOMPolicy
from oomguard.decisions import VictimResult, claimed, executable, finished, on_node
from oomguard.engine import Pod
from oomguard.engine.eligibility import Context, exclusion
from oomguard.kube import NodeApi, UnreachableError

log = logging.getLogger(__name__)

CLAIM_ATTEMPTS = 3


class PodCache(Protocol):
    def pod(self, uid: str) -> Pod | None:
        """The pod with this UID, from the cache of this node's pods."""
        ...

    def policy(self) -> OOMPolicy:
        """The policy that governs this node, as the agent itself selects it from its
        caches (not what a decision says)."""
        ...

    def never(self, pods: Collection[Pod], policy: OOMPolicy) -> bool:
        """Whether any of these pods is Never under `policy` (its tenant bounds applied):
        a group with one such pod is never a victim."""
        ...

    def node_uid(self) -> str | None:
        """The UID of this node's Node object, once known (what a mirror pod names)."""
        ...


@dataclass
class Executor:
    """Claims, checks and kills; `finish` writes the outcome (it retries on its own)."""

    node: str
    api: NodeApi
    killer: PodKiller
    clock: Clock
    cache: PodCache
    cgroup_present: Callable[[str], bool]
    """Whether a pod cgroup with this UID is on the node."""
    finish: Callable[[str, OOMDecisionStatus], None]
    metrics: AgentMetrics
    max_age: float = 60.0
    """Seconds after its creation a decision is too old to execute: it fails as Expired."""
    _unanswered: dict[str, datetime] = field(default_factory=dict)
    """Decision UID -> start time of a claim whose answer was lost: it may have been
    written, and if so it is this agent's."""
    _claimed: set[str] = field(default_factory=set)
    """UIDs of the decisions this agent claimed, until they are deleted: one that is
    Pending again (phases only move forward, and the chart's admission policy says so
    too) is not executed a second time."""

    def forget(self, uid: str) -> None:
        """The decision was deleted."""
        self._claimed.discard(uid)
        self._unanswered.pop(uid, None)

    def execute(self, obj: dict[str, Any]) -> OOMDecision | None:
        """Execute a decision `executable` said is ours, as read from the API. Returns it
        with its outcome, or None if another writer claimed or changed it first. Raises
        UnreachableError if the claim could not reach the API server: nothing was done."""
        decision = self._claim(obj)
        if decision is None:
            return None
        start = self.clock.monotonic()
        assert decision.status is not None
        name = decision.metadata.name
        here = on_node(decision, self.node)  # pods on other nodes: the operator's to evict
        policy = self.cache.policy()
        refused = self._refused(decision, here, policy)
        protected = policy.spec.protected_namespaces
        results = {v.uid: refused.get(v.uid) or self._act(v.uid, protected)
                   for v in decision.status.victims if v.uid in here}
        status = finished(decision.status, results, now=self.clock.now(),
                          duration_seconds=self.clock.monotonic() - start)
        self.finish(name, status)
        self.metrics.decisions.labels(decision.spec.decided_by, status.phase).inc()
        log.info("decision %s: %s, %d bytes reclaimed", name, status.phase,
                 status.reclaimed_bytes)
        return decision.model_copy(update={"status": status})

    def _refused(self, decision: OOMDecision, here: Collection[str],
                 policy: OOMPolicy) -> dict[str, VictimResult]:
        """Victims refused by what the agent itself knows, whatever the decision claims:
        the policy it names must be the one that governs this node (a decision naming
        another, or an unknown one, could otherwise carry a weaker policy's protections),
        and no victim group may hold a pod that is Never under that policy."""
        if decision.spec.policy != policy.metadata.name:
            why = (f"the decision names policy {decision.spec.policy!r}; this node is "
                   f"governed by {policy.metadata.name!r}")
            log.warning("decision %s refused: %s", decision.metadata.name, why)
            return {uid: VictimResult("Refused", why) for uid in here}
        refused: dict[str, VictimResult] = {}
        for group in decision.spec.victims:
            pods = [p for ref in group.pods if (p := self.cache.pod(ref.uid)) is not None]
            if self.cache.never(pods, policy):
                why = f"group {group.name} has a pod whose priority says Never"
                refused.update({ref.uid: VictimResult("Refused", why)
                                for ref in group.pods if ref.uid in here})
        return refused

    def _claim(self, obj: dict[str, Any]) -> OOMDecision | None:
        """Pending -> Executing (or Failed, if expired), only over the resourceVersion read;
        on a conflict, read again and look again."""
        name, uid = obj["metadata"]["name"], obj["metadata"]["uid"]
        for _ in range(CLAIM_ATTEMPTS):
            decision = OOMDecision.model_validate(obj)
            if self._claimed_unanswered(decision):
                self._claimed.add(uid)
                return decision
            if uid in self._claimed:
                log.warning("decision %s is Pending again after this agent executed it: "
                            "refused (phases only move forward)", name)
                return None
            if not executable(obj, self.node) or decision.status is None:
                log.info("decision %s is no longer ours to execute", name)
                self._unanswered.pop(uid, None)
                return None
            status = claimed(decision, now=self.clock.now(), max_age=self.max_age)
            body = copy.deepcopy(obj)
            body["status"] = status.wire()
            try:
                written = self.api.replace_status(DECISIONS, name, body)
            except UnreachableError:
                if status.phase == "Executing" and status.start_time is not None:
                    self._unanswered[uid] = status.start_time
                raise
            except ApiException as error:
                if error.status == 404:
                    self._unanswered.pop(uid, None)
                    return None
                if error.status != 409:
                    raise
                obj = self.api.get(DECISIONS, name)
                continue
            self._unanswered.pop(uid, None)
            if status.phase == "Executing":
                self._claimed.add(uid)
                return OOMDecision.model_validate(written)
            log.warning("decision %s expired before it could be executed", name)
            self.metrics.decisions.labels(decision.spec.decided_by, status.phase).inc()
            return None
        log.warning("decision %s kept changing; not claimed", name)
        return None

    def _claimed_unanswered(self, decision: OOMDecision) -> bool:
        """Whether the decision is Executing by an earlier claim of ours whose answer was
        lost: that claim went through, and the execution is still to be done."""
        started = self._unanswered.get(decision.metadata.uid)
        status = decision.status
        if started is None or status is None or status.phase != "Executing":
            return False
        if status.start_time != started:
            return False
        del self._unanswered[decision.metadata.uid]
        return True

    def _act(self, uid: str, protected: Collection[str]) -> VictimResult:
        result = self._check(uid, protected) or self.killer.kill(uid)
        self.metrics.victims.labels(result.outcome).inc()
        return result

    def _check(self, uid: str, protected: Collection[str]) -> VictimResult | None:
        """Why the pod must not be killed; None when it may."""
        pod = self.cache.pod(uid)
        if pod is None:
            if self.cgroup_present(uid):
                return VictimResult(
                    "Refused", "not in the agent's pod cache: cannot check it is eligible")
            return VictimResult("AlreadyGone", "the pod no longer exists")
        if pod.phase in ("Succeeded", "Failed"):
            return VictimResult("AlreadyGone", f"the pod has finished (phase {pod.phase})")
        excluded = exclusion(pod, Context(self.node, self.cache.node_uid(), protected,
                                          in_flight={}, refused={}))
        if excluded is not None:
            return VictimResult("Refused", f"no longer eligible: {excluded.message}")
        return None
