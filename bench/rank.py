"""`oomguard rank` over a big cluster file: wall time and peak memory, as a user runs it.

Not a test: it reports numbers. The synthetic cluster (bench/synthetic.py: Deployments,
StatefulSets, Jobs and bare pods in tenant namespaces, DaemonSets in kube-system, typical
OOMPriority objects, one OOMPolicy with tenants) is written as one multi-document YAML
file, as `kubectl get -o yaml` of a cluster would be: its namespaces, owners, policy,
priorities, every pod, and the NodeMemoryReport of one pressured node. `oomguard rank -f
FILE --node NODE -o json` then runs as its own process; its wall time, and its peak RSS
from the kernel's accounting of the finished child (ru_maxrss), are the measure. The
run's output is checked to rank the node.

    python -m bench.rank [--quick]

Prints a markdown table and writes bench/results/rank.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from .synthetic import ClusterModel
from support.measure import verdict, write_results

GOAL_SECONDS = 10.0
GOAL_RSS_MIB = 300.0
"""At 50,000 pods (issue #12)."""
PODS_PER_NODE = 110


def cluster_documents(model: ClusterModel, node: str) -> list[dict[str, Any]]:
    """Everything `rank` reads of the cluster, one node's report under Soft pressure."""
    namespaces = [{"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": name, "labels": labels}}
                  for name, labels in model.namespaces.items()]
    return [*namespaces, *model.owners, model.policy, *model.priorities,
            *(p.body() for p in model.pods), model.report(node, "Soft")]


def write_cluster(pods: int, path: Path) -> tuple[str, int]:
    """The cluster file; the ranked node and the file's size in bytes."""
    model = ClusterModel.build(nodes=max(pods // PODS_PER_NODE, 1),
                               pods_per_node=PODS_PER_NODE,
                               namespaces=max(pods // 200, 4))
    node = model.nodes[0]
    with path.open("w") as out:
        yaml.dump_all(cluster_documents(model, node), out, Dumper=_dumper(),
                      sort_keys=False)
    return node, path.stat().st_size


def _dumper() -> type[yaml.SafeDumper]:
    return getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # type: ignore[no-any-return]


def run_rank(path: Path, node: str) -> dict[str, Any]:
    """One `oomguard rank` process: seconds, peak RSS and what it ranked."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "oomguard", "rank", "-f", str(path), "--node", node,
         "-o", "json"], capture_output=True, text=True, check=False, env=os.environ)
    seconds = time.monotonic() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if result.returncode != 0:
        raise RuntimeError(f"rank exited {result.returncode}: {result.stderr[-2000:]}")
    out = json.loads(result.stdout)
    if not out["ranking"]:
        raise RuntimeError("rank ranked nothing")
    return {"seconds": round(seconds, 2),
            # The largest child so far: each size runs after the smaller ones.
            "peak_rss_mib": round(max(peak_kib, before) / 1024, 1),
            "ranked_groups": len(out["ranking"]), "pressure": out["pressure"]}


def measure(sizes: Sequence[int], work: Path) -> list[dict[str, Any]]:
    rows = []
    for pods in sorted(sizes):
        path = work / f"cluster-{pods}.yaml"
        node, size = write_cluster(pods, path)
        rows.append({"pods": pods, "file_mb": round(size / 1e6, 1), **run_rank(path, node)})
        path.unlink()
    return rows


def report(rows: list[dict[str, Any]]) -> None:
    print("\n## oomguard rank over a cluster file, as its own process\n")
    print("| pods | file | wall time | peak RSS | groups ranked | goal at 50,000 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        goal = (f"{verdict(r['seconds'] < GOAL_SECONDS and r['peak_rss_mib'] < GOAL_RSS_MIB)}"
                f" (< {GOAL_SECONDS:.0f} s, < {GOAL_RSS_MIB:.0f} MiB)"
                if r["pods"] == 50_000 else "")
        print(f"| {r['pods']:,} | {r['file_mb']} MB | {r['seconds']} s | "
              f"{r['peak_rss_mib']} MiB | {r['ranked_groups']} | {goal} |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1,000 pods, for a smoke check")
    args = parser.parse_args(argv)
    sizes = [1_000] if args.quick else [10_000, 50_000]
    with tempfile.TemporaryDirectory(prefix="oomguard-bench-") as work:
        rows = measure(sizes, Path(work))
    report(rows)
    write_results("rank", "cli.rank", {"quick": args.quick, "goal_seconds": GOAL_SECONDS,
                                       "goal_rss_mib": GOAL_RSS_MIB, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
