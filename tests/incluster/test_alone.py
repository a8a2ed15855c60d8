"""The agent acts alone when it must: under Hard pressure with no decision from the
operator within the deadline, or at once while the API server does not answer. It decides
from its caches, kills, and records the decision (decidedBy: agent) once the API server
answers again. With the operator answering in time, it executes the operator's decision
instead."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from agent_harness import (
    DECISIONS,
    NODE,
    REPORTS,
    Proxy,
    config,
    create_decision,
    operator_decision,
    requests,
    running_agent,
    seed_node,
    status_of,
    until,
    when,
)

from oomguard.permissions import AGENT
from oomguard.sandbox import SandboxNode, SandboxPod

from support import AGENT_TOKEN, ClusterEmulator

HOG_MIB = 160
"""Grown by the victim (at 400MiB/s): Hard pressure under the test policy, far from the
node's limit."""


def _pods(node: SandboxNode) -> tuple[SandboxPod, SandboxPod]:
    batch, web = node.add_pod("batch-0", "jobs"), node.add_pod("web-0", "shop")
    node.start(web, "anon", 8)
    return batch, web


def _decided(emulator: ClusterEmulator) -> dict[str, Any] | None:
    """The only decision, once its outcome is written."""
    decisions = emulator.read_all(DECISIONS)
    if len(decisions) == 1 and (decisions[0].get("status") or {}).get("phase") in (
            "Completed", "Failed"):
        return decisions[0]
    return None


async def test_without_a_decision_from_the_operator_the_agent_acts_alone(
    emulator: ClusterEmulator, node: SandboxNode
) -> None:
    batch, web = _pods(node)
    seed_node(emulator, [batch, web])
    async with running_agent(config(node, act_alone_after=1.0), emulator.server_url) as agent:
        await until(lambda: all(r.synced.is_set() for r in agent.view.reflectors))
        hog = node.start(batch, "grow:400", HOG_MIB)
        decision = await emulator.wait_for(lambda: _decided(emulator))
    assert await asyncio.to_thread(hog.wait, 5) == -signal.SIGKILL
    spec, status = decision["spec"], decision["status"]
    assert (spec["decidedBy"], spec["action"], spec["trigger"]["pressure"]) == (
        "agent", "KillAndEvict", "Hard")
    assert [p["uid"] for v in spec["victims"] for p in v["pods"]] == [batch.uid]
    assert status["phase"] == "Completed"
    assert [v["outcome"] for v in status["victims"]] == ["Killed"]
    hard = next(body["status"] for _, body, _ in requests(
        emulator, AGENT_TOKEN, "PATCH", f"nodememoryreports/{NODE}/status")
        if body["status"].get("pressure") == "Hard")
    waited = when(status["startTime"]) - when(hard["heartbeatTime"])
    assert waited.total_seconds() >= 0.5  # the operator had its chance (deadline 1s)


async def test_with_the_api_server_unreachable_the_agent_acts_at_once(
    emulator: ClusterEmulator, node: SandboxNode
) -> None:
    batch, web = _pods(node)
    seed_node(emulator, [batch, web])
    proxy = Proxy(emulator.server_url)
    await proxy.up()
    try:
        # A deadline far away: only the unreachable API server can make it act.
        async with running_agent(config(node, act_alone_after=60.0), proxy.url) as agent:
            await until(lambda: all(r.synced.is_set() for r in agent.view.reflectors))
            await proxy.down()
            await until(lambda: not agent.api.health.up)
            hog = node.start(batch, "grow:400", HOG_MIB)
            assert await asyncio.to_thread(hog.wait, 10) == -signal.SIGKILL
            assert emulator.read_all(DECISIONS) == []  # nowhere to write it yet
            await proxy.up()
            decision = await emulator.wait_for(lambda: _decided(emulator))
    finally:
        await proxy.down()
    assert decision["spec"]["decidedBy"] == "agent"
    assert decision["metadata"]["labels"] == {"oomguard.io/node": NODE}
    assert ("create", "oomguard.io", "oomdecisions", "") in emulator.used_permissions(AGENT_TOKEN)
    assert emulator.used_permissions(AGENT_TOKEN) <= AGENT
    assert [v["outcome"] for v in decision["status"]["victims"]] == ["Killed"]


async def test_with_the_operator_answering_in_time_the_agent_executes_its_decision(
    emulator: ClusterEmulator, node: SandboxNode
) -> None:
    batch, web = _pods(node)
    seed_node(emulator, [batch, web])
    async with running_agent(config(node, act_alone_after=2.0), emulator.server_url) as agent:
        await until(lambda: all(r.synced.is_set() for r in agent.view.reflectors))
        hog = node.start(batch, "grow:400", HOG_MIB)
        await emulator.wait_for(
            lambda: status_of(emulator, REPORTS, NODE).get("pressure") == "Hard")
        await create_decision(emulator, operator_decision(f"{NODE}-1", [batch]))
        decision = await emulator.wait_for(lambda: _decided(emulator))
    assert await asyncio.to_thread(hog.wait, 5) == -signal.SIGKILL
    assert decision["spec"]["decidedBy"] == "operator"
    assert decision["status"]["phase"] == "Completed"
