"""The operator's decider without kopf and without an API server: its indices built by the
handlers' own index functions, a Cluster that records what was asked of the API. The same
paths as tests/controller/test_operator.py (which runs them through kopf and a real API
server), fast and table by table."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, NamedTuple

import pytest

from oomguard.api import OOMDecision
from oomguard.controller import Decider
from oomguard.decisions import EVICTED, EXPIRED
from oomguard.kube import Eviction

from small_cluster import NODE, NOW, OTHER, OURS, PODS, PRIORITIES, Gi, Mi, report
from support.operator_fakes import Indices, RecordingCluster


def decider(**policy: Any) -> tuple[Decider, RecordingCluster, Indices]:
    indices = Indices.of(pods=PODS, priorities=PRIORITIES, namespaces={"batch": {}, "shop": {}},
                         nodes={NODE: {}, OTHER: {}}, policies=[{
                             "apiVersion": OURS, "kind": "OOMPolicy",
                             "metadata": {"name": "cluster"}, "spec": policy}])
    cluster = RecordingCluster(indices.decisions)
    return Decider(cluster, clock=lambda: NOW), cluster, indices


ETL = ("batch/Job/etl",)


class Expected(NamedTuple):
    action: str
    phase: str
    victims: tuple[str, ...] = ETL
    evicted: tuple[str, ...] = ()


@pytest.mark.parametrize(("available", "policy", "expected"), [
    (6 * Gi, {}, None),  # no pressure: no decision
    (500 * Mi, {}, Expected("Evict", "Completed", evicted=("batch/etl-1", "batch/etl-2"))),
    (500 * Mi, {"actions": {"soft": "Kill"}}, Expected("Kill", "Pending")),  # the agent's
    (500 * Mi, {"mode": "DryRun"}, Expected("Evict", "DryRun")),
    # Hard: a bigger need (1.1Gi), and the agent kills first
    (100 * Mi, {}, Expected("KillAndEvict", "Pending", victims=(*ETL, "shop/web-0"))),
])
async def test_a_report_becomes_the_decision_its_pressure_calls_for(
    available: int, policy: dict[str, Any], expected: Expected | None
) -> None:
    decide, cluster, indices = decider(**policy)
    made = await decide.on_report(report(available), indices.view())
    if expected is None:
        assert made is None and cluster.calls["create_decision"] == 0
        return
    assert made is not None and made.status is not None
    assert (made.spec.action, made.status.phase) == (expected.action, expected.phase)
    assert tuple(v.name for v in made.spec.victims) == expected.victims
    assert tuple(cluster.evicted) == expected.evicted
    assert cluster.calls["event"] == 1 + sum(len(v.pods) for v in made.spec.victims)


async def test_a_refused_eviction_under_hard_pressure_escalates_to_a_kill() -> None:
    decide, cluster, indices = decider(actions={"hard": "Evict"})
    cluster.evictions["batch/etl-2"] = Eviction("Refused", "disruption budget")
    made = await decide.on_report(report(100 * Mi), indices.view())
    assert made is not None and made.status is not None
    assert made.status.phase == "Failed"
    [first, kill] = indices.decisions[NODE]
    assert first.metadata.name == made.metadata.name
    assert kill.spec.action == "Kill" and kill.status is not None
    assert kill.status.phase == "Pending"
    assert [c.type for c in kill.status.conditions] == ["Escalated"]


async def test_a_refused_eviction_under_soft_pressure_fails_and_escalates_nothing() -> None:
    decide, cluster, indices = decider()
    cluster.evictions["batch/etl-2"] = Eviction("Refused", "disruption budget")
    made = await decide.on_report(report(500 * Mi), indices.view())
    assert made is not None and made.status is not None
    assert made.status.phase == "Failed"
    assert {(v.name, v.outcome) for v in made.status.victims} == {
        ("etl-1", "Evicted"), ("etl-2", "Refused")}
    assert len(indices.decisions[NODE]) == 1


@pytest.mark.parametrize("age", [timedelta(hours=3), timedelta(seconds=61),
                                 -timedelta(hours=3)])  # dated ahead: a skewed clock
async def test_a_stale_pressured_report_starts_no_decision(age: timedelta) -> None:
    """The agent stopped writing while its node was pressured (under pressure it writes
    every second): an operator started later must not act on that last word."""
    decide, cluster, indices = decider()
    assert await decide.on_report(report(100 * Mi, NOW - age), indices.view()) is None
    assert cluster.calls["create_decision"] == 0 and cluster.evicted == []
    registry = decide.metrics.registry
    assert registry.get_sample_value("oomguard_stale_reports_total") == 1
    assert registry.get_sample_value("oomguard_nodes_under_pressure",
                                     {"pressure": "Stale"}) == 1
    made = await decide.on_report(report(100 * Mi, NOW - timedelta(seconds=1)), indices.view())
    assert made is not None  # a fresh one is acted on
    assert registry.get_sample_value("oomguard_nodes_under_pressure",
                                     {"pressure": "Stale"}) == 0


def killed(action: str, decided_by: str = "operator", **status: Any) -> dict[str, Any]:
    """A decision the agent finished: etl-1 killed on the node, etl-2 on another node."""
    return OOMDecision.model_validate({
        "metadata": {"name": f"{NODE}-1", "creationTimestamp": NOW.isoformat()},
        "spec": {"nodeName": NODE, "policy": "cluster", "action": action,
                 "decidedBy": decided_by,
                 "trigger": {"pressure": "Hard", "availableBytes": 1, "needBytes": 1},
                 "victims": [{"name": "batch/Job/etl", "namespace": "batch",
                              "expectedReclaimBytes": 1, "pods": [
                                  {"namespace": "batch", "name": "etl-1", "uid": "u-etl-1",
                                   "nodeName": NODE},
                                  {"namespace": "batch", "name": "etl-2", "uid": "u-etl-2",
                                   "nodeName": OTHER}]}]},
        "status": {"phase": "Completed", "victims": [
            {"namespace": "batch", "name": "etl-1", "uid": "u-etl-1", "outcome": "Killed"},
            {"namespace": "batch", "name": "etl-2", "uid": "u-etl-2", "outcome": "Pending"}],
            **status},
    }).wire()


@pytest.mark.parametrize(("body", "evicted"), [
    (killed("KillAndEvict"), ["batch/etl-1", "batch/etl-2"]),
    (killed("Kill"), ["batch/etl-2"]),  # the member on another node only
    (killed("Kill", phase="Executing"), []),  # not done yet
    (killed("Kill", conditions=[{"type": EVICTED, "status": "True"}]), []),  # done before
    (killed("Kill", conditions=[{"type": EXPIRED, "status": "True"}]), []),  # too late before
    # An agent's decision (acting alone) speaks for its node only: the pod elsewhere stays.
    (killed("KillAndEvict", decided_by="agent"), ["batch/etl-1"]),
    (killed("Kill", decided_by="agent"), []),
])
async def test_after_the_agents_kill_the_operator_evicts_what_is_left(
    body: dict[str, Any], evicted: list[str]
) -> None:
    decide, cluster, _ = decider()
    await decide.on_decision(body)
    assert cluster.evicted == evicted
    if evicted:
        [(name, status)] = cluster.statuses
        assert name == f"{NODE}-1"
        by_agent = body["spec"]["decidedBy"] == "agent"
        assert {(v["name"], v["outcome"]) for v in status["victims"]} == {
            ("etl-1", "Killed"), ("etl-2", "Refused" if by_agent else "Evicted")}
        assert [c["type"] for c in status["conditions"]] == [EVICTED]
        assert cluster.evicted_uids == [f"u-{name.split('/')[1]}" for name in evicted]


async def test_an_operator_back_after_days_evicts_nothing_of_an_old_kill() -> None:
    """A KillAndEvict finished five days ago, its Evicted condition never written (the
    operator was away): today's pods of those names may be others. It is ended as
    Expired, never replayed."""
    decide, cluster, _ = decider()
    old = (NOW - timedelta(days=5)).isoformat()
    body = killed("KillAndEvict", completionTime=old)
    body["metadata"]["creationTimestamp"] = old
    await decide.on_decision(body)
    assert cluster.evicted == []
    [(_, status)] = cluster.statuses
    assert [(c["type"], c["reason"]) for c in status["conditions"]] == [
        (EXPIRED, "EvictionsExpired")]
    assert {(v["name"], v["outcome"]) for v in status["victims"]} == {
        ("etl-1", "Killed"), ("etl-2", "Failed")}


async def test_a_deleted_node_is_no_longer_counted_under_pressure() -> None:
    decide, _, indices = decider(mode="DryRun")
    await decide.on_report(report(100 * Mi), indices.view())
    registry = decide.metrics.registry
    assert registry.get_sample_value("oomguard_nodes_under_pressure", {"pressure": "Hard"}) == 1
    decide.forget_node(NODE)
    assert registry.get_sample_value("oomguard_nodes_under_pressure", {"pressure": "Hard"}) == 0
    assert NODE not in decide.recent


async def test_dry_runs_of_the_same_victims_are_recorded_once_per_cooldown() -> None:
    """A dry run acts on nothing, so every report (one a second under pressure) would
    decide the same again, each with its Events."""
    decide, cluster, indices = decider(mode="DryRun", cooldownSeconds=15)
    first = await decide.on_report(report(500 * Mi), indices.view())
    again = await decide.on_report(report(500 * Mi, NOW + timedelta(seconds=1)),
                                   indices.view())
    assert first is not None and again is None
    assert cluster.calls["create_decision"] == 1
    worse = await decide.on_report(report(100 * Mi, NOW + timedelta(seconds=2)),
                                   indices.view())
    assert worse is not None  # Hard: more victims, recorded at once
