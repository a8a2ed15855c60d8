"""The API models: quantities, validation with field-precise errors, and generated CRDs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from oomguard.api import OOMPolicy, OOMPriority, parse_quantity, resolve_amount
from oomguard.api.crd import RESOURCES, crd, render

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("text", "expected"),
    [("512Mi", 512 * 2**20), ("1Gi", 2**30), ("1G", 10**9), ("1.5Gi", 3 * 2**29),
     ("100", 100), ("1e3", 1000), ("1E6", 10**6), ("100k", 100_000), ("1500m", 2),
     ("0", 0), (".5Ki", 512), (2048, 2048), ("1E", 10**18), ("2Ei", 2 * 2**60),
     ("1Pi", 2**50), ("1E0", 1)],
)
def test_parse_quantity(text: str | int, expected: int) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize("text", ["", "Mi", "1.2.3Gi", "12 GB", "1Gb", "ten", "1iB"])
def test_parse_quantity_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="quantity"):
        parse_quantity(text)


def test_percentages_resolve_against_capacity() -> None:
    assert resolve_amount("10%", 1000) == 100
    assert resolve_amount("2.5%", 1000) == 25
    assert resolve_amount("300", 1000) == 300


def _errors(model: Any, obj: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as exc:
        model.model_validate(obj)
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in exc.value.errors()]


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({"priority": 1001}, "spec.priority", "less than or equal to 1000"),
        ({"priority": -1001}, "spec.priority", "greater than or equal to -1000"),
        ({"preference": "Sometimes"}, "spec.preference", "'Prefer', 'Avoid' or 'Never'"),
        ({"allowance": "lots"}, "spec.allowance", "neither Requests, Limits nor a quantity"),
        ({"group": {"by": "Label"}}, "spec.group", "group.label is required"),
        ({"group": {"by": "Pod", "label": "x"}}, "spec.group", "only used with group.by Label"),
        ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
         "spec.podSelector.matchExpressions.0", "needs at least one value"),
        ({"priorty": 5}, "spec.priorty", "Extra inputs are not permitted"),
    ],
)
def test_priority_validation_names_the_field(spec: dict[str, Any], field: str,
                                             message: str) -> None:
    errors = _errors(OOMPriority, {"metadata": {"name": "x", "namespace": "n"}, "spec": spec})
    assert any(loc == field and message in msg for loc, msg in errors), errors


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({"thresholds": {"memoryAvailable": {"soft": "1Gi", "hard": "2Gi"}}},
         "spec.thresholds.memoryAvailable", "must not be above soft"),
        ({"thresholds": {"memoryAvailable": {"soft": "120%"}}},
         "spec.thresholds.memoryAvailable.soft", "more than 100%"),
        ({"reclaimTo": "5%"}, "spec", "must not be below the soft threshold"),
        ({"reclaimTo": "12 GB"}, "spec.reclaimTo", "not a Kubernetes quantity"),
        ({"mode": "Maybe"}, "spec.mode", "'Enforce' or 'DryRun'"),
        ({"actions": {"hard": "Nuke"}}, "spec.actions.hard", "'Evict', 'Kill' or 'KillAndEvict'"),
        ({"tenants": [{"maxPriority": 5000}]}, "spec.tenants.0.maxPriority", "1000"),
        ({"cooldownSeconds": -1}, "spec.cooldownSeconds", "greater than or equal to 0"),
    ],
)
def test_policy_validation_names_the_field(spec: dict[str, Any], field: str,
                                           message: str) -> None:
    errors = _errors(OOMPolicy, {"metadata": {"name": "p"}, "spec": spec})
    assert any(loc == field and message in msg for loc, msg in errors), errors


def test_integer_quantities_are_accepted_as_kubernetes_does() -> None:
    p = OOMPolicy.model_validate({"metadata": {"name": "p"}, "spec": {
        "thresholds": {"memoryAvailable": {"soft": 2**31, "hard": 2**30}}, "reclaimTo": "3Gi"}})
    assert p.spec.thresholds.memory_available.soft == str(2**31)


def test_crds_in_repository_match_the_models() -> None:
    """Drift check: `make crds` regenerates crds/ from the models."""
    for name, text in render().items():
        path = ROOT / "crds" / name
        assert path.exists(), f"{path} missing: run `make crds`"
        assert path.read_text() == text, f"{path} is out of date: run `make crds`"
    assert sorted(p.name for p in (ROOT / "crds").glob("*.yaml")) == sorted(render())


def _walk(schema: dict[str, Any], path: str) -> list[str]:
    missing = [] if schema.get("description") else [path]
    for name, prop in schema.get("properties", {}).items():
        missing += _walk(prop, f"{path}.{name}")
    if isinstance(schema.get("items"), dict) and "properties" in schema["items"]:
        missing += _walk(schema["items"], f"{path}[]")
    return missing


@pytest.mark.parametrize("info", RESOURCES, ids=lambda r: r.kind)
def test_every_crd_field_has_a_description(info: Any) -> None:
    """So that `kubectl explain` says something for every field."""
    schema = crd(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    missing = [p for p in _walk(schema, info.kind) if p != f"{info.kind}.metadata"]
    assert missing == []


def _no_refs(node: Any) -> bool:
    if isinstance(node, dict):
        bad = {"$ref", "$defs", "title", "const"} & set(node)
        if bad or node.get("additionalProperties") is False:
            return False
        return all(_no_refs(v) for v in node.values())
    if isinstance(node, list):
        return all(_no_refs(v) for v in node)
    return True


@pytest.mark.parametrize("info", RESOURCES, ids=lambda r: r.kind)
def test_crd_schema_is_structural(info: Any) -> None:
    doc = crd(info)
    assert _no_refs(doc)
    version = doc["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert "oomguard" in doc["spec"]["names"]["categories"]
    assert doc["spec"]["names"]["shortNames"]
    assert version["additionalPrinterColumns"]


def test_decision_printer_columns_show_when_node_victim_action_outcome() -> None:
    decision = next(r for r in RESOURCES if r.kind == "OOMDecision")
    columns = {c.name: c.json_path for c in decision.columns if c.priority == 0}
    assert columns["Node"] == ".spec.nodeName"
    assert columns["Victim"] == ".spec.victims[0].name"
    assert columns["Action"] == ".spec.action"
    assert columns["Outcome"] == ".status.phase"
    assert columns["Age"] == ".metadata.creationTimestamp"


def test_example_objects_validate_against_the_models() -> None:
    kinds = {"OOMPolicy": OOMPolicy, "OOMPriority": OOMPriority}
    docs = [d for d in yaml.safe_load_all((ROOT / "examples/cluster.yaml").read_text())
            if d.get("kind") in kinds]
    assert docs
    for doc in docs:
        kinds[doc["kind"]].model_validate(doc)
