"""Throw-away nodes on real cgroups, for the demo, the arena benchmark and the tests.

A sandbox is a uniquely named cgroup `<mount>/<prefix>-<random>` with kubelet-shaped pod
cgroups inside, and workload processes placed in them. Closing it kills every process it
holds and removes every cgroup it created, whatever happened; nothing else is touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

MEMORY_MOUNT = Path("/sys/fs/cgroup/memory")
FREEZER_MOUNT = Path("/sys/fs/cgroup/freezer")
UNIFIED_MOUNT = Path("/sys/fs/cgroup/unified")
READY_TIMEOUT = 10.0
Mi = 2**20


class SandboxUnavailableError(RuntimeError):
    """Real cgroups cannot be created here (not root, or no such hierarchy)."""


def check_hierarchy(mount: Path, marker: str) -> None:
    if os.geteuid() != 0:
        raise SandboxUnavailableError("creating cgroups needs root")
    if not (mount / marker).exists():
        raise SandboxUnavailableError(f"no cgroup hierarchy at {mount} (no {marker})")
    if not os.access(mount, os.W_OK):
        raise SandboxUnavailableError(f"{mount} is not writable")


def new_name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def pod_path(uid: str, qos: str = "burstable") -> str:
    """Where the kubelet (cgroupfs driver) puts a pod: Guaranteed pods have no QoS level."""
    return f"kubepods/{qos}/pod{uid}" if qos else f"kubepods/pod{uid}"


class Sandbox:
    """A cgroup `<mount>/<name>` and what was created inside it."""

    def __init__(self, mount: Path, name: str) -> None:
        self.mount = mount
        self.root = mount / name
        self.root.mkdir()

    def make(self, relative: str) -> Path:
        """Create a cgroup (and its parents) inside the sandbox."""
        path = self.root / relative
        path.mkdir(parents=True, exist_ok=True)
        return path

    def close(self) -> None:
        """Kill what is left in the sandbox and remove its cgroups, deepest first."""
        if not self.root.is_dir():
            return
        for directory, _, _ in os.walk(self.root, topdown=False):
            path = Path(directory)
            state = path / "freezer.state"
            if state.exists():
                state.write_text("THAWED")
            _empty(path)
            _rmdir(path)


class Processes:
    """Workload processes (see workload.py); all stopped and reaped on close."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, mode: str, cgroups: Sequence[Path], mib: int = 0) -> subprocess.Popen[str]:
        """Start a workload in `cgroups` and wait for it to say it is ready."""
        procs_files = [str(cgroup / "cgroup.procs") for cgroup in cgroups]
        process = subprocess.Popen(
            [sys.executable, "-m", "oomguard.sandbox.workload", mode, str(mib), *procs_files],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.processes.append(process)
        assert process.stdout is not None
        readable, _, _ = select.select([process.stdout], [], [], READY_TIMEOUT)
        line = process.stdout.readline() if readable else ""
        if line.strip() != "ready":
            process.kill()
            process.wait(timeout=READY_TIMEOUT)
            assert process.stderr is not None
            raise RuntimeError(f"workload {mode} not ready: {line!r} {process.stderr.read()}")
        return process

    def close(self) -> None:
        """Kill and reap every workload. Pipes are closed, not drained: children of a
        forking workload may still hold them."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=READY_TIMEOUT)
            for pipe in (process.stdin, process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()
        reap_orphans()


def procs(cgroup: Path) -> set[int]:
    return {int(pid) for pid in (cgroup / "cgroup.procs").read_text().split()}


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll `condition()` until true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def become_subreaper() -> None:
    """Adopt orphans of killed workloads, so that they can be reaped here (an init that
    does not reap would leave them as zombies)."""
    pr_set_child_subreaper = 36
    ctypes.CDLL(None).prctl(pr_set_child_subreaper, 1, 0, 0, 0)


def reap_orphans() -> None:
    """Reap adopted orphans that have exited."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] != 0:
            pass


@dataclass
class SandboxPod:
    """A pod of a sandbox node: its cgroup, and the Pod object the agent is given."""

    name: str
    namespace: str
    uid: str
    path: Path
    labels: dict[str, str] = field(default_factory=dict)
    owner: tuple[str, str] | None = None
    """(kind, name) of its controller, for grouping by workload."""

    def manifest(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace,
                                "uid": self.uid, "labels": self.labels}
        if self.owner:
            kind, name = self.owner
            meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": kind, "name": name,
                                        "uid": f"{kind}-{name}", "controller": True}]
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
                "spec": {"containers": [{"name": "main"}]}, "status": {"phase": "Running"}}


class SandboxNode:
    """A throw-away node: a v1 memory cgroup with a limit, holding `kubepods` like a kubelet
    node (cgroupfs driver), its pods and their workloads. Use it as a context manager."""

    def __init__(self, limit_bytes: int, *, prefix: str = "oomguard-sandbox",
                 mount: Path = MEMORY_MOUNT) -> None:
        check_hierarchy(mount, "memory.usage_in_bytes")
        become_subreaper()
        self.sandbox = Sandbox(mount, new_name(prefix))
        self.root = self.sandbox.root
        self.workloads = Processes()
        self.pods: list[SandboxPod] = []
        try:
            (self.root / "memory.limit_in_bytes").write_text(str(limit_bytes))
        except OSError:
            self.sandbox.close()
            raise

    def add_pod(self, name: str, namespace: str = "default", *,
                labels: dict[str, str] | None = None,
                owner: tuple[str, str] | None = None, uid: str | None = None) -> SandboxPod:
        """A pod cgroup; `uid` is the Pod object's where an API server assigned it."""
        uid = uid or str(uuid.uuid4())
        pod = SandboxPod(name, namespace, uid, self.sandbox.make(pod_path(uid)),
                         labels or {}, owner)
        self.pods.append(pod)
        return pod

    def start(self, pod: SandboxPod, mode: str, mib: int = 0,
              container: str = "main") -> subprocess.Popen[str]:
        """Run a workload (see workload.py for the modes) in a container of the pod."""
        cgroup = self.sandbox.make(f"{pod.path.relative_to(self.root)}/{container}")
        return self.workloads.start(mode, [cgroup], mib)

    def usage_bytes(self) -> int:
        return int((self.root / "memory.usage_in_bytes").read_text())

    def kernel_oom_kills(self) -> int:
        """Processes the kernel OOM killer killed in this node so far. Cgroup v1 counts a
        kill in the victim's own cgroup only, so the whole subtree is summed."""
        kills = 0
        for directory, _, _ in os.walk(self.root):
            with contextlib.suppress(OSError):
                for line in Path(directory, "memory.oom_control").read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        kills += int(value)
        return kills

    def close(self) -> None:
        try:
            self.workloads.close()
        finally:
            self.sandbox.close()

    def __enter__(self) -> SandboxNode:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


def _empty(cgroup: Path) -> None:
    deadline = time.monotonic() + 5.0
    while (pids := procs(cgroup)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        reap_orphans()
        time.sleep(0.01)


def _rmdir(cgroup: Path) -> None:
    deadline = time.monotonic() + 5.0
    while True:
        try:
            cgroup.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)
