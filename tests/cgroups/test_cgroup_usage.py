"""The per-field formulas (docs/cgroups.md), and how files that are not what the kernel
writes are refused."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fake_tree import UID_A, FakeTree, Mi, v1_stat, v2_stat
from hypothesis import given
from hypothesis import strategies as st

from oomguard.api import MemoryUsage
from oomguard.cgroups.files import CgroupReadError
from oomguard.cgroups.usage import read_usage, usage_v1, usage_v2

MakeTree = Callable[..., FakeTree]

# v2_stat/v1_stat hold 98Mi on the anon LRU (8Mi of it shmem), 30Mi on the file LRU, 12Mi
# unevictable, kernel 6Mi of which 1Mi reclaimable slab, sock 1Mi; usage 150Mi. The lists
# hold 140Mi: what the charge holds beyond them and the kernel's part has not reached
# memory.stat yet, and counts as anon (v2: 150 - 6 - 1 - 140 = 3Mi; v1 with 5Mi kmem:
# 150 - 5 - 140 = 5Mi).
V2_UNFLUSHED, V1_UNFLUSHED = 3 * Mi, 5 * Mi
DEFAULT = {
    "anon_bytes": 90 * Mi,
    "file_bytes": 30 * Mi,
    "shmem_bytes": 8 * Mi,
    "unevictable_bytes": 12 * Mi,
    "kernel_bytes": 6 * Mi,
    "swap_bytes": 0,
    "working_set_bytes": 130 * Mi,
}


def usage(**changes: int) -> MemoryUsage:
    return MemoryUsage(**{**DEFAULT, **changes})


V2_CASES = [
    pytest.param({}, 150 * Mi, 0, usage(anon_bytes=90 * Mi + V2_UNFLUSHED), id="defaults"),
    pytest.param({}, 147 * Mi, 0, usage(working_set_bytes=127 * Mi), id="stats-flushed"),
    pytest.param(
        {"kernel": 0, "sock": 0},
        140 * Mi,
        0,
        usage(kernel_bytes=0, working_set_bytes=120 * Mi),
        id="kernel-zero",
    ),
    pytest.param(
        {"kernel": 9 * Mi, "zswap": 3 * Mi},
        150 * Mi,
        0,
        usage(kernel_bytes=6 * Mi),
        id="zswap-not-kernel",
    ),
    pytest.param(
        {"swapcached": 2 * Mi},
        147 * Mi,
        5 * Mi,
        usage(swap_bytes=3 * Mi, working_set_bytes=127 * Mi),
        id="swapcache-counted-once",
    ),
    pytest.param(
        {"shmem": 120 * Mi},
        147 * Mi,
        0,
        usage(anon_bytes=0, shmem_bytes=98 * Mi, working_set_bytes=127 * Mi),
        id="locked-shmem-clamped",
    ),
    pytest.param({}, 10 * Mi, 0, usage(working_set_bytes=0), id="working-set-floor"),
]


@pytest.mark.parametrize(("changes", "current", "swap", "expected"), V2_CASES)
def test_v2_formulas(
    changes: dict[str, int], current: int, swap: int, expected: MemoryUsage
) -> None:
    assert usage_v2(v2_stat(**changes), current, swap) == expected


def test_v2_kernel_from_parts_before_the_kernel_key() -> None:
    stat = v2_stat()
    del stat["kernel"]
    # kernel_stack 1 + pagetables 1 + percpu 1 + slab_unreclaimable 2 + sock 1
    assert usage_v2(stat, 150 * Mi, 0).kernel_bytes == 6 * Mi


V1_CASES = [
    pytest.param({}, 150 * Mi, 5 * Mi,
                 usage(kernel_bytes=5 * Mi, anon_bytes=90 * Mi + V1_UNFLUSHED), id="defaults"),
    pytest.param(
        {"total_swap": 7 * Mi},
        145 * Mi,
        5 * Mi,
        usage(kernel_bytes=5 * Mi, swap_bytes=7 * Mi, working_set_bytes=125 * Mi),
        id="swap-accounting",
    ),
    pytest.param({}, 140 * Mi, 0, usage(kernel_bytes=0, working_set_bytes=120 * Mi),
                 id="no-kmem"),
    pytest.param({}, 15 * Mi, 0, usage(kernel_bytes=0, working_set_bytes=0), id="ws-floor"),
]


@pytest.mark.parametrize(("changes", "usage_in_bytes", "kmem", "expected"), V1_CASES)
def test_v1_formulas(
    changes: dict[str, int], usage_in_bytes: int, kmem: int, expected: MemoryUsage
) -> None:
    assert usage_v1(v1_stat(**changes), usage_in_bytes, kmem) == expected


def test_v1_without_shmem_counts_it_as_anon() -> None:
    stat = v1_stat()
    del stat["total_shmem"]  # kernels before 4.x
    got = usage_v1(stat, 140 * Mi, 0)
    assert (got.anon_bytes, got.shmem_bytes) == (98 * Mi, 0)


def test_v1_reads_hierarchical_totals_not_local_counters() -> None:
    stat = v1_stat(active_anon=0, inactive_anon=0, unevictable=0)
    assert usage_v1(stat, 140 * Mi, 0).anon_bytes == 90 * Mi


LRU_KEYS = ("active_anon", "inactive_anon", "active_file", "inactive_file", "unevictable")
lru_stats = st.fixed_dictionaries(
    {key: st.integers(min_value=0, max_value=2**40) for key in (*LRU_KEYS, "shmem")}
)


@given(lru_stats)
def test_page_fields_partition_the_lru_lists(stat: dict[str, int]) -> None:
    got = usage_v2(stat, sum(stat[key] for key in LRU_KEYS), 0)
    pages = got.anon_bytes + got.shmem_bytes + got.file_bytes + got.unevictable_bytes
    assert pages == sum(stat[key] for key in LRU_KEYS)
    assert got.shmem_bytes <= stat["shmem"]


@given(lru_stats, st.integers(min_value=0, max_value=2**40))
def test_charge_the_stats_do_not_show_yet_is_anon(stat: dict[str, int], lag: int) -> None:
    """memory.stat lags the exact charge: the difference is counted, as anon."""
    flushed = usage_v1({f"total_{k}": v for k, v in stat.items()},
                       sum(stat[key] for key in LRU_KEYS), 0)
    lagging = usage_v1({f"total_{k}": v for k, v in stat.items()},
                       sum(stat[key] for key in LRU_KEYS) + lag, 0)
    assert lagging.anon_bytes == flushed.anon_bytes + lag
    assert lagging.unreclaimable_bytes == flushed.unreclaimable_bytes + lag


@pytest.mark.parametrize("version", [1, 2])
def test_reads_the_files(make_tree: MakeTree, version: int) -> None:
    tree = make_tree(version)
    path = tree.add_pod(UID_A)

    got = read_usage(path, version)

    assert got == (usage(anon_bytes=90 * Mi + V2_UNFLUSHED) if version == 2
                   else usage(kernel_bytes=5 * Mi, anon_bytes=90 * Mi + V1_UNFLUSHED))


@pytest.mark.parametrize(("version", "missing"), [(2, "memory.swap.current"), (1, "kmem")])
def test_optional_files(make_tree: MakeTree, version: int, missing: str) -> None:
    tree = make_tree(version)
    path = tree.add_pod(UID_A, memory=False)
    tree.write_memory(path, swap=None, kmem=None)

    got = read_usage(path, version)

    assert (got.swap_bytes, got.kernel_bytes) == (0, 0 if version == 1 else 6 * Mi)


def _truncate_stat(path: Path) -> None:
    text = (path / "memory.stat").read_text()
    (path / "memory.stat").write_text(text[: text.index("inactive_file") + 8])


def _drop_lru_lines(path: Path) -> None:
    text = (path / "memory.stat").read_text()
    kept = [line for line in text.splitlines() if "active_anon" not in line]
    (path / "memory.stat").write_text("\n".join(kept) + "\n")


def _stat_line(key: str, line: bytes) -> Callable[[Path], Any]:
    """Replace one memory.stat line, keeping the rest of a valid file."""

    def replace(path: Path) -> None:
        lines = (path / "memory.stat").read_bytes().splitlines()
        lines = [line if old.split()[0] == key.encode() else old for old in lines]
        (path / "memory.stat").write_bytes(b"\n".join(lines) + b"\n")

    return replace


def _write(name: str, content: str | bytes) -> Callable[[Path], Any]:
    def write(path: Path) -> None:
        data = content.encode() if isinstance(content, str) else content
        (path / name).write_bytes(data)

    return write


def _remove(name: str) -> Callable[[Path], Any]:
    return lambda path: (path / name).unlink()


BROKEN = [
    pytest.param(2, _truncate_stat, "malformed", id="v2-truncated-stat"),
    pytest.param(1, _truncate_stat, "malformed", id="v1-truncated-stat"),
    pytest.param(2, _drop_lru_lines, "malformed", id="v2-missing-keys"),
    pytest.param(1, _drop_lru_lines, "malformed", id="v1-missing-keys"),
    pytest.param(2, _stat_line("shmem", b"shmem 12abc"), "malformed", id="garbage-value"),
    pytest.param(2, _stat_line("shmem", b"shmem -4096"), "malformed", id="negative-stat"),
    pytest.param(1, _stat_line("total_rss", b"total_rss 1 2"), "malformed", id="extra-field"),
    pytest.param(2, _stat_line("pgfault", b"pgfault \xff"), "malformed", id="not-ascii"),
    pytest.param(2, _write("memory.stat", ""), "malformed", id="empty-stat"),
    pytest.param(2, _write("memory.current", "max\n"), "malformed", id="current-not-a-number"),
    pytest.param(2, _write("memory.current", "-1\n"), "malformed", id="current-negative"),
    pytest.param(1, _write("memory.usage_in_bytes", ""), "malformed", id="usage-empty"),
    pytest.param(2, _write("memory.swap.current", "x\n"), "malformed", id="swap-garbage"),
    pytest.param(2, _remove("memory.stat"), "incomplete", id="v2-no-stat"),
    pytest.param(2, _remove("memory.current"), "incomplete", id="v2-no-current"),
    pytest.param(1, _remove("memory.usage_in_bytes"), "incomplete", id="v1-no-usage"),
]


@pytest.mark.parametrize(("version", "damage", "reason"), BROKEN)
def test_refuses_broken_files(
    make_tree: MakeTree, version: int, damage: Callable[[Path], Any], reason: str
) -> None:
    tree = make_tree(version)
    path = tree.add_pod(UID_A)
    damage(path)

    with pytest.raises(CgroupReadError) as raised:
        read_usage(path, version)

    assert raised.value.reason == reason


def test_a_removed_cgroup_has_vanished(make_tree: MakeTree) -> None:
    tree = make_tree(2)
    path = tree.add_pod(UID_A, containers=())
    for child in path.iterdir():
        child.unlink()
    path.rmdir()

    with pytest.raises(CgroupReadError) as raised:
        read_usage(path, 2)

    assert raised.value.reason == "vanished"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        pytest.param(errno.ENODEV, "vanished", id="ENODEV"),
        pytest.param(errno.EACCES, "unreadable", id="EACCES"),
        pytest.param(errno.EIO, "unreadable", id="EIO"),
    ],
)
def test_os_errors(
    make_tree: MakeTree, monkeypatch: pytest.MonkeyPatch, error: int, reason: str
) -> None:
    tree = make_tree(2)
    path = tree.add_pod(UID_A)
    target = str(path / "memory.stat")
    real_open = os.open

    def failing_open(name: str, *args: Any, **kwargs: Any) -> int:
        if name == target:
            raise OSError(error, "injected")
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr(os, "open", failing_open)
    with pytest.raises(CgroupReadError) as raised:
        read_usage(path, 2)

    assert raised.value.reason == reason
