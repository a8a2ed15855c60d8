"""`kubectl get -w` on the real API server: an SRE watching decisions sees each one appear
and its outcome change, a row per change, with the CRD's printer columns."""

from __future__ import annotations

import asyncio
from pathlib import Path

from support import Kube, Kubectl

OURS = "oomguard.io/v1alpha1"


async def _line_with(stream: asyncio.StreamReader, text: str, seen: list[str]) -> str:
    async with asyncio.timeout(20):
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise EOFError(f"kubectl ended before printing {text!r}: {seen}")
            seen.append(line.rstrip())
            if text in line:
                return line


async def test_get_watch_shows_each_change_of_a_decision(kube: Kube, tmp_path: Path) -> None:
    node = kube.node("node-a")
    kubectl = Kubectl(kube.kubeconfig(tmp_path / "kubeconfig"), tmp_path)
    watch = await asyncio.create_subprocess_exec(
        kubectl.binary, f"--kubeconfig={kubectl.kubeconfig}", f"--cache-dir={tmp_path}/cache",
        "get", "oomdecisions", "-w", "-l", f"oomguard.io/node={node}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert watch.stdout is not None
    seen: list[str] = []
    name = f"{node}-20261201-000000-000"
    decision = {"apiVersion": OURS, "kind": "OOMDecision",
                "metadata": {"name": name, "labels": {"oomguard.io/node": node}},
                "spec": {"nodeName": node, "policy": "default", "decidedBy": "operator",
                         "action": "Kill", "trigger": {"pressure": "Hard",
                                                       "availableBytes": 1, "needBytes": 2},
                         "victims": [{"name": "shop/web-0", "namespace": "shop",
                                      "expectedReclaimBytes": 1, "pods": [
                                          {"namespace": "shop", "name": "web-0",
                                           "uid": "u-1", "nodeName": node}]}]}}
    try:  # created before or after kubectl's first list: either way it shows a row
        kube.create(f"{OURS}/oomdecisions", {**decision, "status": {"phase": "Pending"}})
        first = await _line_with(watch.stdout, "Pending", seen)
        kube.patch_status(f"{OURS}/oomdecisions", None, name, {"phase": "Executing"})
        await _line_with(watch.stdout, "Executing", seen)
        kube.patch_status(f"{OURS}/oomdecisions", None, name,
                          {"phase": "Completed", "reclaimedBytes": 123456})
        last = await _line_with(watch.stdout, "Completed", seen)
    finally:
        watch.terminate()
        await watch.wait()
    assert first.split()[:6] == [name, node, "Hard", "Kill", "shop/web-0", "Pending"]
    assert last.split()[:7] == [name, node, "Hard", "Kill", "shop/web-0", "Completed",
                                "123456"]
    print("$ kubectl get oomdecisions -w\n" + "\n".join(seen))
