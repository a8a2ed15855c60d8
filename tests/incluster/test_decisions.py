"""The agent executes the operator's Kill decisions for its node on a real cgroup v1
sandbox: claimed (Pending -> Executing) before the kill, each victim checked, the outcome
written per pod, at most once across restarts; never a decision of another node, nor one
that is not Pending."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from agent_harness import (
    DECISIONS,
    POLICY_SPEC,
    config,
    create_decision,
    operator_decision,
    phases,
    pod_on,
    running_agent,
    seed_node,
    until,
    when,
)

from oomguard.api import GROUP, VERSION
from oomguard.kube.permissions import AGENT
from oomguard.sandbox import SandboxNode, procs

from support import ApiError, Kube
from support.faults import Fault, FaultProxy
from support.helm import RELEASE


async def test_pending_kill_is_executed_once_even_across_restarts(
    kube: Kube, node: SandboxNode
) -> None:
    cluster = seed_node(kube)
    jobs, shop = kube.namespace("jobs"), kube.namespace("shop")
    batch, web = pod_on(cluster, node, "batch-0", jobs), pod_on(cluster, node, "web-0", shop)
    victim, bystander = node.start(batch, "anon", 24), node.start(web, "anon", 8)
    name = f"{cluster.node}-1"
    async with running_agent(config(cluster, node), kube):
        await create_decision(kube, cluster.operator_decision(name, [batch]))
        await kube.wait_for(lambda: cluster.phase(name) == "Completed")
    assert await asyncio.to_thread(victim.wait, 5) == -signal.SIGKILL
    assert bystander.poll() is None
    assert phases(kube, name) == ["Pending", "Executing", "Completed"]
    status = cluster.status(DECISIONS, name)
    [outcome] = status["victims"]
    assert (outcome["uid"], outcome["outcome"]) == (batch.uid, "Killed")
    assert outcome["reclaimedBytes"] >= 24 << 20 and outcome["durationSeconds"] > 0
    assert status["reclaimedBytes"] == outcome["reclaimedBytes"]
    assert when(status["startTime"]) <= when(status["completionTime"])
    used = kube.used_permissions(cluster.agent)
    assert used <= AGENT
    assert {("update", "oomguard.io", "oomdecisions", "status"),  # the guarded claim
            ("patch", "oomguard.io", "oomdecisions", "status")} <= used  # the outcome

    # The kubelet restarts the pod's container; a restarted agent must leave it be.
    restarted = node.start(batch, "anon", 8)
    version = (cluster.decision(name) or {})["metadata"]["resourceVersion"]
    second = kube.agent_for(cluster.node, replica=2)
    async with running_agent(config(cluster, node), kube, second) as agent:
        await until(lambda: agent.decisions.synced.is_set() and agent.steps >= 3)
    assert restarted.poll() is None and procs(batch.path / "main")
    assert (cluster.decision(name) or {})["metadata"]["resourceVersion"] == version
    assert not [c for c in kube.calls(second) if c.resource == "oomdecisions"
                and c.verb in ("update", "patch")]


BINDINGS = "admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"


@contextlib.contextmanager
def _phases_unguarded(kube: Kube) -> Iterator[None]:
    """The chart's phases-only-forward policy audited instead of enforced (as in a cluster
    installed without it), until the block ends."""
    name = f"{RELEASE}-decision-phases"
    kube.patch(BINDINGS, None, name, {"spec": {"validationActions": ["Audit"]}})
    try:
        yield
    finally:
        kube.patch(BINDINGS, None, name, {"spec": {"validationActions": ["Deny"]}})


def _guarded(kube: Kube, name: str) -> bool:
    """Whether a finished decision set back to Pending is refused (it is left Failed)."""
    kube.patch_status(DECISIONS, None, name, {"phase": "Failed"})  # forward, or as it is
    return not _reset_to_pending(kube, name)


def _reset_to_pending(kube: Kube, name: str) -> bool:
    try:
        kube.patch_status(DECISIONS, None, name, {"phase": "Pending"})
    except ApiError:
        return False
    return True


async def test_a_decision_set_back_to_pending_is_not_executed_again(
    kube: Kube, node: SandboxNode, caplog: pytest.LogCaptureFixture
) -> None:
    """Phases only move forward: the chart's admission policy refuses a finished decision
    set back to Pending, and the agent does not lean on it: without the policy, the
    decision it executed, Pending again, kills nothing the second time."""
    cluster = seed_node(kube)
    batch = pod_on(cluster, node, "batch-0", kube.namespace("jobs"))
    first = node.start(batch, "anon", 8)
    name = f"{cluster.node}-1"
    async with running_agent(config(cluster, node), kube):
        await create_decision(kube, cluster.operator_decision(name, [batch]))
        await kube.wait_for(lambda: cluster.phase(name) == "Completed")
        assert await asyncio.to_thread(first.wait, 5) == -signal.SIGKILL
        restarted = node.start(batch, "anon", 8)  # the kubelet restarts its container
        assert not _reset_to_pending(kube, name)  # the policy refuses it
        with _phases_unguarded(kube):
            # The API server applies a change of its admission policies within seconds.
            await kube.wait_for(lambda: _reset_to_pending(kube, name), timeout=60)
            await until(lambda: any(
                f"decision {name} is Pending again" in r.getMessage()
                for r in caplog.records))
        assert restarted.poll() is None
        assert cluster.phase(name) == "Pending"
    await kube.wait_for(lambda: _guarded(kube, name), timeout=60)  # as the chart made it


async def test_decision_left_executing_by_a_crashed_agent_is_not_acted_on(
    kube: Kube, node: SandboxNode
) -> None:
    cluster = seed_node(kube)
    batch = pod_on(cluster, node, "batch-0", kube.namespace("jobs"))
    process = node.start(batch, "anon", 8)
    decision = cluster.operator_decision(f"{cluster.node}-1", [batch]).wire()
    decision["status"]["phase"] = "Executing"
    kube.store(DECISIONS, decision)
    async with running_agent(config(cluster, node), kube) as agent:
        await until(lambda: agent.decisions.synced.is_set() and agent.steps >= 3)
    assert process.poll() is None
    assert cluster.phase(f"{cluster.node}-1") == "Executing"


async def test_decisions_of_other_nodes_are_ignored(kube: Kube, node: SandboxNode) -> None:
    """Neither one labelled for another node (the agent does not even see it) nor one
    labelled for this node but naming another: the label is only a filter."""
    cluster = seed_node(kube)
    jobs = kube.namespace("jobs")
    other = kube.name("node-b")
    batch = pod_on(cluster, node, "batch-0", jobs)
    gone = pod_on(cluster, node, "gone-0", jobs, api=False)
    gone.path.rmdir()
    process = node.start(batch, "anon", 8)
    async with running_agent(config(cluster, node), kube):
        await create_decision(kube, cluster.operator_decision(f"{other}-1", [batch], node=other))
        await create_decision(kube, cluster.operator_decision(f"{other}-2", [batch], node=other,
                                                      label=cluster.node))
        # One of its own, after the others: once it is done, the others were seen.
        await create_decision(kube, cluster.operator_decision(f"{cluster.node}-1", [gone]))
        await kube.wait_for(lambda: cluster.phase(f"{cluster.node}-1") == "Completed")
    assert process.poll() is None
    assert cluster.phase(f"{other}-1") == cluster.phase(f"{other}-2") == "Pending"


async def test_victim_that_already_left_is_already_gone(kube: Kube, node: SandboxNode) -> None:
    cluster = seed_node(kube)
    left = pod_on(cluster, node, "left-0", kube.namespace("jobs"), api=False)
    left.path.rmdir()  # its cgroup is gone, and the Pod object with it
    name = f"{cluster.node}-1"
    async with running_agent(config(cluster, node), kube):
        await create_decision(kube, cluster.operator_decision(name, [left]))
        await kube.wait_for(lambda: cluster.phase(name) == "Completed")
    [outcome] = cluster.status(DECISIONS, name)["victims"]
    assert (outcome["outcome"], outcome["message"]) == ("AlreadyGone",
                                                        "the pod no longer exists")


async def test_a_decision_naming_another_policy_kills_nothing(
    kube: Kube, node: SandboxNode
) -> None:
    """A forged decision naming a policy that does not govern the node (unknown, or one
    without this node's protections): the agent checks against its own, and refuses."""
    cluster = seed_node(kube)
    batch = pod_on(cluster, node, "batch-0", kube.namespace("jobs"))
    process = node.start(batch, "anon", 8)
    name = f"{cluster.node}-1"
    forged = operator_decision(name, [batch], node=cluster.node, policy="no-such-policy")
    async with running_agent(config(cluster, node), kube):
        await create_decision(kube, forged)
        await kube.wait_for(lambda: cluster.phase(name) == "Failed")
    [outcome] = cluster.status(DECISIONS, name)["victims"]
    assert outcome["outcome"] == "Refused"
    assert f"governed by '{cluster.policy}'" in outcome["message"]
    assert process.poll() is None


async def test_a_never_pod_is_not_killed_whatever_the_decision_says(
    kube: Kube, node: SandboxNode
) -> None:
    cluster = seed_node(kube, {**POLICY_SPEC, "tenants": [{"allowNever": True}]})
    jobs = kube.namespace("jobs")
    kube.create(f"{GROUP}/{VERSION}/oompriorities", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "OOMPriority",
        "metadata": {"name": "keep", "namespace": jobs}, "spec": {"preference": "Never"}})
    batch = pod_on(cluster, node, "batch-0", jobs)
    process = node.start(batch, "anon", 8)
    name = f"{cluster.node}-1"
    async with running_agent(config(cluster, node), kube) as agent:
        await until(lambda: bool(agent.view.priorities.items()))
        await create_decision(kube, cluster.operator_decision(name, [batch]))
        await kube.wait_for(lambda: cluster.phase(name) == "Failed")
    [outcome] = cluster.status(DECISIONS, name)["victims"]
    assert (outcome["outcome"], outcome["message"]) == (
        "Refused", f"group {jobs}/batch-0 has a pod whose priority says Never")
    assert process.poll() is None


