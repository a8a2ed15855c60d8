"""The agent publishes its node's NodeMemoryReport: created once, then small heartbeat
summaries without the pods, and the full detail again when a pod's usage changes
materially."""

from __future__ import annotations

from typing import Any

from agent_harness import (
    REPORTS,
    config,
    pod_on,
    quiet_publishing,
    running_agent,
    seed_node,
    when,
)

from oomguard.sandbox import Mi, SandboxNode

from support import Kube


async def test_report_is_created_then_heartbeats_then_detail_on_change(
    kube: Kube, node: SandboxNode
) -> None:
    cluster = seed_node(kube)
    web = pod_on(cluster, node, "web", kube.namespace("shop"))
    node.start(web, "anon", 8)
    publishing = quiet_publishing(heartbeat_seconds=0.2, material_bytes=16 * Mi)
    cfg = config(cluster, node, publish=publishing, scan_seconds=0.2)

    def status() -> dict[str, Any]:
        return cluster.report()

    def web_usage() -> int:
        return sum(p["usage"]["anonBytes"] for p in status().get("pods") or []
                   if p["uid"] == web.uid)

    async with running_agent(cfg, kube):
        first = await kube.wait_for(lambda: status().get("pods") and status())
        # Heartbeats: the report is refreshed, its pod detail is not.
        await kube.wait_for(
            lambda: when(status()["heartbeatTime"]) > when(first["heartbeatTime"])
            and status()["podsObservedTime"] == first["podsObservedTime"])
        before = web_usage()
        node.start(web, "anon", 40, container="sidecar")  # +40MiB: a material change
        # Detail is written each time usage moved more than 16Mi (unreclaimable, kernel
        # memory included) since the last detail: once the sidecar holds its 40Mi and its
        # interpreter, the report lags the truth by less than that, so it shows +20Mi.
        await kube.wait_for(lambda: web_usage() >= before + 20 * Mi)

    assert [p["uid"] for p in first["pods"]] == [web.uid]
    report = kube.read(REPORTS, None, cluster.node)
    assert report is not None
    owner = report["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("Node", cluster.node)  # goes when the node goes
    final = report["status"]
    assert final["pressure"] == "None" and final["heartbeatSeconds"] == 0.2
    assert when(final["heartbeatTime"]) >= when(final["podsObservedTime"])
    assert final["node"]["capacityBytes"] == 256 * Mi

    calls = [c for c in kube.calls(cluster.agent) if c.resource == "nodememoryreports"]
    creates = [c for c in calls if c.verb == "create"]
    assert len(creates) == 1 and "status" not in (creates[0].body or {})
    writes = [(c.body or {})["status"] for c in calls
              if c.rbac == ("patch", "oomguard.io", "nodememoryreports", "status")]
    summaries = [w for w in writes if "pods" not in w]
    assert summaries and len(writes) - len(summaries) >= 2  # the first, and on change
    for summary in summaries:  # node signals and times: no pods resent
        assert set(summary) == {"node", "observedTime", "heartbeatTime", "pressure"}


async def test_report_goes_when_its_node_goes(kube: Kube, node: SandboxNode) -> None:
    """The report's ownerReference names the Node: the real garbage collector deletes the
    report when the Node object is deleted."""
    cluster = seed_node(kube)
    async with running_agent(config(cluster, node), kube):
        await kube.wait_for(lambda: kube.read(REPORTS, None, cluster.node))
    kube.delete("v1/nodes", None, cluster.node)
    await kube.wait_for(lambda: kube.read(REPORTS, None, cluster.node) is None, timeout=30)
