"""One sample of a node: its memory signals and every pod's memory, read in one pass.

A pod cgroup that cannot be read (removed mid-scan, memory controller missing, a file that
does not parse) is left out of the sample and counted, never reported as zero; a container
that cannot be read is left out of its pod's container list the same way.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from oomguard.api.report import ContainerMemory, NodeMemory, PodMemory
from oomguard.cgroups.discovery import PodCgroup, cgroup_version, discover_pods
from oomguard.cgroups.files import CgroupReadError, SkipReason
from oomguard.cgroups.node import read_node_memory
from oomguard.cgroups.usage import read_usage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScanErrors:
    """Cgroups (pods and containers) one scan skipped, by reason, and node signals that
    fell back to a weaker source. Meant for metrics: each is a count for this scan."""

    vanished: int = 0
    incomplete: int = 0
    malformed: int = 0
    unreadable: int = 0
    node_signals: int = 0


@dataclass(frozen=True)
class NodeSnapshot:
    """What one scan saw. `skipped` lists the UIDs of pod cgroups that exist but could not
    be read, so that a caller does not mistake them for pods that are gone."""

    node: NodeMemory
    pods: tuple[PodMemory, ...]
    skipped: tuple[str, ...]
    errors: ScanErrors
    notes: tuple[str, ...]


def read_snapshot(
    root: Path,
    *,
    proc_root: Path = Path("/proc"),
    pods: Sequence[PodCgroup] | None = None,
    containers: bool = True,
) -> NodeSnapshot:
    """Sample the node whose kubelet cgroups live under `root`. `pods` reuses an earlier
    discovery; `containers=False` skips the per-container reads (half the file reads).
    Raises NodeSignalError only when the node's capacity cannot be known at all."""
    node, notes = read_node_memory(root, cgroup_version(root), proc_root)
    skips: Counter[SkipReason] = Counter()
    read: list[PodMemory] = []
    skipped: list[str] = []
    for pod in discover_pods(root, containers=containers) if pods is None else pods:
        memory = _read_pod(pod, skips, containers=containers)
        if memory is None:
            skipped.append(pod.uid)
        else:
            read.append(memory)
    errors = ScanErrors(
        vanished=skips["vanished"],
        incomplete=skips["incomplete"],
        malformed=skips["malformed"],
        unreadable=skips["unreadable"],
        node_signals=len(notes),
    )
    return NodeSnapshot(node, tuple(read), tuple(skipped), errors, tuple(notes))


def _read_pod(pod: PodCgroup, skips: Counter[SkipReason], *, containers: bool) -> PodMemory | None:
    if pod.version is None:
        log.debug("skipping pod %s: %s is neither a v1 memory nor a v2 cgroup", pod.uid, pod.path)
        skips["incomplete"] += 1
        return None
    try:
        usage = read_usage(pod.path, pod.version)
    except CgroupReadError as error:
        log.debug("skipping pod %s (%s): %s", pod.uid, error.reason, error)
        skips[error.reason] += 1
        return None
    entries: list[ContainerMemory] = []
    for container in pod.containers if containers else ():
        try:
            entries.append(
                ContainerMemory(id=container.id, usage=read_usage(container.path, pod.version))
            )
        except CgroupReadError as error:
            log.debug("skipping container %s (%s): %s", container.path, error.reason, error)
            skips[error.reason] += 1
    return PodMemory(uid=pod.uid, qos_class=pod.qos_class, usage=usage, containers=entries)
