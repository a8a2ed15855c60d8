"""The real kopf operator against the API emulator over HTTP, with the real `kubernetes`
client: a pressured report becomes a recorded decision, evictions honour disruption
budgets, and Events tell the story."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kopf
import pytest
from kubernetes import client

from oomguard.api import GROUP, VERSION
from oomguard.controller import Decider, Options, register
from oomguard.kube import Cluster
from oomguard.permissions import OPERATOR

from support import OPERATOR_TOKEN, ClusterEmulator, Kubectl, running_operator

Mi = 2**20
Gi = 2**30
NODE = "node-a"
DECISIONS = f"{GROUP}/{VERSION}/oomdecisions"


def pod(name: str, namespace: str, uid: str, *, node: str = NODE,
        labels: dict[str, str] | None = None, owner: tuple[str, str] | None = None,
        request: str = "100Mi") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": uid,
                            "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": owner[0],
                                    "name": owner[1], "uid": f"uid-{owner[1]}",
                                    "controller": True}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"nodeName": node, "containers": [{
                "name": "main", "image": "app", "resources": {"requests": {"memory": request}}}]},
            "status": {"phase": "Running"}}


def report(available: int, usage: dict[str, int], capacity: int = 8 * Gi) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "NodeMemoryReport",
            "metadata": {"name": NODE},
            "status": {"node": {"capacityBytes": capacity, "availableBytes": available},
                       "pods": [{"uid": u, "usage": {"anonBytes": b}} for u, b in usage.items()],
                       "observedTime": "2026-11-26T06:00:00Z", "agentVersion": "test"}}


def custom(kind: str, name: str, spec: dict[str, Any],
           namespace: str | None = None) -> dict[str, Any]:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": meta, "spec": spec}


class Api:
    """The test's own `kubernetes` client, called off the loop that serves the emulator."""

    def __init__(self, emulator: ClusterEmulator) -> None:
        api = emulator.api_client(token="test")
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.policy = client.PolicyV1Api(api)

    async def create(self, body: dict[str, Any]) -> None:
        kind, meta = body["kind"], body["metadata"]
        plural = {"OOMPolicy": "oompolicies", "OOMPriority": "oompriorities",
                  "NodeMemoryReport": "nodememoryreports"}[kind]
        status = body.pop("status", None)
        if "namespace" in meta:
            await asyncio.to_thread(self.custom.create_namespaced_custom_object, GROUP, VERSION,
                                    meta["namespace"], plural, body)
        else:
            await asyncio.to_thread(self.custom.create_cluster_custom_object, GROUP, VERSION,
                                    plural, body)
        if status:
            await asyncio.to_thread(self.custom.patch_cluster_custom_object_status, GROUP,
                                    VERSION, plural, meta["name"], {"status": status})


@pytest.fixture
def options() -> Options:
    """Statuses refreshed fast, so that tests await them in well under a second."""
    return Options(status_interval=0.2)


@pytest.fixture
async def operator(emulator: ClusterEmulator, options: Options) -> AsyncIterator[Api]:
    registry = kopf.OperatorRegistry()
    register(registry, Decider(Cluster(emulator.api_client(token=OPERATOR_TOKEN))), options)
    async with running_operator(emulator.server_url, registry, token=OPERATOR_TOKEN):
        yield Api(emulator)


def seed_node(emulator: ClusterEmulator) -> None:
    """A node with a two-pod batch Job, an important database and a web pod."""
    for name in ("batch", "shop"):
        emulator.store("v1/namespaces", {"metadata": {"name": name}})
    emulator.store("v1/pods", pod("etl-1", "batch", "u-etl-1", owner=("Job", "etl")))
    emulator.store("v1/pods", pod("etl-2", "batch", "u-etl-2", owner=("Job", "etl"),
                                  node="node-b"))
    emulator.store("v1/pods", pod("db-0", "shop", "u-db", labels={"app": "db"}, request="2Gi"))
    emulator.store("v1/pods", pod("web-0", "shop", "u-web", labels={"app": "web"}))


USAGE = {"u-etl-1": 900 * Mi, "u-db": 3 * Gi, "u-web": 300 * Mi}


async def priorities(api: Api, **policy_spec: Any) -> None:
    await api.create(custom("OOMPolicy", "cluster", policy_spec))
    await api.create(custom("OOMPriority", "etl", {
        "priority": -100, "group": {"by": "Workload"}}, "batch"))
    await api.create(custom("OOMPriority", "db", {
        "priority": 900, "podSelector": {"matchLabels": {"app": "db"}}}, "shop"))


