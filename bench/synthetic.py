"""The operator benchmark's synthetic cluster: nodes full of Deployment, StatefulSet,
CronJob and bare pods in tenant namespaces, DaemonSet pods in kube-system, OOMPriority
objects as tenants.py says is typical, one OOMPolicy with tenants by service tier. The
same seed gives the same cluster, for the in-process part and for the one seeded into a
real API server."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from oomguard.api import GROUP, VERSION

from .tenants import typical_priorities

Mi = 2**20
Gi = 2**30
SERVICE_TIERS = ("gold", "silver", "bronze")
APPS = ("api", "web", "db", "cache", "queue", "worker", "search", "auth")
DAEMONS = (("kube-proxy", 64, True), ("node-exporter", 32, False),
           ("log-shipper", 128, False))
"""kube-system DaemonSet pods on every node: name, request in Mi, system-critical."""


@dataclass(slots=True)
class PodSeed:
    """One pod of the synthetic cluster, small until its body is asked for."""

    namespace: str
    name: str
    uid: str
    node: str
    labels: dict[str, str]
    owner: tuple[str, str, str, str] | None  # apiVersion, kind, name, uid
    request_mi: int
    critical: bool
    created: str
    anon: int

    def body(self) -> dict[str, Any]:
        """The v1 Pod as the API server holds it (what kopf's index handler receives)."""
        meta: dict[str, Any] = {"name": self.name,
                                "namespace": self.namespace, "uid": self.uid,
                                "labels": dict(self.labels),
                                "creationTimestamp": self.created}
        if self.owner:
            api_version, kind, name, uid = self.owner
            meta["ownerReferences"] = [{"apiVersion": api_version, "kind": kind, "name": name,
                                        "uid": uid, "controller": True,
                                        "blockOwnerDeletion": True}]
        resources: dict[str, Any] = {"requests": {"memory": f"{self.request_mi}Mi",
                                                  "cpu": "100m"}}
        if self.request_mi:
            resources["limits"] = {"memory": f"{self.request_mi * 2}Mi"}
        spec: dict[str, Any] = {
            "nodeName": self.node, "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "containers": [{"name": "main", "resources": resources,
                            "image": f"registry.example/{self.labels.get('app', 'x')}:1"}],
        }
        if self.critical:
            spec["priorityClassName"] = "system-node-critical"
            spec["priority"] = 2_000_001_000
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec,
                "status": {"phase": "Running", "qosClass": "Burstable"}}

    def usage_entry(self) -> dict[str, Any]:
        """The pod in its node's report: hierarchical usage and one container."""
        usage = {"anonBytes": self.anon, "fileBytes": self.anon // 2,
                 "kernelBytes": self.anon // 50, "workingSetBytes": self.anon + self.anon // 4}
        return {"uid": self.uid, "qosClass": "Burstable", "usage": usage,
                "containers": [{"name": "main", "id": self.uid.replace("-", "")[:24],
                                "usage": dict(usage)}]}


@dataclass
class ClusterModel:
    """A seeded synthetic cluster: every node full (`pods_per_node`), DaemonSet pods in
    kube-system, tenant workloads spread by a random "scheduler" over all nodes."""

    nodes: list[str]
    namespaces: dict[str, dict[str, str]]
    pods: list[PodSeed]
    owners: list[dict[str, Any]]
    """ReplicaSet and Job bodies (the operator's owner indices)."""
    priorities: list[dict[str, Any]]
    policy: dict[str, Any]
    by_node: dict[str, list[PodSeed]] = field(default_factory=dict)
    capacity: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(cls, nodes: int, pods_per_node: int, namespaces: int,
              seed: int = 2017) -> ClusterModel:
        rng = random.Random(seed)
        names = [f"node-{i:04d}" for i in range(nodes)]
        tenants = {f"team-{i:03d}": {"service-tier": SERVICE_TIERS[i % 3]}
                   for i in range(namespaces)}
        model = cls(names, {**tenants, "kube-system": {}}, [], [], [], _policy())
        created = datetime(2026, 11, 1, tzinfo=UTC)
        counter = 0

        def add(namespace: str, name: str, node: str, labels: dict[str, str], *,
                owner: tuple[str, str, str, str] | None, request_mi: int,
                critical: bool = False) -> None:
            nonlocal counter
            counter += 1
            age = timedelta(seconds=rng.randrange(0, 30 * 86_400))
            anon = min(int(rng.lognormvariate(math.log(150 * Mi), 1.0)), 16 * Gi)
            model.pods.append(PodSeed(
                namespace, name, f"00000000-0000-4000-8000-{counter:012d}", node, labels,
                owner, request_mi, critical, (created + age).strftime("%Y-%m-%dT%H:%M:%SZ"),
                anon))

        for daemon, request, critical in DAEMONS:
            owner = ("apps/v1", "DaemonSet", daemon, f"uid-ds-{daemon}")
            for node in names:
                add("kube-system", f"{daemon}-{node[-4:]}{rng.randrange(10**5):05d}", node,
                    {"app": daemon}, owner=owner, request_mi=request, critical=critical)
        free = {node: pods_per_node - len(DAEMONS) for node in names}
        open_nodes = list(names)

        def place() -> str:
            i = rng.randrange(len(open_nodes))
            node = open_nodes[i]
            free[node] -= 1
            if free[node] == 0:
                open_nodes[i] = open_nodes[-1]
                open_nodes.pop()
            return node

        weights = [rng.uniform(0.2, 3.0) for _ in tenants]
        tenant_names = list(tenants)
        index = 0
        while open_nodes:
            namespace = rng.choices(tenant_names, weights)[0]
            app = rng.choice(APPS)
            labels = {"app": app, "tier": rng.choice(("frontend", "backend", "batch"))}
            name = f"{app}-{index}"
            index += 1
            kind = rng.choices(("Deployment", "StatefulSet", "Job", "Bare"), (60, 15, 10, 15))[0]
            size = {"Deployment": rng.choice((1, 2, 2, 3, 3, 3, 5, 8, 12, 20)),
                    "StatefulSet": rng.randint(1, 5), "Job": rng.randint(1, 4), "Bare": 1}[kind]
            request = rng.choice((0, 64, 128, 256, 512, 1024, 2048))
            if kind == "Deployment":
                deployment = ("apps/v1", "Deployment", name, f"uid-deploy-{namespace}-{name}")
                revisions = []
                for r in range(rng.choice((1, 1, 1, 2))):
                    rs = f"{name}-{rng.randrange(16**8):08x}"
                    uid = f"uid-rs-{namespace}-{rs}"
                    ref = ("apps/v1", "ReplicaSet", rs, uid)
                    model.owners.append(_owner_body(ref, namespace, parent=deployment,
                                                    revision=r))
                    revisions.append(ref)
                for i in range(size):
                    if not open_nodes:
                        break
                    rs_ref = revisions[i % len(revisions)]
                    add(namespace, f"{rs_ref[2]}-{rng.randrange(16**5):05x}", place(),
                        {**labels, "pod-template-hash": rs_ref[2].rsplit("-", 1)[1]},
                        owner=rs_ref, request_mi=request)
            elif kind == "StatefulSet":
                sts = ("apps/v1", "StatefulSet", name, f"uid-sts-{namespace}-{name}")
                for i in range(size):
                    if not open_nodes:
                        break
                    add(namespace, f"{name}-{i}", place(),
                        {**labels, "statefulset.kubernetes.io/pod-name": f"{name}-{i}"},
                        owner=sts, request_mi=request)
            elif kind == "Job":
                cron = ("batch/v1", "CronJob", name, f"uid-cron-{namespace}-{name}")
                job = f"{name}-{rng.randrange(10**8)}"
                job_ref = ("batch/v1", "Job", job, f"uid-job-{namespace}-{job}")
                model.owners.append(_owner_body(job_ref, namespace, parent=cron, revision=0))
                for i in range(size):
                    if not open_nodes:
                        break
                    add(namespace, f"{job}-{i}-{rng.randrange(16**5):05x}", place(),
                        {**labels, "tier": "batch", "job-name": job},
                        owner=job_ref, request_mi=request)
            else:
                add(namespace, name, place(), labels, owner=None, request_mi=request)
        for namespace in tenant_names:
            model.priorities += _priorities(namespace, rng)
        for pod in model.pods:
            model.by_node.setdefault(pod.node, []).append(pod)
        for node, pods in model.by_node.items():
            used = sum(p.anon + p.anon // 50 for p in pods)
            model.capacity[node] = int(used / 0.85)
        return model

    def report(self, node: str, pressure: str, gone: set[str] | frozenset[str] = frozenset(),
               now: datetime | None = None) -> dict[str, Any]:
        """The node's NodeMemoryReport as kopf delivers it: the whole object, with the last
        per-pod detail, whatever the write was (a heartbeat patches only the summary)."""
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "NodeMemoryReport",
                "metadata": {"name": node, "uid": f"uid-report-{node}",
                             "resourceVersion": "1", "generation": 1},
                "status": self.report_status(node, pressure, gone, now)}

    def report_status(self, node: str, pressure: str,
                      gone: set[str] | frozenset[str] = frozenset(),
                      now: datetime | None = None) -> dict[str, Any]:
        capacity = self.capacity[node]
        available = {"None": 30, "Soft": 8, "Hard": 3}[pressure] * capacity // 100
        stamp = (now or datetime.now(UTC)).isoformat()
        return {
            "node": {"capacityBytes": capacity, "allocatableBytes": capacity * 95 // 100,
                     "availableBytes": available,
                     "psi": {"someAvg10": 0.0 if pressure == "None" else 12.5,
                             "fullAvg10": 0.0 if pressure == "None" else 3.1}},
            "pods": [p.usage_entry() for p in self.by_node[node] if p.uid not in gone],
            "observedTime": stamp, "podsObservedTime": stamp, "heartbeatTime": stamp,
            "heartbeatSeconds": 10.0, "pressure": pressure, "agentVersion": "0.1.0",
        }


def _owner_body(ref: tuple[str, str, str, str], namespace: str, *,
                parent: tuple[str, str, str, str], revision: int) -> dict[str, Any]:
    """A ReplicaSet or Job (`ref`: apiVersion, kind, name, uid) and its controller."""
    api_version, kind, name, uid = ref
    return {"apiVersion": api_version, "kind": kind, "metadata": {
        "name": name, "namespace": namespace, "uid": uid,
        "annotations": {"deployment.kubernetes.io/revision": str(revision + 1)},
        "ownerReferences": [{"apiVersion": parent[0], "kind": parent[1], "name": parent[2],
                             "uid": parent[3], "controller": True}]}}


def _priorities(namespace: str, rng: random.Random) -> list[dict[str, Any]]:
    """Most tenants declare what tenants.py says is typical; some declare nothing."""
    if rng.random() < 0.25:
        return []
    specs = typical_priorities(rng)
    return [{"apiVersion": f"{GROUP}/{VERSION}", "kind": "OOMPriority",
             "metadata": {"name": name, "namespace": namespace,
                          "uid": f"uid-prio-{namespace}-{name}", "generation": 1},
             "spec": spec} for name, spec in specs]


def _policy() -> dict[str, Any]:
    """Default thresholds (Soft below 10%, Hard below 5%, reclaim to 15%) and actions
    (Soft: Evict; Hard: KillAndEvict), tenants by service tier."""
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "OOMPolicy",
            "metadata": {"name": "cluster", "uid": "uid-policy-cluster", "generation": 1},
            "spec": {"cooldownSeconds": 15, "tenants": [
                {"namespaceSelector": {"matchLabels": {"service-tier": "gold"}},
                 "maxPriority": 1000, "allowNever": True},
                {"namespaceSelector": {"matchLabels": {"service-tier": "silver"}},
                 "maxPriority": 500},
                {"maxPriority": 0}]}}
