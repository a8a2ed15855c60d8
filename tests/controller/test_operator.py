"""The real kopf operator against the real API server, authenticated as the chart's
operator ServiceAccount: a pressured report becomes a recorded decision, evictions honour
disruption budgets (the real disruption controller and eviction handler), and Events tell
the story."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kopf
import pytest

from oomguard.api import GROUP, VERSION
from oomguard.controller import Decider, Options, register
from oomguard.kube import Cluster
from oomguard.kube.permissions import OPERATOR

from support import Kube, Kubectl, free_port, running_operator

Mi = 2**20
Gi = 2**30
OURS = f"{GROUP}/{VERSION}"
DECISIONS = f"{OURS}/oomdecisions"
REPORTS = f"{OURS}/nodememoryreports"
PEERING = "oomguard"
"""The chart's ClusterKopfPeering: its RBAC lets the operator patch that one only."""
StartOperator = Callable[[], Awaitable[None]]


def now() -> str:
    """A timestamp of now, as an agent writes its reports' times."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def custom(kind: str, name: str, spec: dict[str, Any],
           namespace: str | None = None) -> dict[str, Any]:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": OURS, "kind": kind, "metadata": meta, "spec": spec}


@dataclass
class Seeded:
    """A node with a two-pod batch Job (one pod on another node), an important database
    and a web pod, as the test cluster holds them."""

    kube: Kube
    node: str
    other: str
    batch: str
    shop: str
    uids: dict[str, str]

    @property
    def usage(self) -> dict[str, int]:
        return {self.uids["etl-1"]: 900 * Mi, self.uids["db-0"]: 3 * Gi,
                self.uids["web-0"]: 300 * Mi}

    def report(self, available: int, usage: dict[str, int] | None = None,
               capacity: int = 8 * Gi) -> dict[str, Any]:
        """The node's NodeMemoryReport as an agent writes it (created, then its status),
        observed now."""
        return {"apiVersion": OURS, "kind": "NodeMemoryReport",
                "metadata": {"name": self.node},
                "status": {"node": {"capacityBytes": capacity, "availableBytes": available},
                           "pods": [{"uid": u, "usage": {"anonBytes": b}}
                                    for u, b in (self.usage if usage is None else usage).items()],
                           "observedTime": now(), "agentVersion": "test"}}

    def reported(self, available: int, **kwargs: Any) -> None:
        self.kube.store(REPORTS, self.report(available, **kwargs))

    def priorities(self, **policy_spec: Any) -> None:
        self.kube.create(f"{OURS}/oompolicies",
                         custom("OOMPolicy", self.kube.name("cluster"), policy_spec))
        self.kube.create(f"{OURS}/oompriorities", custom("OOMPriority", "etl", {
            "priority": -100, "group": {"by": "Workload"}}, self.batch))
        self.kube.create(f"{OURS}/oompriorities", custom("OOMPriority", "db", {
            "priority": 900, "podSelector": {"matchLabels": {"app": "db"}}}, self.shop))

    def decisions(self) -> list[dict[str, Any]]:
        """The node's decisions with their first status written (create, then status)."""
        found = self.kube.read_all(DECISIONS, labelSelector=f"oomguard.io/node={self.node}")
        return sorted((d for d in found if "status" in d), key=lambda d: d["metadata"]["name"])

    def events(self) -> list[dict[str, Any]]:
        """oomguard's Events about this node and the pods of its namespaces."""
        found = [e for ns in ("default", self.batch, self.shop)
                 for e in self.kube.read_all("v1/events", ns)]
        return [e for e in found if e["reason"].startswith("OOMGuard") and (
            e["involvedObject"].get("namespace") in (self.batch, self.shop)
            or e["involvedObject"]["name"] == self.node)]


def seed_node(kube: Kube) -> Seeded:
    node, other = kube.node("node-a"), kube.node("node-b")
    batch, shop = kube.namespace("batch"), kube.namespace("shop")
    job = kube.job(batch, "etl")
    pods = [kube.pod("etl-1", batch, node, owner=job),
            kube.pod("etl-2", batch, other, owner=job),
            kube.pod("db-0", shop, node, labels={"app": "db"}, requests="2Gi"),
            kube.pod("web-0", shop, node, labels={"app": "web"})]
    return Seeded(kube, node, other, batch, shop,
                  {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods})


