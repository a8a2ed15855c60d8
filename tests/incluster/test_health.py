"""The agent's loop never waits on the API server, and /healthz says when the loop
stalls (oomd's watchdog test): a liveness probe then restarts the agent."""

from __future__ import annotations

import asyncio
import signal
import threading
import urllib.error
import urllib.request

from agent_harness import config, create_decision, pod_on, running_agent, seed_node, until

from oomguard.agent.loop import NodeReader, NodeSample
from oomguard.api import NodeMemory
from oomguard.sandbox import SandboxNode

from support import Kube
from support.faults import Fault, FaultProxy


def _healthz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def test_a_slow_claim_does_not_stall_sampling(kube: Kube, node: SandboxNode) -> None:
    """The API server holds the agent's claim of a decision: the loop samples on
    meanwhile (it would act alone under Hard pressure), /healthz stays ok and names the
    decision being executed, and the kill follows once the claim is answered."""
    cluster = seed_node(kube)
    batch = pod_on(cluster, node, "batch-0", kube.namespace("jobs"))
    victim = node.start(batch, "anon", 8)
    name = f"{cluster.node}-1"
    gate = asyncio.Event()
    slow = Fault(lambda method, path: method == "PUT" and path.endswith(
        f"/oomdecisions/{name}/status"), status=None, hold=gate)
    async with FaultProxy(kube) as proxy:
        proxy.faults.append(slow)
        async with running_agent(config(cluster, node), kube, server=proxy.url) as agent:
            await create_decision(kube, cluster.operator_decision(name, [batch]))
            await until(lambda: slow.hits)
            held_at = agent.steps
            # Samples go on while the claim waits (its client gives up after 5 s; before
            # the fix, the loop took none in that time).
            await until(lambda: agent.steps >= held_at + 5, timeout=4.0)
            await until(lambda: "executing" in agent.health()[1], timeout=4.0)
            assert cluster.phase(name) == "Pending" and victim.poll() is None
            assert agent.metrics_port is not None
            code, why = await asyncio.to_thread(_healthz, agent.metrics_port)
            assert code == 200 and why.startswith("ok: last sample"), why
            assert f"executing {name} for" in why
            gate.set()
            await kube.wait_for(lambda: cluster.phase(name) == "Completed")
    assert await asyncio.to_thread(victim.wait, 5) == -signal.SIGKILL


class _Stalling:
    """The agent's own node reader, until `stall` is set: then a read blocks until
    `resume` is (a hung file read, say)."""

    def __init__(self, reader: NodeReader) -> None:
        self.reader = reader
        self.stall, self.resume = threading.Event(), threading.Event()

    def read_node(self) -> NodeMemory:
        if self.stall.is_set():
            self.resume.wait(30)
        return self.reader.read_node()

    def read(self) -> NodeSample:
        return self.reader.read()


async def test_healthz_fails_while_the_loop_is_stalled(kube: Kube, node: SandboxNode) -> None:
    cluster = seed_node(kube)
    async with running_agent(config(cluster, node, stall_after=1.0), kube) as agent:
        reader = _Stalling(agent.agent.reader)
        agent.agent.reader = reader
        await until(lambda: agent.metrics_port is not None and agent.health()[0])
        assert agent.metrics_port is not None
        assert (await asyncio.to_thread(_healthz, agent.metrics_port))[0] == 200
        reader.stall.set()
        await until(lambda: not agent.health()[0])
        code, why = await asyncio.to_thread(_healthz, agent.metrics_port)
        assert code == 503 and why.startswith("stalled: last sample"), why
        reader.stall.clear()
        reader.resume.set()
        await until(lambda: agent.health()[0])
        assert (await asyncio.to_thread(_healthz, agent.metrics_port))[0] == 200
