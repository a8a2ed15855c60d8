"""The operator's decision path: from a pressured NodeMemoryReport to its OOMDecision.

Not a test: it reports numbers. Two parts, on one synthetic cluster shape (nodes full of
Deployment, StatefulSet, CronJob and bare pods in tenant namespaces, DaemonSet pods in
kube-system, OOMPriority objects grouping by Workload and Label in most namespaces, one
OOMPolicy with tenants):

(a) Through a real API server: the tests' control plane (etcd, kube-apiserver,
    kube-controller-manager; support/controlplane.py) with the chart installed, the
    real kopf operator in a process of its own with a token of the chart's operator
    ServiceAccount, on a small cluster (20 nodes). Each sample patches one node's report
    status to Soft pressure, with a token of the agent's ServiceAccount, and times the API
    server's completed requests (from its audit log): report written -> OOMDecision
    created -> its status written -> evictions done (the real eviction handler); a Decider
    and Cluster that note the time split the first interval. Victims are then gone
    (removed as the kubelet would, and left out of later reports), so that every sample
    makes a new decision. Also: how long the operator takes from its start to its first
    decision, by cluster size.
(b) In process: `Decider.on_report` on a large cluster (1,000 nodes x 110 pods) held in
    index-like mappings built with handlers.py's index functions from full object bodies,
    with a stand-in `Cluster` that records calls and makes no HTTP (its calls still go
    through threads; with --api-latency-ms each call waits as an API server's answer
    would). Reports are heartbeats, 10% under pressure; a decision's
    victims are gone afterwards (from later reports and from the pod index). Measured:
    latency one report after another; throughput with up to 64 reports in flight (kopf
    handles objects concurrently); and, if the throughput allows, latency when reports
    arrive at the goal rate, each handled in a task of its own on one event loop as kopf
    does. A round of housekeeping (statuses) over the same cluster is timed too, and the
    pressured path is profiled (cProfile) when a goal is missed or with --profile.

    python -m bench.operator_load [--quick] [--profile]
                                  [--skip-server | --skip-in-process]
                                  [--api-latency-ms MS]

Prints markdown tables and writes bench/results/operator.json. The whole loop on a real
node (threshold crossing to group gone, through the operator) is measured by
bench/arena.py (mode `operator`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import multiprocessing
import pstats
import queue as queue_module
import random
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kopf
from kubernetes import client

from oomguard.api import GROUP, VERSION, NodeMemoryReport, OOMDecision
from oomguard.controller import Decider, Options, connection_info, register
from oomguard.controller.handlers import settle_garbage_collector
from oomguard.controller.housekeeping import Housekeeper
from oomguard.controller.view import (
    ClusterView,
)
from oomguard.engine import decide
from oomguard.kube import Cluster, api_client

from .synthetic import ClusterModel, PodSeed
from support import ApiCall, Kube, cluster_with_chart, kubelet_status
from support.measure import (
    growth_exponent,
    print_top,
    profiled,
    quantiles,
    verdict,
    write_results,
)
from support.operator_fakes import Indices, RecordingCluster

GOAL_P99_MS = 100.0
GOAL_RATE = 200.0
"""Goals: p99 report-to-decision under 100 ms (both parts); 200 reports/s in process."""
PRESSURED_FRACTION = 0.10
REPORTS_RES = f"{GROUP}/{VERSION}/nodememoryreports"
STARTUP_TIMEOUT = 600.0


# --- (a) through the real API server ---------------------------------------------------------


class TimedDecider(Decider):
    """The Decider, noting when a pressured report reached it (the kopf handler's call)."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self.entered: list[tuple[str, float]] = []

    async def on_report(self, body: dict[str, Any], view: ClusterView) -> OOMDecision | None:
        status = body.get("status") or {}
        if status.get("pressure") not in (None, "None"):
            self.entered.append((body["metadata"]["name"], time.time()))
        return await super().on_report(body, view)


class TimedCluster(Cluster):
    """The real Cluster, noting when the operator asked for a decision to be created."""

    def __init__(self, api: client.ApiClient) -> None:
        super().__init__(api)
        self.asked: list[tuple[str, float]] = []

    def create_decision(self, decision: OOMDecision) -> dict[str, Any]:
        self.asked.append((decision.metadata.name, time.time()))
        return super().create_decision(decision)


def _operator_process(kubeconfig: str, ready: Any, stop: Any, stamps: Any) -> None:
    """The operator as in a cluster: a process of its own, the real handlers, a
    TimedDecider and TimedCluster, a token of the chart's ServiceAccount. Sends their time
    stamps (wall clock, as the API server's audit log has them) back when stopped."""
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("kopf._core.reactor.queueing").setLevel(logging.CRITICAL)
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    api = api_client(kubeconfig=Path(kubeconfig))
    cluster = TimedCluster(api)
    decider = TimedDecider(cluster)
    registry = kopf.OperatorRegistry()
    register(registry, decider, Options(), freeze_caches=True)  # as `oomguard operator`

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(api.configuration)

    pauses: list[tuple[float, float]] = []  # full collections: (start, seconds)
    began: list[float] = [0.0]

    def collected(phase: str, info: dict[str, int]) -> None:
        if info["generation"] == 2:
            if phase == "start":
                began[0] = time.time()
            else:
                pauses.append((began[0], time.time() - began[0]))

    gc.callbacks.append(collected)
    stop_flag, ready_flag = threading.Event(), threading.Event()
    threading.Thread(target=lambda: (stop.wait(), stop_flag.set()), daemon=True).start()
    threading.Thread(target=lambda: (ready_flag.wait(), ready.set()), daemon=True).start()
    asyncio.run(kopf.operator(registry=registry, clusterwide=True, standalone=True,
                              stop_flag=stop_flag, ready_flag=ready_flag))
    stamps.put({"entered": decider.entered, "asked": cluster.asked, "gc": pauses,
                "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


@contextlib.asynccontextmanager
async def operator_process(kubeconfig: Path) -> AsyncIterator[dict[str, Any]]:
    """Run the operator in a child process for the block; the yielded dict receives its
    time stamps once the block ends."""
    context = multiprocessing.get_context("spawn")
    ready, stop, queue = context.Event(), context.Event(), context.Queue()
    process = context.Process(target=_operator_process,
                              args=(str(kubeconfig), ready, stop, queue),
                              name="oomguard-operator", daemon=True)
    process.start()
    stamps: dict[str, Any] = {}

    def alive_until(done: Callable[[float], bool]) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not done(1.0):
            if not process.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the operator process ended (exit code "
                                   f"{process.exitcode}) or did not answer in time")

    def received(timeout: float) -> bool:
        try:
            stamps.update(queue.get(True, timeout))
        except queue_module.Empty:
            return False
        return True

    try:
        await asyncio.to_thread(alive_until, ready.wait)
        yield stamps
        stop.set()
        await asyncio.to_thread(alive_until, received)
        await asyncio.to_thread(process.join, 30)
    finally:
        if process.is_alive():
            process.terminate()
            await asyncio.to_thread(process.join, 30)


@contextlib.contextmanager
def real_cluster(workdir: Path) -> Iterator[Kube]:
    """The tests' control plane (etcd, kube-apiserver, kube-controller-manager) with the
    chart installed, for one part of the benchmark."""
    with cluster_with_chart(workdir) as session:
        yield Kube(session)


CONTROLLERS = {
    # kind: (resource, spec) of a controller object; its controllers do not run in the
    # test cluster (support.controlplane), the pods are written as their kubelets would
    "Deployment": ("apps/v1/deployments", lambda t: {"selector": t["selector"],
                                                     "template": t["template"]}),
    "StatefulSet": ("apps/v1/statefulsets", lambda t: {"selector": t["selector"],
                                                       "serviceName": "none",
                                                       "template": t["template"]}),
    "DaemonSet": ("apps/v1/daemonsets", lambda t: {"selector": t["selector"],
                                                   "template": t["template"]}),
    "ReplicaSet": ("apps/v1/replicasets", lambda t: {"selector": t["selector"],
                                                     "template": t["template"]}),
    "CronJob": ("batch/v1/cronjobs", lambda t: {"schedule": "0 0 * * *", "jobTemplate": {
        "spec": {"template": {**t["template"], "spec": {**t["template"]["spec"],
                                                        "restartPolicy": "Never"}}}}}),
    "Job": ("batch/v1/jobs", lambda t: {"template": {**t["template"], "spec": {
        **t["template"]["spec"], "restartPolicy": "Never"}}, "manualSelector": True,
        "selector": t["selector"]}),
}


def _template(name: str) -> dict[str, Any]:
    labels = {"bench-owner": name[:63]}
    return {"selector": {"matchLabels": labels}, "template": {
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "main", "image": "registry.example/app:1"}]}}}