@pytest.fixture
def options() -> Options:
    """Statuses refreshed fast, so that tests await them in well under a second."""
    return Options(status_interval=0.2)


@pytest.fixture
async def start_operator(kube: Kube, options: Options) -> AsyncIterator[StartOperator]:
    """Starts the operator once the test has seeded what the cluster holds before it:
    kopf handles no event before its indices have listed everything, so a report written
    after the start is decided on all that was seeded before. (An object created after the
    start arrives on a watch of its own, in no order relative to the report's.)"""
    async with contextlib.AsyncExitStack() as running:
        async def start() -> None:
            registry = kopf.OperatorRegistry()
            register(registry, Decider(Cluster(kube.api_client(kube.operator))), options)
            await running.enter_async_context(running_operator(kube, registry))
        yield start


def evictions(kube: Kube) -> list[str]:
    """Names of the pods the operator evicted, in order, as the API server answered."""
    return [c.name or "" for c in kube.calls(kube.operator)
            if c.rbac[2:] == ("pods", "eviction") and c.code == 201]


async def test_pressured_report_becomes_a_decision_with_events(
    kube: Kube, start_operator: StartOperator
) -> None:
    seeded = seed_node(kube)
    seeded.priorities(actions={"soft": "Kill"})
    await start_operator()
    seeded.reported(500 * Mi)  # Soft: below 10% of 8Gi
    [decision] = await kube.wait_for(seeded.decisions)
    spec = decision["spec"]
    assert decision["metadata"]["labels"] == {"oomguard.io/node": seeded.node}
    assert (spec["decidedBy"], spec["action"], spec["trigger"]["pressure"]) == (
        "operator", "Kill", "Soft")
    assert [v["name"] for v in spec["victims"]] == [f"{seeded.batch}/Job/etl"]
    assert {(p["name"], p["nodeName"], p["uid"]) for p in spec["victims"][0]["pods"]} == {
        ("etl-1", seeded.node, seeded.uids["etl-1"]),
        ("etl-2", seeded.other, seeded.uids["etl-2"])}
    assert decision["status"]["phase"] == "Pending"  # the agent's to execute
    events = await kube.wait_for(lambda: (found := seeded.events()) and len(found) >= 3
                                 and found)
    by_object = {(e["involvedObject"]["kind"], e["involvedObject"]["name"]): e for e in events}
    assert set(by_object) == {("Node", seeded.node), ("Pod", "etl-1"), ("Pod", "etl-2")}
    assert "priority -100" in by_object["Pod", "etl-1"]["message"]
    assert by_object["Pod", "etl-1"]["involvedObject"]["uid"] == seeded.uids["etl-1"]
    assert decision["metadata"]["name"] in by_object["Node", seeded.node]["message"]


async def test_dry_run_records_and_acts_on_nothing(kube: Kube,
                                                  start_operator: StartOperator) -> None:
    seeded = seed_node(kube)
    seeded.priorities(mode="DryRun")
    await start_operator()
    seeded.reported(500 * Mi)
    [decision] = await kube.wait_for(seeded.decisions)
    assert (decision["spec"]["mode"], decision["status"]["phase"]) == ("DryRun", "DryRun")
    assert not [c for c in kube.calls(kube.operator) if c.rbac[2:] == ("pods", "eviction")]


def _budget(kube: Kube, seeded: Seeded, min_available: int) -> None:
    """A budget over the etl Job's pods; the disruption controller computes its status."""
    kube.create("policy/v1/poddisruptionbudgets", {
        "metadata": {"name": "etl", "namespace": seeded.batch},
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"owner": "etl"}}}})


async def _budget_settled(kube: Kube, seeded: Seeded, allowed: int) -> None:
    def settled() -> bool:
        budget = kube.read("policy/v1/poddisruptionbudgets", seeded.batch, "etl") or {}
        status = budget.get("status") or {}
        return (status.get("observedGeneration") == budget["metadata"]["generation"]
                and status.get("disruptionsAllowed") == allowed
                and status.get("expectedPods") == 2)
    await kube.wait_for(settled)


