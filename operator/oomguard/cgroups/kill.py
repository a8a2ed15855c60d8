"""Killing every process of one pod cgroup subtree, and nothing else.

The caller names a pod by UID only; its cgroup comes from discovery under the root's
kubepods tree and must sit on a real cgroup filesystem, so no input can aim the kill
elsewhere. Methods, best first:

- `cgroup.kill` (cgroup v2, Linux 5.14+): the kernel kills the subtree atomically,
  including tasks forked meanwhile; we wait until it is empty.
- `freeze`: freeze the pod (v2 `cgroup.freeze`, or the v1 freezer cgroup at the same path
  under the freezer mount), SIGKILL every process in the subtree, thaw, repeat until empty.
  A frozen cgroup cannot fork, so each round sees every process.
- `sigkill` (v1 without a freezer cgroup): SIGKILL every process, repeat until empty; a
  process forked between a listing and its signal is caught by the next round.

Each PID is pinned with a pidfd and signalled only if it is still in the subtree after it
was pinned, so a PID reused by a process outside the pod is never signalled. On cgroup v1
a process is the pod's only if every one of its threads is in the subtree: v1's
`cgroup.procs` lists a process as soon as one thread is there, and a process that lives
outside with one thread moved in is not the pod's to kill (nor does it keep the kill
from completing).
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from oomguard.cgroups.discovery import (
    CgroupVersion,
    cgroup_version,
    kubepods_dirs,
    pod_cgroup_path,
)
from oomguard.cgroups.files import CgroupReadError
from oomguard.cgroups.usage import read_charge

log = logging.getLogger(__name__)

KillOutcome = Literal["Killed", "AlreadyGone", "Refused", "Failed"]
"""In the words of an OOMDecision's victim outcomes."""
KillMethod = Literal["cgroup.kill", "freeze", "sigkill"]

FREEZER_ROOT = Path("/sys/fs/cgroup/freezer")
_CGROUP_FS_TYPES = ("cgroup", "cgroup2")
_FREEZE_WAIT = 0.25  # seconds to wait for a freezer to settle before killing anyway
_ROUND_WAIT = 0.02  # seconds to let signalled processes exit before the next round


@dataclass(frozen=True)
class KillResult:
    """What a kill did. `memory_after_bytes` is 0 once the cgroup itself is gone."""

    uid: str
    outcome: KillOutcome
    method: KillMethod | None
    path: Path | None
    pids_killed: tuple[int, ...]
    duration_seconds: float
    memory_before_bytes: int | None
    memory_after_bytes: int | None
    error: str = ""

    @property
    def success(self) -> bool:
        """The pod has no process left (or never had a cgroup here)."""
        return self.outcome in ("Killed", "AlreadyGone")

    @property
    def released_bytes(self) -> int | None:
        """Memory charge released by the kill, when it was measured."""
        if self.memory_before_bytes is None or self.memory_after_bytes is None:
            return None
        return max(0, self.memory_before_bytes - self.memory_after_bytes)


def kill_pod(
    root: Path, uid: str, *, timeout: float = 5.0, freezer_root: Path = FREEZER_ROOT,
    journal: FreezeJournal | None = None,
) -> KillResult:
    """Kill every process in the cgroup subtree of the pod with this UID under `root`,
    and verify the subtree is empty. Never raises for a pod that is or becomes gone.
    With a `journal`, a freeze is noted there until thawed."""
    start = time.monotonic()

    def untouched(outcome: KillOutcome, path: Path | None, error: str) -> KillResult:
        elapsed = time.monotonic() - start
        return KillResult(uid, outcome, None, path, (), elapsed, None, None, error)

    path = pod_cgroup_path(root, uid)
    if path is None:
        return untouched("AlreadyGone", None, f"no pod cgroup for {uid} under {root}")
    try:
        refusal = _refusal(root, path)
    except FileNotFoundError:
        return untouched("AlreadyGone", path, "")
    if refusal:
        return untouched("Refused", path, refusal)

    version = cgroup_version(root) or cgroup_version(path)
    before = _charge(path, version)
    killer = _Killer(path, start + timeout, whole_processes=version == 1)
    method: KillMethod | None = None
    error = ""
    try:
        method, freezer = _plan(path, version, freezer_root)
        emptied = _execute(killer, method, freezer, uid=uid, journal=journal)
    except OSError as exc:
        emptied = False
        error = f"{path}: {exc}"
    gone = not path.is_dir()
    if gone and not killer.killed:
        outcome: KillOutcome = "AlreadyGone"
    elif emptied or gone:
        outcome, error = "Killed", ""
    else:
        outcome = "Failed"
        error = error or f"processes left in {path} after {timeout}s"
    return KillResult(
        uid,
        outcome,
        method,
        path,
        killer.pids(),
        time.monotonic() - start,
        before,
        0 if gone else _charge(path, version),
        error,
    )