def seed(kube: Kube, model: ClusterModel, threads: int = 4) -> None:
    """The whole cluster in the API server, every node's report at rest. Owners first:
    their UIDs are the server's, and the pods (and ReplicaSets, Jobs) point at them; the
    model's pods take their server UIDs, which the reports then carry."""
    for namespace, labels in model.namespaces.items():
        if kube.read("v1/namespaces", None, namespace) is None:
            kube.create("v1/namespaces", {"metadata": {"name": namespace, "labels": labels}})
    for namespace in model.namespaces:  # pods are admitted once it exists
        kube.wait_for_service_account(namespace)
    for node in model.nodes:
        kube.create("v1/nodes", {"metadata": {"name": node, "labels": {"pool": "general"}}})
    uids: dict[str, str] = {}

    def controller(kind: str, namespace: str, name: str, fake_uid: str,
                   parent: dict[str, Any] | None = None) -> None:
        if fake_uid in uids:
            return
        resource, spec = CONTROLLERS[kind]
        meta: dict[str, Any] = {"name": name, "namespace": namespace}
        if parent is not None:
            meta["ownerReferences"] = [{**parent, "uid": uids[parent["uid"]]}]
        created = kube.create(resource, {"metadata": meta, "spec": spec(_template(name))})
        uids[fake_uid] = created["metadata"]["uid"]

    for owner in model.owners:  # ReplicaSets and Jobs, after their Deployments, CronJobs
        parent = owner["metadata"]["ownerReferences"][0]
        namespace = owner["metadata"]["namespace"]
        controller(parent["kind"], namespace, parent["name"], parent["uid"])
        controller(owner["kind"], namespace, owner["metadata"]["name"],
                   owner["metadata"]["uid"], parent)
    for pod in model.pods:
        if pod.owner is not None and pod.owner[3] not in uids:  # DaemonSets, StatefulSets
            controller(pod.owner[1], pod.namespace, pod.owner[2], pod.owner[3])

    def create(pod: PodSeed) -> None:
        body = pod.body()
        body["spec"].pop("priority", None)  # the Priority admission plugin sets it
        if pod.owner is not None:
            body["metadata"]["ownerReferences"][0]["uid"] = uids[pod.owner[3]]
            pod.owner = (*pod.owner[:3], uids[pod.owner[3]])
        body["status"] = kubelet_status("Running")
        pod.uid = kube.create("v1/pods", body)["metadata"]["uid"]

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(create, model.pods))
    for priority in model.priorities:
        kube.create(f"{GROUP}/{VERSION}/oompriorities", priority)
    kube.create(f"{GROUP}/{VERSION}/oompolicies", model.policy)
    for node in model.nodes:
        kube.store(REPORTS_RES, _as_written(model.report(node, "None")))


