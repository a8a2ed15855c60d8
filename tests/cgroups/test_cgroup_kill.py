"""kill_pod refusals that need no real cgroup: unknown pods, and directories that only look
like pod cgroups. The real kills are in test_cgroup_real_v1.py and test_cgroup_real_v2.py."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fake_tree import UID_A, UID_B, FakeTree

from oomguard.cgroups import KillResult, kill_pod

MakeTree = Callable[..., FakeTree]


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A process that must survive: it belongs to no pod."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    yield process
    process.kill()
    process.wait()
    assert process.stdin is not None
    process.stdin.close()


def test_unknown_pod_is_already_gone(make_tree: MakeTree) -> None:
    tree = make_tree(2)
    tree.add_pod(UID_A)

    result = kill_pod(tree.root, UID_B)

    assert (result.outcome, result.success, result.path) == ("AlreadyGone", True, None)
    assert result.pids_killed == ()


@pytest.mark.parametrize("version", [1, 2])
def test_refuses_a_pod_dir_that_is_not_a_cgroup(
    make_tree: MakeTree, version: int, bystander: subprocess.Popen[bytes]
) -> None:
    tree = make_tree(version)
    pod = tree.add_pod(UID_A)
    (pod / "cgroup.procs").write_text(f"{bystander.pid}\n")
    (pod / "cgroup.kill").write_text("0\n")

    result = kill_pod(tree.root, UID_A, timeout=0.5)

    assert (result.outcome, result.success) == ("Refused", False)
    assert "not on a cgroup filesystem" in result.error
    assert bystander.poll() is None
    assert (pod / "cgroup.kill").read_text() == "0\n"


def test_a_symlinked_pod_dir_is_not_a_pod(
    make_tree: MakeTree, tmp_path: Path, bystander: subprocess.Popen[bytes]
) -> None:
    tree = make_tree(2)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "cgroup.procs").write_text(f"{bystander.pid}\n")
    burstable = tree.kubepods() / "burstable"
    burstable.mkdir(parents=True)
    (burstable / f"pod{UID_A}").symlink_to(elsewhere)

    assert kill_pod(tree.root, UID_A).outcome == "AlreadyGone"
    assert bystander.poll() is None


@pytest.mark.parametrize(
    ("before", "after", "released"),
    [(100, 30, 70), (100, 0, 100), (10, 20, 0), (None, 0, None), (100, None, None)],
)
def test_released_bytes(before: int | None, after: int | None, released: int | None) -> None:
    result = KillResult("u", "Killed", "sigkill", None, (), 0.1, before, after)
    assert result.released_bytes == released
