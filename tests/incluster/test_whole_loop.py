"""The whole loop on the real API server and a real cgroup v1 node: the agent reports
pressure, the real kopf operator decides, the agent kills the whole right group and records
the outcome, and Events tell the story. Operator and agent authenticate with the chart's
ServiceAccounts."""

from __future__ import annotations

import signal
from datetime import UTC, datetime
from typing import Any

import kopf
from agent_harness import (
    REPORTS,
    Cluster,
    config,
    pod_on,
    running_agent,
    seed_node,
)

from oomguard import kube as oomguard_kube
from oomguard.api import GROUP, VERSION
from oomguard.controller import Decider, register
from oomguard.sandbox import SandboxNode, SandboxPod

from support import Kube, running_operator

POLICY_SPEC = {"thresholds": {"memoryAvailable": {"soft": "60%", "hard": "30%"}},
               "reclaimTo": "65%"}


def _priority(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "OOMPriority",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def seed_etl_and_db(kube: Kube, node: SandboxNode, actions: str = "Kill"
                    ) -> tuple[Cluster, list[SandboxPod], SandboxPod]:
    """A two-pod batch Job, grouped by workload at priority -100, and a database, on the
    node; the policy's actions are `actions`."""
    cluster = seed_node(kube, policy={**POLICY_SPEC,
                                      "actions": {"soft": actions, "hard": actions}})
    batch, shop = kube.namespace("batch"), kube.namespace("shop")
    job = kube.job(batch, "etl")
    etl = [pod_on(cluster, node, f"etl-{i}", batch, owner=job) for i in range(2)]
    db = pod_on(cluster, node, "db-0", shop, labels={"app": "db"})
    kube.create(f"{GROUP}/{VERSION}/oompriorities",
                _priority(batch, "etl", priority=-100, group={"by": "Workload"}))
    return cluster, etl, db


def _finished(cluster: Cluster) -> list[dict[str, Any]] | None:
    done = [d for d in cluster.decisions()
            if d.get("status", {}).get("phase") in ("Completed", "Failed")]
    return done or None


def _operator(kube: Kube) -> Any:
    registry = kopf.OperatorRegistry()
    register(registry, Decider(oomguard_kube.Cluster(kube.api_client(kube.operator))))
    return running_operator(kube, registry)


async def test_report_decide_kill_record(kube: Kube, node: SandboxNode) -> None:
    cluster, etl, db = seed_etl_and_db(kube, node)
    kube.create(f"{GROUP}/{VERSION}/oompriorities",
                _priority(db.namespace, "db", priority=900,
                          podSelector={"matchLabels": {"app": "db"}}))
    idle = node.start(etl[0], "anon", 8)
    database = node.start(db, "anon", 40)

    async with (_operator(kube),
                running_agent(config(cluster, node, act_alone_after=60.0), kube)):
        node.start(etl[1], "grow:100", 120)  # the leak: Soft pressure within a second
        [decision] = await kube.wait_for(lambda: _finished(cluster), timeout=30)

    spec, status = decision["spec"], decision["status"]
    assert (spec["decidedBy"], spec["action"], spec["nodeName"]) == (
        "operator", "Kill", cluster.node)
    assert [v["name"] for v in spec["victims"]] == [f"{etl[0].namespace}/Job/etl"]
    assert status["phase"] == "Completed"
    assert {(v["name"], v["outcome"]) for v in status["victims"]} == {
        ("etl-0", "Killed"), ("etl-1", "Killed")}
    assert status["reclaimedBytes"] > 0
    assert idle.wait(timeout=5) == -signal.SIGKILL  # the small idle pod too: whole group
    assert database.poll() is None
    assert node.kernel_oom_kills() == 0
    events = [*kube.read_all("v1/events", etl[0].namespace), *kube.read_all("v1/events",
                                                                             "default")]
    reasons = {(e["involvedObject"]["name"], e["reason"]) for e in events}
    assert {("etl-0", "OOMGuardVictim"), ("etl-1", "OOMGuardVictim"),
            (cluster.node, "OOMGuardDecision")} <= reasons


async def test_kill_and_evict_kills_here_and_evicts_everywhere(
    kube: Kube, node: SandboxNode
) -> None:
    """KillAndEvict: the agent kills the group's pods on its node at once; then the
    operator evicts them (so that their controller replaces them) and evicts the member
    on another node, which no agent of this node may kill."""
    cluster, etl, db = seed_etl_and_db(kube, node, actions="KillAndEvict")
    batch = etl[0].namespace
    other = kube.node("node-b")
    kube.pod("etl-2", batch, other,
             owner=kube.read("v1/pods", batch, "etl-0")["metadata"]["ownerReferences"][0])
    idle = node.start(etl[0], "anon", 8)
    node.start(db, "anon", 40)

    async with (_operator(kube),
                running_agent(config(cluster, node, act_alone_after=60.0), kube)):
        node.start(etl[1], "grow:100", 120)
        [decision] = await kube.wait_for(lambda: [
            d for d in _finished(cluster) or ()
            if any(c["type"] == "Evicted" for c in d["status"].get("conditions", []))
        ] or None, timeout=30)

    assert decision["spec"]["action"] == "KillAndEvict"
    assert {(v["name"], v["outcome"]) for v in decision["status"]["victims"]} == {
        ("etl-0", "Killed"), ("etl-1", "Killed"), ("etl-2", "Evicted")}
    assert idle.wait(timeout=5) == -signal.SIGKILL
    evicted = {c.name for c in kube.calls(kube.operator)
               if c.rbac[2:] == ("pods", "eviction") and c.code == 201}
    assert evicted == {"etl-0", "etl-1", "etl-2"}
    for name in ("etl-0", "etl-1", "etl-2"):
        pod = kube.read("v1/pods", batch, name)
        assert pod is None or pod["metadata"].get("deletionTimestamp"), name
    assert kube.read("v1/pods", db.namespace, "db-0") is not None
    assert node.kernel_oom_kills() == 0


async def test_operator_restarted_mid_decision_kills_nothing_twice(
    kube: Kube, node: SandboxNode
) -> None:
    """The first operator records a decision and stops before any agent acted; the second
    finds it in flight and decides nothing new; the agent executes it once."""
    cluster, etl, db = seed_etl_and_db(kube, node)
    node.start(etl[0], "anon", 8)
    node.start(db, "anon", 40)
    node.start(etl[1], "anon", 120)
    capacity = 256 * 2**20
    kube.store(REPORTS, {  # as the agent last wrote it
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "NodeMemoryReport",
        "metadata": {"name": cluster.node},
        "status": {"node": {"capacityBytes": capacity, "availableBytes": 60 * 2**20},
                   "pods": [{"uid": p.uid, "usage": {"anonBytes": b * 2**20}}
                            for p, b in ((etl[0], 8), (etl[1], 120), (db, 40))],
                   "observedTime": datetime.now(UTC).isoformat()}})

    async with _operator(kube):
        await kube.wait_for(lambda: [d for d in cluster.decisions()
                                     if d.get("status", {}).get("phase") == "Pending"])
    async with (_operator(kube),
                running_agent(config(cluster, node, act_alone_after=60.0), kube)):
        [decision] = await kube.wait_for(lambda: _finished(cluster), timeout=30)
    assert len(cluster.decisions()) == 1
    assert sorted(v["outcome"] for v in decision["status"]["victims"]) == ["Killed", "Killed"]
    creates = [c for c in kube.calls() if c.rbac == ("create", GROUP, "oomdecisions", "")]
    assert len(creates) == 1