def _budgeted(kube: Kube, min_available: int) -> Seeded:
    """The node, with a budget over the etl Job's pods that the disruption controller has
    computed, and the priorities (default actions: Evict under Soft)."""
    seeded = seed_node(kube)
    for name in ("etl-1", "etl-2"):
        kube.patch("v1/pods", seeded.batch, name, {"metadata": {"labels": {"owner": "etl"}}})
    _budget(kube, seeded, min_available)
    return seeded


async def test_eviction_honours_the_disruption_budget_soft_then_hard(
    kube: Kube, start_operator: StartOperator
) -> None:
    """A budget that allows one disruption: the first etl pod is evicted, the eviction
    handler refuses the second with 429, the decision fails. Once the evicted pod is gone,
    the next report leaves the refused pod alone and takes the next candidate."""
    seeded = _budgeted(kube, min_available=1)
    await _budget_settled(kube, seeded, allowed=1)
    seeded.priorities()  # default actions: Evict under Soft
    await start_operator()
    seeded.reported(500 * Mi)
    first = await kube.wait_for(lambda: [
        d for d in seeded.decisions() if d["status"]["phase"] == "Failed"])
    outcomes = {v["name"]: v for v in first[0]["status"]["victims"]}
    assert outcomes["etl-1"]["outcome"] == "Evicted"
    assert outcomes["etl-2"]["outcome"] == "Refused"
    assert "disruption budget" in outcomes["etl-2"]["message"]
    refusal = [c for c in kube.calls(kube.operator)
               if c.rbac[2:] == ("pods", "eviction") and c.name == "etl-2"]
    assert [c.code for c in refusal] == [429]  # the real eviction handler's answer
    etl_1 = kube.read("v1/pods", seeded.batch, "etl-1")
    assert etl_1 is not None and etl_1["metadata"].get("deletionTimestamp")  # graceful
    # Its kubelet finishes the pod; the agent's next report no longer has it.
    kube.remove("v1/pods", seeded.batch, "etl-1")
    seeded.reported(500 * Mi, usage={k: v for k, v in seeded.usage.items()
                                     if k != seeded.uids["etl-1"]})
    second = await kube.wait_for(lambda: [
        d for d in seeded.decisions() if d["spec"]["victims"][0]["name"] == f"{seeded.shop}/web-0"
        and d["status"]["phase"] == "Completed"], timeout=20)
    assert second[0]["status"]["victims"][0]["outcome"] == "Evicted"
    web = kube.read("v1/pods", seeded.shop, "web-0")
    assert web is not None and web["metadata"].get("deletionTimestamp")


async def test_a_budget_that_allows_no_disruption_passes_its_pods_over_when_evicting(
    kube: Kube, start_operator: StartOperator
) -> None:
    """The disruption controller's status says no etl pod may go: under Soft (Evict) the
    operator takes the next candidates at once, with no eviction refused on the way."""
    seeded = _budgeted(kube, min_available=2)
    await _budget_settled(kube, seeded, allowed=0)
    seeded.priorities()  # default actions: Evict under Soft
    await start_operator()
    seeded.reported(500 * Mi)
    [decision] = await kube.wait_for(lambda: [
        d for d in seeded.decisions() if d["status"]["phase"] == "Completed"])
    # The need (1.4Gi) takes the next two; the etl Job (900Mi, priority -100) is passed over.
    assert [v["name"] for v in decision["spec"]["victims"]] == [
        f"{seeded.shop}/web-0", f"{seeded.shop}/db-0"]
    assert len(seeded.decisions()) == 1
    assert evictions(kube) == ["web-0", "db-0"]


async def test_hard_pressure_escalates_a_refused_eviction_to_a_kill(
    kube: Kube, start_operator: StartOperator
) -> None:
    seeded = _budgeted(kube, min_available=1)
    await _budget_settled(kube, seeded, allowed=1)
    seeded.priorities(actions={"hard": "Evict"})
    await start_operator()
    seeded.reported(100 * Mi)  # Hard: below 5%
    kill = await kube.wait_for(lambda: [
        d for d in seeded.decisions() if d["spec"]["action"] == "Kill"])
    assert kill[0]["spec"]["victims"][0]["name"] == f"{seeded.batch}/Job/etl"
    assert kill[0]["status"]["phase"] == "Pending"
    assert [c["type"] for c in kill[0]["status"]["conditions"]] == ["Escalated"]


