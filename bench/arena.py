"""Arena: oomguard against the kernel OOM killer, on real cgroups.

Each scenario builds a throw-away node (a cgroup v1 memory cgroup limited to 512 MiB, see
oomguard.sandbox) whose pods hold memory, then starts the workloads that push it toward
its limit. It runs in three modes: with the kernel OOM killer alone (`kernel`); with
`oomguard agent --standalone` running as a subprocess, as it would on a host (`oomguard`);
and through the operator (`operator`): the in-cluster `oomguard agent` reports to a real
kube-apiserver (the tests' control plane, support/controlplane.py, with the chart
installed; one for the whole arena), `oomguard operator` decides, and the agent kills;
both are processes authenticated with tokens of the chart's ServiceAccounts. In that mode
the policy's actions are KillAndEvict: there is no kubelet here to carry out an eviction.
Not a test: it reports numbers.

    sudo .venv/bin/python -m bench.arena [--quick | --runs N] [--scenario KEY ...]
                                         [--mode kernel|oomguard|operator ...]

A watcher thread in this process, apart from the agent, polls the node every millisecond:
when available memory (limit - (usage - inactive file), the signal the agent and the
kubelet use) first fell below the policy's soft threshold, and when each pod was left
without a process. A run ends one second after the first kill or exit (so that late extra
kills are seen), or after 20 seconds.

Prints a markdown table and writes bench/results/arena.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from oomguard.api import resolve_amount
from oomguard.sandbox import (
    MEMORY_MOUNT,
    Mi,
    SandboxNode,
    SandboxPod,
    SandboxUnavailableError,
    procs,
)

from support import Kube, cluster_with_chart, free_port
from support.measure import spread, verdict, write_results

LIMIT = 512 * Mi
SOFT, HARD, RECLAIM_TO = "20%", "10%", "30%"
SOFT_BYTES = resolve_amount(SOFT, LIMIT)
PREFIX = "oomguard-arena"
POLL = 0.001
"""Seconds between two looks of the watcher."""
SETTLE = 1.0
"""Seconds a run goes on after the first kill or exit, to catch late or extra kills."""
RUN_TIMEOUT = 20.0
AGENT_READY_TIMEOUT = 30.0
GOALS_MS = {"oomguard": 250.0, "operator": 1000.0}
"""Goals: worst time from the soft threshold crossing to the whole victim group gone."""
RUNS, QUICK_RUNS = 5, 2
MODES = ("kernel", "oomguard", "operator")
GUARDED = MODES[1:]
NODE = "arena"
DECISIONS = "oomguard.io/v1alpha1/oomdecisions"


# --- scenarios --------------------------------------------------------------------------


@dataclass(frozen=True)
class Work:
    """One workload process (see oomguard.sandbox.workload) in a container of a pod."""

    mode: str
    mib: int
    container: str = "main"
    pressure: bool = False
    """Started only once the node is watched: it is what pushes the node to its limit."""


@dataclass(frozen=True)
class PodPlan:
    name: str
    namespace: str
    work: tuple[Work, ...]
    labels: dict[str, str] = field(default_factory=dict)
    owner: tuple[str, str] | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    pods: tuple[PodPlan, ...]
    priorities: tuple[dict[str, Any], ...]
    victims: frozenset[str]
    """`namespace/name` of the pods that must die: the whole right group."""


def _priority(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "oomguard.io/v1alpha1", "kind": "OOMPriority",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def _holder(name: str, namespace: str, mib: int, **labels: str) -> PodPlan:
    return PodPlan(name, namespace, (Work("anon", mib),), labels)


def _grower(name: str, namespace: str, mode: str, mib: int = 2048, **kw: Any) -> PodPlan:
    """A pod whose one process grows (2 GiB: it cannot stop before the node's limit)."""
    return PodPlan(name, namespace, (Work(mode, mib, pressure=True),), **kw)


DB, WEB = _holder("db-0", "shop", 120, app="db"), _holder("web-0", "shop", 60, app="web")
SHOP = (
    _priority("shop", "db", priority=900, podSelector={"matchLabels": {"app": "db"}}),
    _priority("shop", "web", priority=500, podSelector={"matchLabels": {"app": "web"}}),
)
BATCH = _priority("batch", "batch", priority=-100)


def scenarios() -> tuple[Scenario, ...]:
    """The node holds 240-300 MiB before the pressure starts, so that the soft threshold
    (102 MiB available) is crossed after one to four seconds of growth. Each comment says
    what the kernel alone is expected to kill."""
    etl = tuple(_grower(f"etl-{i}", "analytics", "grow:10", owner=("Job", "etl"))
                for i in range(8))
    workers = PodPlan("workers-0", "batch", (
        Work("many:16", 160), Work("grow:50", 2048, container="leak", pressure=True)))
    # Exits by itself about 1.5 MiB (15 ms) past the soft threshold: around the time the
    # agent samples, decides and kills.
    flaky = _grower("flaky-0", "batch", "grow-exit:100", 169)
    return (
        # Kernel: the leaker, the biggest process by then, but only at the limit.
        Scenario("leak", "steady leak, 50 MiB/s, in a low-priority pod",
                 (DB, WEB, _holder("api-0", "shop", 60),
                  _grower("leaker-0", "batch", "grow:50")),
                 (*SHOP, BATCH), frozenset({"batch/leaker-0"})),
        # Kernel: the same; oomguard has 256 ms from the soft threshold to the limit.
        Scenario("burst", "fast burst, 400 MiB/s, in a low-priority pod",
                 (DB, WEB, _holder("api-0", "shop", 60), _grower("burst-0", "batch", "grow:400")),
                 (*SHOP, BATCH), frozenset({"batch/burst-0"})),
        # Kernel: report-0 (120 MiB), bigger than any one Job pod (about 34 MiB each),
        # though the Job holds about 270 MiB.
        Scenario("split", "Job split into 8 growing pods (group.by Workload) vs one big pod",
                 (_holder("db-0", "shop", 80, app="db"), _holder("web-0", "shop", 40, app="web"),
                  _holder("report-0", "reports", 120), *etl),
                 (*SHOP, _priority("analytics", "etl", group={"by": "Workload"})),
                 frozenset(p.key for p in etl)),
        # Kernel: the database (300 MiB), bigger than the grower (about 210 MiB) at the limit.
        Scenario("important", "big important pod (900, Avoid, allowance) vs small grower",
                 (_holder("db-0", "shop", 300, app="db"),
                  _grower("scratch-0", "tools", "grow:50")),
                 (_priority("shop", "db", priority=900, preference="Avoid", allowance="320Mi",
                            podSelector={"matchLabels": {"app": "db"}}),),
                 frozenset({"tools/scratch-0"})),
        # Kernel: the leaking process only; its 17 siblings in the pod live on.
        Scenario("many", "one pod of 18 processes (many:16 + a 50 MiB/s leak)",
                 (DB, WEB, workers), (*SHOP, BATCH), frozenset({workers.key})),
        # Kernel: nothing (the node never reaches its limit). oomguard must kill nothing
        # but flaky-0, and the spare pod next in line least of all.
        Scenario("vanish", "victim exits by itself just past the threshold (grow-exit)",
                 (DB, WEB, _holder("spare-0", "batch", 60, tier="spare"), flaky),
                 (*SHOP, BATCH,
                  _priority("batch", "spare", priority=-50,
                            podSelector={"matchLabels": {"tier": "spare"}})),
                 frozenset({flaky.key})),
    )


def policy(mode: str) -> dict[str, Any]:
    """Default actions standalone (where Evict becomes Kill); through the operator,
    KillAndEvict, as no kubelet here would carry out an eviction."""
    spec: dict[str, Any] = {"thresholds": {"memoryAvailable": {"soft": SOFT, "hard": HARD}},
                            "reclaimTo": RECLAIM_TO}
    if mode == "operator":
        spec["actions"] = {"soft": "KillAndEvict", "hard": "KillAndEvict"}
    return {"apiVersion": "oomguard.io/v1alpha1", "kind": "OOMPolicy",
            "metadata": {"name": "arena"}, "spec": spec}


# --- watching the node ------------------------------------------------------------------


class Watcher(threading.Thread):
    """Polls the node every POLL seconds: when available memory first fell below the soft
    threshold, the lowest it went, and when each pod went from some processes to none.
    File descriptors stay open and are re-read with pread, which keeps a look at ~0.1 ms."""

    def __init__(self, root: Path, pods: dict[str, list[Path]]) -> None:
        super().__init__(name="arena-watcher", daemon=True)
        self.root, self.pods = root, pods
        self.crossed: tuple[float, float] | None = None
        """(monotonic, wall clock) of the first look below the soft threshold."""
        self.min_available = LIMIT
        self.emptied: dict[str, float] = {}
        self.looks = 0
        self._done = threading.Event()
        self._began = time.monotonic()

    def run(self) -> None:
        with contextlib.ExitStack() as files:
            def fd(path: Path) -> int:
                descriptor = os.open(path, os.O_RDONLY)
                files.callback(os.close, descriptor)
                return descriptor

            usage, stat = fd(self.root / "memory.usage_in_bytes"), fd(self.root / "memory.stat")
            pods = {name: [fd(c / "cgroup.procs") for c in containers]
                    for name, containers in self.pods.items()}
            populated: set[str] = set()
            while not self._done.is_set():
                now = time.monotonic()
                available = LIMIT - int(os.pread(usage, 64, 0)) + _inactive_file(
                    os.pread(stat, 8192, 0))
                self.min_available = min(self.min_available, available)
                if self.crossed is None and available < SOFT_BYTES:
                    self.crossed = (now, time.time())
                for name, descriptors in pods.items():
                    if name in self.emptied:
                        continue
                    if any(os.pread(d, 64, 0) for d in descriptors):
                        populated.add(name)
                    elif name in populated:
                        self.emptied[name] = now
                self.looks += 1
                time.sleep(POLL)

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=5)

    def interval_ms(self) -> float:
        """Mean time between two looks, as achieved."""
        return (time.monotonic() - self._began) / max(self.looks, 1) * 1000


