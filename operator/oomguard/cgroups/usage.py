"""A cgroup subtree's memory as disjoint `MemoryUsage` fields, for cgroup v1 and v2.

The kernel's type counters (anon, file, shmem) overlap with each other and with the
unevictable list: shmem is in `file` (v2) / `cache` (v1) yet lives on the anon LRU, and
mlocked anon pages are in `anon` / `rss` and on the unevictable LRU. The LRU list sizes do
not overlap (a page is on at most one list), so the page fields are split along them::

    unevictable = unevictable                      # mlocked, ramfs, SHM_LOCKed: one list
    shmem       = min(shmem, active_anon + inactive_anon)
    anon        = active_anon + inactive_anon - shmem
    file        = active_file + inactive_file      # page cache minus shmem (and lazyfree)

v1 reads the same keys with the hierarchical `total_` prefix (a kernel without
`total_shmem` leaves shmem in anon). The rest, per version:

    v2 kernel  = kernel - slab_reclaimable - zswap + sock
                 (kernel missing, before 5.18: kernel_stack + pagetables + sec_pagetables
                  + percpu + vmalloc + slab_unreclaimable + sock)
    v2 swap    = memory.swap.current - swapcached  (v2 charges swap-cache pages to memory
                                                    and swap at once; 0 if no swap file)
    v2 working_set = memory.current - inactive_file

    v1 kernel  = memory.kmem.usage_in_bytes        (0 if absent; includes reclaimable slab,
                                                    which v1 does not break out)
    v1 swap    = total_swap                        (0 without swap accounting)
    v1 working_set = memory.usage_in_bytes - total_inactive_file

Everything is floored at 0. docs/cgroups.md explains each choice.

memory.stat lags: the kernel folds per-CPU counts into it in batches (seen here: up to
250MiB behind a pod growing at 200MiB/s, for up to 2s), while the charge counters
(memory.usage_in_bytes, memory.current) are exact. Page charge that the lists do not show
yet is counted as anon, which is what grows fast:

    unflushed = charge - kernel - (sum of the LRU lists)        (v2 charge also less sock
                                                                 and zswap; kernel in full)
    anon     += max(0, unflushed)

Without it a fast-growing pod looks small, its expected reclaim falls short, and the
engine adds the next group in the ranking to the victims: a wrong kill.
"""

from __future__ import annotations

from pathlib import Path

from oomguard.api import MemoryUsage
from oomguard.cgroups.discovery import CgroupVersion
from oomguard.cgroups.files import CgroupReadError, parse_count, parse_flat_keyed, read_text

_LRU = ("active_anon", "inactive_anon", "active_file", "inactive_file", "unevictable")
_V2_KERNEL_PARTS = (
    "kernel_stack",
    "pagetables",
    "sec_pagetables",
    "percpu",
    "vmalloc",
    "slab_unreclaimable",
)
V2_REQUIRED = (*_LRU, "shmem")
V2_OPTIONAL = ("kernel", "slab_reclaimable", "zswap", "sock", "swapcached", *_V2_KERNEL_PARTS)
V1_REQUIRED = tuple(f"total_{key}" for key in _LRU)
V1_OPTIONAL = ("total_shmem", "total_swap")


def read_usage(path: Path, version: CgroupVersion) -> MemoryUsage:
    """The hierarchical memory of the cgroup at `path`; raises `CgroupReadError`."""
    base = str(path)
    stat_path = f"{base}/memory.stat"
    if version == 2:
        stat = parse_flat_keyed(read_text(stat_path), stat_path, V2_REQUIRED, V2_OPTIONAL)
        current = _read_count(f"{base}/memory.current")
        swap = _read_optional_count(f"{base}/memory.swap.current")
        return usage_v2(stat, current, swap)
    stat = parse_flat_keyed(read_text(stat_path), stat_path, V1_REQUIRED, V1_OPTIONAL)
    usage = _read_count(f"{base}/memory.usage_in_bytes")
    kmem = _read_optional_count(f"{base}/memory.kmem.usage_in_bytes")
    return usage_v1(stat, usage, kmem)


def read_charge(path: Path, version: CgroupVersion) -> int:
    """The cgroup's whole memory charge (memory.current / memory.usage_in_bytes)."""
    name = "memory.current" if version == 2 else "memory.usage_in_bytes"
    return _read_count(f"{path}/{name}")


def usage_v2(stat: dict[str, int], current: int, swap_current: int) -> MemoryUsage:
    """MemoryUsage from v2 memory.stat values (V2_REQUIRED and any V2_OPTIONAL),
    memory.current and memory.swap.current."""
    parts = sum(stat.get(key, 0) for key in _V2_KERNEL_PARTS)
    if "kernel" in stat:
        kernel = max(0, stat["kernel"] - stat.get("slab_reclaimable", 0) - stat.get("zswap", 0))
        charged_kernel = stat["kernel"]
    else:
        kernel = parts
        charged_kernel = parts + stat.get("slab_reclaimable", 0)
    sock, zswap = stat.get("sock", 0), stat.get("zswap", 0)
    return _disjoint(
        lru=[stat[key] for key in _LRU],
        shmem=stat["shmem"],
        kernel=kernel + sock,
        swap=swap_current - stat.get("swapcached", 0),
        working_set=current - stat["inactive_file"],
        page_charge=current - charged_kernel - sock - zswap,
    )


def usage_v1(stat: dict[str, int], usage_in_bytes: int, kmem: int) -> MemoryUsage:
    """MemoryUsage from v1 memory.stat values (V1_REQUIRED and any V1_OPTIONAL),
    memory.usage_in_bytes and memory.kmem.usage_in_bytes."""
    return _disjoint(
        lru=[stat[f"total_{key}"] for key in _LRU],
        shmem=stat.get("total_shmem", 0),
        kernel=kmem,
        swap=stat.get("total_swap", 0),
        working_set=usage_in_bytes - stat["total_inactive_file"],
        page_charge=usage_in_bytes - kmem,
    )


def _disjoint(
    lru: list[int], *, shmem: int, kernel: int, swap: int, working_set: int, page_charge: int
) -> MemoryUsage:
    active_anon, inactive_anon, active_file, inactive_file, unevictable = lru
    anon_lru = active_anon + inactive_anon
    shmem = min(shmem, anon_lru)
    unflushed = max(0, page_charge - sum(lru))
    return MemoryUsage(
        anon_bytes=anon_lru - shmem + unflushed,
        file_bytes=active_file + inactive_file,
        shmem_bytes=shmem,
        unevictable_bytes=unevictable,
        kernel_bytes=max(0, kernel),
        swap_bytes=max(0, swap),
        working_set_bytes=max(0, working_set),
    )


def _read_count(path: str) -> int:
    return parse_count(read_text(path), path)


def _read_optional_count(path: str) -> int:
    """0 when the file does not exist in a cgroup that does (the feature is off)."""
    try:
        return _read_count(path)
    except CgroupReadError as error:
        if error.reason == "incomplete":
            return 0
        raise
