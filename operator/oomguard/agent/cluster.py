"""The in-cluster node agent: one per node, run by the chart's DaemonSet.

It samples its node with the same loop as standalone mode, and around it:

- publishes the node's NodeMemoryReport on the cadence `Publisher` plans (report.py);
- executes the operator's Kill and KillAndEvict decisions for its node, each at most once
  (execute.py);
- acts alone when it must: under Hard pressure with no decision from the operator within
  `act_alone_after` seconds, or at once while the API server does not answer. The loop then
  decides with the policies, priorities, namespaces and pods it caches, kills, and the
  decision (`decidedBy: agent`) is recorded as soon as the API server answers (records.py);
- serves `/metrics` and `/healthz` (metrics.py).

See docs/agent.md and docs/architecture.md (the decision contract).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from oomguard import cgroups
from oomguard.agent.execute import Executor
from oomguard.agent.host import CgroupKiller, CgroupReader, SystemClock, Waiter
from oomguard.agent.loop import Agent, NodeSample, Step
from oomguard.agent.metrics import AgentMetrics, serve
from oomguard.agent.publish import PublishPolicy
from oomguard.agent.records import DecisionRecorder
from oomguard.agent.report import ReportWriter
from oomguard.api import (
    DECISIONS,
    GROUP,
    POLICIES,
    PRIORITIES,
    VERSION,
    NodeMemory,
    OOMDecision,
    OOMPolicy,
    OOMPriority,
)
from oomguard.api.meta import ObjectMeta
from oomguard.decisions import NODE_LABEL, VictimResult, executable, substituted
from oomguard.engine import Outcome, Pod
from oomguard.engine.pressure import select_policy
from oomguard.engine.priorities import DEFAULT_PRIORITY, resolve
from oomguard.inputs import Inputs, LastGood, pod_from_manifest
from oomguard.kube import Backoff, NodeApi, Reflector, Resource, UnreachableError

log = logging.getLogger(__name__)

HEALTHY_WITHIN = 10.0
"""/healthz fails when the loop has not completed a sample for this long (a kill takes at
most 5 s)."""


@dataclass(frozen=True)
class AgentConfig:
    """What the command line sets, and what tests shorten."""

    node: str
    cgroup_root: Path
    proc_root: Path = Path("/proc")
    act_alone_after: float = 2.0
    """Seconds of Hard pressure without a decision from the operator before acting alone."""
    decision_max_age: float = 60.0
    """A Pending decision older than this is failed as Expired, not executed: the node it
    was decided on has changed since."""
    publish: PublishPolicy = field(default_factory=PublishPolicy)
    scan_seconds: float = 10.0
    """How often the pods are read at rest, to notice a material change for the report."""
    metrics_port: int = 9102
    """Port of /metrics and /healthz; 0 takes a free one."""
    state_dir: Path | None = None
    """A directory on the node's disk that outlives the agent (the chart's hostPath): what
    a kill froze stays noted there until thawed, and decision writes until written."""


def default_cgroup_root(mount: Path = Path("/sys/fs/cgroup")) -> Path:
    """The unified mount on cgroup v2 hosts; the memory hierarchy on v1 and hybrid hosts,
    where the kubelet accounts memory."""
    return mount if (mount / "cgroup.controllers").exists() else mount / "memory"


def _meta(obj: dict[str, Any]) -> ObjectMeta:
    return ObjectMeta.model_validate(obj.get("metadata") or {})


class NodeCaches:
    """The agent's caches: its node's pods, the policies, priorities and namespaces, and its
    Node (labels choose the policy; the uid owns the report). They outlive API outages:
    when the agent must act alone, stale knowledge beats none."""

    def __init__(self, api: NodeApi, node: str) -> None:
        self.node = node
        core = ("", "v1")
        self.pods = Reflector(api, Resource(*core, "pods", field_selector=f"spec.nodeName={node}"),
                              pod_from_manifest)
        # An edit that does not parse leaves the last good version in force.
        self.policies = Reflector(api, Resource(GROUP, VERSION, POLICIES),
                                  LastGood("OOMPolicy", OOMPolicy.model_validate).parse)
        self.priorities = Reflector(api, Resource(GROUP, VERSION, PRIORITIES),
                                    LastGood("OOMPriority", OOMPriority.model_validate).parse)
        self.namespaces = Reflector(api, Resource(*core, "namespaces"), _meta)
        self.nodes = Reflector(api, Resource(*core, "nodes",
                                             field_selector=f"metadata.name={node}"), _meta)
        self._versions: tuple[int, ...] = ()
        self._inputs = Inputs()
        self._by_uid: dict[str, Pod] = {}

    @property
    def reflectors(self) -> list[Reflector[Any]]:
        return [self.pods, self.policies, self.priorities, self.namespaces, self.nodes]

    def inputs(self) -> Inputs:
        """The engine's inputs, rebuilt only when a cache changed."""
        versions = tuple(r.version for r in self.reflectors)
        if versions != self._versions:
            self._versions = versions
            pods = self.pods.items()
            self._by_uid = {p.uid: p for p in pods}
            self._inputs = Inputs(
                pods=pods,
                namespaces={m.name: m.labels for m in self.namespaces.items()},
                nodes={m.name: m.labels for m in self.nodes.items()},
                node_uids={m.name: m.uid for m in self.nodes.items() if m.uid},
                policies=self.policies.items(),
                priorities=self.priorities.items(),
            )
        return self._inputs

    def pod(self, uid: str) -> Pod | None:
        self.inputs()
        return self._by_uid.get(uid)

    def policy(self) -> OOMPolicy:
        inputs = self.inputs()
        return select_policy(inputs.policies, self.node, inputs.nodes.get(self.node, {}))

    def never(self, pods: Collection[Pod], policy: OOMPolicy) -> bool:
        inputs = self.inputs()
        resolved = resolve(pods, inputs.priorities, inputs.namespaces, policy).by_pod
        return any(resolved.get(p.uid, DEFAULT_PRIORITY).preference == "Never" for p in pods)

    def node_uid(self) -> str | None:
        return next((m.uid for m in self.nodes.items() if m.uid), None)

    def node_owner(self) -> dict[str, Any] | None:
        """An ownerReference to the Node, once it is known."""
        for meta in self.nodes.items():
            if meta.uid:
                return {"apiVersion": "v1", "kind": "Node", "name": meta.name, "uid": meta.uid}
        return None


