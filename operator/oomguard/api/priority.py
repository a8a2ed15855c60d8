"""OOMPriority: a tenant's say over which of its pods matter, and how they group."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema, model_validator

from oomguard.api.meta import (
    API_VERSION,
    LABEL_KEY_LENGTH,
    ApiVersion,
    Condition,
    LabelSelector,
    Model,
    ObjectMeta,
    bounded_metadata,
    cel_rules,
)
from oomguard.api.quantity import AMOUNT_PATTERN, MAX_LENGTH, parse_quantity

Preference = Literal["Prefer", "Avoid", "Never"]
GroupBy = Literal["Pod", "Workload", "Label"]
ALLOWANCE_KEYWORDS = ("Requests", "Limits")


def _check_allowance(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and len(value) > MAX_LENGTH:
        raise ValueError(f"an allowance is at most {MAX_LENGTH} characters")
    if isinstance(value, str) and value not in ALLOWANCE_KEYWORDS:
        try:
            amount = parse_quantity(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is neither Requests, Limits nor a quantity such as 4Gi"
            ) from None
        if amount < 0:
            raise ValueError(f"{value!r} is negative; memory amounts are >= 0")
    return value


Allowance = Annotated[
    str,
    BeforeValidator(_check_allowance),
    WithJsonSchema({
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "x-kubernetes-int-or-string": True,
        "pattern": f"^(Requests|Limits)$|{AMOUNT_PATTERN}",
        "maxLength": MAX_LENGTH,
    }),
]


class Grouping(Model):
    """How pods form groups; a group is ranked and killed as one unit."""

    model_config = cel_rules(
        {"rule": "self.by != 'Label' || (has(self.label) && self.label != '')",
         "message": "group.label is required when group.by is Label",
         "fieldPath": ".label", "reason": "FieldValueRequired"},
        {"rule": "self.by == 'Label' || !has(self.label) || self.label == ''",
         "messageExpression": "'group.label is only used with group.by Label, not ' + self.by",
         "fieldPath": ".label"},
    )

    by: GroupBy = Field(
        "Pod",
        description="Pod: each pod alone. Workload: all pods of the same top-level "
        "controller (through ownerReferences). Label: all pods of the namespace that share "
        "the value of `label`.",
    )
    label: str | None = Field(None, max_length=LABEL_KEY_LENGTH,
                              description="The label key, when `by` is Label.")

    @model_validator(mode="after")
    def _label_iff_by_label(self) -> Grouping:
        if self.by == "Label" and not self.label:
            raise ValueError("group.label is required when group.by is Label")
        if self.by != "Label" and self.label:
            raise ValueError(f"group.label is only used with group.by Label, not {self.by}")
        return self


class OOMPrioritySpec(Model):
    """Priority, preference, allowance and grouping for the selected pods."""

    pod_selector: LabelSelector = Field(
        default_factory=LabelSelector,
        description="Pods of this namespace it applies to; empty: every pod.",
    )
    priority: int = Field(
        0, strict=True, ge=-1000, le=1000,
        description="Higher is more important and killed later. Clamped to the tenant's "
        "maxPriority from the OOMPolicy.",
    )
    preference: Preference | None = Field(
        None,
        description="Prefer: killed first. Avoid: killed last. Never: never selected. "
        "Where a tenants entry of the policy applies to the namespace, Never is honoured "
        "only with allowNever (else treated as Avoid) and Avoid only with allowAvoid (else "
        "treated as no preference); each is reported in the status.",
    )
    allowance: Allowance = Field(
        "Requests",
        description="Memory the group is expected to use: Requests (sum of container "
        "memory requests), Limits (sum of limits, a container without one counts its "
        "request) or a quantity for the whole group on a node, such as 4Gi (capped to "
        "the tenant's maxAllowance, and to the group's limits where all its pods have "
        "limits).",
    )
    group: Grouping = Field(default_factory=Grouping, description="How pods form groups.")


class OOMPriorityStatus(Model):
    """How the operator applied this object."""

    observed_generation: int | None = Field(None, description="The generation last applied.")
    matched_pods: int = Field(0, description="Number of pods this object currently decides.")
    effective_priority: int | None = Field(
        None, description="The priority in force after the tenant's clamp."
    )
    effective_preference: Preference | None = Field(
        None, description="The preference in force; Never becomes Avoid where not allowed."
    )
    overlaps: list[str] = Field(
        default_factory=list,
        description="Other OOMPriority objects of this namespace that select some of the "
        "same pods.",
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Conditions: Ready, Clamped, Overlapping."
    )


class OOMPriority(Model):
    """OOMPriority tells oomguard how important the selected pods are, how much memory
    they are expected to use, and how they group. Namespaced."""

    api_version: ApiVersion = Field(API_VERSION, description="API version.")
    kind: Literal["OOMPriority"] = Field("OOMPriority", description="Kind.")
    metadata: Annotated[ObjectMeta, AfterValidator(bounded_metadata)] = Field(
        description="Standard object metadata.")
    spec: OOMPrioritySpec = Field(
        default_factory=OOMPrioritySpec, description="Priority and grouping."
    )
    status: OOMPriorityStatus | None = Field(None, description="Observed state.")
