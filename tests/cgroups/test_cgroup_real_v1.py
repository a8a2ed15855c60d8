"""The cgroup layer on this machine's real cgroup v1 memory and freezer hierarchies, inside
a 512Mi sandbox cgroup per test (see conftest.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fake_tree import UID_A, UID_B, UID_C
from real_cgroups import Mi, Processes, Sandbox, pod_path, procs, wait_until

from oomguard.agent.host import CgroupKiller
from oomguard.api import MemoryUsage
from oomguard.cgroups import (
    FreezeJournal,
    ScanErrors,
    discover_pods,
    kill_pod,
    pod_cgroup_path,
    read_snapshot,
)
from oomguard.cgroups import kill as kill_module

SIZE = 64 * Mi
# What the workload's interpreter allocates besides the payload after joining the cgroup.
TOLERANCE = 8 * Mi
# The kernel folds per-CPU counter deltas into memory.stat once they exceed 64 pages per
# CPU, or every 2 seconds: a read can miss up to that much.
STAT_LAG = 64 * 4096 * (os.cpu_count() or 1)


def pod_usage(root: Path, uid: str) -> MemoryUsage:
    (pod,) = [pod for pod in read_snapshot(root).pods if pod.uid == uid]
    return pod.usage


@pytest.mark.parametrize(
    ("mode", "field", "working_set"),
    [
        pytest.param("anon", "anon_bytes", SIZE, id="anon"),
        pytest.param("shmem", "shmem_bytes", SIZE, id="shmem"),
        pytest.param("mlock", "unevictable_bytes", SIZE, id="mlocked-anon"),
        # freshly written page cache sits on the inactive list: not in the working set
        pytest.param("file", "file_bytes", 0, id="page-cache"),
    ],
)
def test_usage_matches_what_the_pod_allocated(
    v1_memory: Sandbox,
    workloads: Processes,
    tmp_path: Path,
    *,
    mode: str,
    field: str,
    working_set: int,
) -> None:
    container = v1_memory.make(pod_path(UID_A) + "/c1")
    workload_mode = f"file:{tmp_path / 'data'}" if mode == "file" else mode
    workloads.start(workload_mode, [container], mib=SIZE // Mi)

    assert wait_until(
        lambda: getattr(pod_usage(v1_memory.root, UID_A), field) >= SIZE - STAT_LAG
    )
    usage = pod_usage(v1_memory.root, UID_A)

    pages = {
        "anon_bytes": usage.anon_bytes,
        "shmem_bytes": usage.shmem_bytes,
        "unevictable_bytes": usage.unevictable_bytes,
        "file_bytes": usage.file_bytes,
    }
    assert SIZE - STAT_LAG <= pages.pop(field) <= SIZE + TOLERANCE
    assert all(value <= TOLERANCE for value in pages.values()), pages  # counted once
    assert working_set <= usage.working_set_bytes <= working_set + TOLERANCE
    (snapshot_pod,) = read_snapshot(v1_memory.root).pods
    (only_container,) = snapshot_pod.containers
    assert abs(getattr(only_container.usage, field) - SIZE) <= TOLERANCE


def test_node_capacity_is_the_sandbox_limit(v1_memory: Sandbox, workloads: Processes) -> None:
    container = v1_memory.make(pod_path(UID_A) + "/c1")
    workloads.start("anon", [container], mib=SIZE // Mi)

    node = read_snapshot(v1_memory.root).node

    assert node.capacity_bytes == 512 * Mi
    assert node.available_bytes <= 512 * Mi - SIZE


@pytest.mark.parametrize("use_freezer", [True, False], ids=["freezer", "sigkill-rounds"])
def test_kill_takes_the_whole_pod_and_nothing_else(
    v1_memory: Sandbox,
    v1_freezer: Sandbox,
    workloads: Processes,
    tmp_path: Path,
    use_freezer: bool,
) -> None:
    def cgroups(relative: str) -> list[Path]:
        return [v1_memory.make(relative), v1_freezer.make(relative)]

    forker = workloads.start("fork", cgroups(pod_path(UID_A) + "/c1"))
    hog = workloads.start("anon", cgroups(pod_path(UID_A) + "/c2"), mib=SIZE // Mi)
    sibling = workloads.start("idle", cgroups(pod_path(UID_B) + "/c1"))
    outsider = workloads.start("idle", cgroups("system"))
    pod = v1_memory.root / pod_path(UID_A)
    assert wait_until(lambda: len(procs(pod / "c1")) > 3)  # the forker's children are up

    freezer_root = v1_freezer.mount if use_freezer else tmp_path / "no-freezer"
    result = kill_pod(v1_memory.root, UID_A, freezer_root=freezer_root)

    assert (result.outcome, result.error) == ("Killed", "")
    assert result.method == ("freeze" if use_freezer else "sigkill")
    assert {forker.pid, hog.pid} <= set(result.pids_killed)
    assert procs(pod / "c1") == procs(pod / "c2") == procs(pod) == set()
    assert forker.wait(timeout=5) == hog.wait(timeout=5) == -9
    assert sibling.poll() is None and outsider.poll() is None
    assert procs(v1_memory.root / pod_path(UID_B) / "c1") == {sibling.pid}
    assert result.released_bytes is not None and result.released_bytes >= SIZE - TOLERANCE
    assert result.duration_seconds < 5
    frozen = (v1_freezer.root / pod_path(UID_A) / "freezer.state").read_text().strip()
    assert frozen == "THAWED"


@pytest.mark.parametrize("use_freezer", [True, False], ids=["freezer", "sigkill-rounds"])
def test_a_process_with_one_thread_in_the_pod_is_not_the_pods(
    v1_memory: Sandbox, v1_freezer: Sandbox, workloads: Processes, tmp_path: Path,
    use_freezer: bool,
) -> None:
    """On v1 a single thread can be moved into a cgroup (its `tasks`), and the pod's
    `cgroup.procs` then lists the whole process: it lives outside, and is not killed."""
    hog = workloads.start("anon", [v1_memory.make(pod_path(UID_A) + "/c1"),
                                   v1_freezer.make(pod_path(UID_A) + "/c1")], mib=8)
    outsider = workloads.start("threaded", [v1_memory.make("system"),
                                            v1_freezer.make("system")])
    [thread] = {int(t) for t in os.listdir(f"/proc/{outsider.pid}/task")} - {outsider.pid}
    for sandbox in (v1_memory, v1_freezer):
        (sandbox.root / pod_path(UID_A) / "c1" / "tasks").write_text(str(thread))
    pod = v1_memory.root / pod_path(UID_A)
    assert procs(pod / "c1") == {hog.pid, outsider.pid}  # v1 lists the outsider too

    freezer_root = v1_freezer.mount if use_freezer else tmp_path / "no-freezer"
    result = kill_pod(v1_memory.root, UID_A, freezer_root=freezer_root)

    assert (result.outcome, result.error) == ("Killed", "")
    assert result.pids_killed == (hog.pid,)
    assert hog.wait(timeout=5) == -9
    assert outsider.poll() is None


def test_a_kill_cut_short_leaves_nothing_frozen(
    v1_memory: Sandbox, v1_freezer: Sandbox, workloads: Processes, tmp_path: Path,
) -> None:
    """The agent's process dies (SIGKILL) after it froze a pod and before it thawed it:
    the pod stays FROZEN, its processes stuck, until the next agent starts and thaws what
    the journal on the node's disk names. A normal kill leaves no note behind."""
    hog = workloads.start("anon", [v1_memory.make(pod_path(UID_A) + "/c1"),
                                   v1_freezer.make(pod_path(UID_A) + "/c1")], mib=8)
    state = v1_freezer.root / pod_path(UID_A) / "freezer.state"
    journal = tmp_path / "state"
    crashing = subprocess.run([sys.executable, "-c", f"""
import os, signal
from pathlib import Path
from oomguard.cgroups.kill import Freezer, FreezeJournal
freezer = Freezer(Path({str(state)!r}), "FROZEN", "THAWED", lambda: True)
FreezeJournal(Path({str(journal / "frozen")!r})).frozen({UID_A!r}, freezer)
freezer.freeze()
os.kill(os.getpid(), signal.SIGKILL)  # the agent dies here, the pod frozen
"""], check=False, timeout=30)
    assert crashing.returncode == -signal.SIGKILL
    assert wait_until(lambda: state.read_text().strip() == "FROZEN")
    assert list((journal / "frozen").iterdir())

    CgroupKiller(v1_memory.root, state_dir=journal)  # the next agent starts

    assert state.read_text().strip() == "THAWED"
    assert list((journal / "frozen").iterdir()) == []
    assert hog.poll() is None  # thawed, not killed
    result = CgroupKiller(v1_memory.root, state_dir=journal).kill(UID_A)
    assert result.outcome == "Killed" and hog.wait(timeout=5) == -9
    assert list((journal / "frozen").iterdir()) == []


