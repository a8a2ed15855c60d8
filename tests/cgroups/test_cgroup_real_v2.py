"""Kills on this machine's real cgroup2 hierarchy. It has no memory controller, so only
the kill paths (cgroup.kill, and cgroup.freeze for kernels without it) are testable."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_tree import UID_A, UID_B
from real_cgroups import Processes, Sandbox, pod_path, procs, wait_until

from oomguard.cgroups import cgroup_version, discover_pods, kill_pod, read_snapshot
from oomguard.cgroups import kill as kill_module
from oomguard.cgroups.discovery import CgroupVersion


def without_cgroup_kill(
    path: Path, version: CgroupVersion | None, freezer_root: Path
) -> tuple[kill_module.KillMethod, kill_module.Freezer | None]:
    """The plan of a kernel before 5.14, which has cgroup.freeze but no cgroup.kill."""
    return "freeze", kill_module._freezer(path, version, freezer_root)


@pytest.mark.parametrize("cgroup_kill", [True, False], ids=["cgroup.kill", "cgroup.freeze"])
def test_kill_takes_the_whole_pod_and_nothing_else(
    v2_unified: Sandbox,
    workloads: Processes,
    monkeypatch: pytest.MonkeyPatch,
    cgroup_kill: bool,
) -> None:
    pod = v2_unified.make(pod_path(UID_A))
    forker = workloads.start("fork", [v2_unified.make(pod_path(UID_A) + "/c1")])
    idle = workloads.start("idle", [v2_unified.make(pod_path(UID_A) + "/c2")])
    sibling = workloads.start("idle", [v2_unified.make(pod_path(UID_B) + "/c1")])
    outsider = workloads.start("idle", [v2_unified.make("system.slice")])
    assert wait_until(lambda: len(procs(pod / "c1")) > 3)  # the forker's children are up
    if not cgroup_kill:
        monkeypatch.setattr(kill_module, "_plan", without_cgroup_kill)

    result = kill_pod(v2_unified.root, UID_A)

    assert (result.outcome, result.error) == ("Killed", "")
    assert result.method == ("cgroup.kill" if cgroup_kill else "freeze")
    assert {forker.pid, idle.pid} <= set(result.pids_killed)
    assert procs(pod / "c1") == procs(pod / "c2") == procs(pod) == set()
    assert forker.wait(timeout=5) == idle.wait(timeout=5) == -9
    assert sibling.poll() is None and outsider.poll() is None
    assert procs(v2_unified.root / pod_path(UID_B) / "c1") == {sibling.pid}
    assert (pod / "cgroup.freeze").read_text().strip() == "0"
    # no memory controller here: nothing to measure
    assert (result.memory_before_bytes, result.released_bytes) == (None, None)


def test_discovery_and_snapshot_without_a_memory_controller(v2_unified: Sandbox) -> None:
    v2_unified.make(pod_path(UID_A) + "/c1")

    (pod,) = discover_pods(v2_unified.root)
    snapshot = read_snapshot(v2_unified.root)

    assert (pod.uid, pod.version, cgroup_version(v2_unified.root)) == (UID_A, 2, 2)
    assert snapshot.pods == ()
    assert (snapshot.skipped, snapshot.errors.incomplete) == ((UID_A,), 1)