def _never(kube: Kube, namespace: str) -> None:
    kube.create(f"{GROUP}/{VERSION}/oompriorities", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "OOMPriority",
        "metadata": {"name": "keep", "namespace": namespace}, "spec": {"preference": "Never"}})


async def test_the_agent_keeps_only_its_pods_namespaces_priorities(
    kube: Kube, node: SandboxNode
) -> None:
    """What tenants write in namespaces with no pod on the node costs its agent nothing
    (#11.13). A pod of a namespace new to the node brings that namespace's priorities in,
    and a decision waits for them: a Never written there is honoured at once."""
    cluster = seed_node(kube, {**POLICY_SPEC, "tenants": [{"allowNever": True}]})
    jobs, later = kube.namespace("jobs"), kube.namespace("later")
    _never(kube, jobs)
    _never(kube, later)
    batch = pod_on(cluster, node, "batch-0", jobs)
    async with running_agent(config(cluster, node), kube) as agent:
        await until(lambda: agent.view.ready() and agent.view.priorities.items())
        assert [p.metadata.namespace for p in agent.view.priorities.items()] == [jobs]
        web = pod_on(cluster, node, "web-0", later)
        process = node.start(web, "anon", 8)
        name = f"{cluster.node}-1"
        await create_decision(kube, cluster.operator_decision(name, [web]))
        await kube.wait_for(lambda: cluster.phase(name) == "Failed")
        assert sorted(p.metadata.namespace for p in agent.view.priorities.items()) == sorted(
            [jobs, later])
    [outcome] = cluster.status(DECISIONS, name)["victims"]
    assert (outcome["outcome"], outcome["message"]) == (
        "Refused", f"group {later}/web-0 has a pod whose priority says Never")
    assert process.poll() is None
    assert batch.uid