def test_a_journal_note_writes_only_to_a_freezer(tmp_path: Path) -> None:
    """A note that names any other file (a tampered disk) writes nothing."""
    victim = tmp_path / "important"
    victim.write_text("keep")
    notes = tmp_path / "frozen"
    notes.mkdir()
    (notes / "x.frozen").write_text(str(victim))
    (notes / "y.frozen").write_text(str(tmp_path / "freezer.state"))  # not on a cgroup fs
    (tmp_path / "freezer.state").write_text("FROZEN")
    assert FreezeJournal(notes).thaw_leftovers() == []
    assert victim.read_text() == "keep"
    assert (tmp_path / "freezer.state").read_text() == "FROZEN"
    assert list(notes.iterdir()) == []


def test_kill_of_an_empty_or_unknown_pod(v1_memory: Sandbox) -> None:
    v1_memory.make(pod_path(UID_A, "besteffort") + "/c1")

    empty = kill_pod(v1_memory.root, UID_A)
    unknown = kill_pod(v1_memory.root, UID_B)

    assert (empty.outcome, empty.pids_killed) == ("Killed", ())
    assert (unknown.outcome, unknown.success) == ("AlreadyGone", True)


def test_cgroups_removed_mid_scan(v1_memory: Sandbox, workloads: Processes) -> None:
    kept = v1_memory.make(pod_path(UID_A) + "/c1")
    v1_memory.make(pod_path(UID_A) + "/c2")
    v1_memory.make(pod_path(UID_B, "") + "/c1")
    v1_memory.make(pod_path(UID_C) + "/c1")
    workloads.start("anon", [kept], mib=8)
    pods = discover_pods(v1_memory.root)

    (v1_memory.root / pod_path(UID_A) / "c2").rmdir()
    (v1_memory.root / pod_path(UID_B, "") / "c1").rmdir()
    (v1_memory.root / pod_path(UID_B, "")).rmdir()
    snapshot = read_snapshot(v1_memory.root, pods=pods)

    assert sorted((p.uid, len(p.containers)) for p in snapshot.pods) == [(UID_A, 1), (UID_C, 1)]
    assert snapshot.skipped == (UID_B,)
    assert snapshot.errors == ScanErrors(vanished=2)


def test_kill_racing_the_kubelet_removing_the_pod(
    v1_memory: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pod cgroup disappears right after discovery found it."""
    v1_memory.make(pod_path(UID_A) + "/c1")

    def discover_then_remove(root: Path, uid: str) -> Path | None:
        found = pod_cgroup_path(root, uid)
        assert found is not None
        (found / "c1").rmdir()
        found.rmdir()
        return found

    monkeypatch.setattr(kill_module, "pod_cgroup_path", discover_then_remove)
    result = kill_pod(v1_memory.root, UID_A)

    assert (result.outcome, result.path) == ("AlreadyGone", v1_memory.root / pod_path(UID_A))
