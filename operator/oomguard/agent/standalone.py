"""Standalone mode: one process protects one Linux host, no Kubernetes.

Policies, priorities and pod metadata come from YAML files; a Pod is matched to its cgroup
by `metadata.uid`. Without an API server, Evict and KillAndEvict act as Kill (the decision
says so in `spec.action`), and decisions go to stdout as JSON lines.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from oomguard.agent.host import CgroupKiller, CgroupReader, SystemClock, Waiter
from oomguard.agent.loop import Agent
from oomguard.api import OOMDecision
from oomguard.inputs import Inputs

log = logging.getLogger(__name__)


def place_on_node(inputs: Inputs, node: str) -> Inputs:
    """The files describe this host's pods: put them on this node, and take a pod with no
    recorded phase as Running (its cgroup is what tells whether it runs here)."""
    pods = [
        replace(p, node_name=node, phase="Running" if p.phase == "Unknown" else p.phase)
        for p in inputs.pods
    ]
    return replace(inputs, pods=pods)


def json_lines(out: TextIO) -> Callable[[OOMDecision], None]:
    def emit(decision: OOMDecision) -> None:
        out.write(json.dumps(decision.wire(), separators=(",", ":")) + "\n")
        out.flush()
    return emit


def run(root: Path, inputs: Inputs, out: TextIO, *, node: str | None = None,
        proc_root: Path = Path("/proc"), state_dir: Path | None = None) -> int:
    """Protect the host until SIGTERM or SIGINT; returns the exit code."""
    node = node or socket.gethostname()
    waiter = Waiter(proc_root / "pressure" / "memory")
    agent = Agent(
        node=node,
        reader=CgroupReader(root, proc_root=proc_root),
        killer=CgroupKiller(root, state_dir=state_dir),
        clock=SystemClock(),
        view=place_on_node(inputs, node),
        emit=json_lines(out),
        standalone=True,
    )
    stopping: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        stopping.append(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    waiter.wake_on_signals()
    log.info("protecting %s (node %s), %d pods known, PSI trigger %s",
             root, node, len(inputs.pods), "on" if waiter.psi_trigger else "unavailable")
    try:
        while not stopping:
            step = agent.step()
            waiter.wait(agent.next_interval(step))
    finally:
        signal.set_wakeup_fd(-1)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        waiter.close()
    log.info("stopped by signal %d", stopping[0])
    return 0
