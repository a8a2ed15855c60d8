"""Shared building blocks of the oomguard API: base model, object metadata, selectors."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator
from pydantic.alias_generators import to_camel

GROUP = "oomguard.io"
VERSION = "v1alpha1"
API_VERSION: Final = "oomguard.io/v1alpha1"
ApiVersion = Literal["oomguard.io/v1alpha1"]
REPORTS, DECISIONS = "nodememoryreports", "oomdecisions"
POLICIES, PRIORITIES = "oompolicies", "oompriorities"
"""The resources' plural names: their one home (the CRDs, RBAC and clients use these)."""


def cel_rules(*rules: dict[str, JsonValue]) -> ConfigDict:
    """A model's config that adds Kubernetes CEL validation rules to its schema
    (`x-kubernetes-validations`), so that the API server refuses what the model's own
    validators refuse: each rule beside the validator it mirrors. A rule has `rule`, and
    `message` or `messageExpression`, and may name a `fieldPath` and a `reason`."""
    return ConfigDict(json_schema_extra={"x-kubernetes-validations": list(rules)})


class Model(BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )

    def wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, no unset optionals."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class OwnerReference(Model):
    """A reference to the object that owns this one."""

    model_config = ConfigDict(extra="ignore")

    api_version: str = Field("", description="API version of the owner.")
    kind: str = Field(description="Kind of the owner, such as ReplicaSet or Job.")
    name: str = Field(description="Name of the owner.")
    uid: str = Field(description="UID of the owner.")
    controller: bool = Field(False, description="True if the owner is the managing controller.")


class ObjectMeta(Model):
    """The parts of Kubernetes object metadata that oomguard reads."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(description="Object name.")
    namespace: str | None = Field(None, description="Namespace, for namespaced objects.")
    uid: str = Field("", description="Unique ID assigned by the API server.")
    generation: int | None = Field(None, description="Spec generation.")
    labels: dict[str, str] = Field(default_factory=dict, description="Object labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations.")
    creation_timestamp: datetime | None = Field(None, description="When it was created.")
    deletion_timestamp: datetime | None = Field(None, description="Set once deletion began.")
    owner_references: list[OwnerReference] = Field(
        default_factory=list, description="Objects that own this one."
    )


MAX_OBJECT_LABELS = 64
MAX_ANNOTATION_BYTES = 65536
"""What the chart's admission policy admits on OOMPriority and OOMPolicy metadata (no
schema can bound it): room for kubectl's last-applied-configuration of the largest spec."""


def bounded_metadata(meta: ObjectMeta) -> ObjectMeta:
    """The metadata of an object every agent receives, bounded as the chart's admission
    policy bounds it, so that offline files are held to what the cluster admits."""
    if len(meta.labels) > MAX_OBJECT_LABELS:
        raise ValueError(f"at most {MAX_OBJECT_LABELS} labels, not {len(meta.labels)}")
    size = sum(len(k) + len(v) for k, v in meta.annotations.items())
    if size > MAX_ANNOTATION_BYTES:
        raise ValueError(f"annotations of at most {MAX_ANNOTATION_BYTES} bytes in all, "
                         f"not {size}")
    return meta


LABEL_KEY_LENGTH = 317
"""A label key's longest: a 253-character DNS prefix, a slash and a 63-character name."""
LABEL_VALUE_LENGTH = 63
MAX_SELECTOR_LABELS = 16
MAX_EXPRESSIONS = 8
MAX_VALUES = 16
"""Bounds on a selector, far beyond any real one: every agent caches every OOMPriority,
and an unbounded object would let one tenant exhaust them all (docs/security.md)."""
LabelValue = Annotated[str, Field(max_length=LABEL_VALUE_LENGTH)]


class LabelSelectorRequirement(Model):
    """One expression of a label selector: a key, an operator and values."""

    key: str = Field(max_length=LABEL_KEY_LENGTH,
                     description="The label key the requirement applies to.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="How the key's value relates to `values`."
    )
    values: list[LabelValue] = Field(
        default_factory=list, max_length=MAX_VALUES,
        description="Values for In and NotIn; must be empty for Exists and DoesNotExist.",
    )

    @model_validator(mode="after")
    def _values_fit_operator(self) -> LabelSelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs at least one value")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no values")
        return self


class LabelSelector(Model):
    """A standard Kubernetes label selector; an empty selector matches everything."""

    model_config = cel_rules({
        "rule": f"!has(self.matchLabels) || self.matchLabels.all(k, size(k) <= "
                f"{LABEL_KEY_LENGTH})",
        "message": f"a label key is at most {LABEL_KEY_LENGTH} characters",
        "fieldPath": ".matchLabels"})

    match_labels: dict[str, LabelValue] = Field(
        default_factory=dict, max_length=MAX_SELECTOR_LABELS,
        description="Labels that must all be present with these values."
    )

    @model_validator(mode="after")
    def _label_keys_bounded(self) -> LabelSelector:
        if any(len(key) > LABEL_KEY_LENGTH for key in self.match_labels):
            raise ValueError(f"a label key is at most {LABEL_KEY_LENGTH} characters")
        return self
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, max_length=MAX_EXPRESSIONS,
        description="Requirements that must all hold."
    )

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, value in self.match_labels.items():
            if labels.get(key) != value:
                return False
        for req in self.match_expressions:
            present = req.key in labels
            if req.operator == "In" and (not present or labels[req.key] not in req.values):
                return False
            if req.operator == "NotIn" and present and labels[req.key] in req.values:
                return False
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
        return True

    @property
    def specificity(self) -> int:
        """How many requirements the selector states: more means more specific."""
        return len(self.match_labels) + len(self.match_expressions)


class Condition(Model):
    """A condition following the Kubernetes API conventions."""

    type: str = Field(description="Condition type, such as Ready.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field("", description="CamelCase reason for the last transition.")
    message: str = Field("", description="Human-readable details.")
    observed_generation: int | None = Field(
        None, description="The spec generation this condition was computed from."
    )
    last_transition_time: datetime | None = Field(
        None, description="When the status last changed."
    )