async def test_statuses_tell_tenants_and_admins_what_applies(
    kube: Kube, start_operator: StartOperator
) -> None:
    node = kube.node("node-a", labels={"pool": "general"})
    sandbox = kube.namespace("sandbox", labels={"tier": "bronze"})
    policy = kube.name("cluster")
    kube.create(f"{OURS}/oompolicies", custom("OOMPolicy", policy, {
        "tenants": [{"namespaceSelector": {"matchLabels": {"tier": "bronze"}},
                     "maxPriority": 100}]}))
    kube.pod("nb", sandbox, node)
    kube.create(f"{OURS}/oompriorities", custom("OOMPriority", "greedy", {"priority": 900},
                                                 sandbox))
    kube.create(f"{OURS}/oompriorities", custom("OOMPriority", "also", {"priority": 5},
                                                 sandbox))
    await start_operator()

    def status(plural: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        obj = kube.read(f"{OURS}/{plural}", namespace, name)
        return obj.get("status") if obj and obj.get("status", {}).get("conditions") else None

    def settled(plural: str, name: str, namespace: str | None = None,
                **expected: Any) -> dict[str, Any] | None:
        """The status once the operator's indices caught up (statuses are refreshed)."""
        found = status(plural, name, namespace)
        return found if found and expected.items() <= found.items() else None

    greedy = await kube.wait_for(lambda: settled("oompriorities", "greedy", sandbox,
                                                 overlaps=["also"]))
    assert greedy["effectivePriority"] == 100
    assert greedy["overlaps"] == ["also"]
    conditions = {c["type"]: c for c in greedy["conditions"]}
    assert conditions["Clamped"]["status"] == "True"
    assert "900 is above the tenant's maximum" in conditions["Clamped"]["message"]
    assert conditions["Overlapping"]["status"] == "True"
    assert all(c["observedGeneration"] == 1 for c in greedy["conditions"])
    await kube.wait_for(lambda: settled("oompriorities", "also", sandbox,
                                        overlaps=["greedy"], matchedPods=1))
    assert greedy["matchedPods"] == 0  # "also" wins: as specific, first by name
    await kube.wait_for(lambda: settled("oompolicies", policy, nodes=[node]))


@pytest.mark.parametrize("options", [Options(status_interval=0.2, keep_per_node=1)])
async def test_finished_decisions_beyond_retention_are_deleted(
    kube: Kube, start_operator: StartOperator
) -> None:
    """keep_per_node=1 here: a second finished decision on the node removes the first."""
    seeded = seed_node(kube)
    seeded.priorities(mode="DryRun", cooldownSeconds=0)
    await start_operator()
    seeded.reported(500 * Mi)
    [first] = await kube.wait_for(seeded.decisions)
    kube.patch_status(REPORTS, None, seeded.node, {"observedTime": now()})
    await kube.wait_for(lambda: [d for d in seeded.decisions()
                                 if d["metadata"]["name"] != first["metadata"]["name"]])
    await kube.wait_for(lambda: kube.read(DECISIONS, None, first["metadata"]["name"]) is None)
    assert len(seeded.decisions()) == 1


async def test_what_users_see_with_kubectl(kube: Kube, start_operator: StartOperator,
                                           tmp_path: Path) -> None:
    """`kubectl get oomdecisions` shows when, node, victim, action and outcome at a glance;
    `describe` and `get events` tell the rest; `explain` reads the CRDs' descriptions.
    Printed for docs/kubectl.md."""
    seeded = seed_node(kube)
    seeded.priorities(mode="DryRun")
    await start_operator()
    seeded.reported(500 * Mi)
    [decision] = await kube.wait_for(seeded.decisions)
    name = decision["metadata"]["name"]
    await kube.wait_for(lambda: len([e for e in seeded.events()
                                     if e["reason"] == "OOMGuardVictim"]) == 2)
    kubectl = Kubectl(kube.kubeconfig(tmp_path / "kubeconfig"), tmp_path)
    listed = (await kubectl("get", "oomdecisions", "-l",
                            f"oomguard.io/node={seeded.node}")).stdout
    header, row = listed.splitlines()[:2]
    assert header.split() == ["NAME", "NODE", "PRESSURE", "ACTION", "VICTIM", "OUTCOME",
                              "RECLAIMED", "AGE"]
    assert row.split()[:6] == [name, seeded.node, "Soft", "Evict", f"{seeded.batch}/Job/etl",
                               "DryRun"]
    everything = (await kubectl("get", "oomguard", "-A")).stdout  # the category: all four
    for kind in ("oompolicy", "oompriority", "nodememoryreport", "oomdecision"):
        assert f"{kind}.oomguard.io/" in everything
    described = (await kubectl("describe", "oomdecision", name)).stdout
    assert "Victims:" in described and f"{seeded.batch}/Job/etl" in described
    node_described = (await kubectl("describe", "node", seeded.node)).stdout
    assert "OOMGuardDecision" in node_described  # the node's Events, in default
    events = (await kubectl("get", "events", "-n", seeded.batch)).stdout
    assert "OOMGuardVictim" in events and "pod/etl-1" in events
    explained = (await kubectl("explain", "oompriority.spec")).stdout
    assert "Priority and grouping." in explained
    assert "priority\t<integer>" in explained and "Higher is more important" in explained
    print(f"$ kubectl get oomdecisions\n{listed}\n$ kubectl describe oomdecision {name}\n"
          f"{described}\n$ kubectl get events -n batch\n{events}\n"
          f"$ kubectl explain oompriority.spec\n{explained}")


async def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(), err.decode()


async def test_who_is_next_live_with_rank_and_the_kubectl_plugin(
    kube: Kube, start_operator: StartOperator, tmp_path: Path
) -> None:
    """`oomguard rank --node` and `kubectl oomguard rank NODE` read the cluster and rank
    as offline: the same engine, the same output."""
    seeded = seed_node(kube)
    seeded.priorities(mode="DryRun")
    await start_operator()
    seeded.reported(6 * Gi)  # no pressure: a ranking, no victims
    config = kube.kubeconfig(tmp_path / "kubeconfig")
    code, out, err = await _run(sys.executable, "-m", "oomguard", "rank", "--node",
                                seeded.node, "--kubeconfig", str(config), "-o", "json")
    assert code == 0, err
    ranked = json.loads(out)
    assert (ranked["pressure"], ranked["victims"]) == ("None", [])
    assert [r["group"] for r in ranked["ranking"]] == [
        f"{seeded.batch}/Job/etl", f"{seeded.shop}/web-0", f"{seeded.shop}/db-0"]
    assert ranked["ranking"][0]["podsOnOtherNodes"] == [f"{seeded.batch}/etl-2"]
    kubectl = Kubectl(config, tmp_path)
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "HOME": str(tmp_path), "KUBECONFIG": str(config)}
    code, out, err = await _run(str(kubectl.binary), "oomguard", "rank", seeded.node, env=env)
    assert code == 0, err
    assert out.splitlines()[0].startswith(
        f"node {seeded.node}  policy {kube.name('cluster')} (DryRun)  pressure None")
    assert f"{seeded.batch}/Job/etl" in out.splitlines()[3]


