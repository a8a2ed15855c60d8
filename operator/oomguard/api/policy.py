"""OOMPolicy: the cluster admin's rules for when to act, how, and what tenants may claim."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from oomguard.api.meta import (
    API_VERSION,
    ApiVersion,
    Condition,
    LabelSelector,
    Model,
    ObjectMeta,
    bounded_metadata,
    cel_rules,
)
from oomguard.api.quantity import (
    Quantity,
    QuantityOrPercent,
    cel_not_above,
    is_percent,
    parse_quantity,
)

Action = Literal["Evict", "Kill", "KillAndEvict"]
MAX_COOLDOWN_SECONDS = 2**31 - 1
"""Beyond any cooldown meant, and exact in the API server's schema numbers (an int64 bound
is not: the server refuses such a schema)."""
Pressure = Literal["None", "Soft", "Hard"]


DEFAULT_SOFT, DEFAULT_HARD, DEFAULT_RECLAIM_TO = "10%", "5%", "15%"


def _not_above(low: str, high: str) -> bool:
    """True unless `low` is provably above `high` (only comparable in the same unit).
    Its CEL twin, for the API server: quantity.cel_not_above."""
    if is_percent(low) != is_percent(high):
        return True
    if is_percent(low):
        return float(low[:-1]) <= float(high[:-1])
    return parse_quantity(low) <= parse_quantity(high)


class MemoryAvailableThresholds(Model):
    """Available-memory thresholds. Below `soft` the node is under Soft pressure, below
    `hard` under Hard pressure."""

    model_config = cel_rules({
        "rule": f"!has(self.hard) || !has(self.soft) || {cel_not_above('self.hard', 'self.soft')}",
        "messageExpression": "'hard (' + string(self.hard) + ') must not be above soft ('"
                             " + string(self.soft) + ')'",
        "fieldPath": ".hard",
    })

    soft: QuantityOrPercent = Field(
        DEFAULT_SOFT, description="Soft threshold: a quantity (512Mi) or a percentage of "
        "capacity."
    )
    hard: QuantityOrPercent = Field(
        DEFAULT_HARD, description="Hard threshold: a quantity (256Mi) or a percentage of "
        "capacity."
    )

    @model_validator(mode="after")
    def _hard_not_above_soft(self) -> MemoryAvailableThresholds:
        if not _not_above(self.hard, self.soft):
            raise ValueError(f"hard ({self.hard}) must not be above soft ({self.soft})")
        return self


class PSIThresholds(Model):
    """Pressure-stall thresholds on the node's memory PSI."""

    full_avg10: float | None = Field(
        None, strict=True, ge=0, le=100,
        description="Percent of time all tasks stalled on memory over 10s; above it the "
        "node counts as under Soft pressure. Unset: PSI is not used.",
    )


class Thresholds(Model):
    """When the node counts as under memory pressure."""

    memory_available: MemoryAvailableThresholds = Field(
        default_factory=MemoryAvailableThresholds,
        description="Thresholds on the node's available memory.",
    )
    psi: PSIThresholds = Field(
        default_factory=PSIThresholds, description="Optional thresholds on memory PSI."
    )
    soft_grace_seconds: int = Field(
        0, strict=True, ge=0, le=3600,
        description="Seconds Soft pressure must last before a victim is chosen for it, as "
        "the kubelet's eviction-soft-grace-period: a pressure that comes and goes within "
        "it decides nothing. Hard pressure acts at once. 0: Soft acts at once too.",
    )


class Actions(Model):
    """What to do to victims, by pressure level."""

    soft: Action = Field("Evict", description="Action under Soft pressure.")
    hard: Action = Field("KillAndEvict", description="Action under Hard pressure.")


class Tenant(Model):
    """What the namespaces matched by `namespaceSelector` may claim in their OOMPriority
    objects. The first tenant entry that matches a namespace applies."""

    namespace_selector: LabelSelector = Field(
        default_factory=LabelSelector,
        description="Namespaces this entry applies to, by namespace labels; empty: all.",
    )
    max_priority: int = Field(
        1000, strict=True, ge=-1000, le=1000,
        description="Highest priority these namespaces may claim; higher values are clamped.",
    )
    allow_never: bool = Field(
        False, strict=True,
        description="Whether preference Never is honoured; if false, Never acts as Avoid "
        "where Avoid is allowed, else as no preference.",
    )
    allow_avoid: bool = Field(
        False, strict=True,
        description="Whether preference Avoid is honoured; if false, it acts as no "
        "preference. (Preference ranks before priority: an Avoid would otherwise move a "
        "group behind other tenants' groups whatever maxPriority says.)",
    )
    max_allowance: Quantity | None = Field(
        None,
        description="Largest quantity allowance these namespaces may claim, such as 8Gi; "
        "a larger one is capped to it. Unset: not capped by the policy. Requests and "
        "Limits are what the pods declare, and are not capped.",
    )