def _inactive_file(stat: bytes) -> int:
    start = stat.index(b"total_inactive_file ") + len(b"total_inactive_file ")
    return int(stat[start:stat.index(b"\n", start)])


# --- the agent --------------------------------------------------------------------------


class AgentProcess:
    """`oomguard agent --standalone` as a subprocess. A thread reads its decisions (JSON
    lines on stdout) and stamps their arrival; stderr goes to a file, so that its log can
    never fill a pipe and block the agent."""

    def __init__(self, root: Path, inputs: Path, log: Path) -> None:
        self.log_path = log
        self._log = log.open("w")
        self.decisions: list[tuple[float | None, dict[str, Any]]] = []
        self.ready_ms: float | None = None
        self._began = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "oomguard", "agent", "--standalone", "--cgroup-root",
             str(root), "--node", NODE, "-f", str(inputs),
             "--state-dir", str(inputs.parent / "state")],
            stdout=subprocess.PIPE, stderr=self._log, text=True)
        self._reader = threading.Thread(target=self._read, name="arena-agent", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.decisions.append((time.monotonic(), json.loads(line)))

    def wait_ready(self) -> None:
        """Until the agent says it protects the node (it samples right after). Python's
        start-up and imports are paid here, once, not at each decision."""
        _wait_for_log(self.log_path, "protecting", self.process)
        self.ready_ms = (time.monotonic() - self._began) * 1000

    def log_tail(self) -> str:
        return self.log_path.read_text()[-1500:]

    def stop(self) -> None:
        _stop(self.process)
        self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


class ClusterProcesses:
    """The operator path: the node's objects in the real API server, `oomguard operator`
    and the in-cluster `oomguard agent`, each a process of its own with a token of the
    chart's ServiceAccount. The decisions are read from the API server when it stops."""

    def __init__(self, kube: Kube, root: Path, workdir: Path, log: Path) -> None:
        self.kube = kube
        self.log_path = log
        self._log = log.open("w")
        self.decisions: list[tuple[float | None, dict[str, Any]]] = []
        self.ready_ms: float | None = None
        self.processes: list[subprocess.Popen[str]] = []
        operator = kube.kubeconfig(workdir / "operator.kubeconfig",
                                   kube.identity("oomguard-operator"))
        agent = kube.kubeconfig(workdir / "agent.kubeconfig", kube.agent_for(NODE))
        liveness = f"http://127.0.0.1:{free_port()}/healthz"
        started = self._start([sys.executable, "-m", "oomguard", "operator", "--kubeconfig",
                               str(operator), "--liveness", liveness])
        self._wait_live(liveness, started)
        self._began = time.monotonic()
        self.agent = self._start([sys.executable, "-m", "oomguard", "agent", "--kubeconfig",
                                  str(agent), "--node", NODE, "--cgroup-root", str(root),
                                  "--metrics-port", "0"])

    def _start(self, args: list[str]) -> subprocess.Popen[str]:
        process = subprocess.Popen(args, stderr=self._log, text=True)
        self.processes.append(process)
        return process

    def _wait_live(self, url: str, process: subprocess.Popen[str]) -> None:
        deadline = time.monotonic() + AGENT_READY_TIMEOUT
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"operator not live: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.02)

    def wait_ready(self) -> None:
        _wait_for_log(self.log_path, "protecting", self.agent)
        self.ready_ms = (time.monotonic() - self._began) * 1000

    def log_tail(self) -> str:
        return self.log_path.read_text()[-1500:]

    def stop(self) -> None:
        for process in reversed(self.processes):
            _stop(process)
        self.decisions = [(None, d) for d in self.kube.read_all(
            DECISIONS, labelSelector=f"oomguard.io/node={NODE}")]
        self._log.close()


def seed_cluster(kube: Kube, scenario: Scenario, node: SandboxNode) -> dict[str, SandboxPod]:
    """The node, its namespaces, the policy, priorities, owners and Pods in the API server
    (running on NODE, as their kubelet reports them); each pod's cgroup is named by the UID
    the server gave its Pod."""
    kube.create("v1/nodes", {"metadata": {"name": NODE}, "status": {"conditions": [
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "arena"}]}})
    for namespace in sorted({p.namespace for p in scenario.pods}):
        if kube.read("v1/namespaces", None, namespace) is None:
            kube.create("v1/namespaces", {"metadata": {"name": namespace}})
            kube.wait_for_service_account(namespace)
    kube.create("oomguard.io/v1alpha1/oompolicies", policy("operator"))
    for priority in scenario.priorities:
        kube.create("oomguard.io/v1alpha1/oompriorities", priority)
    owners: dict[tuple[str, str], dict[str, Any]] = {}
    pods = {}
    for plan in scenario.pods:
        owner = None
        if plan.owner is not None:
            if (plan.namespace, plan.owner[1]) not in owners:
                owners[plan.namespace, plan.owner[1]] = kube.job(plan.namespace, plan.owner[1])
            owner = owners[plan.namespace, plan.owner[1]]
        created = kube.pod(plan.name, plan.namespace, NODE, labels=plan.labels, owner=owner,
                           requests=None)
        pods[plan.key] = node.add_pod(plan.name, plan.namespace, labels=plan.labels,
                                      owner=plan.owner, uid=created["metadata"]["uid"])
    return pods