def _as_written(report: dict[str, Any]) -> dict[str, Any]:
    """A report as its agent creates it: the server sets uid, resourceVersion and the rest."""
    return {**report, "metadata": {"name": report["metadata"]["name"]}}


def _decisions_of(kube: Kube, node: str) -> list[dict[str, Any]]:
    return kube.read_all(f"{GROUP}/{VERSION}/oomdecisions",
                         labelSelector=f"oomguard.io/node={node}")


async def through_server(samples: int, warmup: int, nodes: int, pods_per_node: int, *,
                         namespaces: int, workdir: Path) -> dict[str, Any]:
    model = ClusterModel.build(nodes, pods_per_node, namespaces, seed=7)
    with real_cluster(workdir / "cluster") as kube:
        seed(kube, model)
        return await _server_run(kube, model, samples, warmup, workdir)


async def _server_run(kube: Kube, model: ClusterModel, samples: int, warmup: int,
                      workdir: Path) -> dict[str, Any]:
    # Each node's agent writes its own report (the chart's admission policy allows no other).
    agents = {node: kube.agent_for(node) for node in model.nodes}
    writers = {node: client.CustomObjectsApi(kube.api_client(who))
               for node, who in agents.items()}
    credentials = {who.credential for who in agents.values()}
    operator_config = kube.kubeconfig(workdir / "operator.kubeconfig",
                                      kube.identity("oomguard-operator"))
    gone: set[str] = set()
    rows: list[dict[str, Any]] = []
    started = time.time()
    first_sample = 0.0
    async with operator_process(operator_config) as stamps:
        ready = time.time() - started
        for i in range(warmup + samples):
            # The first sample waits for kopf to list and index everything (it handles no
            # event before), which takes long: give it time.
            timeout = STARTUP_TIMEOUT if i == 0 else 30.0
            node = model.nodes[i % len(model.nodes)]
            status = model.report_status(node, "Soft", gone)
            before = {d["metadata"]["name"] for d in _decisions_of(kube, node)}
            sent = time.time()
            await asyncio.to_thread(writers[node].patch_cluster_custom_object_status, GROUP,
                                    VERSION, "nodememoryreports", node, {"status": status})
            returned = time.time()
            [final] = await kube.wait_for(lambda node=node, before=before: [
                d for d in _decisions_of(kube, node) if d["metadata"]["name"] not in before
                and (d.get("status") or {}).get("phase") in ("Completed", "Failed")] or None,
                timeout=timeout, interval=0.05)
            victims = final["status"]["victims"]
            for victim in victims:  # the kubelet ends the evicted pods
                gone.add(victim["uid"])
                kube.remove("v1/pods", victim["namespace"], victim["name"])
            if i == warmup:
                first_sample = sent
            rows.append({"sample": i, "node": node, "decision": final["metadata"]["name"],
                         "write_ms": (returned - sent) * 1e3, "victim_pods": len(victims),
                         "outcomes": sorted({v.get("outcome", "") for v in victims})})
    calls = kube.calls()  # the API server's own times, from its audit log
    for r in rows:
        name = r["decision"]
        written = max(c.completed for c in calls if c.resource == "nodememoryreports"
                      and c.name == r["node"] and c.credential in credentials
                      and c.completed <= _created(calls, name))
        r["created_ms"] = (_created(calls, name) - written) * 1e3
        writes = [c for c in calls if c.resource == "oomdecisions" and c.name == name
                  and c.subresource == "status" and c.code < 300]
        r["recorded_ms"] = (writes[0].completed - written) * 1e3
        r["completed_ms"] = (next(c.completed for c in writes if (c.body or {}).get(
            "status", {}).get("phase") in ("Completed", "Failed")) - written) * 1e3
        asked = next((t for n, t in stamps["asked"] if n == name), _created(calls, name))
        # The handler call that decided: the last for the node before the create. The
        # watch event can reach kopf a moment before the server logs the write complete.
        entered = max((t for n, t in stamps["entered"] if n == r["node"] and t <= asked),
                      default=written)
        r["delivered_ms"] = (entered - written) * 1e3
        r["decided_ms"] = (asked - entered) * 1e3
        r["posted_ms"] = (_created(calls, name) - asked) * 1e3
        r["operator_gc_ms"] = sum(d for t, d in stamps["gc"] if entered <= t <= asked) * 1e3
        if r["sample"] == 0:
            r["first_decision_s"] = _created(calls, name) - started
    first_decision = rows[0].pop("first_decision_s")
    rows = [r for r in rows if r["sample"] >= warmup]
    sampling = [d for t, d in stamps["gc"] if t >= first_sample]
    return {
        "cluster": {"nodes": len(model.nodes), "pods": len(model.pods),
                    "namespaces": len(model.namespaces), "priorities": len(model.priorities),
                    "owners": len(model.owners)},
        "operator_ready_s": round(ready, 2),
        "start_to_first_decision_s": round(first_decision, 1),
        "operator_max_rss_mib": round(stamps["max_rss_mib"]),
        "warmup": warmup,
        "report_to_decision_created": quantiles([r["created_ms"] for r in rows]),
        "report_to_handler": quantiles([r["delivered_ms"] for r in rows]),
        "handler_to_create_call": quantiles([r["decided_ms"] for r in rows]),
        "create_call_to_created": quantiles([r["posted_ms"] for r in rows]),
        "report_to_status_written": quantiles([r["recorded_ms"] for r in rows]),
        "report_to_evictions_done": quantiles([r["completed_ms"] for r in rows]),
        "agent_write_ms": quantiles([r["write_ms"] for r in rows]),
        "victim_pods_median": statistics.median(r["victim_pods"] for r in rows),
        "operator_full_gc": {"count": len(sampling),
                             "max_ms": round(max(sampling, default=0) * 1e3, 1),
                             "median_ms": round(statistics.median(sampling or [0]) * 1e3, 1),
                             "in_samples": sum(1 for r in rows if r["operator_gc_ms"] > 0),
                             "seconds": round(time.time() - first_sample, 1)},
        "outcomes": sorted({o for r in rows for o in r["outcomes"]}),
        "samples": [{k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()}
                    for r in rows],
    }


