"""What tenants' OOMPriority objects cost each in-cluster agent: its resident memory with
none, with 1,000 of them elsewhere in the cluster, and with many in its own pods'
namespaces, every object as large as the cluster admits.

Not a test: it reports numbers. The tests' control plane (etcd, kube-apiserver,
kube-controller-manager) with the chart installed, whose CRD schema bounds an object's
spec and whose admission policy bounds its labels and annotations. A throw-away cgroup v1
node holds two pods of one namespace. `oomguard agent` runs as its own process, with the
token of the chart's agent ServiceAccount bound to a pod on that node, as the DaemonSet
runs it; a fresh agent per scenario (objects accumulate from one to the next). Each
scenario's last object is a small marker in the node's namespace, created after the
others: once the agent's `oomguard_agent_cached_objects{resource="oompriorities"}` counts
it, every object before it has passed through the agent (listed or watched). Then
VmRSS and VmHWM of /proc/PID/status.

    python -m bench.agent_caches [--quick]

Needs root and a cgroup v1 memory hierarchy (otherwise it says so and exits 0). Prints a
markdown table and writes bench/results/agent_caches.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oomguard.api.meta import (
    LABEL_KEY_LENGTH,
    LABEL_VALUE_LENGTH,
    MAX_ANNOTATION_BYTES,
    MAX_EXPRESSIONS,
    MAX_OBJECT_LABELS,
    MAX_SELECTOR_LABELS,
    MAX_VALUES,
)
from oomguard.sandbox import Mi, SandboxNode, SandboxUnavailableError

from support import Kube, cluster_with_chart
from support.measure import verdict, write_results

PRIORITIES = "oomguard.io/v1alpha1/oompriorities"
LIMIT = 64 * Mi
GOAL_RSS_MIB = 128.0
"""The chart's memory limit of the agent: past it, the kubelet kills the agent and the node
is unprotected."""


@dataclass(frozen=True)
class Plan:
    elsewhere: int
    """Objects in namespaces with no pod on the node."""
    namespaces: int
    """Namespaces they are spread over."""
    here: int
    """Objects in the node's own pods' namespace."""


FULL = Plan(elsewhere=1000, namespaces=20, here=100)
QUICK = Plan(elsewhere=40, namespaces=4, here=4)


def label_key(i: int) -> str:
    """A distinct label key of the longest length: a 253-character DNS prefix, a slash and
    a 63-character name."""
    tag = f"{i:06d}"
    prefix = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * (61 - len(tag)) + tag])
    return f"{prefix}/{'n' * (LABEL_KEY_LENGTH - len(prefix) - 1)}"


def largest_priority(namespace: str, name: str) -> dict[str, Any]:
    """An OOMPriority as large as the CRD schema and the chart's admission policy admit."""
    value = "v" * LABEL_VALUE_LENGTH
    selector = {
        "matchLabels": {label_key(i): value for i in range(MAX_SELECTOR_LABELS)},
        "matchExpressions": [
            {"key": label_key(100 + i), "operator": "In",
             "values": [f"{j:02d}{value[2:]}" for j in range(MAX_VALUES)]}
            for i in range(MAX_EXPRESSIONS)],
    }
    return {
        "apiVersion": "oomguard.io/v1alpha1", "kind": "OOMPriority",
        "metadata": {
            "name": name, "namespace": namespace,
            "labels": {label_key(200 + i): value for i in range(MAX_OBJECT_LABELS)},
            "annotations": {"note": "x" * (MAX_ANNOTATION_BYTES - len("note"))},
        },
        "spec": {"podSelector": selector, "priority": 100},
    }


def marker(namespace: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "oomguard.io/v1alpha1", "kind": "OOMPriority",
            "metadata": {"name": name, "namespace": namespace}, "spec": {"priority": 1}}


def create_all(kube: Kube, bodies: list[dict[str, Any]]) -> float:
    """Create the objects, four at a time; seconds taken."""
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda body: kube.create(PRIORITIES, body), bodies))
    return time.monotonic() - started


