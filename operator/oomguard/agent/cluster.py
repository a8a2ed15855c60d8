"""The in-cluster node agent: one per node, run by the chart's DaemonSet.

It samples its node with the same loop as standalone mode, and around it:

- publishes the node's NodeMemoryReport on the cadence `Publisher` plans (report.py);
- executes the operator's Kill and KillAndEvict decisions for its node, each at most once
  (execute.py), on a thread of its own: a claim waits on the API server, and sampling
  and acting alone never do;
- acts alone when it must: under Hard pressure with no decision from the operator within
  `act_alone_after` seconds, or at once while the API server does not answer. The loop then
  decides with the policies, priorities, namespaces and pods it caches, kills, and the
  decision (`decidedBy: agent`) is recorded as soon as the API server answers (records.py);
- serves `/metrics` and `/healthz` (metrics.py).

See docs/agent.md and docs/architecture.md (the decision contract).
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
from collections.abc import Callable, Collection
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
from oomguard.inputs.lastgood import UNREAD_METADATA
from oomguard.kube import Backoff, NodeApi, Reflector, Resource, UnreachableError
from oomguard.kube.reflector import uid_of

log = logging.getLogger(__name__)


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
    stall_after: float = 10.0
    """/healthz fails when the loop has not completed a sample for this long: samples are
    at most a second apart, and only a kill acting alone (at most 5 s a pod) holds one up."""


def default_cgroup_root(mount: Path = Path("/sys/fs/cgroup")) -> Path:
    """The unified mount on cgroup v2 hosts; the memory hierarchy on v1 and hybrid hosts,
    where the kubelet accounts memory."""
    return mount if (mount / "cgroup.controllers").exists() else mount / "memory"


def _meta(obj: dict[str, Any]) -> ObjectMeta:
    return ObjectMeta.model_validate(obj.get("metadata") or {})


def _namespace(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


def _without(obj: dict[str, Any], keys: Collection[str]) -> dict[str, Any]:
    """The object with these metadata fields, which the agent never reads, dropped."""
    meta = obj.get("metadata") or {}
    return {**obj, "metadata": {k: v for k, v in meta.items() if k not in keys}}


NAMESPACE_UNREAD = ("annotations", "managedFields")
"""A namespace's labels choose its tenant; nothing else of its metadata is read."""


class LocalNamespaces:
    """The namespaces of this node's pods: the only ones whose OOMPriority objects the agent
    keeps (what tenants elsewhere write costs it nothing but a look). A pod in a namespace
    new to the node widens the set, and the priorities are listed again; until that list
    is in, the node's priorities are incomplete, and decisions wait."""

    def __init__(self, pods: Callable[[], list[Pod]]) -> None:
        self._pods = pods
        self._wanted: set[str] = set()
        self._listing: frozenset[str] = frozenset()
        self._listed: frozenset[str] = frozenset()
        self._in_list = False
        self._lock = threading.Lock()

    def add(self, namespace: str) -> bool:
        """Note a pod's namespace; whether it is new."""
        with self._lock:
            new = namespace not in self._wanted
            self._wanted.add(namespace)
            return new

    def keeps(self, namespace: str) -> bool:
        """Whether to keep an object of this namespace. Within a list, the namespaces of
        its start: each object of a list is judged once as its page arrives and again
        when decoded, and the two must agree (a namespace added meanwhile is listed
        again)."""
        with self._lock:
            return namespace in (self._listing if self._in_list else self._wanted)

    def before_list(self) -> None:
        """A list starts: it keeps the namespaces of the pods here now (those whose pods
        all left are dropped)."""
        with self._lock:
            self._wanted = {p.namespace for p in self._pods()}
            self._listing = frozenset(self._wanted)
            self._in_list = True

    def after_list(self) -> None:
        with self._lock:
            self._listed = self._listing
            self._in_list = False

    def complete(self) -> bool:
        """Whether the last list covered every namespace of the node's pods."""
        with self._lock:
            return self._wanted <= self._listed


