"""The engine's inputs and outputs: plain immutable data, built by the edges.

Pods arrive already digested (requests summed, mirror owner and critical flag set) so that the
hot path, ranking, touches each pod only a few times.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from oomguard.api import (
    NodeMemory,
    OOMDecision,
    OOMPolicy,
    OOMPriority,
    PodMemory,
    Preference,
    Pressure,
)
from oomguard.api.policy import Action
from oomguard.api.priority import GroupBy


@dataclass(frozen=True)
class Assessment:
    """How much pressure a node is under, and how much to reclaim."""

    pressure: Pressure
    need_bytes: int
    soft_bytes: int


@dataclass(frozen=True, slots=True)
class OwnerRef:
    """A controller owner reference."""

    kind: str
    name: str
    uid: str


@dataclass(frozen=True, slots=True)
class Owner:
    """A known workload object (ReplicaSet, Deployment, Job, ...) and its own controller."""

    namespace: str
    kind: str
    name: str
    uid: str
    controller: OwnerRef | None = None


@dataclass(frozen=True, slots=True)
class Pod:
    """What the engine needs of a v1 Pod."""

    namespace: str
    name: str
    uid: str
    node_name: str = ""
    phase: str = "Running"
    labels: Mapping[str, str] = field(default_factory=dict)
    controller: OwnerRef | None = None
    created: float = 0.0
    terminating: bool = False
    mirror_of: OwnerRef | None = None
    """The Node a mirror pod names (the kubelet's mirror annotation and a controller
    reference to a Node). Anyone who can create a pod can write both: eligibility believes
    it only when it names the node the pod runs on, with that Node's UID."""
    critical: bool = False
    requests_bytes: int = 0
    limits_bytes: int = 0
    limited: bool = False
    """Every long-running container (app containers, sidecars) has a memory limit: the
    pod cannot use more than limits_bytes."""

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Snapshot:
    """Everything one decision for one node is made from."""

    node: str
    memory: NodeMemory
    usage: Sequence[PodMemory]
    pods: Sequence[Pod]
    now: datetime
    node_labels: Mapping[str, str] = field(default_factory=dict)
    node_uid: str | None = None
    """The UID of the node's Node object, where it is known (not in standalone mode
    without a Node manifest): what a mirror pod's owner reference must name."""
    namespaces: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    owners: Mapping[str, Owner] = field(default_factory=dict)
    policies: Sequence[OOMPolicy] = ()
    priorities: Sequence[OOMPriority] = ()
    decisions: Sequence[OOMDecision] = ()
    unmeasured: Collection[str] = ()
    """Pod cgroups present on the node whose usage could not be read this time."""
    budget_exhausted: Collection[str] = ()
    """Pods (UIDs) whose PodDisruptionBudget allows no disruption now: an eviction would
    be refused, so where the action is Evict they are not candidates."""
    pressure_since: datetime | None = None
    """When the node's current episode of pressure began, as its agent saw it; None:
    unknown, or just now (a Soft grace period has then not passed)."""


@dataclass(frozen=True, slots=True)
class PodPriority:
    """The OOMPriority settings in force for one pod, after tenant bounds."""

    priority: int = 0
    preference: Preference | None = None
    allowance: str = "Requests"
    group_by: GroupBy = "Pod"
    group_label: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class PriorityReport:
    """How one OOMPriority object was applied: the content of its status."""

    namespace: str
    name: str
    matched_pods: int
    effective_priority: int
    effective_preference: Preference | None
    clamped_from: int | None = None
    never_denied: bool = False
    avoid_denied: bool = False
    """Avoid claimed (or a denied Never that would act as Avoid), and not allowed."""
    effective_allowance: str = "Requests"
    allowance_capped_from: str | None = None
    """The quantity allowance claimed, where the tenant's maxAllowance capped it."""
    overlaps: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Exclusion:
    """A pod that cannot be a victim, and why."""

    pod: str
    uid: str
    reason: str
    message: str


@dataclass(slots=True)
class Group:
    """Pods ranked and killed as one unit; usage and allowance are on this node."""

    name: str
    namespace: str
    group_by: GroupBy
    pods: list[Pod]
    group_label: str | None = None
    priority: int = -1001
    preference: Preference | None = None
    usage_bytes: int = 0
    allowance_bytes: int = 0
    created: float = 0.0
    elsewhere: list[Pod] = field(default_factory=list)
    unmeasured: list[str] = field(default_factory=list)
    """UIDs of its pods on the node whose usage could not be read: counted at what they
    may use (their limit, else their request), never at zero."""

    @property
    def excess_bytes(self) -> int:
        return self.usage_bytes - self.allowance_bytes


@dataclass(frozen=True, slots=True)
class Ranked:
    """A group at its place in the ranking, with the reason it stands above the next.
    The reason is put into words only when read: most of a long ranking never is."""

    position: int
    group: Group
    explain: Callable[[], str]

    @property
    def reason(self) -> str:
        return self.explain()


@dataclass(frozen=True)
class Outcome:
    """The engine's answer for one node."""

    node: str
    policy: str
    mode: str
    pressure: Pressure
    capacity_bytes: int
    available_bytes: int
    need_bytes: int
    releasing_bytes: int
    action: Action | None
    victims: list[Ranked]
    ranking: list[Ranked]
    excluded: list[Exclusion]
    priorities: list[PriorityReport]
    soft_threshold_bytes: int = 0
    psi_full_avg10: float = 0.0
    """The node's memory PSI (full, avg10) the decision saw: what a PSI threshold reads."""
    cooldown_seconds: int = 0
    blocked_by: str | None = None
    grace_remaining_seconds: float | None = None
    """Under Soft pressure within the policy's grace period: how much of it is left (no
    victim is chosen until it has passed)."""
    no_victim: str | None = None
    """Under pressure without a victim and without a decision holding the node back or a
    grace period running: why, in words."""

    @property
    def assessment(self) -> Assessment:
        """The pressure this outcome was decided under: nobody needs to assess it again."""
        return Assessment(self.pressure, self.need_bytes, self.soft_threshold_bytes)

    @property
    def expected_reclaim_bytes(self) -> int:
        return sum(v.group.usage_bytes for v in self.victims)
