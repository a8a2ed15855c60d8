"""`oomguard demo`: a throw-away node on real cgroups, a leaking batch Job, and what
happens with oomguard, then with the kernel alone.

The node is a 512Mi v1 memory cgroup. An important database holds the most memory; a
two-pod batch Job (priority -100, grouped by workload) starts leaking. oomguard kills the
whole Job before the node runs out; the kernel alone waits for the limit and then kills
the biggest process, the database.
"""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from oomguard import cgroups
from oomguard.cli.render import table
from oomguard.engine.ranking import size
from oomguard.sandbox import Mi, SandboxNode, SandboxPod, SandboxUnavailableError, wait_until

NODE_LIMIT = 512 * Mi
LEAK_RATE = 40  # MiB/s: slow enough to watch, fast enough to be over in seconds
POLICY: dict[str, Any] = {
    "apiVersion": "oomguard.io/v1alpha1", "kind": "OOMPolicy", "metadata": {"name": "demo"},
    "spec": {"thresholds": {"memoryAvailable": {"soft": "20%", "hard": "10%"}},
             "reclaimTo": "30%", "actions": {"soft": "Kill", "hard": "Kill"}},
}
PRIORITIES: list[dict[str, Any]] = [
    {"apiVersion": "oomguard.io/v1alpha1", "kind": "OOMPriority",
     "metadata": {"name": "database", "namespace": "shop"},
     "spec": {"podSelector": {"matchLabels": {"app": "postgres"}}, "priority": 900,
              "preference": "Avoid", "allowance": "300Mi"}},
    {"apiVersion": "oomguard.io/v1alpha1", "kind": "OOMPriority",
     "metadata": {"name": "web", "namespace": "shop"},
     "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "priority": 500}},
    {"apiVersion": "oomguard.io/v1alpha1", "kind": "OOMPriority",
     "metadata": {"name": "reports", "namespace": "batch"},
     "spec": {"priority": -100, "group": {"by": "Workload"}}},
]
TIMEOUT = 60.0


@dataclass
class DemoPod:
    pod: SandboxPod
    workload: str
    mib: int
    what: str
    process: subprocess.Popen[str] | None = None

    @property
    def ref(self) -> str:
        return f"{self.pod.namespace}/{self.pod.name}"


def _pods(node: SandboxNode) -> list[DemoPod]:
    return [
        DemoPod(node.add_pod("postgres-0", "shop", labels={"app": "postgres"}),
                "anon", 240, "priority 900, Avoid, allowance 300Mi"),
        DemoPod(node.add_pod("web-0", "shop", labels={"app": "web"}),
                "anon", 40, "priority 500"),
        DemoPod(node.add_pod("report-0", "batch", owner=("Job", "report")),
                "anon", 20, "priority -100, Job report"),
        DemoPod(node.add_pod("report-1", "batch", owner=("Job", "report")),
                f"grow:{LEAK_RATE}", 400, f"priority -100, Job report: leaks {LEAK_RATE}Mi/s"),
    ]


class Screen:
    """Progress on one rewritten line on a terminal, one line a second elsewhere."""

    def __init__(self, out: TextIO) -> None:
        self.out, self.tty, self.last = out, out.isatty(), 0.0
        self.shown = ""

    def say(self, text: str = "") -> None:
        self.end_progress()
        print(text, file=self.out, flush=True)

    def progress(self, text: str) -> None:
        if self.tty:
            self.out.write("\r" + text + "\033[K")
            self.out.flush()
            self.last = 1.0
        elif time.monotonic() - self.last >= 1.0 and text != self.shown:
            print(text, file=self.out, flush=True)
            self.last, self.shown = time.monotonic(), text

    def end_progress(self) -> None:
        if self.tty and self.last:
            self.out.write("\n")
            self.last = 0.0


def _bar(node: SandboxNode) -> str:
    used = node.usage_bytes() // Mi * Mi  # whole MiB: a steady node draws a steady bar
    width = 30
    filled = min(width, round(width * used / NODE_LIMIT))
    soft = round(width * 0.8)
    cells = ["#" if i < filled else ("|" if i == soft else ".") for i in range(width)]
    return (f"  node memory [{''.join(cells)}] {size(used)} of {size(NODE_LIMIT)} used, "
            f"{size(NODE_LIMIT - used)} available (| marks the soft threshold)")


def _usage(node: SandboxNode) -> dict[str, int]:
    snapshot = cgroups.read_snapshot(node.root, containers=False)
    return {p.uid: p.usage.unreclaimable_bytes for p in snapshot.pods}


def _state(pods: list[DemoPod], before: dict[str, int], after: dict[str, int]) -> str:
    rows = [["POD", "WHAT", "BEFORE", "AFTER", "STATE"]]
    for p in pods:
        alive = p.process is not None and p.process.poll() is None
        rows.append([p.ref, p.what, size(before.get(p.pod.uid, 0)),
                     size(after.get(p.pod.uid, 0)) if alive else "-",
                     "running" if alive else "KILLED"])
    return table(rows)


def _start(node: SandboxNode, pods: list[DemoPod]) -> None:
    for p in pods:
        p.process = node.start(p.pod, p.workload, p.mib)


def with_oomguard(screen: Screen, workdir: Path) -> None:
    with SandboxNode(NODE_LIMIT, prefix="oomguard-demo") as node:
        pods = _pods(node)
        objects = [POLICY, *PRIORITIES, *(p.pod.manifest() for p in pods)]
        (workdir / "node.yaml").write_text(yaml.safe_dump_all(objects))
        screen.say(f"Round 1: with oomguard, on {node.root}")
        screen.say("  policy: Soft pressure below 20% available (102Mi), reclaim to 30%; "
                   "action Kill")
        agent = subprocess.Popen(
            [sys.executable, "-m", "oomguard", "agent", "--standalone", "--cgroup-root",
             str(node.root), "-f", str(workdir / "node.yaml"), "--node", "demo-node",
             "--state-dir", str(workdir / "state")],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            _start(node, pods)
            assert agent.stdout is not None
            before: dict[str, int] = {}
            deadline = time.monotonic() + TIMEOUT
            line = ""
            while not line and time.monotonic() < deadline:
                before = _usage(node)
                screen.progress(_bar(node))
                if select.select([agent.stdout], [], [], 0.1)[0]:
                    line = agent.stdout.readline()
            if not line:
                screen.say("  no decision within a minute: something is wrong")
                return
            decision = json.loads(line)
            after = _usage(node)
            screen.progress(_bar(node))
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=10)
        spec, status = decision["spec"], decision["status"]
        victim = spec["victims"][0]
        screen.say(f"  decision {decision['metadata']['name']}: {spec['trigger']['pressure']} "
                   f"pressure, need {size(spec['trigger']['needBytes'])}")
        screen.say(f"  victim: {victim['name']} (all {len(victim['pods'])} pods), "
                   f"ranked first: {spec['ranking'][0]['reason']}")
        screen.say(f"  {status['phase']}: reclaimed {size(status['reclaimedBytes'])} in "
                   f"{status['durationSeconds'] * 1000:.0f}ms; kernel OOM kills: "
                   f"{node.kernel_oom_kills()}")
        screen.say()
        screen.say(_state(pods, before, after))


def kernel_alone(screen: Screen) -> None:
    with SandboxNode(NODE_LIMIT, prefix="oomguard-demo") as node:
        pods = _pods(node)
        screen.say(f"Round 2: the same node and workload, the kernel alone, on {node.root}")
        _start(node, pods)
        before: dict[str, int] = {}
        peak = 0
        deadline = time.monotonic() + TIMEOUT
        while node.kernel_oom_kills() == 0 and time.monotonic() < deadline:
            if node.usage_bytes() > peak:  # "before" is the fullest the node was seen
                peak, before = node.usage_bytes(), _usage(node)
            screen.progress(_bar(node))
            time.sleep(0.1)  # refresh period of the live view
        # The kernel counts its kill when it sends SIGKILL; the victim exits (and releases
        # its memory) a moment later. Name it once it is gone.
        wait_until(lambda: any(p.process is not None and p.process.poll() is not None
                               for p in pods), timeout=10.0)
        after = _usage(node)
        killed = [p.ref for p in pods if p.process is not None and p.process.poll() is not None]
        screen.say(f"  the kernel OOM killer fired at the limit and killed "
                   f"{node.kernel_oom_kills()} process: {', '.join(killed) or 'none'}")
        screen.say("  it picks the biggest process, not the right group: the Job is "
                   "still there, and still leaking")
        screen.say()
        screen.say(_state(pods, before, after))


def run(out: TextIO = sys.stdout) -> int:
    """The demo; exit code 0, 1 when real cgroups are not available, 130 on Ctrl-C."""
    screen = Screen(out)
    try:
        with tempfile.TemporaryDirectory(prefix="oomguard-demo-") as workdir:
            with_oomguard(screen, Path(workdir))
            screen.say()
            kernel_alone(screen)
    except SandboxUnavailableError as reason:
        screen.say(f"oomguard demo needs root and a writable cgroup v1 memory controller at "
                   f"/sys/fs/cgroup/memory to build its throw-away node: {reason}")
        return 1
    except KeyboardInterrupt:
        screen.say("interrupted; the demo's cgroups and processes are cleaned up")
        return 130
    return 0