def decisions(emulator: ClusterEmulator) -> list[dict[str, Any]]:
    """Decisions with their first status written (create, then status, as the API does)."""
    return sorted((d for d in emulator.read_all(DECISIONS) if "status" in d),
                  key=lambda d: d["metadata"]["name"])


async def test_pressured_report_becomes_a_decision_with_events(
    emulator: ClusterEmulator, operator: Api
) -> None:
    seed_node(emulator)
    await priorities(operator, actions={"soft": "Kill"})
    await operator.create(report(500 * Mi, USAGE))  # Soft: below 10% of 8Gi
    [decision] = await emulator.wait_for(lambda: decisions(emulator) or None)
    spec = decision["spec"]
    assert decision["metadata"]["labels"] == {"oomguard.io/node": NODE}
    assert (spec["decidedBy"], spec["action"], spec["trigger"]["pressure"]) == (
        "operator", "Kill", "Soft")
    assert [v["name"] for v in spec["victims"]] == ["batch/Job/etl"]
    assert {(p["name"], p["nodeName"]) for p in spec["victims"][0]["pods"]} == {
        ("etl-1", NODE), ("etl-2", "node-b")}
    assert decision["status"]["phase"] == "Pending"  # the agent's to execute
    events = await emulator.wait_for(lambda: [
        e for e in emulator.read_all("v1/events") if e["reason"].startswith("OOMGuard")
    ] if len(emulator.read_all("v1/events")) >= 3 else None)
    by_object = {(e["involvedObject"]["kind"], e["involvedObject"]["name"]): e for e in events}
    assert set(by_object) == {("Node", NODE), ("Pod", "etl-1"), ("Pod", "etl-2")}
    assert "priority -100" in by_object["Pod", "etl-1"]["message"]
    assert decision["metadata"]["name"] in by_object["Node", NODE]["message"]


async def test_dry_run_records_and_acts_on_nothing(emulator: ClusterEmulator,
                                                   operator: Api) -> None:
    seed_node(emulator)
    await priorities(operator, mode="DryRun")
    await operator.create(report(500 * Mi, USAGE))
    [decision] = await emulator.wait_for(lambda: decisions(emulator) or None)
    assert (decision["spec"]["mode"], decision["status"]["phase"]) == ("DryRun", "DryRun")
    assert not [c for c in emulator.calls if c.rbac[2:] == ("pods", "eviction")]


async def test_eviction_honours_the_disruption_budget_soft_then_hard(
    emulator: ClusterEmulator, operator: Api
) -> None:
    """Soft: the budget's 429 fails the decision and the next report takes the next
    candidate. Hard: the refusal escalates to a Kill decision for the same group."""
    seed_node(emulator)
    emulator.store("policy/v1/poddisruptionbudgets", {
        "metadata": {"name": "etl", "namespace": "batch"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {}}}})
    await priorities(operator)  # default actions: Evict under Soft
    await operator.create(report(500 * Mi, USAGE))
    first = await emulator.wait_for(lambda: [
        d for d in decisions(emulator) if d.get("status", {}).get("phase") == "Failed"] or None)
    assert {v["outcome"] for v in first[0]["status"]["victims"]} == {"Refused"}
    assert "disruption budget" in first[0]["status"]["victims"][0]["message"]
    # The next report: the etl Job is left alone, the next candidate (web) is evicted.
    await asyncio.to_thread(operator.custom.patch_cluster_custom_object_status, GROUP,
                            VERSION, "nodememoryreports", NODE, {"status": {
                                "observedTime": "2026-11-26T06:00:01Z"}})
    second = await emulator.wait_for(lambda: [
        d for d in decisions(emulator) if d["spec"]["victims"][0]["name"] == "shop/web-0"
        and d.get("status", {}).get("phase") == "Completed"] or None)
    assert second[0]["status"]["victims"][0]["outcome"] == "Evicted"
    web = emulator.read("v1/pods", "shop", "web-0")
    assert web is None or web["metadata"].get("deletionTimestamp")


