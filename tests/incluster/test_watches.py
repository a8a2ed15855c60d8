"""Watches and lists as a real API server serves them: a watch from a resourceVersion the
server no longer has gets `410 Gone`, and kopf (the operator), the agent's reflector and
the live `rank` client list again and carry on, losing no object and handling none twice;
large lists come in pages.

The 410 is the server's own: the clients' watches are cut (by the fault proxy they talk
through, as a network blip would) and their new watches held while kube-apiserver restarts
(its watch cache then starts at etcd's current revision) and etcd is compacted (so that
the old revision is gone from storage too)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import kopf
from agent_harness import (
    DECISIONS,
    config,
    phases,
    pod_on,
    running_agent,
    seed_node,
    until,
)

from oomguard.controller import Decider, Options, register
from oomguard.kube import Cluster
from oomguard.kube.live import load_cluster
from oomguard.sandbox import SandboxNode

from support import Kube, running_operator
from support.faults import Fault, FaultProxy

OURS = "oomguard.io/v1alpha1"
Mi, Gi = 2**20, 2**30


async def _away_while_the_server_forgets(kube: Kube, proxy: FaultProxy,
                                         meanwhile: Any) -> None:
    """Cut the clients' watches and hold their new ones; restart kube-apiserver, compact
    etcd, run `meanwhile` (writes the clients miss); then let the watches through."""
    gate = asyncio.Event()
    held = Fault(lambda method, path: "watch=" in path, status=None, hold=gate, times=None)
    proxy.faults.append(held)
    await proxy.cut()
    await until(lambda: held.hits, timeout=10)  # a client is back, and waits
    kube.stop_apiserver()
    kube.start_apiserver()
    kube.session.plane.compact_etcd()
    meanwhile()
    gate.set()
    proxy.faults.remove(held)


def _priority(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": OURS, "kind": "OOMPriority",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


async def test_kopf_lists_again_after_410_and_decides_once(kube: Kube) -> None:
    node = kube.node("node-a")
    shop = kube.namespace("shop")
    web = kube.pod("web-0", shop, node)
    kube.create(f"{OURS}/oompolicies", {"apiVersion": OURS, "kind": "OOMPolicy",
                                        "metadata": {"name": kube.name("p")},
                                        "spec": {"actions": {"soft": "Kill"}}})
    kube.create(f"{OURS}/oompriorities", _priority(shop, "before", priority=10))
    registry = kopf.OperatorRegistry()
    register(registry, Decider(Cluster(kube.api_client(kube.operator))),
             Options(status_interval=0.2))

    def status(name: str) -> dict[str, Any]:
        return (kube.read(f"{OURS}/oompriorities", shop, name) or {}).get("status") or {}

    def meanwhile() -> None:
        kube.create(f"{OURS}/oompriorities", _priority(shop, "during", priority=20))
        kube.store(f"{OURS}/nodememoryreports", {
            "apiVersion": OURS, "kind": "NodeMemoryReport", "metadata": {"name": node},
            "status": {"node": {"capacityBytes": 8 * Gi, "availableBytes": 500 * Mi},
                       "pods": [{"uid": web["metadata"]["uid"],
                                 "usage": {"anonBytes": 900 * Mi}}],
                       "observedTime": datetime.now(UTC).isoformat()}})

    async with FaultProxy(kube) as proxy, running_operator(kube, registry, server=proxy.url):
        await kube.wait_for(lambda: status("before").get("matchedPods") == 1)
        await _away_while_the_server_forgets(kube, proxy, meanwhile)
        # Overlapping "before" and as specific, "during" decides no pod: its status says so
        await kube.wait_for(lambda: status("during").get("overlaps") == ["before"],
                            timeout=30)
        [decision] = await kube.wait_for(lambda: [
            d for d in kube.read_all(DECISIONS, labelSelector=f"oomguard.io/node={node}")
            if d.get("status")], timeout=30)
        assert proxy.gone, "no watch was answered 410 Gone"
    assert [v["name"] for v in decision["spec"]["victims"]] == [f"{shop}/web-0"]
    creates = [c for c in kube.calls(kube.operator)
               if c.rbac == ("create", "oomguard.io", "oomdecisions", "")]
    assert len(creates) == 1


async def test_the_agent_lists_again_after_410_and_executes_once(
    kube: Kube, node: SandboxNode
) -> None:
    cluster = seed_node(kube)
    batch = pod_on(cluster, node, "batch-0", kube.namespace("jobs"))
    victim = node.start(batch, "anon", 8)
    name = f"{cluster.node}-1"

    async with FaultProxy(kube) as proxy, running_agent(config(cluster, node), kube,
                                                        server=proxy.url) as agent:
        await until(lambda: all(r.synced.is_set() for r in agent.view.reflectors)
                    and agent.decisions.synced.is_set())
        await _away_while_the_server_forgets(kube, proxy, lambda: kube.store(
            DECISIONS, cluster.operator_decision(name, [batch]).wire()))
        await kube.wait_for(lambda: cluster.phase(name) == "Completed", timeout=30)
        assert proxy.gone, "no watch was answered 410 Gone"
    assert victim.poll() is not None
    assert phases(kube, name) == ["Pending", "Executing", "Completed"]


async def test_lists_come_in_pages_and_an_expired_continue_starts_over(kube: Kube) -> None:
    """`oomguard rank --node` reads a node's pods in pages; a continue token that expired
    (410 Gone) starts the list over. kube-apiserver 1.37 serves the later pages of a list
    from its watch cache's snapshot, so compacting etcd between two pages does not expire
    the token: the fault proxy answers the 410 the server would."""
    node = kube.node("node-a")
    shop = kube.namespace("shop")
    for i in range(7):
        kube.pod(f"web-{i}", shop, node)
    expired = Fault(lambda method, path: "continue=" in path and "/pods" in path, status=410)
    async with FaultProxy(kube) as proxy:
        proxy.faults.append(expired)
        reader = kube.identity("oomguard-operator", name="reader")
        inputs = await asyncio.to_thread(load_cluster, kube.api_client(reader,
                                                                       server=proxy.url),
                                         node, 3)
    assert sorted(p.name for p in inputs.pods) == [f"web-{i}" for i in range(7)]
    assert len(expired.hits) == 1
    pages = [c for c in kube.calls(reader) if c.rbac == ("list", "", "pods", "")]
    # The node's pods: a first page, then (the second one expired) all three again; the
    # namespace's pods: three pages.
    assert len(pages) == 1 + 3 + 3
