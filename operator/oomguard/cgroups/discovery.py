"""Finding the kubelet's pod cgroups under a cgroup root, for both cgroup drivers.

cgroupfs driver::

    kubepods/pod<uid>/<container>                  Guaranteed
    kubepods/burstable/pod<uid>/<container>        Burstable
    kubepods/besteffort/pod<uid>/<container>       BestEffort

systemd driver (dashes in the UID become underscores in the slice name)::

    kubepods.slice/kubepods-pod<uid>.slice/cri-containerd-<id>.scope
    kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/crio-<id>.scope
    kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid>.slice/docker-<id>.scope

Only `ROOT/kubepods` and `ROOT/kubepods.slice` are searched, at the fixed depths above, so
the root may be a cgroup mount, a cgroup inside one (a sandbox) or a fixture tree. Every
path handed out comes from listing those directories: nothing here joins a caller's string
into a path, which is what lets `kill` trust `pod_cgroup_path`.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

QosClass = Literal["Guaranteed", "Burstable", "BestEffort"]
CgroupVersion = Literal[1, 2]

# Kubernetes UIDs are UUIDs; static pods use a 32-digit hex hash. Letters, digits and
# dashes cover both and exclude anything that could mean a path.
_UID = re.compile(r"[0-9A-Za-z][0-9A-Za-z-]{0,127}")
_RUNTIME_PREFIXES = ("cri-containerd-", "crio-", "docker-")
_KUBEPODS = ("kubepods", "kubepods.slice")


@dataclass(frozen=True)
class ContainerCgroup:
    """A child cgroup of a pod: a container, pause container or runtime helper."""

    id: str
    path: Path


@dataclass(frozen=True)
class PodCgroup:
    """A kubelet pod cgroup found by discovery."""

    uid: str
    qos_class: QosClass
    path: Path
    version: CgroupVersion | None
    containers: tuple[ContainerCgroup, ...]


@dataclass(frozen=True)
class _QosDir:
    """Where pods of one QoS class live under a kubepods directory, and how they're named."""

    relative: str
    qos_class: QosClass
    prefix: str
    suffix: str
    underscored: bool


_CGROUPFS = (
    _QosDir("", "Guaranteed", "pod", "", underscored=False),
    _QosDir("burstable", "Burstable", "pod", "", underscored=False),
    _QosDir("besteffort", "BestEffort", "pod", "", underscored=False),
)
_SYSTEMD = (
    _QosDir("", "Guaranteed", "kubepods-pod", ".slice", underscored=True),
    _QosDir(
        "kubepods-burstable.slice", "Burstable", "kubepods-burstable-pod", ".slice",
        underscored=True,
    ),
    _QosDir(
        "kubepods-besteffort.slice", "BestEffort", "kubepods-besteffort-pod", ".slice",
        underscored=True,
    ),
)


def cgroup_version(path: Path) -> CgroupVersion | None:
    """2 if the directory is on cgroup2, 1 if it is a v1 memory cgroup, None if neither."""
    if (path / "cgroup.controllers").exists():
        return 2
    if (path / "memory.usage_in_bytes").exists():
        return 1
    return None


def kubepods_dirs(root: Path) -> list[Path]:
    """`root/kubepods` and `root/kubepods.slice`, those that exist as real directories."""
    return [root / name for name in _KUBEPODS if _is_real_dir(root / name)]


def discover_pods(root: Path, *, containers: bool = True) -> list[PodCgroup]:
    """Every pod cgroup under `root/kubepods` and `root/kubepods.slice`; with
    `containers=False` the pods' directories are not listed (a third of a sample's cost)."""
    root_version = cgroup_version(root)
    pods: list[PodCgroup] = []
    for base in kubepods_dirs(root):
        layout = _SYSTEMD if base.name.endswith(".slice") else _CGROUPFS
        for qos in layout:
            try:
                entries = _subdirs(base / qos.relative)
            except OSError as error:
                if not isinstance(error, FileNotFoundError):
                    log.debug("cannot list %s: %s", base / qos.relative, error)
                continue
            for entry in entries:
                uid = _pod_uid(entry.name, qos)
                if uid is None:
                    continue
                pod = _pod(Path(entry.path), uid, qos.qos_class, root_version, containers)
                if pod is not None:
                    pods.append(pod)
    return pods


def pod_cgroup_path(root: Path, uid: str) -> Path | None:
    """The cgroup of the pod with this UID, found only by discovery under `root`."""
    wanted = uid.lower()
    for pod in discover_pods(root, containers=False):
        if pod.uid.lower() == wanted:
            return pod.path
    return None


def container_id(name: str) -> str:
    """The runtime's container ID from a cgroup name: `cri-containerd-<id>.scope` -> id."""
    name = name.removesuffix(".scope")
    for prefix in _RUNTIME_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _pod_uid(name: str, qos: _QosDir) -> str | None:
    if not (name.startswith(qos.prefix) and name.endswith(qos.suffix)):
        return None
    uid = name[len(qos.prefix) : len(name) - len(qos.suffix)]
    if qos.underscored:
        uid = uid.replace("_", "-")
    return uid if _UID.fullmatch(uid) else None


def _pod(
    path: Path, uid: str, qos_class: QosClass, root_version: CgroupVersion | None,
    list_containers: bool,
) -> PodCgroup | None:
    containers: tuple[ContainerCgroup, ...] = ()
    if list_containers:
        try:
            containers = tuple(
                ContainerCgroup(container_id(entry.name), Path(entry.path))
                for entry in _subdirs(path)
            )
        except OSError as error:
            log.debug("pod cgroup %s unlistable during discovery: %s", path, error)
            return None
    version = root_version or cgroup_version(path)
    return PodCgroup(uid, qos_class, path, version, containers)


def _subdirs(path: Path) -> list[os.DirEntry[str]]:
    """Child directories, not following symlinks, sorted by name."""
    with os.scandir(path) as entries:
        found = [entry for entry in entries if entry.is_dir(follow_symlinks=False)]
    return sorted(found, key=lambda entry: entry.name)


def _is_real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()