async def test_a_budget_that_allows_no_disruption_passes_its_pods_over_when_evicting(
    emulator: ClusterEmulator, operator: Api
) -> None:
    """The disruption controller's status says no etl pod may go: under Soft (Evict) the
    operator takes the next candidate at once, with no eviction refused on the way."""
    seed_node(emulator)
    emulator.store("policy/v1/poddisruptionbudgets", {
        "metadata": {"name": "etl", "namespace": "batch"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {}}},
        "status": {"disruptionsAllowed": 0, "currentHealthy": 2, "desiredHealthy": 2,
                   "expectedPods": 2, "observedGeneration": 1}})
    await priorities(operator)  # default actions: Evict under Soft
    await operator.create(report(500 * Mi, USAGE))
    [decision] = await emulator.wait_for(lambda: [
        d for d in decisions(emulator) if d["status"]["phase"] == "Completed"] or None)
    # The need (1.4Gi) takes the next two; the etl Job (900Mi, priority -100) is passed over.
    assert [v["name"] for v in decision["spec"]["victims"]] == ["shop/web-0", "shop/db-0"]
    assert len(emulator.read_all(DECISIONS)) == 1
    evicted = {c.name for c in emulator.calls if c.rbac[2:] == ("pods", "eviction")}
    assert evicted == {"web-0", "db-0"}


async def test_hard_pressure_escalates_a_refused_eviction_to_a_kill(
    emulator: ClusterEmulator, operator: Api
) -> None:
    seed_node(emulator)
    emulator.store("policy/v1/poddisruptionbudgets", {
        "metadata": {"name": "etl", "namespace": "batch"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {}}}})
    await priorities(operator, actions={"hard": "Evict"})
    await operator.create(report(100 * Mi, USAGE))  # Hard: below 5%
    kill = await emulator.wait_for(lambda: [
        d for d in decisions(emulator) if d["spec"]["action"] == "Kill"] or None)
    assert kill[0]["spec"]["victims"][0]["name"] == "batch/Job/etl"
    assert kill[0]["status"]["phase"] == "Pending"
    assert [c["type"] for c in kill[0]["status"]["conditions"]] == ["Escalated"]