def _plan(
    path: Path, version: CgroupVersion | None, freezer_root: Path
) -> tuple[KillMethod, Freezer | None]:
    if version == 2 and (path / "cgroup.kill").exists():
        return "cgroup.kill", None
    freezer = _freezer(path, version, freezer_root)
    return ("sigkill", None) if freezer is None else ("freeze", freezer)


def _execute(killer: _Killer, method: KillMethod, freezer: Freezer | None, *,
             uid: str, journal: FreezeJournal | None) -> bool:
    """Run the kill; True once the subtree is empty."""
    if method == "cgroup.kill":
        killer.killed.update(killer.members())
        _write(killer.path / "cgroup.kill", "1")
        return killer.wait_empty(killer.deadline)
    if freezer is None:
        return killer.kill_rounds(lambda: None, lambda: None)
    if journal is not None:
        journal.frozen(uid, freezer)
    try:
        return killer.kill_rounds(
            lambda: _freeze(killer, freezer.freeze, freezer.is_frozen), freezer.thaw)
    finally:
        try:
            freezer.thaw()
        except FileNotFoundError:
            pass  # the pod is gone, and its freezer with it
        except OSError as error:
            log.warning("thawing %s: %s", killer.path, error)
        else:
            if journal is not None:
                journal.thawed(uid)


class _Killer:
    """The kill rounds over one subtree, and the PIDs signalled so far."""

    def __init__(self, path: Path, deadline: float, *, whole_processes: bool) -> None:
        self.path = path
        self.deadline = deadline
        self.whole_processes = whole_processes
        self.killed: set[int] = set()

    def members(self) -> set[int]:
        """The subtree's processes (on v1, those with every thread in it)."""
        if not self.whole_processes:
            return _subtree_pids(self.path)
        pids, tids = _subtree_pids(self.path), _subtree_pids(self.path, "tasks")
        inside = {pid for pid in pids if _threads(pid) <= tids}
        for pid in pids - inside:
            log.warning("%s: process %d has threads outside the pod's cgroups: not the "
                        "pod's, not killed", self.path, pid)
        return inside

    def pids(self) -> tuple[int, ...]:
        return tuple(sorted(self.killed))

    def kill_rounds(self, freeze: Callable[[], None], thaw: Callable[[], None]) -> bool:
        """Freeze, SIGKILL everything, thaw, until the subtree is empty or time is up."""
        while True:
            freeze()
            pids = self.members()
            if not pids:
                return True
            if time.monotonic() >= self.deadline:
                return False
            self.signal(pids)
            thaw()  # v1-frozen tasks die only once thawed
            self.wait_empty(min(self.deadline, time.monotonic() + _ROUND_WAIT))

    def signal(self, pids: set[int]) -> None:
        """SIGKILL the processes that are still in the subtree once pinned by a pidfd."""
        pinned = {pid: fd for pid in pids if (fd := _pidfd(pid)) is not None}
        try:
            members = self.members()
            for pid, fd in pinned.items():
                if pid in members and _send_sigkill(pid, fd):
                    self.killed.add(pid)
        finally:
            for fd in pinned.values():
                if fd >= 0:
                    os.close(fd)

    def wait_empty(self, until: float) -> bool:
        return _wait_for(lambda: not self.members(), until)


