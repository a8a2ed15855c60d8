"""Offline validation of manifests: Kubernetes' own kinds against Kubernetes' schemas
(kubernetes-validate, strict), custom resources against the CRDs in crds/.

Strict means what `kubectl apply` (field validation Strict) rejects: unknown fields, wrong
types, missing required fields. A CRD schema is made strict the same way: every object
with `properties` and neither `additionalProperties` nor
`x-kubernetes-preserve-unknown-fields` takes no other field (the API server would drop
them, or refuse them under strict field validation).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate.utils import all_versions, major_minor

ROOT = Path(__file__).resolve().parents[1]
CRDS = ROOT / "crds"

Schema = dict[str, Any]


def newest_kubernetes_versions(count: int = 3) -> list[str]:
    """The `count` newest minor versions whose schemas kubernetes-validate ships
    ("1.35", ...), oldest first."""
    minors = sorted({major_minor(v) for v in all_versions()},
                    key=lambda v: tuple(int(part) for part in v.split(".")))
    return minors[-count:]


def builtin_errors(manifest: dict[str, Any], version: str) -> list[str]:
    """Why `manifest` (a kind of Kubernetes itself) is invalid for `version`, strictly."""
    try:
        kubernetes_validate.validate(manifest, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(p) for p in error.path)
        return [f"{version}: {path}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [f"{version}: {error.message}"]
    return []


def _strict(schema: Schema) -> Schema:
    """OpenAPI v3.0 as CRDs use it, as a strict JSON schema (draft 4 semantics):
    `nullable` as a null type, int-or-string as either, closed objects."""
    out = {k: _strict(v) if k in ("items", "additionalProperties") and isinstance(v, dict)
           else v for k, v in schema.items()}
    if "properties" in schema:
        out["properties"] = {name: _strict(s) for name, s in schema["properties"].items()}
        if "additionalProperties" not in schema and \
                not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.pop("anyOf", None)
        out["type"] = ["integer", "string"]
    if schema.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
    return out


@cache
def crd_schemas() -> dict[tuple[str, str], Schema]:
    """(apiVersion, kind) -> the strict schema of every served version in crds/."""
    schemas: dict[tuple[str, str], Schema] = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        spec = crd["spec"]
        for version in spec["versions"]:
            if version.get("served"):
                api_version = f"{spec['group']}/{version['name']}"
                raw = version["schema"]["openAPIV3Schema"]
                # The API server allows these at the root of every custom resource.
                implicit = {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                            "metadata": {"type": "object"}}
                root = {**raw, "properties": {**implicit, **raw.get("properties", {})}}
                schemas[api_version, spec["names"]["kind"]] = _strict(root)
    return schemas


def is_custom(manifest: dict[str, Any]) -> bool:
    """Whether the manifest's kind comes from a CRD in crds/."""
    return (manifest.get("apiVersion"), manifest.get("kind")) in crd_schemas()


def custom_errors(manifest: dict[str, Any]) -> list[str]:
    """Why a custom resource is invalid against its CRD in crds/ (metadata checked as the
    API server does: a DNS name)."""
    schema = crd_schemas()[manifest["apiVersion"], manifest["kind"]]
    validator = jsonschema.Draft4Validator(schema)
    errors = [f"{'.'.join(str(p) for p in e.path)}: {e.message}"
              for e in validator.iter_errors(manifest)]
    name = (manifest.get("metadata") or {}).get("name", "")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", name):
        errors.append(f"metadata.name: {name!r} is not a DNS subdomain")
    return errors
