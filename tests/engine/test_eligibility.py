"""Every exclusion reason, table-driven: a pod that must not be a victim, and why."""

from __future__ import annotations

from typing import Any

import pytest

from oomguard.engine import OwnerRef, decide
from oomguard.inputs import pod_from_manifest

from builders import (
    NODE,
    NODE_UID,
    Gi,
    decision,
    mirror,
    owned,
    pod,
    policy,
    priority,
    snapshot,
    usage,
)

CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    # (reason, pod fields, snapshot fields)
    ("NotOnNode", {"node_name": "node-b"}, {}),
    ("NotOnNode", {"node_name": ""}, {}),
    ("NotRunning", {"phase": "Pending"}, {}),
    ("NotRunning", {"phase": "Succeeded"}, {}),
    ("Terminating", {"terminating": True}, {}),
    ("StaticPod", {"mirror_of": OwnerRef("Node", NODE, NODE_UID)}, {}),
    ("SystemCritical", {"critical": True}, {}),
    ("ProtectedNamespace", {"namespace": "kube-system"}, {}),
    ("ProtectedNamespace", {"namespace": "infra"},
     {"policies": [policy(protectedNamespaces=["infra"])]}),
    ("DisruptionBudget", {}, {"budget_exhausted": ["uid-default-target"]}),  # Soft: Evict
    ("Never", {"labels": {"app": "x"}},
     {"priorities": [priority("x", preference="Never", podSelector={"matchLabels": {"app": "x"}})],
      "policies": [policy(tenants=[{"allowNever": True}])]}),
]


@pytest.mark.parametrize(("reason", "pod_fields", "snap_fields"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_excluded_with_reason(reason: str, pod_fields: dict[str, Any],
                              snap_fields: dict[str, Any]) -> None:
    fields = dict(pod_fields)
    target = pod("target", fields.pop("namespace", "default"), **fields)
    bystander = pod("bystander")
    outcome = decide(snapshot([(target, 4 * Gi), (bystander, 1 * Gi)], **snap_fields))
    excluded = {e.pod: e for e in outcome.excluded}
    assert excluded[target.ref].reason == reason
    assert excluded[target.ref].message
    assert [r.group.name for r in outcome.ranking] == ["default/bystander"]
    if reason == "Terminating":  # its 4Gi, being released, already cover the need
        assert outcome.releasing_bytes == 4 * Gi
        assert outcome.victims == []
    else:
        assert [v.group.name for v in outcome.victims] == ["default/bystander"]


FORGED_MIRRORS: list[tuple[str, OwnerRef | None, dict[str, Any]]] = [
    # (what the tenant wrote, the pod's mirror owner, snapshot fields)
    ("another Node's UID", OwnerRef("Node", NODE, "uid-of-something-else"), {}),
    ("another node's name", OwnerRef("Node", "node-b", NODE_UID), {}),
    ("a Node the agent does not know", OwnerRef("Node", NODE, NODE_UID), {"node_uid": None}),
]


@pytest.mark.parametrize(("claim", "owner", "snap_fields"), FORGED_MIRRORS,
                         ids=[c[0] for c in FORGED_MIRRORS])
def test_a_forged_mirror_pod_is_a_candidate(claim: str, owner: OwnerRef | None,
                                           snap_fields: dict[str, Any]) -> None:
    """A tenant can write the mirror annotation and a Node owner reference on any pod it
    creates; only a reference to this Node, by its UID, makes a mirror pod."""
    forged = pod("forged", "shop", mirror_of=owner)
    outcome = decide(snapshot([(forged, 4 * Gi), (pod("bystander"), 1 * Gi)], **snap_fields))
    assert outcome.excluded == []
    assert [v.group.name for v in outcome.victims] == ["shop/forged"]


def test_the_kubelets_mirror_pod_is_not_a_candidate() -> None:
    outcome = decide(snapshot([(mirror("etcd-node-a"), 4 * Gi), (pod("bystander"), 1 * Gi)]))
    assert [(e.pod, e.reason) for e in outcome.excluded] == [("kube-system/etcd-node-a",
                                                              "StaticPod")]


def _manifest(annotations: dict[str, str], owner_kind: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "p", "namespace": "shop", "uid": "uid-p",
                            "annotations": annotations}
    if owner_kind:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": owner_kind, "name": NODE,
                                    "uid": NODE_UID, "controller": True}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"nodeName": NODE, "containers": [{"name": "main"}]},
            "status": {"phase": "Running"}}