def _peering(kube: Kube, name: str) -> dict[str, Any]:
    return (kube.read("kopf.dev/v1/clusterkopfpeerings", None, name) or {}).get("status") or {}


async def test_two_replicas_with_peering_only_the_active_one_decides(kube: Kube) -> None:
    """kopf peering: the replica with the higher priority acts, the other stands by. Both
    use tokens of the chart's operator ServiceAccount, told apart in the audit log."""
    peering = PEERING
    seeded = seed_node(kube)
    seeded.priorities(actions={"soft": "Kill"})
    active, standby = kube.operator, kube.identity("oomguard-operator", name="standby")

    def replica(who: Any, priority: int) -> Any:
        registry = kopf.OperatorRegistry()
        register(registry, Decider(Cluster(kube.api_client(who))))
        settings = kopf.OperatorSettings()
        settings.peering.priority = priority
        return running_operator(kube, registry, who=who, settings=settings, peering=peering)

    async with replica(active, 100):
        await kube.wait_for(lambda: _peering(kube, peering))
        async with replica(standby, 50):
            await kube.wait_for(lambda: len(_peering(kube, peering)) == 2)
            seeded.reported(500 * Mi)
            await kube.wait_for(seeded.decisions)
    creators = {c.credential for c in kube.calls()
                if c.rbac == ("create", GROUP, "oomdecisions", "")}
    assert creators == {active.credential}
    assert len(seeded.decisions()) == 1
    assert kube.used_permissions(standby) <= OPERATOR


