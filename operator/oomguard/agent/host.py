"""The agent's ports on a real Linux host: cgroup files, SIGKILL, the system clocks, and
waiting that wakes early on memory stalls."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from oomguard import cgroups
from oomguard.agent.loop import NodeSample
from oomguard.api import NodeMemory
from oomguard.decisions import VictimResult


class CgroupReader:
    """Samples the node whose kubelet cgroups live under `root`."""

    def __init__(self, root: Path, *, proc_root: Path = Path("/proc"),
                 containers: bool = False) -> None:
        self.root, self.proc_root, self.containers = root, proc_root, containers
        self.version = cgroups.cgroup_version(root)

    def read_node(self) -> NodeMemory:
        return cgroups.read_node_memory(self.root, self.version, self.proc_root)[0]

    def read(self) -> NodeSample:
        snap = cgroups.read_snapshot(self.root, proc_root=self.proc_root,
                                     containers=self.containers)
        return NodeSample(snap.node, list(snap.pods), unmeasured=snap.skipped)


class CgroupKiller:
    """Kills pods by UID; the cgroup layer finds the path and refuses anything that is not
    a kubelet pod cgroup under `root`. With a `state_dir` on the node's disk, the freezes of
    a kill are journalled there, and what a kill cut short left frozen (the agent was
    killed meanwhile) is thawed at start and before every kill. One kill at a time: the
    loop acting alone and the executor may both kill, and the thaw before a kill must not
    undo another kill's freeze."""

    def __init__(self, root: Path, *, timeout: float = 5.0,
                 state_dir: Path | None = None) -> None:
        self.root, self.timeout = root, timeout
        self.journal = None if state_dir is None else cgroups.FreezeJournal(
            state_dir / "frozen")
        if self.journal is not None:
            self.journal.thaw_leftovers()
        self._one_at_a_time = threading.Lock()

    def kill(self, uid: str) -> VictimResult:
        with self._one_at_a_time:
            if self.journal is not None:
                self.journal.thaw_leftovers()
            result = cgroups.kill_pod(self.root, uid, timeout=self.timeout,
                                      journal=self.journal)
        return VictimResult(
            outcome=result.outcome,
            message=result.error,
            reclaimed_bytes=result.released_bytes or 0,
            duration_seconds=result.duration_seconds,
        )


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)


class Waiter:
    """Waits for the next sample, waking early when the kernel reports a memory stall
    (a PSI trigger) or a signal arrives."""

    STALL_TRIGGERS = (b"some 50000 1000000\0", b"some 100000 2000000\0")
    """50ms of stall within 1s; without CAP_SYS_RESOURCE the kernel takes only windows
    that are multiples of 2s. The kernel overwrites the last byte written with a NUL:
    without one of our own it would cut the window's last digit."""

    def __init__(self, psi_path: Path | None = Path("/proc/pressure/memory")) -> None:
        self._poll = select.poll()
        self._psi_fd: int | None = None
        if psi_path is not None:
            self._psi_fd = _psi_trigger(psi_path, self.STALL_TRIGGERS)
            if self._psi_fd is not None:
                self._poll.register(self._psi_fd, select.POLLPRI)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._poll.register(self._wake_r, select.POLLIN)

    @property
    def psi_trigger(self) -> bool:
        return self._psi_fd is not None

    def wake_on_signals(self) -> None:
        """Let any signal with a Python handler end the current wait at once."""
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)

    def wake(self) -> None:
        """End the current (or next) wait at once: work arrived from another thread."""
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"\0")

    def wait(self, seconds: float) -> None:
        for fd, _ in self._poll.poll(seconds * 1000):
            if fd == self._wake_r:
                while True:
                    try:
                        if not os.read(self._wake_r, 512):
                            break
                    except BlockingIOError:
                        break

    def close(self) -> None:
        for fd in (self._psi_fd, self._wake_r, self._wake_w):
            if fd is not None:
                os.close(fd)


def _psi_trigger(path: Path, triggers: tuple[bytes, ...]) -> int | None:
    """A file descriptor that polls POLLPRI on memory stalls, or None where the kernel
    offers no triggers (then the sampling interval alone paces the loop)."""
    for trigger in triggers:
        try:
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            os.write(fd, trigger)
        except OSError:
            os.close(fd)
            continue
        return fd
    return None