@pytest.mark.parametrize(("annotations", "owner_kind", "is_mirror"), [
    ({"kubernetes.io/config.source": "file"}, None, False),  # the kubelet's bookkeeping
    ({"kubernetes.io/config.source": "http"}, None, False),
    ({}, "Node", False),  # a Node owner alone
    ({"kubernetes.io/config.mirror": "abc"}, None, False),  # the annotation alone
    ({"kubernetes.io/config.mirror": "abc"}, "ReplicaSet", False),
    ({"kubernetes.io/config.mirror": "abc", "kubernetes.io/config.source": "file"}, "Node",
     True),
])
def test_only_annotation_and_node_controller_make_a_mirror_claim(
        annotations: dict[str, str], owner_kind: str | None, is_mirror: bool) -> None:
    claimed = pod_from_manifest(_manifest(annotations, owner_kind)).mirror_of
    assert claimed == (OwnerRef("Node", NODE, NODE_UID) if is_mirror else None)


def test_an_exhausted_disruption_budget_does_not_stand_in_the_way_of_a_kill() -> None:
    target = pod("target")
    outcome = decide(snapshot([(target, 4 * Gi), (pod("bystander"), 1 * Gi)],
                              budget_exhausted=[target.uid],
                              policies=[policy(actions={"soft": "Kill"})]))
    assert [v.group.name for v in outcome.victims] == ["default/target"]
    assert outcome.excluded == []


def test_in_flight_victim_is_excluded_and_counted_as_releasing() -> None:
    old = pod("old")
    fresh = pod("fresh")
    outcome = decide(snapshot([(old, 2 * Gi), (fresh, 1 * Gi)],
                              decisions=[decision("d1", [old])]))
    assert {e.pod: e.reason for e in outcome.excluded} == {old.ref: "InFlightVictim"}
    assert outcome.blocked_by == "d1"
    assert outcome.releasing_bytes == 2 * Gi


def test_pod_cgroup_without_pod_object_is_listed() -> None:
    known = pod("known")
    ghost = pod("ghost")
    outcome = decide(snapshot([(known, 1 * Gi)], extra_usage=[usage(ghost, 3 * Gi)]))
    assert [(e.pod, e.reason) for e in outcome.excluded] == [(ghost.uid, "UnknownPod")]


def test_never_without_tenant_permission_is_avoid() -> None:
    """Never is honoured only where the admin allows it; elsewhere it is Avoid, reported."""
    a = pod("a", labels={"app": "a"})
    b = pod("b")
    outcome = decide(snapshot(
        [(a, 4 * Gi), (b, 1 * Gi)],
        priorities=[priority("a", preference="Never", podSelector={"matchLabels": {"app": "a"}})],
    ))
    assert [r.group.name for r in outcome.ranking] == ["default/b", "default/a"]
    assert outcome.ranking[1].group.preference == "Avoid"
    report = next(p for p in outcome.priorities if p.name == "a")
    assert report.never_denied and report.effective_preference == "Avoid"


def test_group_member_on_another_node_is_acted_on_with_the_group() -> None:
    here = owned("w-1", "default", "ReplicaSet", "w")
    there = owned("w-2", "default", "ReplicaSet", "w", node_name="node-b")
    outcome = decide(snapshot(
        [(here, 3 * Gi), (there, 0)], priorities=[priority("w", group={"by": "Workload"})]
    ))
    victim = outcome.victims[0].group
    assert victim.name == "default/ReplicaSet/w"
    assert [p.name for p in victim.pods] == ["w-1"]
    assert [p.name for p in victim.elsewhere] == ["w-2"]
    assert NODE not in {p.node_name for p in victim.elsewhere}