def _created(calls: Sequence[ApiCall], name: str) -> float:
    return next(c.completed for c in calls if c.rbac == ("create", GROUP, "oomdecisions", "")
                and c.name == name and c.code == 201)


async def kopf_startup(nodes: int, workdir: Path) -> dict[str, Any]:
    """How long the operator takes, from its start, to handle its first report: kopf
    handles no event before every object of every indexed resource has been indexed."""
    model = ClusterModel.build(nodes, 110, 10, seed=7)
    with real_cluster(workdir / f"startup-{nodes}") as kube:
        seed(kube, model)
        kube.store(REPORTS_RES, _as_written(model.report(model.nodes[0], "Soft")))
        config = kube.kubeconfig(workdir / "operator.kubeconfig",
                                 kube.identity("oomguard-operator"))
        started = time.time()
        async with operator_process(config) as stamps:
            await kube.wait_for(lambda: _decisions_of(kube, model.nodes[0]),
                                timeout=STARTUP_TIMEOUT, interval=0.05)
        created = next(c.completed for c in kube.calls()
                       if c.rbac == ("create", GROUP, "oomdecisions", "") and c.code == 201)
        return {"nodes": nodes, "pods": len(model.pods),
                "start_to_first_decision_s": round(created - started, 2),
                "operator_max_rss_mib": round(stamps["max_rss_mib"])}


# --- (b) in process -------------------------------------------------------------------------