async def test_victim_no_longer_eligible_is_refused(kube: Kube, node: SandboxNode) -> None:
    cluster = seed_node(kube)
    jobs = kube.namespace("jobs")
    batch = pod_on(cluster, node, "batch-0", jobs)
    process = node.start(batch, "anon", 8)
    kube.delete("v1/pods", jobs, "batch-0")  # terminating: its kubelet has not finished it
    name = f"{cluster.node}-1"
    async with running_agent(config(cluster, node), kube):
        await create_decision(kube, cluster.operator_decision(name, [batch]))
        await kube.wait_for(lambda: cluster.phase(name) == "Failed")
    [outcome] = cluster.status(DECISIONS, name)["victims"]
    assert outcome["outcome"] == "Refused"
    assert outcome["message"].startswith("no longer eligible: already terminating")
    assert process.poll() is None


async def test_decision_too_old_to_act_on_expires(kube: Kube, node: SandboxNode) -> None:
    cluster = seed_node(kube)
    batch = pod_on(cluster, node, "batch-0", kube.namespace("jobs"))
    process = node.start(batch, "anon", 8)
    name = f"{cluster.node}-1"
    await create_decision(kube, cluster.operator_decision(name, [batch]))

    def age() -> float:  # creationTimestamp has whole seconds: from the server's clock
        created = when((cluster.decision(name) or {})["metadata"]["creationTimestamp"])
        return (datetime.now(UTC) - created).total_seconds()

    await kube.wait_for(lambda: age() > 2.5, timeout=5, interval=0.1)  # made while away
    async with running_agent(config(cluster, node, decision_max_age=1.0), kube):
        await kube.wait_for(lambda: cluster.phase(name) == "Failed")
    conditions = cluster.status(DECISIONS, name)["conditions"]
    assert [c["reason"] for c in conditions] == ["Expired"]
    assert process.poll() is None


async def test_claim_whose_answer_was_lost_is_carried_out(kube: Kube, node: SandboxNode) -> None:
    """The API server commits the claim but the answer never arrives (a 500 from the
    fault proxy after the server wrote it): the agent must neither give up on the decision
    (it is Executing, by its own claim) nor claim it twice."""
    cluster = seed_node(kube)
    batch = pod_on(cluster, node, "batch-0", kube.namespace("jobs"))
    victim = node.start(batch, "anon", 8)
    name = f"{cluster.node}-1"
    lost = Fault(lambda method, path: method == "PUT" and path.endswith(
        f"/oomdecisions/{name}/status"), status=500, after_forwarding=True)
    async with FaultProxy(kube) as proxy:
        proxy.faults.append(lost)
        async with running_agent(config(cluster, node), kube, server=proxy.url):
            await create_decision(kube, cluster.operator_decision(name, [batch]))
            await kube.wait_for(lambda: cluster.phase(name) == "Completed")
    assert len(lost.hits) == 1
    claims = [c for c in kube.calls(cluster.agent) if c.verb == "update" and c.name == name]
    # Written once; the agent saw a 500, tried again over the version it had read, and the
    # server refused that (409): the GET then showed its own claim.
    assert [c.code for c in claims] == [200, 409]
    assert ("get", "oomguard.io", "oomdecisions", "") in kube.used_permissions(cluster.agent)
    assert await asyncio.to_thread(victim.wait, 5) == -signal.SIGKILL
    assert phases(kube, name) == ["Pending", "Executing", "Completed"]