_SOFT = ("has(self.thresholds) && has(self.thresholds.memoryAvailable) && "
         "has(self.thresholds.memoryAvailable.soft) ? "
         f"self.thresholds.memoryAvailable.soft : '{DEFAULT_SOFT}'")
_RECLAIM_TO = f"has(self.reclaimTo) ? self.reclaimTo : '{DEFAULT_RECLAIM_TO}'"


class OOMPolicySpec(Model):
    """The admin's policy for the nodes it governs."""

    model_config = cel_rules({
        "rule": cel_not_above(f"({_SOFT})", f"({_RECLAIM_TO})"),
        "messageExpression": f"'reclaimTo (' + string({_RECLAIM_TO}) + ') must not be below "
                             f"the soft threshold (' + string({_SOFT}) + ')'",
        "fieldPath": ".reclaimTo",
    })

    node_selector: LabelSelector = Field(
        default_factory=LabelSelector,
        description="Nodes this policy governs, by node labels; empty: all nodes. Where "
        "several policies match a node, the most specific selector wins, then the name.",
    )
    mode: Literal["Enforce", "DryRun"] = Field(
        "Enforce", description="DryRun records decisions and acts on nothing."
    )
    thresholds: Thresholds = Field(
        default_factory=Thresholds, description="When the node counts as under pressure."
    )
    reclaim_to: QuantityOrPercent = Field(
        DEFAULT_RECLAIM_TO,
        description="Available memory to restore: victims are picked until their expected "
        "reclaim covers reclaimTo minus available. Quantity or percentage of capacity.",
    )
    actions: Actions = Field(
        default_factory=Actions, description="Action taken on victims, by pressure level."
    )
    ranking: Literal["Priority", "KubeletCompatible"] = Field(
        "Priority",
        description="Priority: preference and priority first. KubeletCompatible: usage "
        "over allowance first, as the kubelet ranks.",
    )
    hierarchy: Literal["Flat", "Namespace"] = Field(
        "Flat",
        description="Flat compares groups across the node. Namespace first picks the "
        "namespace by its usage over allowance, then the group inside it.",
    )
    protected_namespaces: list[Annotated[str, Field(max_length=63)]] = Field(
        default_factory=lambda: ["kube-system"], max_length=256,
        description="Namespaces whose pods are never victims.",
    )
    cooldown_seconds: int = Field(
        15, strict=True, ge=0, le=MAX_COOLDOWN_SECONDS,
        description="After a decision, no new victim is chosen on the node while an earlier "
        "victim still releases memory, unless this long passed and pressure is Hard.",
    )
    tenants: list[Tenant] = Field(
        default_factory=list, max_length=64,
        description="Bounds on what namespaces may claim; a namespace matched by no entry "
        "may claim any priority but not Never.",
    )

    @model_validator(mode="after")
    def _reclaim_to_not_below_soft(self) -> OOMPolicySpec:
        soft = self.thresholds.memory_available.soft
        if not _not_above(soft, self.reclaim_to):
            raise ValueError(
                f"reclaimTo ({self.reclaim_to}) must not be below the soft threshold ({soft})"
            )
        return self


class OOMPolicyStatus(Model):
    """What the operator observed of this policy."""

    observed_generation: int | None = Field(
        None, description="The generation last acted on."
    )
    nodes: list[str] = Field(
        default_factory=list, description="Nodes this policy currently governs."
    )
    last_decision: str | None = Field(
        None, description="Name of the latest OOMDecision made under this policy."
    )
    last_decision_time: datetime | None = Field(None, description="When it was made.")
    conditions: list[Condition] = Field(
        default_factory=list, description="Conditions, such as Ready."
    )


class OOMPolicy(Model):
    """OOMPolicy says when a node is under memory pressure, what oomguard does about it,
    and what tenants may claim. Cluster-scoped."""

    api_version: ApiVersion = Field(API_VERSION, description="API version.")
    kind: Literal["OOMPolicy"] = Field("OOMPolicy", description="Kind.")
    metadata: Annotated[ObjectMeta, AfterValidator(bounded_metadata)] = Field(
        description="Standard object metadata.")
    spec: OOMPolicySpec = Field(default_factory=OOMPolicySpec, description="The policy.")
    status: OOMPolicyStatus | None = Field(None, description="Observed state.")


DEFAULT_POLICY = OOMPolicy(metadata=ObjectMeta(name="default"))
"""The policy in force where no OOMPolicy governs a node: the spec's defaults."""
