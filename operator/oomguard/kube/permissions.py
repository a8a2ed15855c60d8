"""Every Kubernetes API call oomguard makes, as (verb, group, resource, subresource).

The one place: the end-to-end tests fail when the operator or the agent makes a call that
is not listed here (they read every call from the API server's audit log), and the chart's
RBAC is derived from these lists.
"""

from __future__ import annotations

Permission = tuple[str, str, str, str]


def _read(group: str, *resources: str) -> set[Permission]:
    return {(verb, group, r, "") for r in resources for verb in ("list", "watch")}


OPERATOR: frozenset[Permission] = frozenset({
    # kopf: indices and event handlers (list+watch), and its CRD discovery.
    *_read("", "pods", "namespaces", "nodes"),
    *_read("apps", "replicasets"),
    *_read("batch", "jobs"),
    *_read("policy", "poddisruptionbudgets"),
    *_read("oomguard.io", "nodememoryreports", "oomdecisions", "oompolicies", "oompriorities"),
    *_read("apiextensions.k8s.io", "customresourcedefinitions"),
    # Decisions: recorded, progressed, pruned.
    ("create", "oomguard.io", "oomdecisions", ""),
    ("patch", "oomguard.io", "oomdecisions", "status"),
    ("delete", "oomguard.io", "oomdecisions", ""),
    # Statuses of the users' objects.
    ("patch", "oomguard.io", "oompolicies", "status"),
    ("patch", "oomguard.io", "oompriorities", "status"),
    # Acting and telling.
    ("create", "", "pods", "eviction"),
    ("create", "", "events", ""),
    # kopf peering between replicas (only with --peering).
    *_read("kopf.dev", "clusterkopfpeerings"),
    ("patch", "kopf.dev", "clusterkopfpeerings", ""),
})

AGENT: frozenset[Permission] = frozenset({
    # Caches for acting alone: its own pods (field selector), the node, the settings.
    *_read("", "pods", "namespaces", "nodes"),
    *_read("oomguard.io", "oompolicies", "oompriorities", "oomdecisions"),
    # Its node's report.
    ("create", "oomguard.io", "nodememoryreports", ""),
    ("patch", "oomguard.io", "nodememoryreports", "status"),
    # Decisions: executed (claimed with a guarded update), or recorded when acting alone.
    ("get", "oomguard.io", "oomdecisions", ""),
    ("create", "oomguard.io", "oomdecisions", ""),
    ("update", "oomguard.io", "oomdecisions", "status"),
    ("patch", "oomguard.io", "oomdecisions", "status"),
})
