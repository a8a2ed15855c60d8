"""`oomguard agent --standalone` on a real cgroup v1 sandbox node: a pod grows toward the
node's limit, and the agent kills that whole pod before the kernel OOM killer would."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from oomguard.sandbox import Mi, SandboxNode, SandboxUnavailableError, procs

LIMIT = 256 * Mi
POLICY = {
    "apiVersion": "oomguard.io/v1alpha1", "kind": "OOMPolicy", "metadata": {"name": "test"},
    "spec": {"thresholds": {"memoryAvailable": {"soft": "30%", "hard": "15%"}},
             "reclaimTo": "40%"},
}


@pytest.fixture
def node() -> Iterator[SandboxNode]:
    try:
        sandbox = SandboxNode(LIMIT, prefix="oomguard-test")
    except SandboxUnavailableError as reason:
        pytest.skip(f"no real cgroup sandbox: {reason}")
    with sandbox:
        yield sandbox


def _priority(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "oomguard.io/v1alpha1", "kind": "OOMPriority",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def _agent(node: SandboxNode, files: list[Path], state: Path) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "oomguard", "agent", "--standalone",
            "--cgroup-root", str(node.root), "--node", "sandbox", "--state-dir", str(state)]
    for f in files:
        args += ["-f", str(f)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _next_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    readable, _, _ = select.select([process.stdout], [], [], timeout)
    return process.stdout.readline() if readable else ""


def _stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=10)


def test_agent_kills_the_low_priority_group_before_the_kernel_does(
    node: SandboxNode, tmp_path: Path
) -> None:
    batch = [node.add_pod(f"batch-{i}", "jobs", owner=("Job", "etl")) for i in range(2)]
    db = node.add_pod("db-0", "shop", labels={"app": "db"})
    web = node.add_pod("web-0", "shop")
    files = tmp_path / "node.yaml"
    files.write_text(yaml.safe_dump_all([
        POLICY,
        _priority("jobs", "etl", priority=-100, group={"by": "Workload"}),
        _priority("shop", "db", priority=900, podSelector={"matchLabels": {"app": "db"}}),
        *[p.manifest() for p in [*batch, db, web]],
    ]))
    idle_batch = node.start(batch[0], "anon", 8)
    db_process = node.start(db, "anon", 40)
    web_process = node.start(web, "anon", 10)
    agent = _agent(node, [files], tmp_path / "state")
    try:
        # The batch Job's second pod leaks until the node is under pressure; the database
        # holds more memory than either batch pod, but the Job as a whole is the victim.
        node.start(batch[1], "grow:200", 200)
        line = _next_line(agent, timeout=30)
        assert line, f"no decision; agent stderr: {agent.stderr.read() if agent.poll() else ''}"
        decision = json.loads(line)
    finally:
        code = _stop(agent)
    assert code == 0
    spec, status = decision["spec"], decision["status"]
    assert decision["kind"] == "OOMDecision" and spec["decidedBy"] == "agent"
    assert spec["victims"][0]["name"] == "jobs/Job/etl"
    assert {p["uid"] for p in spec["victims"][0]["pods"]} == {p.uid for p in batch}
    assert spec["action"] == "Kill"
    assert status["phase"] == "Completed"
    assert {v["outcome"] for v in status["victims"]} == {"Killed"}
    assert status["reclaimedBytes"] > 0
    for pod in batch:  # the whole group, both pods, every process
        assert not pod.path.exists() or procs(pod.path / "main") == set()
    assert idle_batch.wait(timeout=5) == -signal.SIGKILL
    assert db_process.poll() is None and web_process.poll() is None
    assert node.kernel_oom_kills() == 0


def test_invalid_policy_file_exits_2_before_touching_anything(
    node: SandboxNode, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**POLICY, "spec": {"reclaimTo": "lots"}}))
    node.add_pod("p")
    agent = _agent(node, [bad], tmp_path / "state")
    assert agent.wait(timeout=30) == 2
    assert agent.stderr is not None
    assert f"{bad} (document 1): OOMPolicy test: field spec.reclaimTo" in agent.stderr.read()


def _standalone(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oomguard", "agent", "--standalone",
                           *map(str, args)], capture_output=True, text=True, timeout=30,
                          check=False)


def test_a_root_that_is_not_one_is_refused_saying_why(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    for root, why in [(tmp_path, "holds no kubepods or kubepods.slice cgroup"),
                      (tmp_path / "missing", "does not exist"),
                      (tmp_path / "file", "is not a directory")]:
        result = _standalone("--cgroup-root", root)
        assert result.returncode == 2
        assert f"{root} {why}" in result.stderr


def test_what_the_standalone_agent_does_not_use_is_refused_or_said(
    node: SandboxNode, tmp_path: Path
) -> None:
    """--server with --standalone is refused; a NodeMemoryReport in -f is ignored, and
    said so (the agent measures its node itself)."""
    result = _standalone("--cgroup-root", node.root, "--server", "https://127.0.0.1:1")
    assert result.returncode == 2
    assert "--server and --kubeconfig are for the agent in a cluster" in result.stderr
    report = tmp_path / "report.yaml"
    report.write_text(yaml.safe_dump({
        "apiVersion": "oomguard.io/v1alpha1", "kind": "NodeMemoryReport",
        "metadata": {"name": "elsewhere"},
        "status": {"node": {"capacityBytes": 1 << 30, "availableBytes": 1 << 29}}}))
    node.add_pod("p")
    agent = _agent(node, [report], tmp_path / "state")
    assert agent.stderr is not None
    said = ""
    deadline = time.monotonic() + 30
    while "protecting" not in said and time.monotonic() < deadline:
        readable, _, _ = select.select([agent.stderr], [], [], 1)
        said += agent.stderr.readline() if readable else ""
    assert _stop(agent) == 0
    assert "NodeMemoryReport elsewhere ignored: the standalone agent measures" in said


def test_agent_stops_cleanly_on_sigterm_without_pressure(node: SandboxNode,
                                                          tmp_path: Path) -> None:
    node.start(node.add_pod("quiet"), "anon", 8)
    agent = _agent(node, [], tmp_path / "state")
    assert agent.stderr is not None
    deadline = time.monotonic() + 30
    started = ""
    while "protecting" not in started and time.monotonic() < deadline:
        readable, _, _ = select.select([agent.stderr], [], [], 1)
        started += agent.stderr.readline() if readable else ""
    assert "protecting" in started
    assert _stop(agent) == 0
    assert agent.stdout is not None and agent.stdout.read() == ""
