"""Running the in-cluster agent against the real API server, on a real cgroup sandbox
node, authenticated with a token of the chart's agent ServiceAccount.

The agent runs in a thread (its loop and client block). The test plays the operator (with
the operator's ServiceAccount) and the kubelet (as the admin: it writes pod status).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubernetes import client

from oomguard.agent.cluster import AgentConfig, ClusterAgent
from oomguard.agent.publish import PublishPolicy
from oomguard.api import (
    OOMDecision,
    OOMDecisionSpec,
    OOMDecisionStatus,
    PodRef,
    Trigger,
    VictimGroup,
    VictimStatus,
)
from oomguard.api.meta import ObjectMeta
from oomguard.decisions import NODE_LABEL
from oomguard.kube import NodeApi
from oomguard.sandbox import Mi, SandboxNode, SandboxPod

from support import Identity, Kube

GROUP, VERSION = "oomguard.io", "v1alpha1"
REPORTS = f"{GROUP}/{VERSION}/nodememoryreports"
DECISIONS = f"{GROUP}/{VERSION}/oomdecisions"
POLICIES = f"{GROUP}/{VERSION}/oompolicies"
LIMIT = 256 * Mi
POLICY_SPEC = {"thresholds": {"memoryAvailable": {"soft": "60%", "hard": "50%"}},
               "reclaimTo": "65%", "actions": {"hard": "KillAndEvict"}}
"""Hard below 128 MiB available of 256 MiB: reached by holding memory, far from the limit
(and the kernel OOM killer), so that tests do not race the kernel."""


def agent_api(kube: Kube, who: Identity, server: str | None = None) -> NodeApi:
    """The agent's client as the CLI builds it (no retries of its own), with `who`'s token
    (kube.agent_for(node): the chart's agent ServiceAccount, bound to a pod on the node)."""
    return NodeApi(kube.api_client(who, user_agent="oomguard-agent", server=server,
                                   retries=0))


@dataclass
class Cluster:
    """This test's node and the objects a cluster holds for it."""

    kube: Kube
    node: str
    policy: str = "default"
    """The OOMPolicy that governs the node (the default policy's name without one)."""

    @property
    def agent(self) -> Identity:
        """The token this node's agent has (bound to its agent pod on the node)."""
        return self.kube.agent_for(self.node)

    def operator_decision(self, name: str, victims: list[SandboxPod], *,
                          node: str | None = None, label: str | None = None,
                          action: str = "Kill") -> OOMDecision:
        """A Pending decision as the operator writes it for `node` (this one), under the
        policy that governs this node."""
        return operator_decision(name, victims, node=node or self.node, policy=self.policy,
                                 label=label, action=action)

    def decision(self, name: str) -> dict[str, Any] | None:
        return self.kube.read(DECISIONS, None, name)

    def decisions(self) -> list[dict[str, Any]]:
        return self.kube.read_all(DECISIONS, labelSelector=f"{NODE_LABEL}={self.node}")

    def status(self, resource: str, name: str) -> dict[str, Any]:
        return (self.kube.read(resource, None, name) or {}).get("status") or {}

    def phase(self, name: str) -> str | None:
        return self.status(DECISIONS, name).get("phase")

    def report(self) -> dict[str, Any]:
        return self.status(REPORTS, self.node)


def seed_node(kube: Kube, policy: dict[str, Any] | None = POLICY_SPEC) -> Cluster:
    """This test's Node and the policy: what a cluster holds before the agent starts."""
    cluster = Cluster(kube, kube.node("node-a", labels={"zone": "a"}))
    if policy is not None:
        cluster.policy = kube.name("test")
        kube.create(POLICIES, {"apiVersion": f"{GROUP}/{VERSION}", "kind": "OOMPolicy",
                               "metadata": {"name": cluster.policy}, "spec": policy})
    return cluster


def pod_on(cluster: Cluster, node: SandboxNode, name: str, namespace: str, *,
           labels: dict[str, str] | None = None, owner: dict[str, Any] | None = None,
           api: bool = True, **meta: Any) -> SandboxPod:
    """A pod running on the test's node: its Pod object (unless not `api`) and its cgroup,
    named by the UID the API server gave it."""
    uid = None
    if api:
        created = cluster.kube.pod(name, namespace, cluster.node, labels=labels, owner=owner,
                                   **meta)
        uid = created["metadata"]["uid"]
    return node.add_pod(name, namespace, labels=labels, uid=uid,
                        owner=(owner["kind"], owner["name"]) if owner else None)


def config(cluster: Cluster, node: SandboxNode, **overrides: Any) -> AgentConfig:
    fields: dict[str, Any] = {"node": cluster.node, "cgroup_root": node.root,
                              "metrics_port": 0, "act_alone_after": 1.0, **overrides}
    return AgentConfig(**fields)


@contextlib.asynccontextmanager
async def running_agent(cfg: AgentConfig, kube: Kube, who: Identity | None = None,
                        server: str | None = None) -> AsyncIterator[ClusterAgent]:
    """The agent, running in a thread until the block ends."""
    agent = ClusterAgent(cfg, agent_api(kube, who or kube.agent_for(cfg.node), server))
    failures: list[BaseException] = []

    def run() -> None:
        try:
            agent.run()
        except BaseException as error:  # handed to the test below
            failures.append(error)

    thread = threading.Thread(target=run, name="cluster-agent", daemon=True)
    thread.start()
    try:
        yield agent
    finally:
        agent.stop()
        await asyncio.to_thread(thread.join, 15)
    assert not thread.is_alive(), "the agent did not stop"
    if failures:
        raise failures[0]


async def until(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll a condition on something other than the API server (a process, the agent's
    counters) until it holds; TimeoutError after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not (result := condition()):
            await asyncio.sleep(0.01)
        return result


def quiet_publishing(**overrides: Any) -> PublishPolicy:
    """Heartbeats too rare to matter within a test, unless overridden."""
    return PublishPolicy(**{"heartbeat_seconds": 300.0, **overrides})


def operator_decision(name: str, victims: list[SandboxPod], *, node: str,
                      policy: str, label: str | None = None,
                      action: str = "Kill") -> OOMDecision:
    """A Pending decision as the operator writes it, under `policy` (the test's)."""
    refs = [PodRef(namespace=p.namespace, name=p.name, uid=p.uid, node_name=node)
            for p in victims]
    return OOMDecision(
        metadata=ObjectMeta(name=name, labels={NODE_LABEL: label or node}),
        spec=OOMDecisionSpec.model_validate({
            "nodeName": node, "policy": policy, "decidedBy": "operator", "action": action,
            "trigger": Trigger(pressure="Hard", available_bytes=10 * Mi, need_bytes=Mi),
            "victims": [VictimGroup(name=f"{p.namespace}/{p.name}", namespace=p.namespace,
                                    expected_reclaim_bytes=Mi, pods=[r])
                        for p, r in zip(victims, refs, strict=True)]}),
        status=OOMDecisionStatus(phase="Pending", victims=[
            VictimStatus(namespace=r.namespace, name=r.name, uid=r.uid) for r in refs]),
    )


async def create_decision(kube: Kube, decision: OOMDecision) -> None:
    """Create, then write the Pending status, as the operator does (a create drops it),
    with the operator's ServiceAccount."""
    custom = client.CustomObjectsApi(kube.api_client(kube.operator))
    body = decision.wire()
    status = body.pop("status")
    await asyncio.to_thread(custom.create_cluster_custom_object, GROUP, VERSION,
                            "oomdecisions", body)
    await asyncio.to_thread(custom.patch_cluster_custom_object_status, GROUP, VERSION,
                            "oomdecisions", decision.metadata.name, {"status": status},
                            _content_type="application/merge-patch+json")


def when(text: str) -> datetime:
    """An API timestamp, to compare (fractions of a second are left out when zero)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def phases(kube: Kube, name: str, who: Identity | None = None) -> list[str]:
    """Every phase a decision's status was written with, in order, from the audit log."""
    seen = [((c.body or {}).get("status") or {}).get("phase")
            for c in kube.calls(who) if c.resource == "oomdecisions" and c.name == name
            and c.subresource == "status" and c.code < 300]
    return [p for i, p in enumerate(seen) if p and (i == 0 or p != seen[i - 1])]
