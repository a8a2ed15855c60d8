"""The agent executes the operator's Kill decisions for its node on a real cgroup v1
sandbox: claimed (Pending -> Executing) before the kill, each victim checked, the outcome
written per pod, at most once across restarts; never a decision of another node, nor one
that is not Pending."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime, timedelta

import kmock
from agent_harness import (
    DECISIONS,
    NODE,
    add_pod,
    config,
    create_decision,
    operator_decision,
    phases,
    requests,
    running_agent,
    seed_node,
    status_of,
    until,
    when,
)

from oomguard.permissions import AGENT
from oomguard.sandbox import SandboxNode, procs

from support import AGENT_TOKEN, ClusterEmulator


def _phase(emulator: ClusterEmulator, name: str) -> str | None:
    return status_of(emulator, DECISIONS, name).get("phase")


async def test_pending_kill_is_executed_once_even_across_restarts(
    emulator: ClusterEmulator, node: SandboxNode
) -> None:
    batch, web = node.add_pod("batch-0", "jobs"), node.add_pod("web-0", "shop")
    victim, bystander = node.start(batch, "anon", 24), node.start(web, "anon", 8)
    seed_node(emulator, [batch, web])
    async with running_agent(config(node), emulator.server_url):
        await create_decision(emulator, operator_decision("node-a-1", [batch]))
        await emulator.wait_for(lambda: _phase(emulator, "node-a-1") == "Completed")
    assert await asyncio.to_thread(victim.wait, 5) == -signal.SIGKILL
    assert bystander.poll() is None
    assert phases(emulator, "node-a-1") == ["Pending", "Executing", "Completed"]
    status = status_of(emulator, DECISIONS, "node-a-1")
    [outcome] = status["victims"]
    assert (outcome["uid"], outcome["outcome"]) == (batch.uid, "Killed")
    assert outcome["reclaimedBytes"] >= 24 << 20 and outcome["durationSeconds"] > 0
    assert status["reclaimedBytes"] == outcome["reclaimedBytes"]
    assert when(status["startTime"]) <= when(status["completionTime"])
    used = emulator.used_permissions(AGENT_TOKEN)
    assert used <= AGENT
    assert {("update", "oomguard.io", "oomdecisions", "status"),  # the guarded claim
            ("patch", "oomguard.io", "oomdecisions", "status")} <= used  # the outcome

    # The kubelet restarts the pod's container; a restarted agent must leave it be.
    restarted = node.start(batch, "anon", 8)
    version = emulator.read(DECISIONS, None, "node-a-1")["metadata"]["resourceVersion"]
    async with running_agent(config(node), emulator.server_url, token="agent-2") as agent:
        await until(lambda: agent.decisions.synced.is_set() and agent.steps >= 3)
    assert restarted.poll() is None and procs(batch.path / "main")
    assert emulator.read(DECISIONS, None, "node-a-1")["metadata"]["resourceVersion"] == version
    assert not list(requests(emulator, "agent-2", "PUT", "oomdecisions"))


async def test_decision_left_executing_by_a_crashed_agent_is_not_acted_on(
    emulator: ClusterEmulator, node: SandboxNode
) -> None:
    batch = node.add_pod("batch-0", "jobs")
    process = node.start(batch, "anon", 8)
    seed_node(emulator, [batch])
    decision = operator_decision("node-a-1", [batch]).wire()
    decision["status"]["phase"] = "Executing"
    emulator.store(DECISIONS, decision)
    async with running_agent(config(node), emulator.server_url) as agent:
        await until(lambda: agent.decisions.synced.is_set() and agent.steps >= 3)
    assert process.poll() is None
    assert _phase(emulator, "node-a-1") == "Executing"


async def test_decisions_of_other_nodes_are_ignored(
    emulator: ClusterEmulator, node: SandboxNode
) -> None:
    """Neither one labelled for another node (the agent does not even see it) nor one
    labelled for this node but naming another: the label is only a filter."""
    batch, gone = node.add_pod("batch-0", "jobs"), node.add_pod("gone-0", "jobs")
    gone.path.rmdir()
    process = node.start(batch, "anon", 8)
    seed_node(emulator, [batch])
    async with running_agent(config(node), emulator.server_url):
        await create_decision(emulator, operator_decision("node-b-1", [batch], node="node-b"))
        await create_decision(emulator, operator_decision("node-b-2", [batch], node="node-b",
                                                          label=NODE))
        # One of its own, after the others: once it is done, the others were seen.
        await create_decision(emulator, operator_decision("node-a-1", [gone]))
        await emulator.wait_for(lambda: _phase(emulator, "node-a-1") == "Completed")
    assert process.poll() is None
    assert _phase(emulator, "node-b-1") == _phase(emulator, "node-b-2") == "Pending"


async def test_victim_that_already_left_is_already_gone(
    emulator: ClusterEmulator, node: SandboxNode
) -> None:
    left = node.add_pod("left-0", "jobs")  # its cgroup goes, and the Pod object with it
    left.path.rmdir()
    seed_node(emulator, [])
    async with running_agent(config(node), emulator.server_url):
        await create_decision(emulator, operator_decision("node-a-1", [left]))
        await emulator.wait_for(lambda: _phase(emulator, "node-a-1") == "Completed")
    [outcome] = status_of(emulator, DECISIONS, "node-a-1")["victims"]
    assert (outcome["outcome"], outcome["message"]) == ("AlreadyGone",
                                                        "the pod no longer exists")


async def test_victim_no_longer_eligible_is_refused(
    emulator: ClusterEmulator, node: SandboxNode
) -> None:
    batch = node.add_pod("batch-0", "jobs")
    process = node.start(batch, "anon", 8)
    seed_node(emulator, [])
    add_pod(emulator, batch, deletionTimestamp="2026-11-26T06:00:00Z")  # terminating
    async with running_agent(config(node), emulator.server_url):
        await create_decision(emulator, operator_decision("node-a-1", [batch]))
        await emulator.wait_for(lambda: _phase(emulator, "node-a-1") == "Failed")
    [outcome] = status_of(emulator, DECISIONS, "node-a-1")["victims"]
    assert outcome["outcome"] == "Refused"
    assert outcome["message"].startswith("no longer eligible: already terminating")
    assert process.poll() is None


async def test_decision_too_old_to_act_on_expires(
    emulator: ClusterEmulator, node: SandboxNode
) -> None:
    batch = node.add_pod("batch-0", "jobs")
    process = node.start(batch, "anon", 8)
    seed_node(emulator, [batch])
    decision = operator_decision("node-a-1", [batch]).wire()
    created = datetime.now(UTC) - timedelta(minutes=10)
    decision["metadata"]["creationTimestamp"] = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    emulator.store(DECISIONS, decision)  # made while the agent was away
    async with running_agent(config(node), emulator.server_url):
        await emulator.wait_for(lambda: _phase(emulator, "node-a-1") == "Failed")
    conditions = status_of(emulator, DECISIONS, "node-a-1")["conditions"]
    assert [c["reason"] for c in conditions] == ["Expired"]
    assert process.poll() is None


async def test_claim_whose_answer_was_lost_is_carried_out(
    emulator: ClusterEmulator, node: SandboxNode
) -> None:
    """The API server commits the claim but the answer never arrives (a 500 here): the
    agent must neither give up on the decision (it is Executing, by its own claim) nor
    claim it twice."""
    batch = node.add_pod("batch-0", "jobs")
    victim = node.start(batch, "anon", 8)
    seed_node(emulator, [batch])
    lost: list[str] = []

    def commit(request: kmock.Request) -> None:
        lost.append(request.data["status"]["phase"])
        emulator.store(DECISIONS, request.data)  # the server did write it

    claims = emulator["put", kmock.resource(DECISIONS), kmock.subresource("status"),
                      lambda request: not lost]
    claims << 500 << commit  # ...and the answer: an error
    async with running_agent(config(node), emulator.server_url):
        await create_decision(emulator, operator_decision("node-a-1", [batch]))
        await emulator.wait_for(lambda: _phase(emulator, "node-a-1") == "Completed")
    assert lost == ["Executing"]
    assert ("get", "oomguard.io", "oomdecisions", "") in emulator.used_permissions(AGENT_TOKEN)
    assert await asyncio.to_thread(victim.wait, 5) == -signal.SIGKILL
    assert phases(emulator, "node-a-1") == ["Pending", "Executing", "Completed"]