class NodeCaches:
    """The agent's caches: its node's pods, the policies, its pods' namespaces' priorities,
    the namespaces, and its Node (labels choose the policy; the uid owns the report). They
    outlive API outages: when the agent must act alone, stale knowledge beats none."""

    def __init__(self, api: NodeApi, node: str) -> None:
        self.node = node
        core = ("", "v1")
        self.pods = Reflector(api, Resource(*core, "pods", field_selector=f"spec.nodeName={node}"),
                              pod_from_manifest, listener=self._pod_seen)
        # An edit that does not parse leaves the last good version in force.
        policies = LastGood("OOMPolicy", OOMPolicy.model_validate)
        self.policies = Reflector(api, Resource(GROUP, VERSION, POLICIES), policies.parse,
                                  forget=policies.forget,
                                  slim=lambda obj: _without(obj, UNREAD_METADATA))
        self.local = LocalNamespaces(self.pods.items)
        priorities = LastGood("OOMPriority", OOMPriority.model_validate)

        def local_priority(obj: dict[str, Any]) -> OOMPriority | None:
            if self.local.keeps(_namespace(obj)):
                return priorities.parse(obj)
            priorities.forget(uid_of(obj))
            return None

        def slim_priority(obj: dict[str, Any]) -> dict[str, Any]:
            if self.local.keeps(_namespace(obj)):
                return _without(obj, UNREAD_METADATA)
            return {"metadata": {k: obj["metadata"].get(k) for k in ("namespace", "name", "uid")}}

        # Small pages: a tenant's object can be 100 KiB (its metadata, as the chart's
        # admission policy bounds it), and a page is held whole until decoded.
        self.priorities = Reflector(
            api, Resource(GROUP, VERSION, PRIORITIES, page_size=20), local_priority,
            before_list=self.local.before_list, after_list=self.local.after_list,
            forget=priorities.forget, slim=slim_priority)
        self.namespaces = Reflector(api, Resource(*core, "namespaces"), _meta,
                                    slim=lambda obj: _without(obj, NAMESPACE_UNREAD))
        self.nodes = Reflector(api, Resource(*core, "nodes",
                                             field_selector=f"metadata.name={node}"), _meta)
        self._versions: tuple[int, ...] = ()
        self._inputs = Inputs()
        self._by_uid: dict[str, Pod] = {}
        self._lock = threading.Lock()  # the loop and the executor both read

    @property
    def reflectors(self) -> list[Reflector[Any]]:
        return [self.pods, self.policies, self.priorities, self.namespaces, self.nodes]

    def inputs(self) -> Inputs:
        """The engine's inputs, rebuilt only when a cache changed."""
        with self._lock:
            self._rebuild()
            return self._inputs

    def _rebuild(self) -> None:
        versions = tuple(r.version for r in self.reflectors)
        if versions == self._versions:
            return
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

    def ready(self) -> bool:
        """Whether the pods are listed and their namespaces' priorities too: what the
        executor's checks need."""
        return self.pods.synced.is_set() and self.local.complete()

    def _pod_seen(self, obj: dict[str, Any]) -> None:
        if self.local.add(_namespace(obj)):
            self.priorities.relist()

    def pod(self, uid: str) -> Pod | None:
        with self._lock:
            self._rebuild()
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
        self.recorder = DecisionRecorder(
            api, journal=None if config.state_dir is None else config.state_dir / "records")
        self.executor = Executor(
            node, api, killer, self.clock, self.view,
            cgroup_present=lambda uid: cgroups.pod_cgroup_path(root, uid) is not None,
            finish=self.recorder.finish, metrics=self.metrics,
            max_age=config.decision_max_age)
        self.decisions = Reflector(
            api, Resource(GROUP, VERSION, DECISIONS, label_selector=f"{NODE_LABEL}={node}"),
            lambda obj: (obj.get("status") or {}).get("phase", ""), listener=self._on_decision,
            forget=self.executor.forget)
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
        self.metrics_port: int | None = None
        """The port /metrics and /healthz are served on, once `run` serves them."""
        self._stepped_at: float | None = None
        self._inbox: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._inbox_changed = threading.Event()
        self._executed: queue.SimpleQueue[OOMDecision] = queue.SimpleQueue()
        """Decisions the executor carried out, for the loop to count as in flight."""
        self._executing: tuple[str, float] | None = None
        """The decision the executor is on, and since when (monotonic)."""
        self._executor_thread = threading.Thread(target=self._execute_until_stopped,
                                                 name="execute", daemon=True)
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
        self.metrics_port = server.server_address[1]
        log.info("serving /metrics and /healthz on port %d", self.metrics_port)
        self.recorder.recover()
        self.recorder.start()
        self.reports.start()
        self._executor_thread.start()
        log.info("protecting node %s (%s), PSI trigger %s", self.config.node,
                 self.config.cgroup_root, "on" if self.waiter.psi_trigger else "unavailable")
        try:
            while not self._stopping.is_set():
                step = self.step()
                self.waiter.wait(self.agent.next_interval(step))
        finally:
            self._inbox_changed.set()
            self._executor_thread.join(5.0)
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
        """Sample (and, if it must, act alone), then hand the sample to the report. The
        operator's decisions the executor carried out meanwhile count as in flight."""
        inputs = self.view.inputs()
        if inputs is not self.agent.view:
            self.agent.view = inputs
            self.metrics.observe_caches({
                "pods": len(inputs.pods), "oompriorities": len(inputs.priorities),
                "oompolicies": len(inputs.policies), "namespaces": len(inputs.namespaces)})
        while True:
            try:
                self.agent.decisions.append(self._executed.get_nowait())
            except queue.Empty:
                break
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
        """Healthy while the loop samples. An unreachable or slow API server is not a
        failure (the agent then acts alone, and a restart would not help), but it is
        said, and so is a decision the executor has been on for long."""
        now = self.clock.monotonic()
        api = "API server answers" if self.api.health.up else "API server unreachable"
        executing = self._executing
        if executing is not None and now - executing[1] >= 1.0:
            api += f"; executing {executing[0]} for {now - executing[1]:.1f}s"
        if self._stepped_at is None:
            return False, f"starting: no sample yet; {api}"
        age = now - self._stepped_at
        ok = age < self.config.stall_after
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
            self._inbox_changed.set()

    def _execute_until_stopped(self) -> None:
        """(executor thread) Execute what arrives, until `stop`."""
        while not self._stopping.is_set():
            with self._lock:
                waiting = bool(self._inbox)
            # Waiting decisions are looked at again shortly (the pod cache syncing, a
            # claim backing off); otherwise only a new one wakes the thread.
            self._inbox_changed.wait(0.1 if waiting else None)
            self._inbox_changed.clear()
            if not self._stopping.is_set():
                self._execute_pending()

    def _execute_pending(self) -> None:
        """Claims need the API server, and checks need the pod cache: until both answer,
        decisions wait (and expire if it takes too long); nothing is killed unclaimed."""
        now = self.clock.monotonic()
        if now < self._claims_retry_at or not self.view.ready():
            return
        with self._lock:
            pending, self._inbox = list(self._inbox.items()), {}
        for i, (_, obj) in enumerate(pending):
            self._executing = (obj["metadata"].get("name", ""), self.clock.monotonic())
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
            finally:
                self._executing = None
            self._claims_backoff.reset()
            if done is not None:
                self._executed.put(done)  # in flight: no new victim meanwhile
                self._operator_seen = self.clock.monotonic()
                self._wake()

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