async def test_statuses_tell_tenants_and_admins_what_applies(
    emulator: ClusterEmulator, operator: Api
) -> None:
    seed_node(emulator)
    emulator.store("v1/namespaces", {"metadata": {"name": "sandbox",
                                                  "labels": {"tier": "bronze"}}})
    emulator.store("v1/nodes", {"metadata": {"name": NODE, "labels": {"pool": "general"}}})
    await operator.create(custom("OOMPolicy", "cluster", {"tenants": [
        {"namespaceSelector": {"matchLabels": {"tier": "bronze"}}, "maxPriority": 100}]}))
    emulator.store("v1/pods", pod("nb", "sandbox", "u-nb"))
    await operator.create(custom("OOMPriority", "greedy", {"priority": 900}, "sandbox"))
    await operator.create(custom("OOMPriority", "also", {"priority": 5}, "sandbox"))

    def status(plural: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        obj = emulator.read(f"{GROUP}/{VERSION}/{plural}", namespace, name)
        return obj.get("status") if obj and obj.get("status", {}).get("conditions") else None

    def settled(plural: str, name: str, namespace: str | None = None,
                **expected: Any) -> dict[str, Any] | None:
        """The status once the operator's indices caught up (statuses are refreshed)."""
        found = status(plural, name, namespace)
        return found if found and expected.items() <= found.items() else None

    greedy = await emulator.wait_for(lambda: settled("oompriorities", "greedy", "sandbox",
                                                     overlaps=["also"]))
    assert greedy["effectivePriority"] == 100
    assert greedy["overlaps"] == ["also"]
    conditions = {c["type"]: c for c in greedy["conditions"]}
    assert conditions["Clamped"]["status"] == "True"
    assert "900 is above the tenant's maximum" in conditions["Clamped"]["message"]
    assert conditions["Overlapping"]["status"] == "True"
    assert all(c["observedGeneration"] == 1 for c in greedy["conditions"])
    await emulator.wait_for(lambda: settled("oompriorities", "also", "sandbox",
                                            overlaps=["greedy"], matchedPods=1))
    assert greedy["matchedPods"] == 0  # "also" wins: as specific, first by name
    await emulator.wait_for(lambda: settled("oompolicies", "cluster", nodes=[NODE]))


@pytest.mark.parametrize("options", [Options(status_interval=0.2, keep_per_node=1)])
async def test_finished_decisions_beyond_retention_are_deleted(
    emulator: ClusterEmulator, operator: Api
) -> None:
    """keep_per_node=1 here: a second finished decision on the node removes the first."""
    seed_node(emulator)
    await priorities(operator, mode="DryRun", cooldownSeconds=0)
    await operator.create(report(500 * Mi, USAGE))
    [first] = await emulator.wait_for(lambda: decisions(emulator) or None)
    await asyncio.to_thread(operator.custom.patch_cluster_custom_object_status, GROUP,
                            VERSION, "nodememoryreports", NODE, {"status": {
                                "observedTime": "2026-11-26T06:00:05Z"}})
    await emulator.wait_for(lambda: [d for d in decisions(emulator)
                                     if d["metadata"]["name"] != first["metadata"]["name"]])
    await emulator.wait_for(lambda: emulator.read(
        DECISIONS, None, first["metadata"]["name"]) is None)
    assert len(decisions(emulator)) == 1


async def test_what_users_see_with_kubectl(emulator: ClusterEmulator, operator: Api,
                                           tmp_path: Path) -> None:
    """`kubectl get oomdecisions` shows when, node, victim, action and outcome at a glance;
    `describe` and `get events` tell the rest. Printed for docs/kubectl.md."""
    seed_node(emulator)
    await priorities(operator, mode="DryRun")
    await operator.create(report(500 * Mi, USAGE))
    [decision] = await emulator.wait_for(lambda: decisions(emulator) or None)
    name = decision["metadata"]["name"]
    await emulator.wait_for(lambda: len([e for e in emulator.read_all("v1/events")
                                         if e["reason"] == "OOMGuardVictim"]) == 2 or None)
    kubectl = Kubectl(emulator.server_url, tmp_path)
    listed = (await kubectl("get", "oomdecisions")).stdout
    header, row = listed.splitlines()[:2]
    assert header.split() == ["NAME", "NODE", "PRESSURE", "ACTION", "VICTIM", "OUTCOME",
                              "RECLAIMED", "AGE"]
    assert row.split()[:6] == [name, NODE, "Soft", "Evict", "batch/Job/etl", "DryRun"]
    everything = (await kubectl("get", "oomguard", "-A")).stdout  # the category: all four
    for kind in ("oompolicy", "oompriority", "nodememoryreport", "oomdecision"):
        assert f"{kind}.oomguard.io/" in everything
    described = (await kubectl("describe", "oomdecision", name)).stdout
    assert "Victims:" in described and "batch/Job/etl" in described
    events = (await kubectl("get", "events", "-n", "batch")).stdout
    assert "OOMGuardVictim" in events and "pod/etl-1" in events
    print(f"$ kubectl get oomdecisions\n{listed}\n$ kubectl describe oomdecision {name}\n"
          f"{described}\n$ kubectl get events -n batch\n{events}")


async def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(), err.decode()


async def test_who_is_next_live_with_rank_and_the_kubectl_plugin(
    emulator: ClusterEmulator, operator: Api, tmp_path: Path
) -> None:
    """`oomguard rank --node` and `kubectl oomguard rank NODE` read the cluster and rank
    as offline: the same engine, the same output."""
    seed_node(emulator)
    await priorities(operator, mode="DryRun")
    await operator.create(report(6 * Gi, USAGE))  # no pressure: a ranking, no victims
    code, out, err = await _run(sys.executable, "-m", "oomguard", "rank", "--node", NODE,
                                "--server", emulator.server_url, "-o", "json")
    assert code == 0, err
    ranked = json.loads(out)
    assert (ranked["pressure"], ranked["victims"]) == ("None", [])
    assert [r["group"] for r in ranked["ranking"]] == ["batch/Job/etl", "shop/web-0",
                                                       "shop/db-0"]
    assert ranked["ranking"][0]["podsOnOtherNodes"] == ["batch/etl-2"]
    kubectl = Kubectl(emulator.server_url, tmp_path)
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "HOME": str(tmp_path), "KUBECONFIG": str(kubectl.kubeconfig)}
    code, out, err = await _run(str(kubectl.binary), "oomguard", "rank", NODE, env=env)
    assert code == 0, err
    assert out.splitlines()[0].startswith(f"node {NODE}  policy cluster (DryRun)  pressure None")
    assert "batch/Job/etl" in out.splitlines()[3]


