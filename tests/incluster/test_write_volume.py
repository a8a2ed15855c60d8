"""How much one agent writes to the API server for its NodeMemoryReport, with 110 pods (the
kubelet's default maximum): half an hour at rest and half a minute under pressure, on a
simulated clock, through the real client against the real API server, as the chart's
agent ServiceAccount. The bytes are the request bodies the API server received (its audit
log records them).

At rest it must stay under 1 KB/s per node: 5000 nodes then write under 5 MB/s to etcd.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from agent_harness import agent_api

from oomguard.agent.loop import NodeSample
from oomguard.agent.metrics import AgentMetrics
from oomguard.agent.publish import PublishPolicy
from oomguard.agent.report import ReportWriter
from oomguard.api import ContainerMemory, MemoryUsage, NodeMemory, PodMemory, Pressure

from support import Identity, Kube

PODS = 110
Gi, Mi = 1 << 30, 1 << 20
REST_SECONDS, PRESSURE_SECONDS = 1800.0, 30.0
CHURN_SECONDS = 300.0
"""One pod replaced every five minutes: a busy node."""


def _usage(anon: int) -> MemoryUsage:
    return MemoryUsage(anon_bytes=anon, file_bytes=anon // 3, kernel_bytes=anon // 50,
                       working_set_bytes=anon + anon // 6)


def _pod(rng: random.Random) -> PodMemory:
    anon = rng.randrange(20 * Mi, 2 * Gi)
    return PodMemory(uid=str(uuid.UUID(int=rng.getrandbits(128))), qos_class="Burstable",
                     usage=_usage(anon), containers=[
                         ContainerMemory(id=f"{rng.getrandbits(256):064x}", usage=_usage(part))
                         for part in (anon * 9 // 10, anon // 10)])


@dataclass
class SimulatedNode:
    """110 pods whose usage drifts by up to 2% between reads, one replaced every five
    minutes; the clock is the test's."""

    rng: random.Random = field(default_factory=lambda: random.Random(1))
    t: float = 0.0
    pods: list[PodMemory] = field(default_factory=list)
    churned: float = 0.0

    def __post_init__(self) -> None:
        self.pods = [_pod(self.rng) for _ in range(PODS)]

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return datetime(2026, 11, 26, tzinfo=UTC) + timedelta(seconds=self.t)

    def read_node(self) -> NodeMemory:
        return NodeMemory(capacity_bytes=256 * Gi, allocatable_bytes=250 * Gi,
                          available_bytes=100 * Gi)

    def read(self) -> NodeSample:
        if self.t - self.churned >= CHURN_SECONDS:
            self.churned = self.t
            self.pods[self.rng.randrange(PODS)] = _pod(self.rng)
        self.pods = [p.model_copy(update={"usage": _usage(int(
            p.usage.anon_bytes * self.rng.uniform(0.98, 1.02)))}) for p in self.pods]
        return NodeSample(self.read_node(), self.pods)


def _simulate(writer: ReportWriter, node: SimulatedNode, pressure: Pressure,
              seconds: float) -> None:
    end = node.t + seconds
    while node.t < end:
        writer.observe(node.read_node(), pressure)
        node.t += writer.tick()


def _sizes(kube: Kube, who: Identity) -> list[int]:
    """Body sizes of the writer's requests, in order, serialised as the client sends them."""
    return [len(json.dumps(c.body)) for c in kube.calls(who)
            if c.resource == "nodememoryreports" and c.body is not None]


def _writes(metrics: AgentMetrics) -> dict[str, int]:
    return {kind: int(metrics.report_writes.labels(kind)._value.get())
            for kind in ("create", "summary", "full")}


async def test_report_write_volume_at_rest_and_under_pressure(kube: Kube) -> None:
    node, metrics = SimulatedNode(), AgentMetrics()
    name = kube.node("node-a")
    who = kube.agent_for(name)
    writer = ReportWriter(agent_api(kube, who), name, node, node,
                          metrics, policy=PublishPolicy(), scan_seconds=10.0)
    await asyncio.to_thread(_simulate, writer, node, "None", REST_SECONDS)
    rest_writes = _writes(metrics)
    await asyncio.to_thread(_simulate, writer, node, "Hard", PRESSURE_SECONDS)
    pressure_fulls = _writes(metrics)["full"] - rest_writes["full"]
    sizes = _sizes(kube, who)
    at_rest, under_pressure = sum(sizes[:sum(rest_writes.values())]), \
        sum(sizes[sum(rest_writes.values()):])

    rest_rate, pressure_rate = at_rest / REST_SECONDS, under_pressure / PRESSURE_SECONDS
    print(f"\n{PODS} pods: at rest {rest_rate:.0f} B/s ({rest_writes}), under pressure "
          f"{pressure_rate:.0f} B/s ({pressure_fulls} full writes in {PRESSURE_SECONDS:.0f}s)")
    assert rest_rate < 1024
    # At rest: a heartbeat every 30s, the detail on churn (every 5 minutes) and at start.
    assert rest_writes["summary"] >= 50 and rest_writes["full"] <= 8
    assert 29 <= pressure_fulls <= 31  # every second
    assert sum(metrics.report_bytes.labels(k)._value.get() for k in rest_writes) == \
        sum(sizes)  # the metric counts what the server receives
