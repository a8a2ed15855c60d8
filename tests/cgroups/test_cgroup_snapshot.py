"""read_snapshot on fake trees: node signals, pods and containers, and what is skipped."""

from __future__ import annotations

import shutil
from collections.abc import Callable

import pytest
from fake_tree import CONTAINER, UID_A, UID_B, UID_C, FakeTree, Mi, format_stat, v1_stat, v2_stat

from oomguard.cgroups import NodeSignalError, ScanErrors, discover_pods, read_snapshot

MakeTree = Callable[..., FakeTree]
Gi = 2**30


@pytest.mark.parametrize(
    ("version", "driver"),
    [(1, "cgroupfs"), (1, "systemd"), (2, "cgroupfs"), (2, "systemd")],
    ids=["v1-cgroupfs", "v1-systemd", "v2-cgroupfs", "v2-systemd"],
)
def test_pods_and_containers(make_tree: MakeTree, version: int, driver: str) -> None:
    tree = make_tree(version, driver)
    tree.add_pod(UID_A, "Guaranteed")
    tree.add_pod(UID_B, "BestEffort", containers=(CONTAINER, "pause"))

    snapshot = read_snapshot(tree.root, proc_root=tree.proc)

    pods = {pod.uid: pod for pod in snapshot.pods}
    assert set(pods) == {UID_A, UID_B}
    assert pods[UID_A].qos_class == "Guaranteed"
    # 90Mi on the lists, and the charge the stats do not show yet (see test_cgroup_usage).
    unflushed = 3 if version == 2 else 5
    assert pods[UID_A].usage.anon_bytes == (90 + unflushed) * Mi
    assert pods[UID_A].usage.unreclaimable_bytes == (
        90 + unflushed + 12 + (6 if version == 2 else 5)) * Mi
    assert [c.id for c in pods[UID_B].containers] == [CONTAINER, "pause"]
    assert snapshot.errors == ScanErrors()
    assert snapshot.skipped == ()


def test_node_without_a_limit_uses_meminfo_and_proc_pressure(make_tree: MakeTree) -> None:
    tree = make_tree(1)

    node = read_snapshot(tree.root, proc_root=tree.proc).node

    assert (node.capacity_bytes, node.available_bytes) == (16 * Gi, 8 * Gi)
    assert (node.psi.some_avg10, node.psi.full_avg10) == (1.5, 0.25)


def test_v2_root_pressure_wins_over_proc(make_tree: MakeTree) -> None:
    tree = make_tree(2)
    tree.write_psi(tree.root / "memory.pressure", some=30.0, full=12.5)

    psi = read_snapshot(tree.root, proc_root=tree.proc).node.psi

    assert (psi.some_avg10, psi.full_avg10) == (30.0, 12.5)


@pytest.mark.parametrize(
    ("host_available", "expected_available"),
    [
        pytest.param(8 * Gi, 4 * Gi - 130 * Mi, id="limit-binds"),
        pytest.param(1 * Gi, 1 * Gi, id="host-has-less"),
    ],
)
def test_root_limit_is_capacity(
    make_tree: MakeTree, host_available: int, expected_available: int
) -> None:
    tree = make_tree(2)
    tree.write_meminfo(total=16 * Gi, available=host_available)
    (tree.root / "memory.max").write_text(f"{4 * Gi}\n")
    tree.write_memory(tree.root)  # 150Mi charged, 20Mi inactive file

    node = read_snapshot(tree.root, proc_root=tree.proc).node

    assert (node.capacity_bytes, node.available_bytes) == (4 * Gi, expected_available)


@pytest.mark.parametrize(
    ("limit", "capacity"),
    [
        pytest.param(2 * Gi, 2 * Gi, id="hierarchical-limit"),
        pytest.param(2**63 - 4096, 16 * Gi, id="unlimited"),
        pytest.param(64 * Gi, 16 * Gi, id="above-memtotal"),
    ],
)
def test_v1_root_limit(make_tree: MakeTree, limit: int, capacity: int) -> None:
    tree = make_tree(1)
    tree.write_memory(tree.root, v1_stat(hierarchical_memory_limit=limit))

    node = read_snapshot(tree.root, proc_root=tree.proc).node

    assert node.capacity_bytes == capacity