def clean_cluster(kube: Kube, scenario: Scenario) -> None:
    """Nothing of the run is left for the next: pods, priorities, owners, the policy, the
    node's report and decisions, the node (namespaces stay, for the next run)."""
    for plan in scenario.pods:
        kube.remove("v1/pods", plan.namespace, plan.name)
        if plan.owner is not None:
            kube.remove("batch/v1/jobs", plan.namespace, plan.owner[1])
    for priority in scenario.priorities:
        meta = priority["metadata"]
        kube.remove("oomguard.io/v1alpha1/oompriorities", meta["namespace"], meta["name"])
    kube.remove("oomguard.io/v1alpha1/oompolicies", None, "arena")
    for decision in kube.read_all(DECISIONS, labelSelector=f"oomguard.io/node={NODE}"):
        kube.remove(DECISIONS, None, decision["metadata"]["name"])
    kube.remove("oomguard.io/v1alpha1/nodememoryreports", None, NODE)
    kube.remove("v1/nodes", None, NODE)


def _wait_for_log(path: Path, text: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + AGENT_READY_TIMEOUT
    while text not in path.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"agent not ready: {path.read_text()[-2000:]}")
        time.sleep(0.005)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


# --- one run ----------------------------------------------------------------------------


@dataclass
class PodFate:
    processes: int
    killed: int
    """Processes that died without exiting by themselves."""
    exited: bool
    """Its workload exited by itself (status 0)."""
    emptied_ms: float | None
    """When its last process was gone, in ms after the soft threshold crossing."""