async def _get(url: str) -> tuple[int, str]:
    def fetch() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status, response.read().decode()
        except OSError:
            return 0, ""
    return await asyncio.to_thread(fetch)


def _as_operator(kube: Kube, tmp_path: Path, name: str = "operator") -> dict[str, str]:
    """The environment of an `oomguard operator` process: a kubeconfig with a token of the
    chart's operator ServiceAccount, as its pod has it."""
    who = kube.identity("oomguard-operator", name=name)
    config = kube.kubeconfig(tmp_path / f"{name}.kubeconfig", who)
    return {**os.environ, "KUBECONFIG": str(config)}


async def test_operator_command_serves_metrics_and_liveness(kube: Kube,
                                                            tmp_path: Path) -> None:
    """`oomguard operator` as the chart runs it, as a process: /healthz answers once kopf
    runs, and /metrics counts the decision it makes."""
    seeded = seed_node(kube)  # what the cluster holds before the operator starts
    seeded.priorities(actions={"soft": "Kill"})
    metrics, liveness = free_port(), free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "oomguard", "operator",
        "--metrics-port", str(metrics), "--liveness", f"http://127.0.0.1:{liveness}/healthz",
        env=_as_operator(kube, tmp_path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        async with asyncio.timeout(30):
            while (await _get(f"http://127.0.0.1:{liveness}/healthz"))[0] != 200:
                await asyncio.sleep(0.05)  # polling a port that is not open yet
        seeded.reported(500 * Mi)
        await kube.wait_for(seeded.decisions, timeout=30)
        # The operator counts a decision once the API has answered its create: a moment
        # after the server holds it.
        counted = 'oomguard_decisions_total{action="Kill",mode="Enforce"} 1.0'
        async with asyncio.timeout(10):
            while counted not in (text := (await _get(
                    f"http://127.0.0.1:{metrics}/metrics"))[1]):
                await asyncio.sleep(0.05)  # polling another process's endpoint
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)
    assert 'oomguard_nodes_under_pressure{pressure="Soft"} 1.0' in text
    assert "oomguard_decision_latency_seconds_count 1.0" in text


async def test_replicas_of_one_deployment_elect_one_active_peer(kube: Kube,
                                                                tmp_path: Path) -> None:
    """Two `oomguard operator --peering` processes with the same arguments, as a
    Deployment's replicas run: their default priorities differ (kopf pauses every peer
    when two share the highest), so exactly one decides."""
    peering = PEERING
    seeded = seed_node(kube)  # what the cluster holds before the replicas start
    seeded.priorities(actions={"soft": "Kill"})
    probes = [f"http://127.0.0.1:{free_port()}/healthz" for _ in range(2)]
    logs = [tmp_path / f"replica-{i}.log" for i in range(2)]
    replicas = []
    for i, (probe, log) in enumerate(zip(probes, logs, strict=True)):
        with log.open("w") as stderr:
            replicas.append(await asyncio.create_subprocess_exec(
                sys.executable, "-m", "oomguard", "operator", "--peering", peering,
                "--liveness", probe, env=_as_operator(kube, tmp_path, f"replica-{i}"),
                stdout=asyncio.subprocess.DEVNULL, stderr=stderr))
    try:
        async with asyncio.timeout(30):
            for probe in probes:
                while (await _get(probe))[0] != 200:
                    await asyncio.sleep(0.05)  # polling a port that is not open yet
        peers = await kube.wait_for(lambda: len(_peering(kube, peering)) == 2
                                    and _peering(kube, peering), timeout=30)
        assert len({p["priority"] for p in peers.values()}) == 2
        # Both are registered. Until the lower one has seen the other and paused, both may
        # handle the report: the decision is named by the report, so one create wins.
        seeded.reported(500 * Mi)
        await kube.wait_for(seeded.decisions, timeout=30)
        assert all(replica.returncode is None for replica in replicas)
    finally:
        for replica in replicas:
            replica.terminate()
        for replica in replicas:
            await asyncio.wait_for(replica.wait(), 30)
    assert len(seeded.decisions()) == 1
