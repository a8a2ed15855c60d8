"""The node's memory signals: capacity, available memory and PSI.

    limit     = the root cgroup's memory limit, None when unlimited:
                v1 `hierarchical_memory_limit` from memory.stat (the tightest limit of the
                root and its ancestors; memory.limit_in_bytes when the key is missing),
                v2 memory.max of the root (the cgroup2 root itself has none)
    capacity  = limit when it is below MemTotal, else MemTotal
    available = with such a limit: min(limit - (usage - inactive_file), MemAvailable),
                the kubelet's memory.available for the root cgroup, never more than the
                host still has; without one: MemAvailable
    psi       = `some` and `full` avg10 of the root cgroup's memory.pressure (v2), else of
                /proc/pressure/memory; zeros when unreadable

`/proc` is a parameter so that fixture trees can supply meminfo and pressure.
"""

from __future__ import annotations

import os
from pathlib import Path

from oomguard.api.report import NodeMemory, NodePSI
from oomguard.cgroups.discovery import CgroupVersion
from oomguard.cgroups.files import (
    CgroupReadError,
    parse_count,
    parse_flat_keyed,
    parse_limit,
    parse_meminfo,
    parse_psi,
    read_text,
)


class NodeSignalError(RuntimeError):
    """The node's memory cannot be known: no root limit and no usable /proc/meminfo."""


def read_node_memory(
    root: Path, version: CgroupVersion | None, proc_root: Path
) -> tuple[NodeMemory, list[str]]:
    """The node's memory, and a note for each signal that fell back to a weaker source."""
    problems: list[str] = []
    meminfo_path = f"{proc_root}/meminfo"
    try:
        meminfo = parse_meminfo(read_text(meminfo_path), meminfo_path)
    except CgroupReadError as error:
        problems.append(f"meminfo: {error}")
        meminfo = {}
    total, host_available = meminfo.get("MemTotal"), meminfo.get("MemAvailable")

    try:
        limited = _limit_and_working_set(str(root), version)
    except CgroupReadError as error:
        problems.append(f"root cgroup: {error}")
        limited = None

    if limited is not None and limited[0] > 0 and (total is None or limited[0] < total):
        capacity, working_set = limited
        available = max(0, capacity - working_set)
        if host_available is not None:
            available = min(available, host_available)
    elif total and host_available is not None:
        capacity, available = total, min(host_available, total)
    else:
        raise NodeSignalError(
            f"no memory limit on {root} and no MemTotal/MemAvailable in {meminfo_path}"
        )

    psi_path = f"{root}/memory.pressure"
    if version != 2 or not os.path.exists(psi_path):
        psi_path = f"{proc_root}/pressure/memory"
    try:
        some, full = parse_psi(read_text(psi_path), psi_path)
        psi = NodePSI(some_avg10=some, full_avg10=full)
    except CgroupReadError as error:
        problems.append(f"psi: {error}")
        psi = NodePSI()
    return NodeMemory(capacity_bytes=capacity, available_bytes=available, psi=psi), problems


def _limit_and_working_set(root: str, version: CgroupVersion | None) -> tuple[int, int] | None:
    """(limit, usage - inactive file) of the root cgroup, None when it has no limit."""
    stat_path = f"{root}/memory.stat"
    if version == 2:
        max_path = f"{root}/memory.max"
        if not os.path.exists(max_path):
            return None
        limit = parse_limit(read_text(max_path), max_path)
        if limit is None:
            return None
        inactive_key, usage_path = "inactive_file", f"{root}/memory.current"
        stat = parse_flat_keyed(read_text(stat_path), stat_path, (inactive_key,))
    elif version == 1:
        inactive_key, usage_path = "total_inactive_file", f"{root}/memory.usage_in_bytes"
        stat = parse_flat_keyed(
            read_text(stat_path), stat_path, (inactive_key,), ("hierarchical_memory_limit",)
        )
        if "hierarchical_memory_limit" in stat:
            limit = parse_limit(str(stat["hierarchical_memory_limit"]), stat_path)
        else:
            limit_path = f"{root}/memory.limit_in_bytes"
            limit = parse_limit(read_text(limit_path), limit_path)
        if limit is None:
            return None
    else:
        return None
    usage = parse_count(read_text(usage_path), usage_path)
    return limit, max(0, usage - stat[inactive_key])
