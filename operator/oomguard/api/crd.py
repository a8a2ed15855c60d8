"""Generate the CustomResourceDefinitions from the pydantic models.

`python -m oomguard.api.crd DIR` writes one YAML file per resource; `--check` fails when
the files in DIR differ from what the models say (the drift test runs the same code).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel

from oomguard.api.decision import OOMDecision
from oomguard.api.meta import DECISIONS, GROUP, POLICIES, PRIORITIES, REPORTS, VERSION
from oomguard.api.policy import OOMPolicy
from oomguard.api.priority import OOMPriority
from oomguard.api.report import NodeMemoryReport

JsonSchema = dict[str, Any]


@dataclass(frozen=True)
class Column:
    name: str
    json_path: str
    type: Literal["string", "integer", "number", "boolean", "date"] = "string"
    priority: int = 0
    description: str = ""


@dataclass(frozen=True)
class ResourceInfo:
    model: type[BaseModel]
    plural: str
    short_names: tuple[str, ...]
    scope: Literal["Cluster", "Namespaced"]
    columns: tuple[Column, ...] = field(default_factory=tuple)

    @property
    def kind(self) -> str:
        return self.model.__name__

    @property
    def name(self) -> str:
        return f"{self.plural}.{GROUP}"


AGE = Column("Age", ".metadata.creationTimestamp", "date")

RESOURCES: tuple[ResourceInfo, ...] = (
    ResourceInfo(OOMPolicy, POLICIES, ("oompol",), "Cluster", (
        Column("Mode", ".spec.mode"),
        Column("Soft", ".spec.thresholds.memoryAvailable.soft"),
        Column("Hard", ".spec.thresholds.memoryAvailable.hard"),
        Column("Ranking", ".spec.ranking"),
        Column("Hierarchy", ".spec.hierarchy", priority=1),
        Column("Last-Decision", ".status.lastDecision"),
        AGE,
    )),
    ResourceInfo(OOMPriority, PRIORITIES, ("oompri",), "Namespaced", (
        Column("Priority", ".spec.priority", "integer"),
        Column("Effective", ".status.effectivePriority", "integer"),
        Column("Preference", ".spec.preference"),
        Column("Group", ".spec.group.by"),
        Column("Matched", ".status.matchedPods", "integer"),
        AGE,
    )),
    ResourceInfo(NodeMemoryReport, REPORTS, ("nmr", "memreport"), "Cluster", (
        Column("Capacity", ".status.node.capacityBytes", "integer"),
        Column("Available", ".status.node.availableBytes", "integer"),
        Column("PSI-Full", ".status.node.psi.fullAvg10", "number"),
        Column("Observed", ".status.observedTime", "date"),
        Column("Agent", ".status.agentVersion", priority=1),
    )),
    ResourceInfo(OOMDecision, DECISIONS, ("oomdec",), "Cluster", (
        Column("Node", ".spec.nodeName"),
        Column("Pressure", ".spec.trigger.pressure"),
        Column("Action", ".spec.action"),
        Column("Victim", ".spec.victims[0].name"),
        Column("Outcome", ".status.phase"),
        Column("Reclaimed", ".status.reclaimedBytes", "integer"),
        Column("By", ".spec.decidedBy", priority=1),
        Column("Mode", ".spec.mode", priority=1),
        AGE,
    )),
)


class _PlainDumper(yaml.SafeDumper):
    """Repeated parts written out in full, not as YAML anchors and aliases: the files are
    read by people and diffed."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def structural(schema: JsonSchema, defs: dict[str, JsonSchema]) -> JsonSchema:
    """Turn a pydantic JSON schema into a Kubernetes structural schema: refs inlined,
    Optional written as nullable, no titles, no `additionalProperties: false`."""
    if "$ref" in schema:
        target = structural(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
        extra = {k: v for k, v in schema.items() if k != "$ref"}
        return {**target, **structural(extra, defs)} if extra else target
    any_of = schema.get("anyOf")
    if any_of and any(option.get("type") == "null" for option in any_of):
        rest = [option for option in any_of if option.get("type") != "null"]
        outer = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
        inner = structural(rest[0], defs) if len(rest) == 1 else {"anyOf": rest}
        merged = {**inner, **structural(outer, defs), "nullable": True}
        if schema.get("default") is not None:
            merged["default"] = schema["default"]
        return merged
    out: JsonSchema = {}
    for key, value in schema.items():
        if key in ("title", "$defs") or (key == "additionalProperties" and value is False):
            continue
        if key == "properties":
            out[key] = {name: structural(prop, defs) for name, prop in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = structural(value, defs)
        elif key == "anyOf" and schema.get("x-kubernetes-int-or-string"):
            out[key] = value
        elif key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            # CRDs take OpenAPI v3.0's form: a boolean beside minimum or maximum; the API
            # server rejects a CRD with a number here.
            out[key.replace("exclusiveM", "m")] = value
            out[key] = True
        elif key == "description":
            out[key] = " ".join(value.split())
        else:
            out[key] = value
    if "properties" in out:
        out.setdefault("type", "object")
    return out


def openapi_schema(model: type[BaseModel]) -> JsonSchema:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    schema = structural(raw, defs)
    schema["properties"]["metadata"] = {"type": "object"}
    schema.pop("required", None)
    schema["required"] = [name for name in ("spec",) if name in raw.get("required", [])]
    if not schema["required"]:
        del schema["required"]
    for name in ("apiVersion", "kind"):
        schema["properties"][name] = {
            "type": "string", "description": schema["properties"][name]["description"]
        }
    return schema


def crd(info: ResourceInfo) -> JsonSchema:
    version: JsonSchema = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "subresources": {"status": {}},
        "schema": {"openAPIV3Schema": openapi_schema(info.model)},
    }
    if info.columns:
        version["additionalPrinterColumns"] = [
            {
                "name": c.name,
                "type": c.type,
                "jsonPath": c.json_path,
                **({"priority": c.priority} if c.priority else {}),
                **({"description": c.description} if c.description else {}),
            }
            for c in info.columns
        ]
    singular = info.kind.lower()
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": info.name},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": singular,
                "shortNames": list(info.short_names),
                "categories": ["oomguard"],
            },
            "scope": info.scope,
            "versions": [version],
        },
    }


PEERING_CRD: JsonSchema = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "clusterkopfpeerings.kopf.dev"},
    "spec": {
        "group": "kopf.dev",
        "names": {"kind": "ClusterKopfPeering", "listKind": "ClusterKopfPeeringList",
                  "plural": "clusterkopfpeerings", "singular": "clusterkopfpeering"},
        "scope": "Cluster",
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "description": "kopf's peering record: which operator replicas are alive, "
                               "so that only the one with the highest priority acts.",
                "properties": {"status": {"type": "object",
                                          "x-kubernetes-preserve-unknown-fields": True}},
            }},
        }],
    },
}
"""kopf's cluster-wide peering resource, for operator replicas (`--peering NAME`)."""


def render() -> dict[str, str]:
    """File name to YAML text, for every CRD."""
    header = "# Generated from the pydantic models by `python -m oomguard.api.crd`. Do not edit.\n"
    ours = {info.name: crd(info) for info in RESOURCES}
    return {
        f"{name}.yaml": header + yaml.dump(body, Dumper=_PlainDumper, sort_keys=False,
                                           width=100)
        for name, body in {**ours, PEERING_CRD["metadata"]["name"]: PEERING_CRD}.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--check", action="store_true", help="fail if the files differ")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = args.directory / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("CRDs out of date (run `make crds`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
