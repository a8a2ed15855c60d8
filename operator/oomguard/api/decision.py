"""OOMDecision: the record of one decision, from trigger to outcome, for the SRE asking why."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from oomguard.api.meta import API_VERSION, ApiVersion, Condition, Model, ObjectMeta
from oomguard.api.policy import Action, Pressure
from oomguard.api.priority import GroupBy, Preference

DecisionPhase = Literal["Pending", "Executing", "Completed", "Failed", "DryRun"]
TERMINAL_PHASES: frozenset[str] = frozenset({"Completed", "Failed", "DryRun"})
VictimOutcome = Literal["Pending", "Killed", "Evicted", "AlreadyGone", "Refused", "Failed"]


class PodRef(Model):
    """A pod, named and pinned by UID."""

    namespace: str = Field(description="Namespace.")
    name: str = Field(description="Name.")
    uid: str = Field(description="UID; actions apply only to this exact pod.")
    node_name: str = Field("", description="Node the pod runs on.")


class Trigger(Model):
    """The node state that caused the decision."""

    pressure: Pressure = Field(description="Pressure level: None, Soft or Hard.")
    available_bytes: int = Field(description="Available memory at decision time.", ge=0)
    capacity_bytes: int = Field(0, description="Node memory capacity.", ge=0)
    need_bytes: int = Field(description="Memory to reclaim to reach reclaimTo.", ge=0)
    psi_full_avg10: float = Field(0.0, description="Memory PSI full avg10, percent.", ge=0)
    report_time: datetime | None = Field(None, description="When the report was measured.")


class VictimGroup(Model):
    """A group chosen as a victim: all its pods are acted on as one unit."""

    name: str = Field(description="Group name: namespace/key.")
    namespace: str = Field(description="Namespace of the group.")
    group_by: GroupBy = Field("Pod", description="How the group was formed.")
    priority: int = Field(0, description="Effective priority of the group.")
    usage_bytes: int = Field(0, description="Unreclaimable usage on the node.", ge=0)
    allowance_bytes: int = Field(0, description="Allowance on the node.", ge=0)
    expected_reclaim_bytes: int = Field(description="Memory expected to be freed.", ge=0)
    unmeasured_pods: int = Field(
        0, ge=0, description="Pods of the group on the node whose usage could not be read: "
        "counted at their memory limit (else request) rather than at zero.")
    pods: list[PodRef] = Field(description="Every member pod, on every node.")


class RankedGroup(Model):
    """One line of the ranking that led to the decision."""

    position: int = Field(description="1 is killed first.", ge=1)
    name: str = Field(description="Group name: namespace/key.")
    priority: int = Field(description="Effective priority.")
    preference: Preference | None = Field(None, description="Effective preference.")
    usage_bytes: int = Field(description="Unreclaimable usage on the node.", ge=0)
    allowance_bytes: int = Field(description="Allowance on the node.", ge=0)
    reason: str = Field("", description="Why it stands above the next group.")


class OOMDecisionSpec(Model):
    """What was decided, and on what grounds."""

    node_name: str = Field(description="The node under pressure.")
    policy: str = Field("default", description="Name of the OOMPolicy in force.")
    mode: Literal["Enforce", "DryRun"] = Field("Enforce", description="DryRun acts on nothing.")
    decided_by: Literal["operator", "agent"] = Field(
        description="operator, or agent when the node acted alone."
    )
    trigger: Trigger = Field(description="The node state that caused it.")
    action: Action = Field(description="Action taken on every victim.")
    victims: list[VictimGroup] = Field(description="Victim groups, in kill order.")
    ranking: list[RankedGroup] = Field(
        default_factory=list, description="The top of the ranking, first killed first."
    )


class VictimStatus(Model):
    """What happened to one victim pod."""

    namespace: str = Field(description="Namespace.")
    name: str = Field(description="Name.")
    uid: str = Field(description="UID.")
    outcome: VictimOutcome = Field("Pending", description="Killed, Evicted, AlreadyGone, ...")
    message: str = Field("", description="Details, such as why it was refused.")
    reclaimed_bytes: int = Field(0, description="Memory freed by this pod.", ge=0)
    duration_seconds: float = Field(0.0, description="Time the action took.", ge=0)


class OOMDecisionStatus(Model):
    """Progress and outcome."""

    phase: DecisionPhase = Field("Pending", description="Pending, Executing, Completed, ...")
    victims: list[VictimStatus] = Field(default_factory=list, description="Per-pod outcome.")
    reclaimed_bytes: int = Field(0, description="Memory freed in total.", ge=0)
    start_time: datetime | None = Field(None, description="When execution began.")
    completion_time: datetime | None = Field(None, description="When it ended.")
    duration_seconds: float | None = Field(
        None, description="Time from the start of execution to the last victim's end.", ge=0
    )
    conditions: list[Condition] = Field(default_factory=list, description="Conditions.")


class OOMDecision(Model):
    """OOMDecision records one decision: the trigger, the victims and the ranking that led
    there, who decided, and the outcome. Cluster-scoped."""

    api_version: ApiVersion = Field(API_VERSION, description="API version.")
    kind: Literal["OOMDecision"] = Field("OOMDecision", description="Kind.")
    metadata: ObjectMeta = Field(description="Standard object metadata.")
    spec: OOMDecisionSpec = Field(description="The decision.")
    status: OOMDecisionStatus | None = Field(None, description="Outcome.")
