"""How long decide() takes for one node: 110 pods (the kubelet's default maximum), 1,000
and 10,000, with the Flat and the Namespace hierarchy.

Not a test: it reports numbers. The node is built once per size, the way the operator
sees a busy node: twenty namespaces, Deployments (ReplicaSet -> Deployment owner chains),
StatefulSets, CronJob-owned Jobs and bare pods; OOMPriority objects grouping by Pod,
Workload and Label with mixed priorities and preferences; tenants in the policy; some
terminating pods and a protected kube-system. Only decide() is timed.

    python -m bench.engine [--quick] [--profile]

Prints a markdown table and writes bench/results/engine.json.
"""

from __future__ import annotations

import argparse
import functools
import gc
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from oomguard.api import MemoryUsage, NodeMemory, OOMPolicy, OOMPriority, PodMemory
from oomguard.engine import Owner, OwnerRef, Pod, Snapshot, decide

from .synthetic import APPS, SERVICE_TIERS
from .tenants import typical_priorities
from support.measure import (
    growth_exponent,
    profile_text,
    profiled,
    quantiles,
    verdict,
    write_results,
)

Mi = 2**20
Gi = 2**30
NODE = "bench-node"
NODE_UID = "uid-node-bench-node"
NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
SIZES = (110, 1_000, 10_000)
RUNS = {110: 200, 1_000: 50, 10_000: 15}
QUICK_RUNS = {110: 40, 1_000: 10, 10_000: 3}
WARMUP = {110: 20, 1_000: 5, 10_000: 2}
HIERARCHIES = ("Flat", "Namespace")
GOALS_MS = {110: 2.0, 10_000: 60.0}
"""Targets for the median decide() time at these sizes."""
GOAL_EXPONENT = 1.2
"""n log n over 110..10,000 pods fits t ~ n^k with k = 1.15; quadratic would be 2."""
TENANT_NAMESPACES = 19


# --- the node ---------------------------------------------------------------------------


@dataclass
class NodeBuilder:
    """Accumulates the objects of one synthetic node, from a seeded RNG so that every run
    of the benchmark decides on the same node."""

    rng: random.Random
    pods: list[Pod]
    usage: list[PodMemory]
    owners: dict[str, Owner]

    def owner(self, namespace: str, kind: str, name: str,
              parent: Owner | None = None) -> Owner:
        uid = f"{namespace}-{kind}-{name}"
        ref = OwnerRef(parent.kind, parent.name, parent.uid) if parent else None
        self.owners[uid] = Owner(namespace, kind, name, uid, ref)
        return self.owners[uid]

    def add_pod(self, namespace: str, name: str, labels: dict[str, str],
                controller: Owner | None = None, **fields: Any) -> None:
        """A pod on the node with a long-tailed usage (most small, a few huge), requests
        that about two pods in five exceed, and a few terminating or not yet running."""
        rng = self.rng
        requests = rng.choice((0, 64, 128, 256, 512, 1024, 2048)) * Mi
        roll = rng.random()
        pod = Pod(
            namespace=namespace, name=name, uid=f"uid-{namespace}-{name}", node_name=NODE,
            phase="Pending" if roll < 0.01 else "Running",
            labels=labels,
            controller=OwnerRef(controller.kind, controller.name, controller.uid)
            if controller else None,
            created=float(rng.randrange(0, 30 * 86_400)),
            terminating=0.01 <= roll < 0.04,
            requests_bytes=requests,
            limits_bytes=requests * 2,
            **fields,
        )
        self.pods.append(pod)
        if pod.phase == "Running":
            anon = min(int(rng.lognormvariate(math.log(150 * Mi), 1.0)), 16 * Gi)
            self.usage.append(PodMemory(uid=pod.uid, usage=MemoryUsage(
                anon_bytes=anon, file_bytes=anon // 2, kernel_bytes=anon // 50,
            )))


