"""Small builders for engine inputs, so tests state only what they are about."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from oomguard.api import (
    MemoryUsage,
    NodeMemory,
    OOMDecision,
    OOMPolicy,
    OOMPriority,
    PodMemory,
)
from oomguard.engine import Owner, OwnerRef, Pod, Snapshot

Mi = 2**20
Gi = 2**30
NODE = "node-a"
NODE_UID = "uid-node-node-a"
NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def pod(name: str, namespace: str = "default", **fields: Any) -> Pod:
    """A running pod on NODE; its UID is derived from its name."""
    fields.setdefault("uid", f"uid-{namespace}-{name}")
    fields.setdefault("node_name", NODE)
    return Pod(namespace=namespace, name=name, **fields)


def mirror(name: str, namespace: str = "kube-system", **fields: Any) -> Pod:
    """A mirror pod as the kubelet makes it: controlled by NODE's Node object."""
    return pod(name, namespace, mirror_of=OwnerRef("Node", NODE, NODE_UID), **fields)


def owned(name: str, namespace: str, kind: str, owner: str, **fields: Any) -> Pod:
    """A pod whose controller is `kind/owner` (UID derived from the owner's name)."""
    return pod(name, namespace, controller=OwnerRef(kind, owner, f"uid-{kind}-{owner}"), **fields)


def owner(kind: str, name: str, namespace: str, parent: tuple[str, str] | None = None) -> Owner:
    ref = OwnerRef(parent[0], parent[1], f"uid-{parent[0]}-{parent[1]}") if parent else None
    return Owner(namespace, kind, name, f"uid-{kind}-{name}", ref)


def usage(p: Pod, anon: int, **fields: int) -> PodMemory:
    return PodMemory(uid=p.uid, usage=MemoryUsage(anon_bytes=anon, **fields))


def policy(name: str = "test", **spec: Any) -> OOMPolicy:
    return OOMPolicy.model_validate({"metadata": {"name": name}, "spec": spec})


def priority(name: str, namespace: str = "default", **spec: Any) -> OOMPriority:
    return OOMPriority.model_validate(
        {"metadata": {"name": name, "namespace": namespace}, "spec": spec}
    )


def decision(name: str, victims: list[Pod], *, phase: str | None = "Executing",
             started: datetime | None = None, mode: str = "Enforce") -> OOMDecision:
    """A decision for NODE (phase None: without a status, as created before its status
    is written)."""
    return OOMDecision.model_validate({
        "metadata": {"name": name, "creationTimestamp": (started or NOW).isoformat()},
        "spec": {
            "nodeName": NODE, "decidedBy": "operator", "action": "Kill", "mode": mode,
            "trigger": {"pressure": "Hard", "availableBytes": 0, "needBytes": 1},
            "victims": [{
                "name": f"{v.namespace}/{v.name}", "namespace": v.namespace,
                "expectedReclaimBytes": 1,
                "pods": [{"namespace": v.namespace, "name": v.name, "uid": v.uid}],
            } for v in victims],
        },
        **({"status": {"phase": phase}} if phase else {}),
    })


def snapshot(
    pods_and_usage: list[tuple[Pod, int]],
    *,
    capacity: int = 16 * Gi,
    available: int = 1 * Gi,
    extra_usage: list[PodMemory] | None = None,
    **fields: Any,
) -> Snapshot:
    """A node of `capacity` with `available` memory, the pods, and their anon usage.
    With the default policy (soft 10%, hard 5%, reclaimTo 15%) 1Gi of 16Gi is Soft
    pressure with a need of 1.4Gi."""
    pods = [p for p, _ in pods_and_usage]
    usages = [usage(p, u) for p, u in pods_and_usage] + (extra_usage or [])
    fields.setdefault("node_uid", NODE_UID)
    return Snapshot(
        node=NODE,
        memory=NodeMemory(capacity_bytes=capacity, available_bytes=available),
        usage=usages,
        pods=pods,
        now=fields.pop("now", NOW),
        **fields,
    )
