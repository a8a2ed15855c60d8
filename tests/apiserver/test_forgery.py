"""What a tenant can write and the real API server accepts, and what oomguard makes of it:
facts a writer can forge never protect a pod, and a name never stands for a UID."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from oomguard.api import MemoryUsage, NodeMemory, PodMemory
from oomguard.engine import Snapshot, decide
from oomguard.inputs import pod_from_manifest
from oomguard.kube import Cluster

from support import Identity, Kube

Gi = 2**30


def _tenant(kube: Kube, namespace: str) -> Identity:
    """A ServiceAccount of the namespace with the built-in `edit` role there: what a tenant
    is usually given."""
    kube.create("v1/serviceaccounts", {"metadata": {"name": "tenant", "namespace": namespace}})
    kube.create("rbac.authorization.k8s.io/v1/rolebindings", {
        "metadata": {"name": "tenant-edit", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "edit"},
        "subjects": [{"kind": "ServiceAccount", "name": "tenant", "namespace": namespace}]})
    return kube.identity("tenant", namespace=namespace)


def test_a_tenant_forges_a_mirror_pod_and_it_is_still_a_candidate(kube: Kube) -> None:
    """The kubelet's mirror annotation, its config source and a Node owner reference: the
    API server takes them from a tenant; a reference by a UID the tenant guessed does not
    make a mirror pod."""
    namespace = kube.namespace("tenant")
    node = kube.node("node-a")
    node_uid = kube.read("v1/nodes", None, node)["metadata"]["uid"]
    tenant = _tenant(kube, namespace)
    forged = client.CoreV1Api(kube.api_client(tenant)).create_namespaced_pod(namespace, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "immortal", "annotations": {
            "kubernetes.io/config.mirror": "0123456789abcdef",
            "kubernetes.io/config.source": "file"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node,
                                 "uid": "00000000-0000-0000-0000-000000000000",
                                 "controller": True}]},
        "spec": {"nodeName": node, "containers": [
            {"name": "main", "image": "registry.invalid/hog"}]}})
    # As the API server took it (the garbage collector deletes it a moment later: its
    # owner's UID is no Node's; a tenant who knew the Node's UID would keep it).
    created = client.ApiClient().sanitize_for_serialization(forged)
    assert created["metadata"]["annotations"]["kubernetes.io/config.source"] == "file"
    assert "deletionTimestamp" not in created["metadata"]
    created["status"] = {"phase": "Running"}
    pod = pod_from_manifest(created)
    outcome = decide(Snapshot(
        node=node, node_uid=node_uid,
        memory=NodeMemory(capacity_bytes=16 * Gi, available_bytes=1 * Gi),
        usage=[PodMemory(uid=pod.uid, usage=MemoryUsage(anon_bytes=4 * Gi))],
        pods=[pod], now=datetime.now(UTC)))
    assert outcome.excluded == []
    assert [v.group.name for v in outcome.victims] == [f"{namespace}/immortal"]


def _candidates(node: str, *pods: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(victims, excluded) of a Hard-pressured node holding these pods as the API server
    took them, each using 4Gi."""
    digested = []
    for created in pods:
        created["status"] = {"phase": "Running"}
        digested.append(pod_from_manifest(created))
    outcome = decide(Snapshot(
        node=node, memory=NodeMemory(capacity_bytes=16 * Gi, available_bytes=256 << 20),
        usage=[PodMemory(uid=p.uid, usage=MemoryUsage(anon_bytes=4 * Gi)) for p in digested],
        pods=digested, now=datetime.now(UTC)))
    return ([v.group.name for v in outcome.victims],
            [f"{e.pod}: {e.reason}" for e in outcome.excluded])


def test_criticality_comes_only_from_what_the_api_server_sets(kube: Kube) -> None:
    """The kubelet's TestCriticalPodsAreNotEvicted, from the writer's side: the old
    critical-pod annotation grants nothing, and a tenant cannot write the priority value
    of a critical class without the class (the API server's priority admission refuses
    it). Only the priority class, which the server resolves, makes a pod critical."""
    namespace = kube.namespace("tenant")
    node = kube.node("node-a")
    pods = client.CoreV1Api(kube.api_client(_tenant(kube, namespace)))
    containers = [{"name": "main", "image": "registry.invalid/hog"}]
    annotated = pods.create_namespaced_pod(namespace, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "annotated", "annotations": {
            "scheduler.alpha.kubernetes.io/critical-pod": ""}},
        "spec": {"nodeName": node, "containers": containers}})
    with pytest.raises(ApiException) as refused:
        pods.create_namespaced_pod(namespace, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "self-made"},
            "spec": {"nodeName": node, "priority": 2_000_000_000, "containers": containers}})
    assert refused.value.status == 403, refused.value.body
    assert "priority" in refused.value.body
    victims, excluded = _candidates(
        node, client.ApiClient().sanitize_for_serialization(annotated))
    assert (victims, excluded) == ([f"{namespace}/annotated"], [])


def test_an_eviction_evicts_the_pod_of_its_uid_not_of_its_name(kube: Kube) -> None:
    """A StatefulSet's pod comes back under the same name: an eviction decided for the
    one before must not take it."""
    namespace = kube.namespace("shop")
    node = kube.node("node-a")
    before = kube.pod("db-0", namespace, node)["metadata"]["uid"]
    kube.remove("v1/pods", namespace, "db-0")
    after = kube.pod("db-0", namespace, node)["metadata"]["uid"]
    cluster = Cluster(kube.api_client(kube.operator))

    stale = cluster.evict(namespace, "db-0", before)
    assert stale.outcome == "AlreadyGone" and before in stale.message
    assert not kube.read("v1/pods", namespace, "db-0")["metadata"].get("deletionTimestamp")

    assert cluster.evict(namespace, "db-0", after).outcome == "Evicted"
    assert kube.read("v1/pods", namespace, "db-0")["metadata"].get("deletionTimestamp")