@dataclass
class Decision:
    victims: dict[str, float]
    """Victim group -> the usage the agent saw, in MiB (its expected reclaim)."""
    outcomes: dict[str, str]
    reclaimed_by_pod_mib: dict[str, float]
    available_mib: float
    need_mib: float
    reclaimed_mib: float
    detect_ms: float | None
    """From the threshold crossing to the decision (sampling wait, scan, decide)."""
    kill_ms: float
    """Executing the decision: killing every pod and waiting for them to be empty."""
    emitted_ms: float | None
    """From the threshold crossing to the decision line read from the agent's stdout."""
    decided_by: str


@dataclass
class RunResult:
    scenario: str
    mode: str
    run: int
    kernel_oom_kills: int
    killed_pods: list[str]
    wrong_pods: list[str]
    right: bool
    """No pod outside the right group lost a process, and that group is gone."""
    whole_group: bool
    """Every process of every pod of the right group is gone."""
    by_oomguard: bool
    """The agent killed (part of) the right group."""
    crossed: bool
    time_to_gone_ms: float | None
    """From the soft threshold crossing to the last process of the right group gone."""
    min_available_mib: float
    timed_out: bool
    watcher_interval_ms: float
    agent_ready_ms: float | None
    """From starting the agent's process to its first sample."""
    pods: dict[str, PodFate]
    decisions: list[Decision]
    agent_log_tail: str = ""