class MeteredReader(CgroupReader):
    """The cgroup reader, counting samples and what scans skipped."""

    def __init__(self, root: Path, metrics: AgentMetrics, *, proc_root: Path,
                 containers: bool) -> None:
        super().__init__(root, proc_root=proc_root, containers=containers)
        self.metrics = metrics

    def read_node(self) -> NodeMemory:
        memory = super().read_node()
        self.metrics.samples.labels("node").inc()
        return memory

    def read(self) -> NodeSample:
        snap = cgroups.read_snapshot(self.root, proc_root=self.proc_root,
                                     containers=self.containers)
        self.metrics.samples.labels("pods").inc()
        errors = snap.errors
        for reason in ("vanished", "incomplete", "malformed", "unreadable", "node_signals"):
            if count := getattr(errors, reason):
                self.metrics.scan_errors.labels(reason).inc(count)
        return NodeSample(snap.node, list(snap.pods), unmeasured=snap.skipped)


class MeteredKiller(CgroupKiller):
    """The cgroup killer, timing each kill."""

    def __init__(self, root: Path, metrics: AgentMetrics, *,
                 state_dir: Path | None = None) -> None:
        super().__init__(root, state_dir=state_dir)
        self.metrics = metrics

    def kill(self, uid: str) -> VictimResult:
        result = super().kill(uid)
        self.metrics.kill_seconds.observe(result.duration_seconds)
        return result


