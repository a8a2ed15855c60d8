"""Real cgroup sandboxes for tests: a uniquely named cgroup per test under a mount, with
kubelet-shaped pod cgroups inside, and workload processes placed in them. Everything a
sandbox created is killed and removed on close, whatever the test did; nothing else is
touched."""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

MEMORY_MOUNT = Path("/sys/fs/cgroup/memory")
FREEZER_MOUNT = Path("/sys/fs/cgroup/freezer")
UNIFIED_MOUNT = Path("/sys/fs/cgroup/unified")
WORKLOAD = Path(__file__).with_name("workload.py")
SANDBOX_PREFIX = "oomguard-test-"
READY_TIMEOUT = 10.0
Mi = 2**20


def require_hierarchy(mount: Path, marker: str) -> None:
    """Skip, saying why, unless we are root and `mount` is the expected hierarchy."""
    if os.geteuid() != 0:
        pytest.skip("creating cgroups needs root")
    if not (mount / marker).exists():
        pytest.skip(f"no cgroup hierarchy at {mount} (no {marker})")


class Sandbox:
    """A cgroup `<mount>/oomguard-test-<random>` and what was created inside it."""

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


def new_sandbox_name() -> str:
    return SANDBOX_PREFIX + secrets.token_hex(4)


def pod_path(uid: str, qos: str = "burstable") -> str:
    return f"kubepods/{qos}/pod{uid}" if qos else f"kubepods/pod{uid}"


class Workloads:
    """Workload processes started by one test; all stopped and reaped on close."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, mode: str, cgroups: Sequence[Path], mib: int = 0) -> subprocess.Popen[str]:
        """Start a workload in `cgroups` and wait for it to say it is ready."""
        procs_files = [str(cgroup / "cgroup.procs") for cgroup in cgroups]
        process = subprocess.Popen(
            [sys.executable, str(WORKLOAD), mode, str(mib), *procs_files],
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
            raise AssertionError(f"workload {mode} not ready: {line!r} {process.stderr.read()}")
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
    """Adopt orphans of killed workloads, so they can be reaped here (this machine's
    init does not reap)."""
    import ctypes  # noqa: PLC0415 - only the real-cgroup tests need it

    pr_set_child_subreaper = 36
    ctypes.CDLL(None).prctl(pr_set_child_subreaper, 1, 0, 0, 0)


def reap_orphans() -> None:
    """Reap adopted orphans that have exited."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] != 0:
            pass


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
