"""A small cluster for the operator's decider tests, as full object bodies: a node with an
etl Job's pod (its sibling on another node), an important database and a web pod, the
tenants' priorities, and the node's report."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

Mi, Gi = 2**20, 2**30
NODE, OTHER = "node-a", "node-b"
NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
OURS = "oomguard.io/v1alpha1"


def pod(name: str, namespace: str, node: str = NODE, *, job: str | None = None,
        labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": f"u-{name}",
                            "labels": labels or {}}
    if job:
        meta["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": job,
                                    "uid": f"u-job-{job}", "controller": True}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"nodeName": node, "containers": [{"name": "main", "resources": {
                "requests": {"memory": "100Mi"}}}]},
            "status": {"phase": "Running"}}


PODS = [pod("etl-1", "batch", job="etl"), pod("etl-2", "batch", OTHER, job="etl"),
        pod("db-0", "shop", labels={"app": "db"}), pod("web-0", "shop")]
USAGE = {"u-etl-1": 900 * Mi, "u-db-0": 3 * Gi, "u-web-0": 300 * Mi}
PRIORITIES = [
    {"apiVersion": OURS, "kind": "OOMPriority", "metadata": {"name": "etl", "namespace": "batch"},
     "spec": {"priority": -100, "group": {"by": "Workload"}}},
    {"apiVersion": OURS, "kind": "OOMPriority", "metadata": {"name": "db", "namespace": "shop"},
     "spec": {"priority": 900, "podSelector": {"matchLabels": {"app": "db"}}}},
]


def report(available: int, observed: datetime = NOW) -> dict[str, Any]:
    return {"apiVersion": OURS, "kind": "NodeMemoryReport", "metadata": {"name": NODE},
            "status": {"node": {"capacityBytes": 8 * Gi, "availableBytes": available},
                       "pods": [{"uid": u, "usage": {"anonBytes": b}} for u, b in USAGE.items()],
                       "observedTime": observed.isoformat()}}