def _pidfd(pid: int) -> int | None:
    """A pidfd pinning the process; -1 where the kernel has no pidfds; None if it is gone."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    except OSError as error:
        if error.errno == errno.ENOSYS:
            return -1
        raise


def _send_sigkill(pid: int, fd: int) -> bool:
    try:
        if fd >= 0:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def _threads(pid: int) -> set[int]:
    """The thread IDs of a process; none once it is gone."""
    try:
        return {int(tid) for tid in os.listdir(f"/proc/{pid}/task")}
    except FileNotFoundError:
        return set()


def _subtree_pids(path: Path, listing: str = "cgroup.procs") -> set[int]:
    """PIDs in `cgroup.procs` (or thread IDs in v1's `tasks`) of the cgroup and all its
    descendants. Cgroups that vanish while being walked hold nothing."""
    pids: set[int] = set()
    for directory, _, _ in os.walk(path):
        try:
            with open(os.path.join(directory, listing), "rb") as procs:
                pids.update(int(pid) for pid in procs.read().split())
        except OSError as error:
            if error.errno not in (errno.ENOENT, errno.ENODEV):
                raise
    return pids


@dataclass(frozen=True)
class Freezer:
    """A pod's freezer: the file written to freeze and to thaw it, and how to tell it is
    frozen."""

    state: Path
    frozen: str
    thawed: str
    is_frozen: Callable[[], bool]

    def freeze(self) -> None:
        _write(self.state, self.frozen)

    def thaw(self) -> None:
        _write(self.state, self.thawed)


THAW_FILES = {"cgroup.freeze": "0", "freezer.state": "THAWED"}
"""The files a freezer is driven by, and what thaws it."""


def _freezer(path: Path, version: CgroupVersion | None, freezer_root: Path) -> Freezer | None:
    """The pod's freezer, if it has one."""
    if version == 2 and (path / "cgroup.freeze").exists():
        return Freezer(path / "cgroup.freeze", "1", "0",
                       lambda: "frozen 1" in _read(path / "cgroup.events").splitlines())
    if version == 1:
        frozen_dir = _v1_freezer_dir(path, freezer_root)
        if frozen_dir is not None:
            state = frozen_dir / "freezer.state"
            return Freezer(state, "FROZEN", "THAWED",
                           lambda: _read(state).strip() == "FROZEN")
    return None


class FreezeJournal:
    """Where a kill notes each pod it froze until it has thawed it, on the node's disk: an
    agent killed between freeze and thaw would otherwise leave the pod FROZEN (its
    processes stuck) across its restart. The agent thaws what the journal names when it
    starts and before every kill. A record names only a freezer file on a cgroup file
    system, and only such a file is ever written from it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def frozen(self, uid: str, freezer: Freezer) -> None:
        """Noted before the first freeze: written whole (a temporary file renamed)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        record = self.directory / f"{uid}.frozen"
        temporary = record.with_suffix(".tmp")
        with open(temporary, "w") as file:
            file.write(str(freezer.state))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, record)

    def thawed(self, uid: str) -> None:
        (self.directory / f"{uid}.frozen").unlink(missing_ok=True)

    def thaw_leftovers(self) -> list[Path]:
        """Thaw every freezer a record names (a kill cut short); the freezers thawed."""
        thawed: list[Path] = []
        for record in sorted(self.directory.glob("*.frozen")):
            state = Path(record.read_text().strip())
            try:
                if state.name in THAW_FILES and state.is_file() and _on_cgroup_fs(state):
                    _write(state, THAW_FILES[state.name])
                    thawed.append(state)
                    log.warning("thawed %s, frozen by a kill that did not finish", state.parent)
                elif state.name not in THAW_FILES:
                    log.warning("%s: names %s, not a freezer: ignored", record, state)
            except FileNotFoundError:
                pass  # the pod is gone, and its freezer with it
            record.unlink(missing_ok=True)
        return thawed


def _freeze(killer: _Killer, freeze: Callable[[], None], frozen: Callable[[], bool]) -> None:
    """Freeze and give it a moment to settle; a task stuck in the kernel may keep a cgroup
    FREEZING, and is killed regardless."""
    freeze()
    _wait_for(frozen, min(killer.deadline, time.monotonic() + _FREEZE_WAIT))


def _v1_freezer_dir(path: Path, freezer_root: Path) -> Path | None:
    """The v1 freezer cgroup at the pod's path relative to its memory hierarchy's mount.
    Kubelet creates the same path in every v1 hierarchy."""
    resolved = path.resolve()
    device = resolved.stat().st_dev
    mount = resolved
    while mount.parent != mount and mount.parent.stat().st_dev == device:
        mount = mount.parent
    candidate = freezer_root / resolved.relative_to(mount)
    if (candidate / "freezer.state").is_file() and _on_cgroup_fs(candidate):
        return candidate
    return None


def _refusal(root: Path, path: Path) -> str:
    """Why `path` must not be killed, or "" if it is a pod cgroup in root's kubepods tree.
    Raises FileNotFoundError if it is gone."""
    resolved = path.resolve()
    if not any(
        resolved.is_relative_to(base.resolve()) and resolved != base.resolve()
        for base in kubepods_dirs(root)
    ):
        return f"refusing {path}: not inside {root}'s kubepods tree"
    if not _on_cgroup_fs(resolved):
        return f"refusing {path}: not on a cgroup filesystem"
    return ""


def _on_cgroup_fs(path: Path) -> bool:
    """Whether the file system holding `path` is cgroup or cgroup2, by its device number
    in /proc/self/mountinfo. Raises FileNotFoundError if `path` is gone."""
    device = path.stat().st_dev
    try:
        mountinfo = _read(Path("/proc/self/mountinfo"))
    except OSError:
        return False
    wanted = f"{os.major(device)}:{os.minor(device)}"
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == wanted and "-" in fields:
            return fields[fields.index("-") + 1] in _CGROUP_FS_TYPES
    return False


def _charge(path: Path, version: CgroupVersion | None) -> int | None:
    if version is None:
        return None
    try:
        return read_charge(path, version)
    except CgroupReadError:
        return None


def _wait_for(condition: Callable[[], bool], until: float) -> bool:
    """Poll with a short backoff until `condition` holds or `until` (monotonic) passes."""
    delay = 0.001
    while not condition():
        now = time.monotonic()
        if now >= until:
            return False
        time.sleep(min(delay, until - now))
        delay = min(delay * 2, 0.05)
    return True


def _read(path: Path) -> str:
    with open(path, encoding="ascii") as file:
        return file.read()


def _write(path: Path, text: str) -> None:
    with open(path, "w", encoding="ascii") as file:
        file.write(text)

