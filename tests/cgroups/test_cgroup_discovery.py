"""Discovery of kubelet pod cgroups in fake trees: both drivers, both versions, all QoS."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fake_tree import CONTAINER, UID_A, UID_B, UID_C, FakeTree

from oomguard.cgroups import cgroup_version, discover_pods, pod_cgroup_path
from oomguard.cgroups.discovery import container_id

MakeTree = Callable[..., FakeTree]
LAYOUTS = [
    pytest.param(1, "cgroupfs", id="v1-cgroupfs"),
    pytest.param(1, "systemd", id="v1-systemd"),
    pytest.param(2, "cgroupfs", id="v2-cgroupfs"),
    pytest.param(2, "systemd", id="v2-systemd"),
]


@pytest.mark.parametrize(("version", "driver"), LAYOUTS)
def test_finds_every_qos_class(make_tree: MakeTree, version: int, driver: str) -> None:
    tree = make_tree(version, driver)
    tree.add_pod(UID_A, "Guaranteed")
    tree.add_pod(UID_B, "Burstable", containers=(CONTAINER, "pause1"))
    tree.add_pod(UID_C, "BestEffort", containers=())

    pods = {pod.uid: pod for pod in discover_pods(tree.root)}

    assert {uid: pod.qos_class for uid, pod in pods.items()} == {
        UID_A: "Guaranteed",
        UID_B: "Burstable",
        UID_C: "BestEffort",
    }
    assert {pod.path for pod in pods.values()} == set(tree.pods.values())
    assert all(pod.version == version for pod in pods.values())
    assert [c.id for c in pods[UID_B].containers] == [CONTAINER, "pause1"]
    assert pods[UID_C].containers == ()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param(f"cri-containerd-{CONTAINER}.scope", CONTAINER, id="containerd"),
        pytest.param(f"crio-{CONTAINER}.scope", CONTAINER, id="crio"),
        pytest.param(f"crio-conmon-{CONTAINER}.scope", f"conmon-{CONTAINER}", id="crio-conmon"),
        pytest.param(f"docker-{CONTAINER}.scope", CONTAINER, id="docker"),
        pytest.param(CONTAINER, CONTAINER, id="cgroupfs"),
    ],
)
def test_container_ids(name: str, expected: str) -> None:
    assert container_id(name) == expected


def test_ignores_what_is_not_a_pod_cgroup(make_tree: MakeTree, tmp_path: Path) -> None:
    tree = make_tree(2)
    pod = tree.add_pod(UID_A)
    (pod / "memory.events").write_text("oom 0\n")  # a file, not a container
    burstable = tree.kubepods() / "burstable"
    (burstable / "pod").mkdir()  # no UID
    (burstable / "pod..").mkdir()  # not a UID
    (burstable / "podnot_a_uid").mkdir()
    (burstable / "nested").mkdir()
    (burstable / "nested" / f"pod{UID_B}").mkdir()  # deeper than kubelet puts pods
    (tmp_path / "elsewhere").mkdir()
    (burstable / f"pod{UID_C}").symlink_to(tmp_path / "elsewhere")
    (tree.root / "system.slice" / "kubepods" / f"pod{UID_B}").mkdir(parents=True)

    pods = discover_pods(tree.root)

    assert [(p.uid, [c.id for c in p.containers]) for p in pods] == [(UID_A, [CONTAINER])]


def test_both_drivers_under_one_root(make_tree: MakeTree) -> None:
    tree = make_tree(2, "systemd")
    tree.add_pod(UID_A)
    cgroupfs_pod = tree.root / "kubepods" / "besteffort" / f"pod{UID_B}"
    cgroupfs_pod.mkdir(parents=True)

    assert {(p.uid, p.qos_class) for p in discover_pods(tree.root)} == {
        (UID_A, "Burstable"),
        (UID_B, "BestEffort"),
    }


def test_missing_root_has_no_pods(tmp_path: Path) -> None:
    assert discover_pods(tmp_path / "absent") == []


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        pytest.param("cgroup.controllers", 2, id="v2"),
        pytest.param("memory.usage_in_bytes", 1, id="v1"),
        pytest.param(None, None, id="neither"),
    ],
)
def test_version_from_the_pod_when_the_root_has_no_marker(
    make_tree: MakeTree, marker: str | None, expected: int | None
) -> None:
    tree = make_tree(2)
    (tree.root / "cgroup.controllers").unlink()
    pod = tree.add_pod(UID_A, memory=False)
    if marker:
        (pod / marker).write_text("0\n")

    assert cgroup_version(tree.root) is None
    assert [p.version for p in discover_pods(tree.root)] == [expected]


@pytest.mark.parametrize(("version", "driver"), LAYOUTS)
def test_pod_cgroup_path_by_discovery_only(make_tree: MakeTree, version: int, driver: str) -> None:
    tree = make_tree(version, driver)
    path = tree.add_pod(UID_A, "BestEffort")

    assert pod_cgroup_path(tree.root, UID_A) == path
    assert pod_cgroup_path(tree.root, UID_A.upper()) == path
    assert pod_cgroup_path(tree.root, UID_B) is None


@pytest.mark.parametrize(
    "uid",
    ["", "..", "../..", f"../burstable/pod{UID_A}", "/", f"{UID_A}/..", "kubepods"],
)
def test_pod_cgroup_path_never_follows_input(make_tree: MakeTree, uid: str) -> None:
    tree = make_tree(2)
    tree.add_pod(UID_A)

    assert pod_cgroup_path(tree.root, uid) is None