def add_workloads(node: NodeBuilder, namespace: str, pod_count: int) -> None:
    """Processes of one namespace until it holds `pod_count` pods, labelled as their
    controllers label them (template hash, StatefulSet pod name, job name)."""
    rng = node.rng
    added = index = 0
    while added < pod_count:
        app = rng.choice(APPS)
        labels = {"app": app, "tier": rng.choice(("frontend", "backend", "batch"))}
        name = f"{app}-{index}"
        kind = rng.choices(("Deployment", "StatefulSet", "Job", "Bare"), (60, 15, 10, 15))[0]
        size = min(pod_count - added, {"Deployment": rng.randint(1, 12),
                                       "StatefulSet": rng.randint(1, 5),
                                       "Job": rng.randint(1, 4), "Bare": 1}[kind])
        if kind == "Deployment":
            deployment = node.owner(namespace, "Deployment", name)
            revisions = [node.owner(namespace, "ReplicaSet", f"{name}-{r}", deployment)
                         for r in range(rng.choice((1, 1, 1, 2)))]
            for i in range(size):
                rs = revisions[i % len(revisions)]
                node.add_pod(namespace, f"{rs.name}-{i}",
                             {**labels, "pod-template-hash": rs.name}, rs)
        elif kind == "StatefulSet":
            sts = node.owner(namespace, "StatefulSet", name)
            for i in range(size):
                node.add_pod(namespace, f"{name}-{i}",
                             {**labels, "statefulset.kubernetes.io/pod-name": f"{name}-{i}"},
                             sts)
        elif kind == "Job":
            cron = node.owner(namespace, "CronJob", name)
            job = node.owner(namespace, "Job", f"{name}-{index}", cron)
            for i in range(size):
                node.add_pod(namespace, f"{job.name}-{i}",
                             {**labels, "tier": "batch", "job-name": job.name}, job)
        else:
            node.add_pod(namespace, name, labels)
        added += size
        index += 1


def priorities_for(namespace: str, rng: random.Random) -> list[OOMPriority]:
    """What a tenant typically declares (tenants.py), and sometimes a Never for the one
    thing that must survive."""
    specs = typical_priorities(rng)
    if rng.random() < 0.2:
        specs.append(("auth", {"podSelector": {"matchExpressions": [
            {"key": "app", "operator": "In", "values": ["auth"]}]},
            "preference": "Never", "priority": 1000}))
    return [OOMPriority.model_validate(
        {"metadata": {"name": name, "namespace": namespace}, "spec": spec})
        for name, spec in specs]


def policies(hierarchy: str) -> list[OOMPolicy]:
    """The policy for this node's pool, with tenants by service tier, and a policy for
    another pool that must not be chosen."""
    this_pool = {
        "nodeSelector": {"matchLabels": {"pool": "general"}},
        "hierarchy": hierarchy,
        "tenants": [
            {"namespaceSelector": {"matchLabels": {"service-tier": "gold"}},
             "maxPriority": 1000, "allowNever": True},
            {"namespaceSelector": {"matchLabels": {"service-tier": "silver"}},
             "maxPriority": 500},
            {"maxPriority": 0},
        ],
    }
    other_pool = {"nodeSelector": {"matchLabels": {"pool": "gpu"}}, "ranking": "KubeletCompatible"}
    return [OOMPolicy.model_validate({"metadata": {"name": name}, "spec": spec})
            for name, spec in (("general", this_pool), ("gpu", other_pool))]


