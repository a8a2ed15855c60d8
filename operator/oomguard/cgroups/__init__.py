"""The cgroup layer: find kubelet pod cgroups, sample node and pod memory, kill a pod.

    discover_pods(root) -> list[PodCgroup]
    read_snapshot(root, *, proc_root=Path("/proc"), pods=None, containers=True) -> NodeSnapshot
    read_node_memory(root, version, proc_root) -> (NodeMemory, notes)   node signals only
    kill_pod(root, uid, *, timeout=5.0, freezer_root=FREEZER_ROOT, journal=None) -> KillResult
    FreezeJournal(directory).thaw_leftovers()       what a kill cut short left frozen

`root` is the directory holding `kubepods` or `kubepods.slice`: a cgroup v1 memory
hierarchy, a cgroup v2 mount, a cgroup inside either, or a fixture tree. Formulas and
choices are in docs/cgroups.md.
"""

from oomguard.cgroups.discovery import (
    ContainerCgroup,
    PodCgroup,
    cgroup_version,
    discover_pods,
    pod_cgroup_path,
)
from oomguard.cgroups.kill import FREEZER_ROOT, FreezeJournal, KillResult, kill_pod
from oomguard.cgroups.node import NodeSignalError, read_node_memory
from oomguard.cgroups.snapshot import NodeSnapshot, ScanErrors, read_snapshot

__all__ = [
    "FREEZER_ROOT",
    "ContainerCgroup",
    "FreezeJournal",
    "KillResult",
    "NodeSignalError",
    "NodeSnapshot",
    "PodCgroup",
    "ScanErrors",
    "cgroup_version",
    "discover_pods",
    "kill_pod",
    "pod_cgroup_path",
    "read_node_memory",
    "read_snapshot",
]