@dataclass
class Feed:
    """Reports in arrival order: heartbeats from random nodes, and exactly
    PRESSURED_FRACTION of them under pressure (30% of those Hard)."""

    model: ClusterModel
    gone: set[str]
    rng: random.Random = field(default_factory=lambda: random.Random(11))
    _heartbeats: dict[str, dict[str, Any]] = field(default_factory=dict)

    def plan(self, count: int) -> list[tuple[str, str]]:
        pressured = round(count * PRESSURED_FRACTION)
        levels = ["Hard" if i < pressured * 3 // 10 else "Soft" for i in range(pressured)]
        levels += ["None"] * (count - pressured)
        self.rng.shuffle(levels)
        return [(self.rng.choice(self.model.nodes), level) for level in levels]

    def body(self, node: str, pressure: str) -> dict[str, Any]:
        """A fresh body for a pressured report (without the pods already gone); a heartbeat
        carries its node's last per-pod detail, as the agent's summary writes leave it."""
        if pressure != "None":
            return self.model.report(node, pressure, self.gone)
        if node not in self._heartbeats:
            self._heartbeats[node] = self.model.report(node, "None", self.gone)
        return self._heartbeats[node]


@dataclass
class Handled:
    pressure: str
    arrived: float
    started: float
    ended: float
    created: float | None
    victim_pods: int = 0

    @property
    def wall_ms(self) -> float:
        return (self.ended - self.started) * 1e3

    @property
    def from_arrival_ms(self) -> float:
        return (self.ended - self.arrived) * 1e3


class InProcess:
    """A Decider over the indices of a large cluster, with a recording Cluster."""

    def __init__(self, model: ClusterModel, latency: float = 0.0) -> None:
        started = time.perf_counter()
        self.model = model
        self.indices = Indices.of(
            pods=[p.body() for p in model.pods], owners=model.owners,
            policies=[model.policy], priorities=model.priorities,
            namespaces=model.namespaces, nodes={n: {"pool": "general"} for n in model.nodes})
        self.build_s = time.perf_counter() - started
        settle_garbage_collector()  # as the operator does once its indices are loaded
        self.gone: set[str] = set()
        self.cluster = RecordingCluster(self.indices.decisions, self.gone, latency)
        self.decider = Decider(self.cluster)
        self.feed = Feed(model, self.gone)

    async def handle(self, node: str, pressure: str, body: dict[str, Any],
                     arrived: float) -> Handled:
        """What handlers.py does with a report event: a view of the indices, on_report."""
        started = time.perf_counter()
        decision = await self.decider.on_report(body, self.indices.view())
        ended = time.perf_counter()
        created, victims = None, 0
        if decision is not None and decision.status is not None:
            created = self.cluster.created_at.pop(decision.metadata.name, None)
            # The victims go (evicted, or killed by the agent): later reports lack them,
            # and the pod index drops them, as kopf does on their DELETED events.
            uids = {v.uid for v in decision.status.victims}
            self.gone.update(uids)
            for key in {k for v in decision.spec.victims for p in v.pods
                        for k in (("node", p.node_name), ("ns", p.namespace))}:
                self.indices.pods[key] = [p for p in self.indices.pods.get(key, ())
                                          if p.uid not in uids]
            victims = len(uids)
        return Handled(pressure, arrived, started, ended, created, victims)

    async def warm(self) -> None:
        """One heartbeat per node, as after kopf's initial listing."""
        for node in self.model.nodes:
            await self.handle(node, "None", self.feed.body(node, "None"), 0.0)

    async def one_after_another(self, count: int) -> list[Handled]:
        rows = []
        for node, pressure in self.feed.plan(count):
            body = self.feed.body(node, pressure)
            rows.append(await self.handle(node, pressure, body, time.perf_counter()))
        return rows

    async def saturated(self, count: int, concurrency: int = 64) -> tuple[list[Handled], float]:
        """As many reports as the loop takes, up to `concurrency` in flight (kopf handles
        objects concurrently, each in its own worker task): the throughput ceiling."""
        slots = asyncio.Semaphore(concurrency)

        async def one(node: str, pressure: str) -> Handled:
            async with slots:
                body = self.feed.body(node, pressure)
                return await self.handle(node, pressure, body, time.perf_counter())

        start = time.perf_counter()
        rows = await asyncio.gather(*(one(node, pressure)
                                      for node, pressure in self.feed.plan(count)))
        return list(rows), time.perf_counter() - start

    async def at_rate(self, rate: float, seconds: float) -> tuple[list[Handled], float]:
        """Reports arrive on schedule, each handled in a task of its own on this loop (kopf
        runs one worker task per object); returns the rows and the time it took."""
        loop = asyncio.get_running_loop()
        tasks = []
        start = time.perf_counter()
        for i, (node, pressure) in enumerate(self.feed.plan(int(rate * seconds))):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            body = self.feed.body(node, pressure)
            tasks.append(loop.create_task(self.handle(node, pressure, body, due)))
        rows = await asyncio.gather(*tasks)
        return list(rows), time.perf_counter() - start


def summary(rows: Sequence[Handled]) -> dict[str, Any]:
    pressured = [r for r in rows if r.pressure != "None"]
    created = [(r.created - r.arrived) * 1e3 for r in pressured if r.created is not None]
    return {
        "reports": len(rows), "pressured": len(pressured),
        "decisions": len(created),
        "heartbeat_ms": quantiles([r.wall_ms for r in rows if r.pressure == "None"]),
        "pressured_on_report_ms": quantiles([r.wall_ms for r in pressured]),
        "pressured_from_arrival_ms": quantiles([r.from_arrival_ms for r in pressured]),
        "pressured_to_decision_created_ms": quantiles(created) if created else None,
        "victim_pods_per_decision": statistics.median(
            [r.victim_pods for r in pressured if r.created is not None] or [0]),
    }


async def in_process(model: ClusterModel, *, reports: int, rate: float, latency: float,
                     seconds: float) -> tuple[dict[str, Any], InProcess]:
    bench = InProcess(model, latency)
    await bench.warm()
    # The feed's cached heartbeat bodies (1,000 nodes x 110 pods) are the benchmark's, not
    # the operator's: out of the collector's way, or each full collection walks them.
    gc.collect()
    gc.freeze()
    closed = await bench.one_after_another(reports // 2)
    rows, elapsed = await bench.saturated(reports)
    capacity = len(rows) / elapsed
    result: dict[str, Any] = {
        "cluster": {"nodes": len(model.nodes), "pods": len(model.pods),
                    "namespaces": len(model.namespaces), "priorities": len(model.priorities),
                    "owners": len(model.owners)},
        "index_build_s": round(bench.build_s, 1),
        "one_after_another": summary(closed),
        "saturated": {**summary(rows), "seconds": round(elapsed, 1),
                      "reports_per_s": round(capacity, 1)},
        "at_rate": None,
    }
    if capacity >= rate:
        rows, elapsed = await bench.at_rate(rate, seconds)
        result["at_rate"] = {**summary(rows), "offered_per_s": rate,
                             "handled_per_s": round(len(rows) / elapsed, 1),
                             "seconds": round(elapsed, 1)}
    snapshot_pods = []
    for node in bench.feed.rng.sample(model.nodes, 20):
        report = NodeMemoryReport.model_validate(model.report(node, "Soft", bench.gone))
        snapshot_pods.append(len(bench.indices.view().snapshot(report, datetime.now(UTC)).pods))
    result["snapshot_pods_median"] = statistics.median(snapshot_pods)
    result["calls"] = dict(bench.cluster.calls)
    return result, bench


def housekeeping_round(bench: InProcess) -> tuple[float, pstats.Stats]:
    """One round of statuses and retention over the whole cluster. The report handler pokes
    it (at most one round per status_interval), and it runs on the loop that decides."""
    housekeeper = Housekeeper(RecordingCluster(bench.indices.decisions, set()), Options())

    async def run() -> float:
        t0 = time.perf_counter()
        await housekeeper._round(bench.indices.view())
        return time.perf_counter() - t0

    elapsed = asyncio.run(run())
    return elapsed, profiled(lambda: asyncio.run(run()), runs=1)


def profile_pressured(bench: InProcess, runs: int) -> tuple[pstats.Stats, dict[str, float]]:
    """cProfile of on_report for pressured reports, and one report's time split into
    validation, snapshot and decide (the rest is the decision record and the stand-in)."""
    bodies = [bench.model.report(node, "Soft", bench.gone)
              for node in bench.feed.rng.sample(bench.model.nodes, runs)]

    async def run() -> None:
        for body in bodies:
            await bench.decider.on_report(body, bench.indices.view())

    stats = profiled(lambda: asyncio.run(run()), runs=1)
    split: dict[str, list[float]] = defaultdict(list)
    for node in bench.feed.rng.sample(bench.model.nodes, runs):
        body = bench.model.report(node, "Soft", bench.gone)
        t0 = time.perf_counter()
        report = NodeMemoryReport.model_validate(body)
        t1 = time.perf_counter()
        snapshot = bench.indices.view().snapshot(report, datetime.now(UTC))
        t2 = time.perf_counter()
        decide(snapshot)
        t3 = time.perf_counter()
        split["validate_ms"].append((t1 - t0) * 1e3)
        split["snapshot_ms"].append((t2 - t1) * 1e3)
        split["decide_ms"].append((t3 - t2) * 1e3)
        split["snapshot_pods"].append(len(snapshot.pods))
    return stats, {k: round(statistics.median(v), 2) for k, v in split.items()}


# --- output ---------------------------------------------------------------------------------


def row(label: str, q: dict[str, Any] | None) -> str:
    if q is None:
        return f"| {label} | 0 | | | | |"
    return (f"| {label} | {q['n']} | {q['median_ms']:.1f} | {q['p90_ms']:.1f} | "
            f"{q['p99_ms']:.1f} | {q['max_ms']:.1f} |")


HEADER = ("| | samples | median ms | p90 ms | p99 ms | max ms |\n"
          "|---|---:|---:|---:|---:|---:|")


def part_a(quick: bool, goals: list[tuple[str, bool]]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="oomguard-operator-bench-") as tmp:
        return _part_a(quick, goals, Path(tmp))


def _part_a(quick: bool, goals: list[tuple[str, bool]], workdir: Path) -> dict[str, Any]:
    a = asyncio.run(through_server(samples=20 if quick else 100, warmup=3, nodes=20,
                                   pods_per_node=110, namespaces=10, workdir=workdir))
    c = a["cluster"]
    print(f"## (a) The kopf operator against a real kube-apiserver\n\n{c['nodes']} nodes, "
          f"{c['pods']:,} pods, {c['namespaces']} namespaces, {c['priorities']} OOMPriority "
          f"objects, {c['owners']} ReplicaSets and Jobs. Each sample: a node's agent patches "
          "its report to Soft pressure (policy action Evict); operator and agent use tokens "
          "of the chart's ServiceAccounts; times between the API server's completed "
          "requests (its audit log).\n")
    print(HEADER.replace("| |", "| from the report's status written to |", 1))
    print(row("OOMDecision created", a["report_to_decision_created"]))
    print(row("... of which: watch event to kopf, kopf to the handler",
              a["report_to_handler"]))
    print(row("... of which: on_report until it calls create_decision",
              a["handler_to_create_call"]))
    print(row("... of which: the create request (client, HTTPS, API server, etcd)",
              a["create_call_to_created"]))
    print(row("its status written (Pending)", a["report_to_status_written"]))
    print(row("evictions done (Completed)", a["report_to_evictions_done"]))
    print(row("(the agent's status patch, client side)", a["agent_write_ms"]))
    print(f"\nVictim pods per decision (median): {a['victim_pods_median']} (groups by "
          f"Workload and Label span nodes); outcomes: {', '.join(a['outcomes'])}.")
    pauses = a["operator_full_gc"]
    print(f"The operator's process ran {pauses['count']} full garbage collections in "
          f"{pauses['seconds']:.0f} s of sampling (median {pauses['median_ms']:.0f} ms, "
          f"max {pauses['max_ms']:.0f} ms); {pauses['in_samples']} landed between a report's "
          "arrival and its decision.")
    startup = [asyncio.run(kopf_startup(n, workdir)) for n in ((6,) if quick else (6, 40))]
    startup.append({"nodes": c["nodes"], "pods": c["pods"],
                    "start_to_first_decision_s": a["start_to_first_decision_s"],
                    "operator_max_rss_mib": a["operator_max_rss_mib"]})
    a["startup"] = startup
    a["startup_exponent"] = round(growth_exponent(
        [s["pods"] for s in startup],
        [max(s["start_to_first_decision_s"], 1e-3) for s in startup]), 2)
    print("\nOperator start to its first decision (kopf handles no event until every indexed "
          "object is indexed):\n")
    print("| nodes | pods | start to first decision s | operator's peak RSS MiB |\n"
          "|---:|---:|---:|---:|")
    for s in sorted(startup, key=lambda s: s["pods"]):
        print(f"| {s['nodes']} | {s['pods']:,} | {s['start_to_first_decision_s']:.1f} | "
              f"{s['operator_max_rss_mib']} |")
    print(f"\ngrowth: t ~ pods^{a['startup_exponent']:.2f}")
    p99 = a["report_to_decision_created"]["p99_ms"]
    goals.append((f"(a) p99 report written -> OOMDecision created < {GOAL_P99_MS:g} ms: "
                  f"{p99:.1f} ms", p99 < GOAL_P99_MS))
    return a


def part_b(quick: bool, profile: bool, latency_ms: float,
           goals: list[tuple[str, bool]]) -> dict[str, Any]:
    model = ClusterModel.build(nodes=1000, pods_per_node=110, namespaces=100)
    # The benchmark's own objects (the model) out of the collector's way.
    gc.collect()
    gc.freeze()
    b, bench = asyncio.run(in_process(model, reports=200 if quick else 1000, rate=GOAL_RATE,
                                      latency=latency_ms / 1e3, seconds=10 if quick else 30))
    b["api_latency_ms"] = latency_ms
    c = b["cluster"]
    closed, full, at_rate = b["one_after_another"], b["saturated"], b["at_rate"]
    print(f"\n## (b) Decider.on_report in process\n\n{c['nodes']:,} nodes, {c['pods']:,} "
          f"pods, {c['namespaces']} namespaces, {c['priorities']} OOMPriority objects, "
          f"{c['owners']:,} ReplicaSets and Jobs, indexed with handlers.py's index functions "
          f"in {b['index_build_s']} s. {PRESSURED_FRACTION:.0%} of reports under pressure "
          f"(70% Soft/Evict, 30% Hard/KillAndEvict); a pressured node's snapshot holds "
          f"{b['snapshot_pods_median']:,.0f} pods (median); victim pods per decision "
          f"(median): {full['victim_pods_per_decision']:g}. Each stand-in API call takes "
          f"{latency_ms:g} ms.\n")
    print(f"Throughput with up to 64 reports in flight: **{full['reports_per_s']:.0f} "
          f"reports/s** ({full['reports']} reports, {full['pressured']} pressured, "
          f"{full['decisions']} decisions, {full['seconds']:.0f} s).\n")
    print(HEADER)
    print(row("one after another: heartbeat, on_report", closed["heartbeat_ms"]))
    print(row("one after another: pressured, on_report", closed["pressured_on_report_ms"]))
    print(row("one after another: pressured, to decision created",
              closed["pressured_to_decision_created_ms"]))
    goals.append((f"(b) >= {GOAL_RATE:.0f} reports/s: {full['reports_per_s']:.0f}/s",
                  full["reports_per_s"] >= GOAL_RATE))
    if at_rate is not None:
        print(row(f"at {GOAL_RATE:.0f}/s: heartbeat, on_report", at_rate["heartbeat_ms"]))
        print(row(f"at {GOAL_RATE:.0f}/s: pressured, on_report",
                  at_rate["pressured_on_report_ms"]))
        print(row(f"at {GOAL_RATE:.0f}/s: pressured, arrival to decision created",
                  at_rate["pressured_to_decision_created_ms"]))
        print(f"\nAt {GOAL_RATE:.0f} reports/s offered for {at_rate['seconds']:.0f} s: "
              f"{at_rate['handled_per_s']:.0f}/s handled.")
        p99 = at_rate["pressured_to_decision_created_ms"]["p99_ms"]
        goals.append((f"(b) p99 decision latency (pressured report's arrival -> OOMDecision "
                      f"created) at {GOAL_RATE:.0f} reports/s < {GOAL_P99_MS:g} ms: "
                      f"{p99:.1f} ms", p99 < GOAL_P99_MS))
    else:
        print(f"\nNot run at {GOAL_RATE:.0f} reports/s: that is above the throughput, so "
              "queues and latency would grow without bound.")
        goals.append((f"(b) p99 decision latency at {GOAL_RATE:.0f} reports/s < "
                       f"{GOAL_P99_MS:g} ms: overloaded (one after another, p99 "
                       f"{closed['pressured_to_decision_created_ms']['p99_ms']:.0f} ms)",
                       False))
    housekeeping, house_stats = housekeeping_round(bench)
    b["housekeeping_round_s"] = round(housekeeping, 3)
    print(f"\nOne housekeeping round (statuses, retention) over this cluster takes "
          f"{housekeeping * 1e3:.0f} ms on the loop that handles reports (at most once per "
          "status interval, 30 s by default).")
    if profile or not all(ok for text, ok in goals if text.startswith("(b)")):
        stats, split = profile_pressured(bench, runs=4 if quick else 12)
        b["pressured_split_ms"] = split
        print(f"\nWhere a pressured report's time goes (median): validate "
              f"{split['validate_ms']:.1f} ms, ClusterView.snapshot {split['snapshot_ms']:.1f} "
              f"ms, decide() {split['decide_ms']:.1f} ms on {split['snapshot_pods']:,.0f} "
              "pods.")
        b["pressured_profile"] = print_top(
            "cProfile of pressured on_report, by own time:", stats)
        if profile:
            b["housekeeping_profile"] = print_top(
                "cProfile of one housekeeping round, by own time:", house_stats)
    return b


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer samples, for a smoke check")
    parser.add_argument("--profile", action="store_true",
                        help="always print the cProfile tables of part (b)")
    parser.add_argument("--skip-server", action="store_true", help="part (b) only")
    parser.add_argument("--skip-in-process", action="store_true", help="part (a) only")
    parser.add_argument("--api-latency-ms", type=float, default=0.0,
                        help="part (b): each stand-in API call takes this long, in a thread, "
                        "as a real API server's answer would (default 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    results: dict[str, Any] = {
        "quick": args.quick, "goals": {"p99_ms": GOAL_P99_MS, "reports_per_s": GOAL_RATE},
    }
    goals: list[tuple[str, bool]] = []
    if not args.skip_server:
        results["through_server"] = part_a(args.quick, goals)
    if not args.skip_in_process:
        results["in_process"] = part_b(args.quick, args.profile, args.api_latency_ms, goals)
    print("\n## Goals\n")
    for text, ok in goals:
        print(f"- {text}: {verdict(ok)}")
    print("- whole loop on a real node (threshold crossing to group gone, via the operator): "
          "bench/arena.py, mode operator")
    results["goals_met"] = dict(goals)
    write_results("operator", "operator", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
