"""The agent publishes its node's NodeMemoryReport: created once, then small heartbeat
summaries without the pods, and the full detail again when a pod's usage changes
materially."""

from __future__ import annotations

from typing import Any

from agent_harness import (
    NODE,
    REPORTS,
    config,
    quiet_publishing,
    requests,
    running_agent,
    seed_node,
    status_of,
    when,
)

from oomguard.sandbox import Mi, SandboxNode

from support import AGENT_TOKEN, ClusterEmulator


async def test_report_is_created_then_heartbeats_then_detail_on_change(
    emulator: ClusterEmulator, node: SandboxNode
) -> None:
    web = node.add_pod("web", "shop")
    node.start(web, "anon", 8)
    seed_node(emulator, [web])
    publishing = quiet_publishing(heartbeat_seconds=0.2, material_bytes=16 * Mi)
    cfg = config(node, publish=publishing, scan_seconds=0.2)

    def status() -> dict[str, Any]:
        return status_of(emulator, REPORTS, NODE)

    def web_usage() -> int:
        return sum(p["usage"]["anonBytes"] for p in status().get("pods") or []
                   if p["uid"] == web.uid)

    async with running_agent(cfg, emulator.server_url):
        first = await emulator.wait_for(lambda: status().get("pods") and status())
        # Heartbeats: the report is refreshed, its pod detail is not.
        await emulator.wait_for(
            lambda: when(status()["heartbeatTime"]) > when(first["heartbeatTime"])
            and status()["podsObservedTime"] == first["podsObservedTime"])
        before = web_usage()
        node.start(web, "anon", 40, container="sidecar")  # +40MiB: a material change
        await emulator.wait_for(lambda: web_usage() >= before + 32 * Mi)

    assert [p["uid"] for p in first["pods"]] == [web.uid]
    report = emulator.read(REPORTS, None, NODE)
    assert report is not None
    owner = report["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("Node", NODE)  # goes when the node goes
    final = report["status"]
    assert final["pressure"] == "None" and final["heartbeatSeconds"] == 0.2
    assert when(final["heartbeatTime"]) >= when(final["podsObservedTime"])
    assert final["node"]["capacityBytes"] == 256 * Mi

    creates = list(requests(emulator, AGENT_TOKEN, "POST", "nodememoryreports"))
    assert len(creates) == 1 and "status" not in creates[0][1]
    writes = [body["status"] for _, body, _ in
              requests(emulator, AGENT_TOKEN, "PATCH", f"nodememoryreports/{NODE}/status")]
    summaries = [w for w in writes if "pods" not in w]
    assert summaries and len(writes) - len(summaries) >= 2  # the first, and on change
    for summary in summaries:  # node signals and times: no pods resent
        assert set(summary) == {"node", "observedTime", "heartbeatTime", "pressure"}