def run_once(scenario: Scenario, mode: str, run: int, workdir: Path,
             kube: Kube | None = None) -> RunResult:
    """Build the node, start the pods, apply the pressure and watch who dies."""
    with SandboxNode(LIMIT, prefix=PREFIX) as node, contextlib.ExitStack() as cleanup:
        if mode == "operator":
            assert kube is not None
            cleanup.callback(clean_cluster, kube, scenario)
            pods = seed_cluster(kube, scenario, node)
        else:
            pods = {plan.key: node.add_pod(plan.name, plan.namespace, labels=plan.labels,
                                           owner=plan.owner) for plan in scenario.pods}
        inputs = workdir / f"{scenario.key}-{mode}.yaml"
        manifests = [p.manifest() for p in pods.values()]
        for manifest in manifests:
            manifest["spec"]["nodeName"] = NODE
        inputs.write_text(yaml.safe_dump_all([policy(mode), *scenario.priorities, *manifests]))
        containers = {key: [pods[key].path / c for c in dict.fromkeys(
            w.container for w in plan.work)] for key, plan in _plans(scenario)}
        for paths in containers.values():
            for path in paths:
                path.mkdir(exist_ok=True)
        pids: dict[str, set[int]] = {key: set() for key in pods}
        workloads: dict[str, list[subprocess.Popen[str]]] = {key: [] for key in pods}

        def start(pressure: bool) -> None:
            for key, plan in _plans(scenario):
                for work in plan.work:
                    if work.pressure == pressure:
                        process = node.start(pods[key], work.mode, work.mib, work.container)
                        workloads[key].append(process)
                        pids[key] |= {process.pid, *procs(pods[key].path / work.container)}

        start(pressure=False)
        agent: AgentProcess | ClusterProcesses | None = None
        log = workdir / f"{mode}-{scenario.key}-{run}.log"
        try:
            if mode == "oomguard":
                agent = AgentProcess(node.root, inputs, log)
            elif mode == "operator":
                assert kube is not None
                agent = ClusterProcesses(kube, node.root, workdir, log)
            if agent is not None:
                agent.wait_ready()
            kills_before = node.kernel_oom_kills()
            watcher = Watcher(node.root, containers)
            watcher.start()
            try:
                start(pressure=True)
                timed_out = _wait_for_outcome(node, workloads, agent, kills_before)
            finally:
                watcher.stop()
            kernel_kills = node.kernel_oom_kills() - kills_before
        finally:
            if agent is not None:
                agent.stop()
        left = {key: _subtree_pids(pods[key]) for key in pods}
    return judge(scenario, mode, run, Trace(pids, left, workloads, watcher, kernel_kills,
                                            agent, timed_out))


def _plans(scenario: Scenario) -> Iterator[tuple[str, PodPlan]]:
    return ((plan.key, plan) for plan in scenario.pods)


def _subtree_pids(pod: SandboxPod) -> set[int]:
    return {pid for child in pod.path.iterdir() if child.is_dir() for pid in procs(child)}


def _wait_for_outcome(node: SandboxNode, workloads: dict[str, list[subprocess.Popen[str]]],
                      agent: AgentProcess | ClusterProcesses | None, kills_before: int) -> bool:
    """Wait for the first kill or exit, then SETTLE more seconds; True on RUN_TIMEOUT."""
    deadline = time.monotonic() + RUN_TIMEOUT
    first: float | None = None
    processes = [p for ps in workloads.values() for p in ps]
    while True:
        now = time.monotonic()
        if first is None and (node.kernel_oom_kills() > kills_before
                              or any(p.poll() is not None for p in processes)
                              or (agent is not None and agent.decisions)):
            first = now
        if first is not None and now - first >= SETTLE:
            return False
        if now >= deadline:
            return True
        time.sleep(0.005)


