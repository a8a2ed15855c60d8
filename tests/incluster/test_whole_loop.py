"""The whole loop, over HTTP, on a real cgroup v1 node: the agent reports pressure, the
real kopf operator decides, the agent kills the whole right group and records the outcome,
and Events tell the story."""

from __future__ import annotations

import signal
from typing import Any

import kopf
from agent_harness import DECISIONS, NODE, POLICIES, config, running_agent, seed_node

from oomguard.api import GROUP, VERSION
from oomguard.controller import Decider, register
from oomguard.kube import Cluster
from oomguard.sandbox import SandboxNode, SandboxPod

from support import OPERATOR_TOKEN, ClusterEmulator, running_operator

POLICY = {
    "apiVersion": f"{GROUP}/{VERSION}", "kind": "OOMPolicy", "metadata": {"name": "loop"},
    "spec": {"thresholds": {"memoryAvailable": {"soft": "60%", "hard": "30%"}},
             "reclaimTo": "65%", "actions": {"soft": "Kill", "hard": "Kill"}},
}


def _priority(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "OOMPriority",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def seed_etl_and_db(emulator: ClusterEmulator, node: SandboxNode,
                    actions: str = "Kill") -> tuple[list[SandboxPod], SandboxPod]:
    """A two-pod batch Job, grouped by workload at priority -100, and a database, on the
    node; the policy's actions are `actions`."""
    etl = [node.add_pod(f"etl-{i}", "batch", owner=("Job", "etl")) for i in range(2)]
    db = node.add_pod("db-0", "shop", labels={"app": "db"})
    seed_node(emulator, [*etl, db], policy=None)
    emulator.store(POLICIES, {**POLICY, "spec": {
        **POLICY["spec"], "actions": {"soft": actions, "hard": actions}}})
    emulator.store(f"{GROUP}/{VERSION}/oompriorities",
                   _priority("batch", "etl", priority=-100, group={"by": "Workload"}))
    return etl, db


def _finished(emulator: ClusterEmulator) -> list[dict[str, Any]] | None:
    done = [d for d in emulator.read_all(DECISIONS)
            if d.get("status", {}).get("phase") in ("Completed", "Failed")]
    return done or None


async def test_report_decide_kill_record(emulator: ClusterEmulator, node: SandboxNode) -> None:
    etl, db = seed_etl_and_db(emulator, node)
    emulator.store(f"{GROUP}/{VERSION}/oompriorities",
                   _priority("shop", "db", priority=900,
                             podSelector={"matchLabels": {"app": "db"}}))
    idle = node.start(etl[0], "anon", 8)
    database = node.start(db, "anon", 40)

    registry = kopf.OperatorRegistry()
    register(registry, Decider(Cluster(emulator.api_client(token=OPERATOR_TOKEN))))
    async with (running_operator(emulator.server_url, registry, token=OPERATOR_TOKEN),
                running_agent(config(node, act_alone_after=60.0), emulator.server_url)):
        node.start(etl[1], "grow:100", 120)  # the leak: Soft pressure within a second
        [decision] = await emulator.wait_for(lambda: _finished(emulator), timeout=30)

    spec, status = decision["spec"], decision["status"]
    assert (spec["decidedBy"], spec["action"], spec["nodeName"]) == ("operator", "Kill", NODE)
    assert [v["name"] for v in spec["victims"]] == ["batch/Job/etl"]
    assert status["phase"] == "Completed"
    assert {(v["name"], v["outcome"]) for v in status["victims"]} == {
        ("etl-0", "Killed"), ("etl-1", "Killed")}
    assert status["reclaimedBytes"] > 0
    assert idle.wait(timeout=5) == -signal.SIGKILL  # the small idle pod too: whole group
    assert database.poll() is None
    assert node.kernel_oom_kills() == 0
    reasons = {(e["involvedObject"]["name"], e["reason"]) for e in emulator.read_all("v1/events")}
    assert {("etl-0", "OOMGuardVictim"), ("etl-1", "OOMGuardVictim"),
            (NODE, "OOMGuardDecision")} <= reasons


async def test_kill_and_evict_kills_here_and_evicts_everywhere(
    emulator: ClusterEmulator, node: SandboxNode
) -> None:
    """KillAndEvict: the agent kills the group's pods on its node at once; then the
    operator evicts them (so that their controller replaces them) and evicts the member
    on another node, which no agent of this node may kill."""
    etl, db = seed_etl_and_db(emulator, node, actions="KillAndEvict")
    there = etl[0].manifest()
    there["metadata"].update(name="etl-2", uid="uid-etl-2-on-node-b")
    there["spec"]["nodeName"] = "node-b"
    emulator.store("v1/pods", there)
    idle = node.start(etl[0], "anon", 8)
    node.start(db, "anon", 40)

    registry = kopf.OperatorRegistry()
    register(registry, Decider(Cluster(emulator.api_client(token=OPERATOR_TOKEN))))
    async with (running_operator(emulator.server_url, registry, token=OPERATOR_TOKEN),
                running_agent(config(node, act_alone_after=60.0), emulator.server_url)):
        node.start(etl[1], "grow:100", 120)
        [decision] = await emulator.wait_for(lambda: [
            d for d in _finished(emulator) or ()
            if any(c["type"] == "Evicted" for c in d["status"].get("conditions", []))
        ] or None, timeout=30)

    assert decision["spec"]["action"] == "KillAndEvict"
    assert {(v["name"], v["outcome"]) for v in decision["status"]["victims"]} == {
        ("etl-0", "Killed"), ("etl-1", "Killed"), ("etl-2", "Evicted")}
    assert idle.wait(timeout=5) == -signal.SIGKILL
    evicted = {c.name for c in emulator.calls if c.rbac[2:] == ("pods", "eviction")}
    assert evicted == {"etl-0", "etl-1", "etl-2"}
    for name in ("etl-0", "etl-1", "etl-2"):
        pod = emulator.read("v1/pods", "batch", name)
        assert pod is None or pod["metadata"].get("deletionTimestamp"), name
    assert emulator.read("v1/pods", "shop", "db-0") is not None
    assert node.kernel_oom_kills() == 0


async def test_operator_restarted_mid_decision_kills_nothing_twice(
    emulator: ClusterEmulator, node: SandboxNode
) -> None:
    """The first operator records a decision and stops before any agent acted; the second
    finds it in flight and decides nothing new; the agent executes it once."""
    etl, db = seed_etl_and_db(emulator, node)
    node.start(etl[0], "anon", 8)
    node.start(db, "anon", 40)
    node.start(etl[1], "anon", 120)
    capacity = 256 * 2**20
    emulator.store(f"{GROUP}/{VERSION}/nodememoryreports", {  # as the agent last wrote it
        "metadata": {"name": NODE},
        "status": {"node": {"capacityBytes": capacity, "availableBytes": 60 * 2**20},
                   "pods": [{"uid": p.uid, "usage": {"anonBytes": b * 2**20}}
                            for p, b in ((etl[0], 8), (etl[1], 120), (db, 40))]}})

    def operator(token: str) -> Any:
        registry = kopf.OperatorRegistry()
        register(registry, Decider(Cluster(emulator.api_client(token=token))))
        return running_operator(emulator.server_url, registry, token=token)

    async with operator(OPERATOR_TOKEN):
        await emulator.wait_for(lambda: [d for d in emulator.read_all(DECISIONS)
                                         if d.get("status", {}).get("phase") == "Pending"])
    async with (operator(OPERATOR_TOKEN),
                running_agent(config(node, act_alone_after=60.0), emulator.server_url)):
        [decision] = await emulator.wait_for(lambda: _finished(emulator), timeout=30)
    assert len(emulator.read_all(DECISIONS)) == 1
    assert sorted(v["outcome"] for v in decision["status"]["victims"]) == ["Killed", "Killed"]
    kills = [c for c in emulator.calls if c.rbac == ("create", GROUP, "oomdecisions", "")]
    assert len(kills) == 1
