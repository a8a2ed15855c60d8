"""The benchmarks still measure what they say: each one's measured path, run small. No
timing is asserted (speed goals belong to `make bench`); what is asserted is that the
path does its work, since a benchmark whose setup broke reports nothing, or nonsense."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from oomguard.api import OOMPriority
from oomguard.engine import decide
from oomguard.sandbox import SandboxNode, SandboxUnavailableError

from bench import agent_caches, agent_overhead, engine, operator_load, rank
from bench.synthetic import DAEMONS, ClusterModel
from support import ApiError, Kube
from support.measure import growth_exponent, quantiles, spread


@pytest.mark.parametrize(("samples", "median", "p90", "p99"), [
    ([5.0], 5.0, 5.0, 5.0),
    ([1.0, 2.0, 3.0, 4.0], 2.5, 4.0, 4.0),
    ([float(i) for i in range(1, 101)], 50.5, 90.0, 99.0),  # nearest rank, not interpolated
    ([float(i) for i in range(1, 11)], 5.5, 9.0, 10.0),  # fewer than 100: p99 is the max
])
def test_quantiles_are_nearest_rank(samples: list[float], median: float, p90: float,
                                    p99: float) -> None:
    q = quantiles(samples)
    assert (q["median_ms"], q["p90_ms"], q["p99_ms"]) == (median, p90, p99)
    assert (q["n"], q["min_ms"], q["max_ms"]) == (len(samples), min(samples), max(samples))


def test_spread_ignores_what_was_not_measured() -> None:
    assert spread([None, 3.0, 1.0, None, 2.0]) == {"median": 2.0, "worst": 3.0, "n": 3}
    assert spread([None]) == {"median": None, "worst": None, "n": 0}


def test_growth_exponent_recovers_the_power() -> None:
    sizes = [10, 100, 1000]
    assert growth_exponent(sizes, [n**1.5 for n in sizes]) == pytest.approx(1.5)


def test_engine_benchmark_decides_on_its_node() -> None:
    snapshot = engine.build_snapshot(110, "Namespace")
    outcome = decide(snapshot)
    assert len(snapshot.pods) == 110
    assert outcome.pressure != "None" and outcome.victims
    assert len(engine.time_decide(snapshot, runs=3, warmup=1)) == 3


def test_synthetic_cluster_fills_every_node_and_reports_it() -> None:
    model = ClusterModel.build(nodes=4, pods_per_node=30, namespaces=4)
    assert sorted(model.by_node) == model.nodes
    assert all(len(pods) == 30 for pods in model.by_node.values())
    daemons = {d for d, _, _ in DAEMONS}
    assert all(sum(p.labels.get("app") in daemons and p.namespace == "kube-system"
                   for p in pods) == len(DAEMONS) for pods in model.by_node.values())
    report = model.report(model.nodes[0], "Soft")
    assert len(report["status"]["pods"]) == 30
    assert report["status"]["node"]["availableBytes"] < report["status"]["node"]["capacityBytes"]


@pytest.fixture
def gc_restored() -> Iterator[None]:
    """The in-process operator settles the collector as the operator process does
    (frozen caches, other thresholds); the rest of the session must not inherit that."""
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("gc_restored")
def test_operator_benchmark_in_process_decides_and_its_victims_go() -> None:
    model = ClusterModel.build(nodes=4, pods_per_node=30, namespaces=4)
    bench = operator_load.InProcess(model)
    node = model.nodes[0]

    async def pressured() -> operator_load.Handled:
        await bench.warm()
        return await bench.handle(node, "Soft", bench.feed.body(node, "Soft"), 0.0)

    handled = asyncio.run(pressured())
    assert handled.created is not None and handled.victim_pods > 0
    assert len(bench.gone) == handled.victim_pods
    later = bench.feed.body(node, "Soft")["status"]["pods"]
    assert not {p["uid"] for p in later} & bench.gone


def test_agent_overhead_in_process_costs_a_step(tmp_path: Path) -> None:
    try:
        node = SandboxNode(256 * 2**20, prefix="oomguard-bench-test")
    except SandboxUnavailableError as reason:
        pytest.skip(f"no real cgroup sandbox: {reason}")
    with node:
        for i in range(3):
            node.start(node.add_pod(f"pod-{i}", "ns"), "anon", 4)
        manifest = tmp_path / "pods.yaml"
        manifest.write_text(yaml.safe_dump_all([p.manifest() for p in node.pods]))
        cost = agent_overhead.sample_cost(agent_overhead.in_process_agent(node.root, manifest),
                                          node.root, runs=2)
    assert cost["pressure"] == "None" and cost["pods_read_at_rest"] == 0
    assert all(cost[part]["wall_ms"] > 0 for part in ("step", "discovery", "read_files",
                                                      "decide"))


def test_agent_caches_objects_are_the_largest_the_cluster_admits(kube: Kube) -> None:
    """The benchmark's object is taken by the server (the CRD schema and the chart's
    admission policy) and the models, and one more label is refused: it is the largest."""
    namespace = kube.namespace("tenant")
    body = agent_caches.largest_priority(namespace, "largest")
    OOMPriority.model_validate(body)
    kube.create(agent_caches.PRIORITIES, body)
    body["metadata"]["name"] = "larger"
    body["metadata"]["labels"]["one-more"] = "x"
    with pytest.raises(ApiError):
        kube.create(agent_caches.PRIORITIES, body)
    assert len(json.dumps(body)) > 100_000


def test_rank_benchmark_ranks_the_cluster_file_it_writes(tmp_path: Path) -> None:
    node, size = rank.write_cluster(300, tmp_path / "cluster.yaml")
    run = rank.run_rank(tmp_path / "cluster.yaml", node)
    assert size > 100_000 and run["ranked_groups"] > 0 and run["pressure"] == "Soft"