@dataclass
class Trace:
    """What one run saw: each pod's processes at the start and at the end, its workload
    processes, the watcher, the kernel's kills, the agent and its decisions."""

    pids: dict[str, set[int]]
    left: dict[str, set[int]]
    workloads: dict[str, list[subprocess.Popen[str]]]
    watcher: Watcher
    kernel_kills: int
    agent: AgentProcess | ClusterProcesses | None
    timed_out: bool


def judge(scenario: Scenario, mode: str, run: int, trace: Trace) -> RunResult:
    """Who died, whether they should have, and how fast the right group went."""
    watcher, agent, left = trace.watcher, trace.agent, trace.left
    crossed = watcher.crossed

    def since_crossing(mono: float | None) -> float | None:
        return None if crossed is None or mono is None else (mono - crossed[0]) * 1000

    fates: dict[str, PodFate] = {}
    for key, started in trace.pids.items():
        exited = {p.pid for p in trace.workloads[key]
                  if p.returncode is not None and p.returncode >= 0}
        dead = started - left[key]
        fates[key] = PodFate(len(started), len(dead - exited), bool(exited),
                             since_crossing(watcher.emptied.get(key)))
    killed = sorted(k for k, f in fates.items() if f.killed)
    wrong = sorted(set(killed) - scenario.victims)
    whole = all(not left[key] for key in scenario.victims)
    decisions = [_decision(d, arrived, crossed) for arrived, d in agent.decisions] if agent else []
    by_oomguard = any(outcome == "Killed" and pod in scenario.victims
                      for d in decisions for pod, outcome in d.outcomes.items())
    gone = [watcher.emptied[key] for key in scenario.victims if key in watcher.emptied]
    complete = whole and len(gone) == len(scenario.victims)
    time_to_gone = since_crossing(max(gone)) if complete else None
    return RunResult(
        scenario=scenario.key, mode=mode, run=run, kernel_oom_kills=trace.kernel_kills,
        killed_pods=killed, wrong_pods=wrong, right=whole and not wrong, whole_group=whole,
        by_oomguard=by_oomguard, crossed=crossed is not None, time_to_gone_ms=time_to_gone,
        min_available_mib=round(watcher.min_available / Mi, 1), timed_out=trace.timed_out,
        watcher_interval_ms=round(watcher.interval_ms(), 3),
        agent_ready_ms=None if agent is None or agent.ready_ms is None else round(agent.ready_ms),
        pods=fates, decisions=decisions,
        agent_log_tail="" if agent is None else agent.log_tail(),
    )


def _decision(wire: dict[str, Any], arrived: float | None,
              crossed: tuple[float, float] | None) -> Decision:
    spec, status = wire["spec"], wire.get("status", {})
    # The decider's clock (the API server keeps creationTimestamp to the second).
    created = datetime.fromisoformat(
        status.get("startTime") or wire["metadata"]["creationTimestamp"]).timestamp()
    return Decision(
        victims={v["name"]: round(v["expectedReclaimBytes"] / Mi, 1) for v in spec["victims"]},
        outcomes={f"{v['namespace']}/{v['name']}": v["outcome"] for v in status["victims"]},
        reclaimed_by_pod_mib={f"{v['namespace']}/{v['name']}": round(
            v.get("reclaimedBytes", 0) / Mi, 1) for v in status["victims"]},
        available_mib=round(spec["trigger"]["availableBytes"] / Mi, 1),
        need_mib=round(spec["trigger"]["needBytes"] / Mi, 1),
        reclaimed_mib=round(status.get("reclaimedBytes", 0) / Mi, 1),
        detect_ms=None if crossed is None else round((created - crossed[1]) * 1000, 1),
        kill_ms=round(status.get("durationSeconds", 0.0) * 1000, 1),
        emitted_ms=None if crossed is None or arrived is None else round(
            (arrived - crossed[0]) * 1000, 1),
        decided_by=spec.get("decidedBy", "agent"),
    )


# --- report -----------------------------------------------------------------------------


