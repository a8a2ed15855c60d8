"""Fixture cgroup trees: plain directories of files shaped like the kubelet's cgroups, in
the style of oomd's fixture trees. Values are what a test states, so every formula can be
checked by hand."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Mi = 2**20
Version = Literal[1, 2]
Driver = Literal["cgroupfs", "systemd"]
Qos = Literal["Guaranteed", "Burstable", "BestEffort"]

UID_A = "0a3e8c52-6a1f-4d8e-9b2c-7f1e2d3c4b5a"
UID_B = "1b4f9d63-7b20-4e9f-8c3d-80f2e3d4c5b6"
UID_C = "2c5a0e74-8c31-4fa0-9d4e-91a3f4e5d6c7"
CONTAINER = "3e6f0b2a9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f"


def v2_stat(**values: int) -> dict[str, int]:
    """A cgroup v2 memory.stat: 100Mi anon (10Mi of it mlocked), 40Mi file of which 8Mi
    shmem, 2Mi mlocked file, kernel 6Mi (1Mi reclaimable slab), 1Mi sock; overrides win."""
    stat = {
        "anon": 100 * Mi,
        "file": 40 * Mi,
        "kernel": 6 * Mi,
        "kernel_stack": 1 * Mi,
        "pagetables": 1 * Mi,
        "sec_pagetables": 0,
        "percpu": 1 * Mi,
        "sock": 1 * Mi,
        "vmalloc": 0,
        "shmem": 8 * Mi,
        "zswap": 0,
        "zswapped": 0,
        "file_mapped": 4 * Mi,
        "swapcached": 0,
        "inactive_anon": 70 * Mi,
        "active_anon": 28 * Mi,
        "inactive_file": 20 * Mi,
        "active_file": 10 * Mi,
        "unevictable": 12 * Mi,
        "slab_reclaimable": 1 * Mi,
        "slab_unreclaimable": 2 * Mi,
        "slab": 3 * Mi,
        "pgfault": 12345,
    }
    stat.update(values)
    return stat


def v1_stat(**values: int) -> dict[str, int]:
    """A cgroup v1 memory.stat with the same pages as v2_stat, local and total_ keys."""
    local = {
        "cache": 40 * Mi,
        "rss": 100 * Mi,
        "rss_huge": 0,
        "shmem": 8 * Mi,
        "mapped_file": 4 * Mi,
        "swap": 0,
        "inactive_anon": 70 * Mi,
        "active_anon": 28 * Mi,
        "inactive_file": 20 * Mi,
        "active_file": 10 * Mi,
        "unevictable": 12 * Mi,
    }
    stat = {**local, "hierarchical_memory_limit": 2**63 - 4096}
    stat.update({f"total_{key}": value for key, value in local.items()})
    stat.update(values)
    return stat


def format_stat(stat: dict[str, int]) -> str:
    return "".join(f"{key} {value}\n" for key, value in stat.items())


@dataclass
class FakeTree:
    """A cgroup root with kubelet pod cgroups, and a fake /proc next to it."""

    base: Path
    version: Version
    driver: Driver = "cgroupfs"
    pods: dict[str, Path] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.base / "cgroup"

    @property
    def proc(self) -> Path:
        return self.base / "proc"

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True)
        if self.version == 2:  # like the cgroup2 root: no memory.max, memory.stat...
            (self.root / "cgroup.controllers").write_text("memory pids\n")
        else:  # like a v1 memory mount: memory files with no limit
            self.write_memory(self.root)
        self.write_meminfo(total=16384 * Mi, available=8192 * Mi)
        self.write_psi(self.proc / "pressure" / "memory", some=1.5, full=0.25)

    def kubepods(self) -> Path:
        return self.root / ("kubepods" if self.driver == "cgroupfs" else "kubepods.slice")

    def pod_dir(self, uid: str, qos: Qos) -> Path:
        if self.driver == "cgroupfs":
            qos_dir = {"Guaranteed": "", "Burstable": "burstable", "BestEffort": "besteffort"}
            return self.kubepods() / qos_dir[qos] / f"pod{uid}"
        slice_uid = uid.replace("-", "_")
        if qos == "Guaranteed":
            return self.kubepods() / f"kubepods-pod{slice_uid}.slice"
        qos_slice = f"kubepods-{qos.lower()}"
        return self.kubepods() / f"{qos_slice}.slice" / f"{qos_slice}-pod{slice_uid}.slice"

    def container_name(self, container_id: str) -> str:
        return container_id if self.driver == "cgroupfs" else f"cri-containerd-{container_id}.scope"

    def add_pod(
        self,
        uid: str,
        qos: Qos = "Burstable",
        containers: tuple[str, ...] = (CONTAINER,),
        *,
        memory: bool = True,
    ) -> Path:
        """A pod cgroup with its containers; with `memory`, default memory files in all."""
        path = self.pod_dir(uid, qos)
        path.mkdir(parents=True)
        self.pods[uid] = path
        for container in containers:
            (path / self.container_name(container)).mkdir()
        if memory:
            self.write_memory(path)
            for container in containers:
                self.write_memory(path / self.container_name(container))
        return path

    def write_memory(
        self,
        path: Path,
        stat: dict[str, int] | None = None,
        *,
        usage: int = 150 * Mi,
        swap: int | None = 0,
        kmem: int | None = 5 * Mi,
    ) -> None:
        """The memory files of one cgroup; `None` leaves a file out."""
        if self.version == 2:
            (path / "cgroup.controllers").write_text("memory pids\n")
            (path / "memory.stat").write_text(format_stat(stat or v2_stat()))
            (path / "memory.current").write_text(f"{usage}\n")
            if swap is not None:
                (path / "memory.swap.current").write_text(f"{swap}\n")
        else:
            (path / "memory.stat").write_text(format_stat(stat or v1_stat()))
            (path / "memory.usage_in_bytes").write_text(f"{usage}\n")
            if kmem is not None:
                (path / "memory.kmem.usage_in_bytes").write_text(f"{kmem}\n")

    def write_meminfo(self, *, total: int, available: int) -> None:
        self.proc.mkdir(exist_ok=True)
        (self.proc / "meminfo").write_text(
            f"MemTotal:       {total // 1024} kB\n"
            f"MemFree:        {available // 2048} kB\n"
            f"MemAvailable:   {available // 1024} kB\n"
            "HugePages_Total:       0\n"
        )

    @staticmethod
    def write_psi(path: Path, *, some: float, full: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"some avg10={some:.2f} avg60=0.00 avg300=0.00 total=100\n"
            f"full avg10={full:.2f} avg60=0.00 avg300=0.00 total=50\n"
        )
