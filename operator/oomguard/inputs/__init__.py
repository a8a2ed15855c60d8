"""Kubernetes YAML documents and API objects turned into the engine's inputs, checked as
strictly as the API server checks them."""

from oomguard.inputs.lastgood import LastGood, Rejection
from oomguard.inputs.manifests import (
    Budget,
    Inputs,
    add_object,
    budget_exhausted,
    budget_from_manifest,
    load_files,
    owner_from_manifest,
    pod_from_manifest,
)

__all__ = [
    "Budget",
    "Inputs",
    "LastGood",
    "Rejection",
    "add_object",
    "budget_exhausted",
    "budget_from_manifest",
    "load_files",
    "owner_from_manifest",
    "pod_from_manifest",
]