def summarize(scenario: Scenario, results: Sequence[RunResult]) -> dict[str, Any]:
    """One scenario in one mode, over its runs."""
    decisions = [d for r in results for d in r.decisions]
    outcomes: dict[str, int] = {}
    for d in decisions:
        for outcome in d.outcomes.values():
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return {
        "runs": len(results),
        "kernel_oom_kills": sum(r.kernel_oom_kills for r in results),
        "right": sum(r.right for r in results),
        "whole_group": sum(r.whole_group for r in results),
        "wrong_pods": sorted({p for r in results for p in r.wrong_pods}),
        "partly_killed": sorted({f"{key} {f.killed}/{f.processes}" for r in results
                                 for key, f in r.pods.items()
                                 if key in scenario.victims and 0 < f.killed < f.processes}),
        "killed_by_oomguard": sum(r.by_oomguard for r in results),
        "exited_by_itself": sum(any(f.exited for f in r.pods.values()) for r in results),
        "timed_out": sum(r.timed_out for r in results),
        "time_to_gone_ms": spread([r.time_to_gone_ms for r in results if r.by_oomguard]),
        "decisions": len(decisions),
        "decided_by": {who: sum(d.decided_by == who for d in decisions)
                       for who in sorted({d.decided_by for d in decisions})},
        "decision_outcomes": outcomes,
        "detect_ms": spread([d.detect_ms for d in decisions]),
        "kill_ms": spread([d.kill_ms for d in decisions]),
        "emitted_ms": spread([d.emitted_ms for d in decisions]),
        "need_mib": spread([d.need_mib for d in decisions]),
        "reclaimed_mib": spread([d.reclaimed_mib for d in decisions]),
        "victims_seen_mib": spread([sum(d.victims.values()) for d in decisions]),
        "min_available_mib": min(r.min_available_mib for r in results),
    }


def _pair(spread: dict[str, float | None]) -> str:
    if spread["median"] is None or spread["worst"] is None:
        return "n/a"
    return f"{spread['median']:.0f} / {spread['worst']:.0f}"