def build_snapshot(pod_count: int, hierarchy: str, seed: int = 2017) -> Snapshot:
    """A node of `pod_count` pods under Hard pressure: available memory is 3% of a capacity
    sized so that pods fill 90% of it, so victims must cover 12% of the node."""
    rng = random.Random(seed)
    node = NodeBuilder(rng, [], [], {})
    namespaces = {f"team-{i:02d}": {"service-tier": SERVICE_TIERS[i % 3]}
                  for i in range(TENANT_NAMESPACES)}
    system = max(3, pod_count // 30)
    for i in range(system):
        node.add_pod("kube-system", f"system-{i}", {"app": "node-agent"},
                     critical=i % 2 == 0,
                     mirror_of=OwnerRef("Node", NODE, NODE_UID) if i % 5 == 0 else None)
    weights = [rng.uniform(0.2, 3.0) for _ in namespaces]
    shares = [int((pod_count - system) * w / sum(weights)) for w in weights]
    shares[0] += pod_count - system - sum(shares)
    priorities: list[OOMPriority] = []
    for namespace, share in zip(namespaces, shares, strict=True):
        add_workloads(node, namespace, share)
        priorities += priorities_for(namespace, rng)
    used = sum(u.usage.unreclaimable_bytes for u in node.usage)
    capacity = int(used / 0.9)
    return Snapshot(
        node=NODE,
        memory=NodeMemory(capacity_bytes=capacity, available_bytes=capacity * 3 // 100),
        usage=node.usage,
        pods=node.pods,
        now=NOW,
        node_labels={"pool": "general"},
        node_uid=NODE_UID,
        namespaces={**namespaces, "kube-system": {}},
        owners=node.owners,
        policies=policies(hierarchy),
        priorities=priorities,
    )


# --- measuring --------------------------------------------------------------------------


def time_decide(snapshot: Snapshot, runs: int, warmup: int) -> list[float]:
    """Milliseconds per decide(), garbage collector on. The snapshot's objects are frozen
    out of collection first (gc.freeze), as long-lived caches should be once loaded (the
    operator does not do so yet): otherwise every full collection during a decision walks
    the whole cluster's objects, which costs the caller's heap, not the ranking."""
    for _ in range(warmup):
        decide(snapshot)
    gc.collect()
    gc.freeze()  # the snapshot is long-lived: see the docstring
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        decide(snapshot)
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return samples


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer runs, for a smoke check")
    parser.add_argument("--profile", action="store_true",
                        help="also print a cProfile of decide() on the 10,000-pod node")
    args = parser.parse_args(argv)
    runs = QUICK_RUNS if args.quick else RUNS

    cases: list[dict[str, Any]] = []
    for hierarchy in HIERARCHIES:
        for size in SIZES:
            snapshot = build_snapshot(size, hierarchy)
            outcome = decide(snapshot)
            samples = time_decide(snapshot, runs[size], WARMUP[size])
            spread = quantiles(samples, digits=3)
            cases.append({
                "pods": size, "hierarchy": hierarchy, "groups": len(outcome.ranking),
                "excluded": len(outcome.excluded), "victims": len(outcome.victims),
                "pressure": outcome.pressure, "runs": len(samples),
                "median_ms": spread["median_ms"], "p90_ms": spread["p90_ms"],
                "min_ms": spread["min_ms"],
                "goal_ms": GOALS_MS.get(size),
            })
    exponents = {
        h: round(growth_exponent(SIZES, [c["median_ms"] for c in cases if c["hierarchy"] == h]),
                 3)
        for h in HIERARCHIES
    }
    for case in cases:
        goal = case["goal_ms"]
        case["goal_met"] = None if goal is None else case["median_ms"] < goal

    print("## decide() on one node\n")
    print("| pods | hierarchy | groups | excluded | victims | runs | median ms | p90 ms | goal |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for c in cases:
        goal = "" if c["goal_ms"] is None else (
            f"< {c['goal_ms']:g} ms: {verdict(c['goal_met'])}")
        print(f"| {c['pods']:,} | {c['hierarchy']} | {c['groups']:,} | {c['excluded']:,} | "
              f"{c['victims']} | {c['runs']} | {c['median_ms']:.3f} | {c['p90_ms']:.3f} | "
              f"{goal} |")
    print()
    for hierarchy, k in exponents.items():
        print(f"growth, {hierarchy}: t ~ n^{k:.2f} "
              f"(goal: no worse than n log n, k <= {GOAL_EXPONENT}: "
              f"{verdict(k <= GOAL_EXPONENT)})")
    print("goals: median < 2 ms for 110 pods, < 60 ms for 10,000 pods")

    write_results("engine", "engine.decide", {
        "quick": args.quick,
        "goals": {"median_ms": {str(n): ms for n, ms in GOALS_MS.items()},
                  "max_exponent": GOAL_EXPONENT},
        "cases": cases,
        "exponents": exponents,
    })

    if args.profile:
        for hierarchy in HIERARCHIES:
            print(f"\n## cProfile: 10,000 pods, {hierarchy}, 5 runs, by own time, gc off\n")
            stats = profiled(functools.partial(decide, build_snapshot(10_000, hierarchy)), runs=5)
            print(profile_text(stats, top=18))
    return 0


if __name__ == "__main__":
    sys.exit(main())
