"""What the API server refuses, the models refuse, and the other way round: each invalid
object is sent to the real server (the generated CRDs, their CEL rules included) and
parsed by the models; both refuse it and name the same field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from oomguard.api import OOMPolicy, OOMPriority
from oomguard.api.meta import MAX_ANNOTATION_BYTES, MAX_OBJECT_LABELS
from oomguard.inputs.lastgood import field_path

from support import ApiError, Kube

OURS = "oomguard.io/v1alpha1"

CASES: list[tuple[str, dict[str, Any], str, str]] = [
    # (kind, spec, field path as the server names it, text both messages hold)
    ("OOMPriority", {"priority": 5000}, "spec.priority", "1000"),
    ("OOMPriority", {"priority": -5000}, "spec.priority", "-1000"),
    ("OOMPriority", {"preference": "Sometimes"}, "spec.preference", "Prefer"),
    ("OOMPriority", {"allowance": "lots"}, "spec.allowance", ""),
    ("OOMPriority", {"allowance": "1Gi" + "0" * 70}, "spec.allowance", "64"),
    ("OOMPriority", {"group": {"by": "Label"}}, "spec.group.label",
     "group.label is required when group.by is Label"),
    ("OOMPriority", {"group": {"by": "Pod", "label": "team"}}, "spec.group.label",
     "only used with group.by Label, not Pod"),
    ("OOMPriority", {"group": {"by": "Namespace"}}, "spec.group.by", "Workload"),
    ("OOMPriority", {"priorty": 5}, "spec.priorty", ""),
    ("OOMPolicy", {"thresholds": {"memoryAvailable": {"soft": "5%", "hard": "10%"}}},
     "spec.thresholds.memoryAvailable.hard", "hard (10%) must not be above soft (5%)"),
    ("OOMPolicy", {"thresholds": {"memoryAvailable": {"soft": "1Gi", "hard": "2Gi"}}},
     "spec.thresholds.memoryAvailable.hard", "hard (2Gi) must not be above soft (1Gi)"),
    ("OOMPolicy", {"reclaimTo": "5%"}, "spec.reclaimTo",
     "reclaimTo (5%) must not be below the soft threshold (10%)"),
    ("OOMPolicy", {"thresholds": {"memoryAvailable": {"soft": "1Gi"}}, "reclaimTo": 1024},
     "spec.reclaimTo", "reclaimTo (1024) must not be below the soft threshold (1Gi)"),
    ("OOMPolicy", {"actions": {"soft": "Reboot"}}, "spec.actions.soft", "Evict"),
    ("OOMPolicy", {"thresholds": {"memoryAvailable": {"soft": "12 GB"}}},
     "spec.thresholds.memoryAvailable.soft", ""),
    ("OOMPolicy", {"mode": "Audit"}, "spec.mode", "DryRun"),
    ("OOMPolicy", {"cooldownSeconds": -1}, "spec.cooldownSeconds", "0"),
    # Types as strict as the server's (#12): no number in a string, no boolean for one,
    # no negative amount.
    ("OOMPriority", {"priority": "100"}, "spec.priority", ""),
    ("OOMPriority", {"priority": True}, "spec.priority", ""),
    ("OOMPriority", {"allowance": "-1Gi"}, "spec.allowance", ""),
    ("OOMPolicy", {"tenants": [{"maxPriority": "5"}]}, "spec.tenants[0].maxPriority", ""),
    ("OOMPolicy", {"tenants": [{"allowNever": "true"}]}, "spec.tenants[0].allowNever", ""),
    ("OOMPolicy", {"tenants": [{"maxAllowance": "-2Gi"}]}, "spec.tenants[0].maxAllowance",
     ""),
    ("OOMPolicy", {"cooldownSeconds": 1.5}, "spec.cooldownSeconds", ""),
    ("OOMPolicy", {"cooldownSeconds": 2**63}, "spec.cooldownSeconds", ""),
    ("OOMPolicy", {"thresholds": {"softGraceSeconds": 3601}},
     "spec.thresholds.softGraceSeconds", "3600"),
    # Size bounds: every agent caches every OOMPriority (docs/security.md).
    ("OOMPriority", {"podSelector": {"matchLabels": {f"k{i}": "v" for i in range(17)}}},
     "spec.podSelector.matchLabels", "16"),
    ("OOMPriority", {"podSelector": {"matchLabels": {"k" * 318: "v"}}},
     "spec.podSelector.matchLabels", "317"),
    ("OOMPriority", {"podSelector": {"matchLabels": {"app": "v" * 64}}},
     "spec.podSelector.matchLabels.app", "63"),
    ("OOMPriority", {"podSelector": {"matchExpressions": [
        {"key": "app", "operator": "In", "values": [f"v{i}" for i in range(17)]}]}},
     "spec.podSelector.matchExpressions[0].values", "16"),
    ("OOMPriority", {"podSelector": {"matchExpressions": [
        {"key": f"k{i}", "operator": "Exists"} for i in range(9)]}},
     "spec.podSelector.matchExpressions", "8"),
    ("OOMPolicy", {"protectedNamespaces": ["n" * 64]}, "spec.protectedNamespaces[0]", "63"),
]

VALID: list[tuple[str, dict[str, Any]]] = [
    ("OOMPolicy", {"thresholds": {"memoryAvailable": {"soft": "2Gi", "hard": 1073741824}},
                   "reclaimTo": "20%"}),  # mixed units: not comparable before a node
    ("OOMPolicy", {"thresholds": {"memoryAvailable": {"soft": "10.5%", "hard": "10.25%"}},
                   "reclaimTo": "10.5%"}),
    ("OOMPriority", {"group": {"by": "Label", "label": "app.kubernetes.io/part-of"},
                     "allowance": "1.5Gi", "preference": "Avoid", "priority": -1000}),
]

MODELS = {"OOMPolicy": OOMPolicy, "OOMPriority": OOMPriority}


def _body(kube: Kube, kind: str, spec: dict[str, Any], name: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if kind == "OOMPriority":
        meta["namespace"] = "default"
    else:
        meta["name"] = kube.name(name)
    return {"apiVersion": OURS, "kind": kind, "metadata": meta, "spec": spec}


def _plural(kind: str) -> str:
    return {"OOMPolicy": "oompolicies", "OOMPriority": "oompriorities"}[kind]


@pytest.mark.parametrize(("kind", "spec", "field", "text"), CASES,
                         ids=[f"{k}-{f}-{i}" for i, (k, _, f, _) in enumerate(CASES)])
def test_the_server_and_the_models_refuse_the_same(kube: Kube, kind: str,
                                                   spec: dict[str, Any], field: str,
                                                   text: str) -> None:
    body = _body(kube, kind, spec, "invalid")
    with pytest.raises(ApiError) as refused:
        kube.create(f"{OURS}/{_plural(kind)}", body)
    error = refused.value
    if error.status == 400:  # an unknown field: kubectl's strict field validation
        assert f'unknown field "{field}"' in error.body["message"]
    else:
        assert error.status == 422
        server = {c["field"]: c["message"] for c in error.body["details"]["causes"]}
        assert field in server, f"the server named {sorted(server)}, not {field}"
        assert text in server[field]

    with pytest.raises(ValidationError) as rejected:
        MODELS[kind].model_validate(body)
    models = {field_path(e["loc"]): e["msg"] for e in rejected.value.errors()}
    # pydantic names the object a cross-field rule is on; the server, the field it blames
    named = [m for loc, m in models.items() if field == loc or field.startswith(f"{loc}.")]
    assert named, f"the models named {sorted(models)}, not {field}"
    assert any(text in m for m in named)


@pytest.mark.parametrize(("kind", "spec"), VALID, ids=[k for k, _ in VALID])
def test_what_the_models_take_the_server_takes(kube: Kube, kind: str,
                                               spec: dict[str, Any]) -> None:
    body = _body(kube, kind, spec, "valid")
    MODELS[kind].model_validate(body)
    stored = kube.create(f"{OURS}/{_plural(kind)}", body)
    MODELS[kind].model_validate(stored)  # defaults filled in by the server parse too
    if kind == "OOMPriority":
        kube.delete(f"{OURS}/{_plural(kind)}", "default", "valid")


METADATA_CASES: list[tuple[str, dict[str, Any], str]] = [
    # (kind, metadata beyond the name, field) the chart's admission policy refuses: what
    # no CRD schema bounds, on objects every agent receives (docs/security.md)
    ("OOMPriority", {"labels": {f"k{i}": "v" for i in range(MAX_OBJECT_LABELS + 1)}},
     "metadata.labels"),
    ("OOMPriority", {"annotations": {"note": "x" * MAX_ANNOTATION_BYTES}},
     "metadata.annotations"),
    ("OOMPolicy", {"annotations": {f"a{i}": "x" * 60_000 for i in range(2)}},
     "metadata.annotations"),
]


@pytest.mark.parametrize(("kind", "meta", "field"), METADATA_CASES,
                         ids=[f"{k}-{f}" for k, _, f in METADATA_CASES])
def test_metadata_no_schema_bounds_is_bounded_at_the_door(
    kube: Kube, kind: str, meta: dict[str, Any], field: str
) -> None:
    body = _body(kube, kind, {}, "bloated")
    body["metadata"].update(meta)
    with pytest.raises(ApiError) as refused:
        kube.create(f"{OURS}/{_plural(kind)}", body)
    assert refused.value.status == 422, refused.value
    assert field in str(refused.value.body), refused.value.body
    with pytest.raises(ValidationError) as rejected:
        MODELS[kind].model_validate(body)
    assert [field_path(e["loc"]) for e in rejected.value.errors()] == ["metadata"]

    at_the_bound = _body(kube, kind, {}, "fat")
    at_the_bound["metadata"].update(
        name=kube.name("fat"), labels={f"k{i}": "v" for i in range(MAX_OBJECT_LABELS)},
        annotations={"note": "x" * (MAX_ANNOTATION_BYTES - 4)})
    MODELS[kind].model_validate(at_the_bound)
    kube.create(f"{OURS}/{_plural(kind)}", at_the_bound)