def outcome_table(summaries: dict[str, dict[str, dict[str, Any]]],
                  titles: dict[str, str]) -> list[str]:
    lines = [
        "| scenario | mode | kernel OOM kills | right victim | whole group | "
        "threshold→gone ms (median / worst) | reclaimed / needed MiB (median) | notes |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for key, modes in summaries.items():
        for mode, s in modes.items():
            n = s["runs"]
            timing = "n/a" if mode == "kernel" else _pair(s["time_to_gone_ms"])
            reclaim = ("n/a" if s["need_mib"]["median"] is None else
                       f"{s['reclaimed_mib']['median']:.0f} / {s['need_mib']['median']:.0f}")
            notes = []
            if s["wrong_pods"]:
                notes.append("killed " + ", ".join(s["wrong_pods"]))
            if s["partly_killed"]:
                notes.append("partly killed " + ", ".join(s["partly_killed"]))
            if s["exited_by_itself"]:
                notes.append(f"exited by itself {s['exited_by_itself']}/{n}")
            if s["decision_outcomes"]:
                notes.append("outcomes: " + ", ".join(
                    f"{o} {c}" for o, c in sorted(s["decision_outcomes"].items())))
            if mode == "operator" and s["decided_by"]:
                notes.append("decided by " + ", ".join(
                    f"{who} {c}" for who, c in s["decided_by"].items()))
            if s["timed_out"]:
                notes.append(f"timed out {s['timed_out']}/{n}")
            notes.append(f"min available {s['min_available_mib']:.0f} MiB")
            lines.append(f"| {key}: {titles[key]} | {mode} | {s['kernel_oom_kills']} | "
                         f"{s['right']}/{n} | {s['whole_group']}/{n} | {timing} | {reclaim} | "
                         f"{'; '.join(notes)} |")
    return lines


def timing_table(summaries: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Where oomguard's time goes, and how stale the usage it ranked on was."""
    lines = [
        "| scenario | mode | decisions | crossing→decided ms | kill ms | crossing→decision "
        "line ms | victims' usage seen / reclaimed MiB (median) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for key, modes in summaries.items():
        for mode in GUARDED:
            s = modes.get(mode)
            if s is None or not s["decisions"]:
                continue
            seen = s["victims_seen_mib"]["median"]
            lines.append(f"| {key} | {mode} | {s['decisions']} | {_pair(s['detect_ms'])} | "
                         f"{_pair(s['kill_ms'])} | {_pair(s['emitted_ms'])} | "
                         f"{seen:.0f} / {s['reclaimed_mib']['median']:.0f} |")
    return lines


def progress(r: RunResult) -> str:
    gone = "n/a" if r.time_to_gone_ms is None else f"{r.time_to_gone_ms:.0f} ms"
    return (f"{r.scenario:9} {r.mode:8} run {r.run}: kernel kills {r.kernel_oom_kills}, "
            f"killed {', '.join(r.killed_pods) or '-'}, gone {gone}")


def goals(summaries: dict[str, dict[str, dict[str, Any]]]) -> dict[str, bool]:
    met = {}
    for mode in GUARDED:
        guarded = [modes[mode] for modes in summaries.values() if mode in modes]
        if not guarded:
            continue
        worst = [s["time_to_gone_ms"]["worst"] for s in guarded
                 if s["time_to_gone_ms"]["worst"] is not None]
        met |= {
            f"{mode}: zero kernel OOM kills": all(s["kernel_oom_kills"] == 0 for s in guarded),
            f"{mode}: right whole group in every run": all(
                s["right"] == s["whole_group"] == s["runs"] for s in guarded),
            f"{mode}: worst threshold→gone < {GOALS_MS[mode]:g} ms":
                bool(worst) and max(worst) < GOALS_MS[mode],
        }
    return met


@contextlib.contextmanager
def control_plane(wanted: bool, workdir: Path) -> Iterator[Kube | None]:
    """For the operator mode: the tests' control plane with the chart installed, for the
    whole arena run."""
    if not wanted:
        yield None
        return
    with cluster_with_chart(workdir / "cluster") as session:
        yield Kube(session)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_RUNS} runs per scenario")
    parser.add_argument("--runs", type=int, help=f"runs per scenario and mode (default {RUNS})")
    parser.add_argument("--scenario", action="append", dest="scenarios",
                        choices=[s.key for s in scenarios()],
                        help="only this scenario (repeatable)")
    parser.add_argument("--mode", action="append", dest="modes", choices=MODES,
                        help="only this mode (repeatable)")
    args = parser.parse_args(argv)
    modes = [m for m in MODES if not args.modes or m in args.modes]
    runs = args.runs or (QUICK_RUNS if args.quick else RUNS)
    chosen = [s for s in scenarios() if not args.scenarios or s.key in args.scenarios]
    # SIGTERM unwinds like Ctrl-C, through every finally block that stops agents and
    # removes sandboxes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))

    results: list[RunResult] = []
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="oomguard-arena-") as tmp, \
                control_plane("operator" in modes, Path(tmp)) as kube:
            for scenario in chosen:
                for run in range(runs):
                    for mode in modes:
                        result = run_once(scenario, mode, run, Path(tmp), kube)
                        results.append(result)
                        print(progress(result), file=sys.stderr, flush=True)
    except SandboxUnavailableError as reason:
        print(f"arena: needs real cgroup v1 memory ({reason})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("arena: interrupted; agents stopped and sandboxes removed", file=sys.stderr)
        return 130
    elapsed = time.monotonic() - started

    summaries = {s.key: {mode: summarize(s, [r for r in results
                                             if r.scenario == s.key and r.mode == mode])
                         for mode in modes} for s in chosen}
    met = goals(summaries)
    looks = max(r.watcher_interval_ms for r in results)
    ready = spread([r.agent_ready_ms for r in results])
    print(f"## arena: {LIMIT // Mi} MiB node, soft {SOFT} / hard {HARD} / reclaimTo "
          f"{RECLAIM_TO}, {runs} runs per scenario and mode ({elapsed:.0f} s)\n")
    print(f"The watcher looked every {looks:.1f} ms or better; the agent took "
          f"{_pair(ready)} ms (median / worst) from its start to its first sample.\n")
    print("\n".join(outcome_table(summaries, {s.key: s.title for s in chosen})))
    print("\n### oomguard: where the time goes (median / worst)\n")
    print("\n".join(timing_table(summaries)))
    print("\ngoals with oomguard: " + ", ".join(
        f"{name}: {verdict(ok)}" for name, ok in met.items()))
    leftovers = sorted(p.name for p in MEMORY_MOUNT.glob(f"{PREFIX}-*"))
    if leftovers:
        print(f"\narena: left-over cgroups: {leftovers}", file=sys.stderr)

    write_results("arena", "arena", {
        "elapsed_seconds": round(elapsed, 1),
        "runs": runs,
        "node": {"limit_bytes": LIMIT, "soft": SOFT, "hard": HARD, "reclaim_to": RECLAIM_TO,
                 "soft_bytes": SOFT_BYTES},
        "goals": {"time_to_gone_ms": GOALS_MS, "met": met},
        "scenarios": [{"key": s.key, "title": s.title, "victims": sorted(s.victims),
                       "summary": summaries[s.key]} for s in chosen],
        "runs_detail": [asdict(r) for r in results],
    })
    return 1 if leftovers else 0


if __name__ == "__main__":
    sys.exit(main())