async def test_two_replicas_with_peering_only_the_active_one_decides(
    emulator: ClusterEmulator
) -> None:
    """kopf peering: the replica with the higher priority acts, the other stands by."""
    emulator.store("kopf.dev/v1/clusterkopfpeerings", {"metadata": {"name": "oomguard"}})
    seed_node(emulator)
    standby_token = "oomguard-operator-standby"

    def replica(token: str, priority: int) -> Any:
        registry = kopf.OperatorRegistry()
        register(registry, Decider(Cluster(emulator.api_client(token=token))))
        settings = kopf.OperatorSettings()
        settings.peering.priority = priority
        return running_operator(emulator.server_url, registry, token=token, settings=settings,
                                peering="oomguard")

    async with replica(OPERATOR_TOKEN, 100):
        await emulator.wait_for(lambda: (emulator.read(
            "kopf.dev/v1/clusterkopfpeerings", None, "oomguard") or {}).get("status"))
        async with replica(standby_token, 50):
            api = Api(emulator)
            await priorities(api, actions={"soft": "Kill"})
            await api.create(report(500 * Mi, USAGE))
            await emulator.wait_for(lambda: decisions(emulator) or None)
    creators = {c.token for c in emulator.calls
                if c.rbac == ("create", GROUP, "oomdecisions", "")}
    assert creators == {OPERATOR_TOKEN}
    assert len(emulator.read_all(DECISIONS)) == 1
    assert emulator.used_permissions(token=standby_token) <= OPERATOR


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _get(url: str) -> tuple[int, str]:
    def fetch() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status, response.read().decode()
        except OSError:
            return 0, ""
    return await asyncio.to_thread(fetch)


async def test_operator_command_serves_metrics_and_liveness(emulator: ClusterEmulator,
                                                            tmp_path: Path) -> None:
    """`oomguard operator` as the chart runs it, as a process: /healthz answers once kopf
    runs, and /metrics counts the decision it makes."""
    metrics, liveness = _free_port(), _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "oomguard", "operator", "--server", emulator.server_url,
        "--metrics-port", str(metrics), "--liveness", f"http://127.0.0.1:{liveness}/healthz",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        async with asyncio.timeout(30):
            while (await _get(f"http://127.0.0.1:{liveness}/healthz"))[0] != 200:
                await asyncio.sleep(0.05)  # polling a port that is not open yet
        seed_node(emulator)
        api = Api(emulator)
        await priorities(api, actions={"soft": "Kill"})
        await api.create(report(500 * Mi, USAGE))
        await emulator.wait_for(lambda: decisions(emulator) or None, timeout=30)
        # The operator counts a decision once the API has answered its create: a moment
        # after the emulator holds it.
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


async def test_replicas_of_one_deployment_elect_one_active_peer(
    emulator: ClusterEmulator
) -> None:
    """Two `oomguard operator --peering` processes with the same arguments, as a
    Deployment's replicas run: their default priorities differ (kopf pauses every peer
    when two share the highest), so exactly one decides."""
    emulator.store("kopf.dev/v1/clusterkopfpeerings", {"metadata": {"name": "oomguard"}})
    probes = [f"http://127.0.0.1:{_free_port()}/healthz" for _ in range(2)]
    replicas = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "oomguard", "operator", "--server", emulator.server_url,
        "--peering", "oomguard", "--liveness", probe,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        for probe in probes]
    try:
        async with asyncio.timeout(30):
            for probe in probes:
                while (await _get(probe))[0] != 200:
                    await asyncio.sleep(0.05)  # polling a port that is not open yet
        peers = await emulator.wait_for(lambda: (emulator.read(
            "kopf.dev/v1/clusterkopfpeerings", None, "oomguard") or {}).get("status")
            if len((emulator.read("kopf.dev/v1/clusterkopfpeerings", None, "oomguard")
                    or {}).get("status") or {}) == 2 else None, timeout=30)
        assert len({p["priority"] for p in peers.values()}) == 2
        seed_node(emulator)
        api = Api(emulator)
        await priorities(api, actions={"soft": "Kill"})
        await api.create(report(500 * Mi, USAGE))
        await emulator.wait_for(lambda: decisions(emulator) or None, timeout=30)
        assert all(replica.returncode is None for replica in replicas)
    finally:
        for replica in replicas:
            replica.terminate()
        for replica in replicas:
            await asyncio.wait_for(replica.wait(), 30)
    assert len(emulator.read_all(DECISIONS)) == 1