class ClusterAgent:
    """One node's in-cluster agent. `run` blocks until `stop`; `step` is one sample."""

    def __init__(self, config: AgentConfig, api: NodeApi) -> None:
        self.config, self.api = config, api
        self.metrics = AgentMetrics()
        self.clock = SystemClock()
        self.waiter = Waiter(config.proc_root / "pressure" / "memory")
        api.health.observers.append(self._api_answered)
        root, node = config.cgroup_root, config.node
        killer = MeteredKiller(root, self.metrics, state_dir=config.state_dir)
        self.view = NodeCaches(api, node)
        self.decisions = Reflector(
            api, Resource(GROUP, VERSION, DECISIONS, label_selector=f"{NODE_LABEL}={node}"),
            lambda obj: (obj.get("status") or {}).get("phase", ""), listener=self._on_decision)
        self.recorder = DecisionRecorder(
            api, journal=None if config.state_dir is None else config.state_dir / "records")
        self.executor = Executor(
            node, api, killer, self.clock, self.view,
            cgroup_present=lambda uid: cgroups.pod_cgroup_path(root, uid) is not None,
            finish=self.recorder.finish, metrics=self.metrics,
            max_age=config.decision_max_age)
        self.agent = Agent(
            node, MeteredReader(root, self.metrics, proc_root=config.proc_root, containers=False),
            killer, self.clock, Inputs(), self._record, may_act=self._must_act_alone)
        self.reports = ReportWriter(
            api, node, MeteredReader(root, self.metrics, proc_root=config.proc_root,
                                     containers=True),
            self.clock, self.metrics, policy=config.publish, scan_seconds=config.scan_seconds,
            owner=self.view.node_owner)
        self.steps = 0
        """Samples taken so far."""
        self._stepped_at: float | None = None
        self._inbox: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._operator_seen = float("-inf")
        self._claims_retry_at = float("-inf")
        self._claims_backoff = Backoff(first=0.2, cap=2.0)
        self._hard_since: float | None = None
        self._stopping = threading.Event()
        self._waiter_lock = threading.RLock()  # re-entrant: signal handlers take it too
        self._waiter_closed = False

    def run(self) -> None:
        """Start the caches, the writers and /metrics; sample until `stop`."""
        watches = [*self.view.reflectors, self.decisions]
        for reflector in watches:
            reflector.start()
        server = serve(self.metrics, self.health, self.config.metrics_port)
        log.info("serving /metrics and /healthz on port %d", server.server_address[1])
        self.recorder.recover()
        self.recorder.start()
        self.reports.start()
        log.info("protecting node %s (%s), PSI trigger %s", self.config.node,
                 self.config.cgroup_root, "on" if self.waiter.psi_trigger else "unavailable")
        try:
            while not self._stopping.is_set():
                step = self.step()
                self.waiter.wait(self.agent.next_interval(step))
        finally:
            for reflector in watches:
                reflector.stop()
            self.reports.stop()
            self.recorder.stop()
            server.shutdown()
            server.server_close()
            with self._waiter_lock:
                self._waiter_closed = True
                self.waiter.close()

    def stop(self) -> None:
        """End `run`; safe from signal handlers and other threads, before and after."""
        self._stopping.set()
        self._wake()

    def _wake(self) -> None:
        """End the loop's wait, unless the waiter is closed (its descriptors may be
        another file's by now)."""
        with self._waiter_lock:
            if not self._waiter_closed:
                self.waiter.wake()

    def step(self) -> Step:
        """Execute the operator's pending decisions, then sample (and, if it must, act
        alone), then hand the sample to the report."""
        self.agent.view = self.view.inputs()
        self._execute_pending()
        step = self.agent.step()
        now = self.clock.monotonic()
        pressure = step.assessment.pressure
        if pressure != "Hard":
            self._hard_since = None
        elif self._hard_since is None:
            self._hard_since = now
        self.metrics.observe_pressure(pressure, step.memory.available_bytes)
        self.reports.observe(step.memory, pressure)
        self.steps += 1
        self._stepped_at = now
        return step

    def health(self) -> tuple[bool, str]:
        """Healthy while the loop samples; an unreachable API server is not a failure (the
        agent then acts alone), but it is said."""
        api = "API server answers" if self.api.health.up else "API server unreachable"
        if self._stepped_at is None:
            return False, f"starting: no sample yet; {api}"
        age = self.clock.monotonic() - self._stepped_at
        ok = age < HEALTHY_WITHIN
        return ok, f"{'ok' if ok else 'stalled'}: last sample {age:.1f}s ago; {api}"

    def _api_answered(self, up: bool) -> None:
        self.metrics.api_up.set(1 if up else 0)
        if not up:
            self.metrics.api_errors.inc()

    def _on_decision(self, obj: dict[str, Any]) -> None:
        """(watch thread) Note the operator's activity; queue what is ours to execute."""
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if spec.get("decidedBy") == "operator" and status.get("phase") in ("Pending", "DryRun"):
            self._operator_seen = self.clock.monotonic()
        if executable(obj, self.config.node):
            with self._lock:
                self._inbox[obj["metadata"]["uid"]] = obj
            self._wake()

    def _execute_pending(self) -> None:
        """Claims need the API server, and checks need the pod cache: until both answer,
        decisions wait (and expire if it takes too long); nothing is killed unclaimed."""
        now = self.clock.monotonic()
        if now < self._claims_retry_at or not self.view.pods.synced.is_set():
            return
        with self._lock:
            pending, self._inbox = list(self._inbox.items()), {}
        for i, (_, obj) in enumerate(pending):
            try:
                done = self.executor.execute(obj)
            except UnreachableError:  # this one and the rest: later
                with self._lock:
                    for uid, later in pending[i:]:
                        self._inbox.setdefault(uid, later)
                self._claims_retry_at = now + self._claims_backoff.delay()
                return
            except (ApiException, ValueError) as error:
                log.error("decision %s not executed: %s", obj["metadata"].get("name"), error)
                continue
            self._claims_backoff.reset()
            if done is not None:
                self.agent.decisions.append(done)  # in flight: no new victim meanwhile
                self._operator_seen = self.clock.monotonic()

    def _must_act_alone(self, outcome: Outcome) -> bool:
        """The loop's gate: the operator decides, unless it cannot."""
        if outcome.pressure != "Hard":
            return False
        if self.api.health.up:
            now = self.clock.monotonic()
            since = max(now if self._hard_since is None else self._hard_since,
                        self._operator_seen)
            if now - since < self.config.act_alone_after:
                return False
            why = f"no decision from the operator within {self.config.act_alone_after}s"
        else:
            why = "the API server does not answer"
        log.warning("Hard pressure on %s and %s: acting alone", self.config.node, why)
        return True

    def _record(self, decision: OOMDecision) -> None:
        """(Agent.emit) A decision made acting alone: count it, queue it for the API."""
        decision = _substitute_evict(decision)
        assert decision.status is not None
        self.metrics.decisions.labels("agent", decision.status.phase).inc()
        for victim in decision.status.victims:
            if victim.outcome != "Pending":
                self.metrics.victims.labels(victim.outcome).inc()
        self.recorder.record(decision)


def _substitute_evict(decision: OOMDecision) -> OOMDecision:
    """Acting alone the agent kills: a policy's Evict acts as KillAndEvict, so that the
    operator, once back, evicts the killed pods for their controllers to replace them."""
    if decision.spec.action != "Evict" or decision.spec.mode != "Enforce":
        return decision
    return substituted(decision, "KillAndEvict", reason="ActingAlone",
                       message="the policy's Evict acts as KillAndEvict: the agent acting "
                       "alone kills, and the operator evicts the killed pods")


def run(config: AgentConfig, api: NodeApi) -> int:
    """Protect the node until SIGTERM or SIGINT; returns the exit code."""
    agent = ClusterAgent(config, api)

    def stop(_signum: int, _frame: object) -> None:
        agent.stop()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    agent.waiter.wake_on_signals()
    try:
        agent.run()
    finally:
        signal.set_wakeup_fd(-1)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    log.info("stopped")
    return 0