def test_unreadable_signals_fall_back_and_are_noted(make_tree: MakeTree) -> None:
    tree = make_tree(2)
    (tree.root / "memory.max").write_text("garbage\n")
    (tree.proc / "pressure" / "memory").write_text("some avg10=oops\n")

    snapshot = read_snapshot(tree.root, proc_root=tree.proc)

    assert snapshot.node.capacity_bytes == 16 * Gi
    assert (snapshot.node.psi.some_avg10, snapshot.node.psi.full_avg10) == (0.0, 0.0)
    assert snapshot.errors.node_signals == 2
    assert [note.split(":")[0] for note in snapshot.notes] == ["root cgroup", "psi"]


def test_no_capacity_at_all_is_an_error(make_tree: MakeTree) -> None:
    tree = make_tree(2)
    (tree.proc / "meminfo").unlink()

    with pytest.raises(NodeSignalError):
        read_snapshot(tree.root, proc_root=tree.proc)


def test_broken_pods_are_skipped_and_counted(make_tree: MakeTree) -> None:
    tree = make_tree(2)
    tree.add_pod(UID_A)
    truncated = tree.add_pod(UID_B)
    stat = format_stat(v2_stat())
    (truncated / "memory.stat").write_text(stat[: len(stat) // 2])
    tree.add_pod(UID_C, "BestEffort", memory=False)  # no memory files at all

    snapshot = read_snapshot(tree.root, proc_root=tree.proc)

    assert [pod.uid for pod in snapshot.pods] == [UID_A]
    assert sorted(snapshot.skipped) == sorted([UID_B, UID_C])
    assert (snapshot.errors.malformed, snapshot.errors.incomplete) == (1, 1)


def test_a_broken_container_leaves_its_pod_reported(make_tree: MakeTree) -> None:
    tree = make_tree(2)
    pod = tree.add_pod(UID_A, containers=(CONTAINER, "pause"))
    (pod / "pause" / "memory.current").write_text("12 34\n")

    snapshot = read_snapshot(tree.root, proc_root=tree.proc)

    (reported,) = snapshot.pods
    assert [c.id for c in reported.containers] == [CONTAINER]
    assert reported.usage.anon_bytes == 93 * Mi  # 90Mi listed, 3Mi not flushed yet
    assert snapshot.errors.malformed == 1


def test_cgroups_removed_between_discovery_and_read(make_tree: MakeTree) -> None:
    tree = make_tree(1)
    tree.add_pod(UID_A, containers=(CONTAINER, "pause"))
    tree.add_pod(UID_B)
    pods = discover_pods(tree.root)
    shutil.rmtree(tree.pods[UID_A] / "pause")
    shutil.rmtree(tree.pods[UID_B])

    snapshot = read_snapshot(tree.root, proc_root=tree.proc, pods=pods)

    assert [(p.uid, [c.id for c in p.containers]) for p in snapshot.pods] == [
        (UID_A, [CONTAINER])
    ]
    assert snapshot.skipped == (UID_B,)
    assert snapshot.errors == ScanErrors(vanished=2)


def test_without_containers(make_tree: MakeTree) -> None:
    tree = make_tree(2)
    tree.add_pod(UID_A)

    (pod,) = read_snapshot(tree.root, proc_root=tree.proc, containers=False).pods

    assert pod.containers == []


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("some avg10=0.50 avg60=0.00\n", id="no-full-line"),
        pytest.param("some avg10=nan\nfull avg10=0.00\n", id="nan"),
        pytest.param("some avg10=-1.00\nfull avg10=0.00\n", id="negative"),
        pytest.param("some avg10=100.01\nfull avg10=0.00\n", id="above-100"),
        pytest.param("", id="empty"),
    ],
)
def test_bad_pressure_reads_as_no_pressure(make_tree: MakeTree, text: str) -> None:
    tree = make_tree(1)
    (tree.proc / "pressure" / "memory").write_text(text)

    snapshot = read_snapshot(tree.root, proc_root=tree.proc)

    assert (snapshot.node.psi.some_avg10, snapshot.node.psi.full_avg10) == (0.0, 0.0)
    assert snapshot.errors.node_signals == 1


def test_garbage_meminfo_with_a_root_limit(make_tree: MakeTree) -> None:
    tree = make_tree(1)
    tree.write_memory(tree.root, v1_stat(hierarchical_memory_limit=2 * Gi))
    (tree.proc / "meminfo").write_text("MemTotal: lots\n")

    snapshot = read_snapshot(tree.root, proc_root=tree.proc)

    assert (snapshot.node.capacity_bytes, snapshot.node.available_bytes) == (
        2 * Gi,
        2 * Gi - 130 * Mi,
    )
    assert snapshot.notes[0].startswith("meminfo:")
