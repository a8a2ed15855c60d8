"""NodeMemoryReport: what a node agent measured of its node and of each pod."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from oomguard.api.meta import API_VERSION, ApiVersion, Model, ObjectMeta
from oomguard.api.policy import Pressure


class MemoryUsage(Model):
    """Memory charged to a cgroup subtree, in bytes. The fields are disjoint: each page is
    counted in exactly one of anon, file, shmem, unevictable and kernel."""

    anon_bytes: int = Field(
        description="Anonymous memory on the evictable LRU lists, excluding shmem.", ge=0
    )
    file_bytes: int = Field(0, description="Page cache, excluding shmem.", ge=0)
    shmem_bytes: int = Field(0, description="Shared memory and tmpfs pages.", ge=0)
    unevictable_bytes: int = Field(
        0, description="Pages on the unevictable LRU (mlocked, ramfs).", ge=0
    )
    kernel_bytes: int = Field(
        0, description="Unreclaimable kernel memory (stacks, page tables, "
        "unreclaimable slab, sockets).", ge=0
    )
    swap_bytes: int = Field(0, description="Memory swapped out.", ge=0)
    working_set_bytes: int = Field(
        0, description="Usage minus inactive file pages, as the kubelet computes it.", ge=0
    )

    @property
    def unreclaimable_bytes(self) -> int:
        """What the kernel cannot get back without killing: the ranking's usage."""
        return self.anon_bytes + self.unevictable_bytes + self.kernel_bytes + self.swap_bytes


class ContainerMemory(Model):
    """Memory of one container's cgroup."""

    name: str = Field("", description="Container name, when known.")
    id: str = Field("", description="Container runtime ID, from the cgroup name.")
    usage: MemoryUsage = Field(description="The container's memory.")


class PodMemory(Model):
    """Memory of one pod, summed over its whole cgroup subtree."""

    uid: str = Field(description="The pod's UID, from its cgroup path.")
    qos_class: Literal["Guaranteed", "Burstable", "BestEffort"] | None = Field(
        None, description="QoS class, from the cgroup path."
    )
    usage: MemoryUsage = Field(description="Hierarchical usage of the pod's cgroup.")
    containers: list[ContainerMemory] = Field(
        default_factory=list, description="Per-container usage."
    )


class NodePSI(Model):
    """Memory pressure-stall information, percent over the last 10 seconds."""

    some_avg10: float = Field(0.0, ge=0, le=100, description="Some tasks stalled, percent.")
    full_avg10: float = Field(0.0, ge=0, le=100, description="All tasks stalled, percent.")


class NodeMemory(Model):
    """The node's memory."""

    capacity_bytes: int = Field(description="Memory capacity.", gt=0)
    allocatable_bytes: int = Field(0, description="Allocatable to pods.", ge=0)
    available_bytes: int = Field(description="Available memory.", ge=0)
    psi: NodePSI = Field(default_factory=NodePSI, description="Memory PSI.")


class NodeMemoryReportStatus(Model):
    """The measurements."""

    node: NodeMemory = Field(description="The node's memory.")
    pods: list[PodMemory] = Field(
        default_factory=list, description="Each pod cgroup found on the node."
    )
    unmeasured_pods: list[str] = Field(
        default_factory=list, description="UIDs of pod cgroups on the node whose usage could "
        "not be read: ranked at their memory limit (else request), never at zero."
    )
    observed_time: datetime | None = Field(None, description="When this was measured.")
    agent_version: str = Field("", description="Version of the agent that measured.")
    pods_observed_time: datetime | None = Field(
        None, description="When `pods` was measured. At rest the agent rewrites the per-pod "
        "detail only when it changed materially or every few minutes; under pressure every "
        "second."
    )
    heartbeat_time: datetime | None = Field(
        None, description="When the agent last wrote this report. It writes at least every "
        "heartbeatSeconds while it runs and reaches the API server: an older heartbeat means "
        "the report is stale."
    )
    heartbeat_seconds: float | None = Field(
        None, description="The agent's heartbeat period at rest, in seconds.", ge=0
    )
    pressure_since: datetime | None = Field(
        None, description="When the current episode of pressure (Soft or Hard, without a "
        "sample of None between) began, as the agent saw it: what a policy's "
        "thresholds.softGraceSeconds counts from. Unset while there is no pressure.",
    )
    pressure: Pressure | None = Field(
        None, description="Pressure the agent sees under the policy it has cached: None, Soft "
        "or Hard. Its writes follow it: at once when it changes, every second while not None."
    )


class NodeMemoryReport(Model):
    """NodeMemoryReport holds what the node agent measured: node memory, PSI and each pod's
    hierarchical usage. Cluster-scoped, named after the node, written by the agent."""

    api_version: ApiVersion = Field(API_VERSION, description="API version.")
    kind: Literal["NodeMemoryReport"] = Field("NodeMemoryReport", description="Kind.")
    metadata: ObjectMeta = Field(description="Standard object metadata; name is the node's.")
    status: NodeMemoryReportStatus | None = Field(None, description="The measurements.")