def proc_status(pid: int) -> dict[str, int]:
    """The kB figures of /proc/PID/status."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if rest.strip().endswith("kB"):
            found[key] = int(rest.split()[0])
    return found


def metric(port: int, name: str, resource: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    found = re.search(rf'^{name}{{resource="{resource}"}} (\S+)$', text, re.MULTILINE)
    return None if found is None else float(found[1])


def run_agent(kube: Kube, node: str, root: Path, work: Path, expect_cached: int, *,
              timeout: float = 180.0) -> dict[str, Any]:
    """A fresh agent, until it keeps `expect_cached` priorities: its memory then."""
    config = kube.kubeconfig(work / "agent.kubeconfig", kube.agent_for(node))
    err = work / "agent.err"
    started = time.monotonic()
    with err.open("w") as log:
        agent = subprocess.Popen(
            [sys.executable, "-m", "oomguard", "agent", "--kubeconfig", str(config),
             "--cgroup-root", str(root), "--metrics-port", "0",
             "--state-dir", str(work / "state")],
            env={**os.environ, "NODE_NAME": node}, stderr=log)
    try:
        port = None
        deadline = started + timeout
        cached = None
        while time.monotonic() < deadline:
            if agent.poll() is not None:
                raise RuntimeError(f"agent exited with {agent.returncode}: {err.read_text()}")
            if port is None and (found := re.search(r"/healthz on port (\d+)", err.read_text())):
                port = int(found[1])
            if port is not None:
                cached = metric(port, "oomguard_agent_cached_objects", "oompriorities")
                if cached == expect_cached:
                    break
            time.sleep(0.2)
        else:
            raise TimeoutError(f"the agent kept {cached} priorities, not {expect_cached}, "
                               f"within {timeout}s: {err.read_text()}")
        synced = time.monotonic() - started
        settled = []
        for _ in range(5):  # what it holds once listed, not only its peak
            time.sleep(1.0)
            settled.append(proc_status(agent.pid))
        return {"seconds_to_cached": round(synced, 1), "cached_priorities": cached,
                "rss_mib": round(settled[-1]["VmRSS"] / 1024, 1),
                "hwm_mib": round(max(s["VmHWM"] for s in settled) / 1024, 1)}
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(15)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()


def measure(plan: Plan, work: Path) -> dict[str, Any]:
    with cluster_with_chart(work / "cluster") as session, SandboxNode(
            LIMIT, prefix="oomguard-bench-caches") as sandbox:
        kube = Kube(session)
        node = kube.node("bench-node")
        shop = kube.namespace("shop")
        for name in ("web-0", "web-1"):
            created = kube.pod(name, shop, node)
            sandbox.add_pod(name, shop, uid=created["metadata"]["uid"])
        elsewhere = [kube.namespace(f"tenant-{i}") for i in range(plan.namespaces)]
        one = largest_priority(shop, "probe")
        object_bytes = len(json.dumps(one))
        scenarios: list[dict[str, Any]] = []

        def scenario(name: str, bodies: list[dict[str, Any]], cached: int) -> None:
            seconds = create_all(kube, [*bodies, marker(shop, f"marker-{len(scenarios)}")])
            result = run_agent(kube, node, sandbox.root, work, cached)
            scenarios.append({"scenario": name, "created": len(bodies) + 1,
                              "create_seconds": round(seconds, 1), **result})

        scenario("no OOMPriority but one marker", [], 1)
        scenario(f"+ {plan.elsewhere} largest, in {plan.namespaces} namespaces without "
                 "pods on the node",
                 [largest_priority(elsewhere[i % plan.namespaces], f"big-{i}")
                  for i in range(plan.elsewhere)], 2)
        scenario(f"+ {plan.here} largest, in the namespace of the node's pods",
                 [largest_priority(shop, f"big-{i}") for i in range(plan.here)],
                 3 + plan.here)
    return {"object_bytes": object_bytes, "scenarios": scenarios}


def report(run: dict[str, Any]) -> None:
    print(f"\n## In-cluster agent memory by OOMPriority objects in the cluster "
          f"(each {run['object_bytes'] / 1024:.0f} KiB as JSON)\n")
    print("| scenario | objects in the cluster | kept by the agent | RSS MiB | peak (HWM) MiB "
          "| agent start to all seen, s | goal |")
    print("|---|---|---|---|---|---|---|")
    total = 0
    for s in run["scenarios"]:
        total += s["created"]
        print(f"| {s['scenario']} | {total} | {s['cached_priorities']:.0f} | {s['rss_mib']} "
              f"| {s['hwm_mib']} | {s['seconds_to_cached']} | "
              f"{verdict(s['hwm_mib'] < GOAL_RSS_MIB)} (< {GOAL_RSS_MIB:.0f} MiB) |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a few objects, for a smoke check")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        with tempfile.TemporaryDirectory(prefix="oomguard-bench-") as work:
            run = measure(plan, Path(work))
    except SandboxUnavailableError as reason:
        print(f"agent_caches: skipped, no real cgroup sandbox here: {reason}")
        return 0
    report(run)
    write_results("agent_caches", "agent.caches", {
        "quick": args.quick, "plan": plan.__dict__, "goal_rss_mib": GOAL_RSS_MIB, **run})
    return 0


if __name__ == "__main__":
    sys.exit(main())
