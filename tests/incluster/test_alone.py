"""The agent acts alone when it must: under Hard pressure with no decision from the
operator within the deadline, or at once while the API server does not answer. It decides
from its caches, kills, and records the decision (decidedBy: agent) once the API server
answers again. With the operator answering in time, it executes the operator's decision
instead."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

from agent_harness import (
    Cluster,
    config,
    create_decision,
    pod_on,
    running_agent,
    seed_node,
    until,
    when,
)

from oomguard.kube.permissions import AGENT
from oomguard.sandbox import SandboxNode, SandboxPod

from support import Kube

HOG_MIB = 160
"""Grown by the victim (at 400MiB/s): Hard pressure under the test policy, far from the
node's limit."""


def _pods(cluster: Cluster, node: SandboxNode) -> tuple[SandboxPod, SandboxPod]:
    batch = pod_on(cluster, node, "batch-0", cluster.kube.namespace("jobs"))
    web = pod_on(cluster, node, "web-0", cluster.kube.namespace("shop"))
    node.start(web, "anon", 8)
    return batch, web


def _decided(cluster: Cluster) -> dict[str, Any] | None:
    """The only decision, once its outcome is written."""
    decisions = cluster.decisions()
    if len(decisions) == 1 and (decisions[0].get("status") or {}).get("phase") in (
            "Completed", "Failed"):
        return decisions[0]
    return None


async def test_without_a_decision_from_the_operator_the_agent_acts_alone(
    kube: Kube, node: SandboxNode
) -> None:
    cluster = seed_node(kube)
    batch, _ = _pods(cluster, node)
    async with running_agent(config(cluster, node, act_alone_after=1.0), kube) as agent:
        await until(lambda: all(r.synced.is_set() for r in agent.view.reflectors))
        hog = node.start(batch, "grow:400", HOG_MIB)
        decision = await kube.wait_for(lambda: _decided(cluster))
    assert await asyncio.to_thread(hog.wait, 5) == -signal.SIGKILL
    spec, status = decision["spec"], decision["status"]
    assert (spec["decidedBy"], spec["action"], spec["trigger"]["pressure"]) == (
        "agent", "KillAndEvict", "Hard")
    assert [p["uid"] for v in spec["victims"] for p in v["pods"]] == [batch.uid]
    assert status["phase"] == "Completed"
    assert [v["outcome"] for v in status["victims"]] == ["Killed"]
    hard = next(c.body["status"] for c in kube.calls(cluster.agent)
                if c.rbac == ("patch", "oomguard.io", "nodememoryreports", "status")
                and c.body and c.body["status"].get("pressure") == "Hard")
    waited = when(status["startTime"]) - when(hard["heartbeatTime"])
    assert waited.total_seconds() >= 0.5  # the operator had its chance (deadline 1s)


async def test_with_the_api_server_stopped_the_agent_acts_at_once(
    kube: Kube, node: SandboxNode
) -> None:
    """kube-apiserver itself is stopped: connections refused. The agent kills from its
    caches, and records the decision once the server is back."""
    cluster = seed_node(kube)
    batch, _ = _pods(cluster, node)
    # A deadline far away: only the unreachable API server can make it act.
    async with running_agent(config(cluster, node, act_alone_after=60.0), kube) as agent:
        await until(lambda: all(r.synced.is_set() for r in agent.view.reflectors))
        kube.stop_apiserver()  # from the main thread, which owns the control plane
        try:
            await until(lambda: not agent.api.health.up)
            hog = node.start(batch, "grow:400", HOG_MIB)
            assert await asyncio.to_thread(hog.wait, 10) == -signal.SIGKILL
        finally:
            kube.start_apiserver()
        decision = await kube.wait_for(lambda: _decided(cluster), timeout=30)
    assert decision["spec"]["decidedBy"] == "agent"
    assert decision["metadata"]["labels"] == {"oomguard.io/node": cluster.node}
    used = kube.used_permissions(cluster.agent)
    assert ("create", "oomguard.io", "oomdecisions", "") in used
    assert used <= AGENT
    assert [v["outcome"] for v in decision["status"]["victims"]] == ["Killed"]
    # A kube-apiserver that is starting answers before its authorizer has the RBAC rules
    # (403), and before it serves the CRDs' resources (503): the agent retries both until
    # the decision is recorded.
    creates = [c.code for c in kube.calls(cluster.agent)
               if c.rbac == ("create", "oomguard.io", "oomdecisions", "")]
    assert creates[-1] == 201 and set(creates[:-1]) <= {403, 503}


async def test_an_agent_restarted_before_the_server_returns_still_records_its_kill(
    kube: Kube, node: SandboxNode, tmp_path: Path
) -> None:
    """It acted alone while kube-apiserver was stopped, and was itself restarted before the
    server came back: the decision it kept on the node's disk is recorded by the next
    agent, not lost with the first one's memory."""
    cluster = seed_node(kube)
    batch, _ = _pods(cluster, node)
    state = tmp_path / "state"
    async with running_agent(config(cluster, node, act_alone_after=60.0, state_dir=state),
                             kube) as agent:
        await until(lambda: all(r.synced.is_set() for r in agent.view.reflectors))
        kube.stop_apiserver()
        try:
            await until(lambda: not agent.api.health.up)
            hog = node.start(batch, "grow:400", HOG_MIB)
            assert await asyncio.to_thread(hog.wait, 10) == -signal.SIGKILL
            await until(lambda: bool(list((state / "records").glob("*.json"))))
        except BaseException:
            kube.start_apiserver()
            raise
    kept = list((state / "records").glob("*.json"))  # the first agent is gone
    assert kept
    kube.start_apiserver()
    async with running_agent(config(cluster, node, state_dir=state), kube,
                             kube.agent_for(cluster.node, replica=2)):
        decision = await kube.wait_for(lambda: _decided(cluster), timeout=30)
        await until(lambda: not list((state / "records").glob("*.json")))
    assert decision["spec"]["decidedBy"] == "agent"
    assert [v["outcome"] for v in decision["status"]["victims"]] == ["Killed"]


async def test_with_the_operator_answering_in_time_the_agent_executes_its_decision(
    kube: Kube, node: SandboxNode
) -> None:
    cluster = seed_node(kube)
    batch, _ = _pods(cluster, node)
    async with running_agent(config(cluster, node, act_alone_after=2.0), kube) as agent:
        await until(lambda: all(r.synced.is_set() for r in agent.view.reflectors))
        hog = node.start(batch, "grow:400", HOG_MIB)
        pressured = await kube.wait_for(
            lambda: (report := cluster.report()).get("pressure") == "Hard" and report)
        await create_decision(kube, cluster.operator_decision(f"{cluster.node}-1", [batch]))
        decision = await kube.wait_for(lambda: _decided(cluster))
        # The episode's start, what a Soft grace period counts from, goes with it.
        relieved = await kube.wait_for(
            lambda: (report := cluster.report()).get("pressure") == "None" and report)
    assert when(pressured["pressureSince"]) <= when(pressured["observedTime"])
    assert "pressureSince" not in relieved
    assert await asyncio.to_thread(hog.wait, 5) == -signal.SIGKILL
    assert decision["spec"]["decidedBy"] == "operator"
    assert decision["status"]["phase"] == "Completed"
