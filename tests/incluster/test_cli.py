"""`oomguard agent` without --standalone, as the DaemonSet runs it: node name from the
downward API's NODE_NAME, credentials of the chart's agent ServiceAccount (a kubeconfig
here); it reports, serves /metrics and /healthz, uses only the API permissions its RBAC
grants, and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

from agent_harness import pod_on, seed_node

from oomguard.kube.permissions import AGENT
from oomguard.sandbox import SandboxNode

from support import Kube


async def _lines(stream: asyncio.StreamReader) -> AsyncIterator[str]:
    while line := await stream.readline():
        yield line.decode()


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def test_cluster_agent_command(kube: Kube, node: SandboxNode, tmp_path: Path) -> None:
    cluster = seed_node(kube)
    web = pod_on(cluster, node, "web-0", kube.namespace("shop"))
    node.start(web, "anon", 8)
    config = kube.kubeconfig(tmp_path / "agent.kubeconfig", cluster.agent)
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "oomguard", "agent", "--kubeconfig", str(config),
        "--cgroup-root", str(node.root), "--metrics-port", "0",
        "--state-dir", str(tmp_path / "state"),
        env={**os.environ, "NODE_NAME": cluster.node}, stderr=asyncio.subprocess.PIPE)
    assert agent.stderr is not None
    log: list[str] = []
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def follow() -> None:  # drain stderr, or the agent blocks on its log
        async for line in _lines(agent.stderr):
            log.append(line)
            if (found := re.search(r"/healthz on port (\d+)", line)) and not port.done():
                port.set_result(int(found[1]))

    follower = asyncio.create_task(follow())
    try:
        metrics_port = await asyncio.wait_for(port, 10)
        await kube.wait_for(lambda: cluster.report().get("pods"), timeout=20)
        health = await asyncio.to_thread(_get, metrics_port, "/healthz")
        metrics = await asyncio.to_thread(_get, metrics_port, "/metrics")
    finally:
        agent.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(agent.wait(), 15)
        await follower
    assert code == 0, "".join(log)
    assert health[0] == 200 and health[1].startswith("ok: last sample")
    for sample in ('oomguard_agent_samples_total{scope="node"}',
                   'oomguard_agent_report_writes_total{kind="full"} 1.0',
                   "oomguard_agent_pressure_level 0.0", "oomguard_agent_api_up 1.0"):
        assert sample in metrics[1]
    assert kube.used_permissions(cluster.agent) <= AGENT


def test_cluster_agent_needs_its_node_name(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NODE_NAME"}
    result = subprocess.run(
        [sys.executable, "-m", "oomguard", "agent", "--server", "http://127.0.0.1:9",
         "--cgroup-root", str(tmp_path)], env=env, capture_output=True, text=True,
        timeout=30, check=False)
    assert result.returncode == 2
    assert "no node name: pass --node NAME or set NODE_NAME" in result.stderr
