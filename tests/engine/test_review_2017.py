"""The seed scenarios of the 2017 cgroup-aware OOM killer review (Gushchin, Rientjes):
what a group-aware killer must get right."""

from __future__ import annotations

from oomguard.api import MemoryUsage, PodMemory
from oomguard.api.report import ContainerMemory
from oomguard.engine import decide

from builders import Gi, Mi, owned, owner, pod, priority, snapshot

WORKLOAD = priority("by-workload", "tenant", group={"by": "Workload"})


def test_workload_split_into_many_pods_is_not_hidden_when_grouped_by_workload() -> None:
    """Twenty 150Mi pods of one Deployment hold 3Gi: more than the 2Gi single pod, so the
    workload goes first, though each of its pods is smaller than the single pod."""
    split = [owned(f"shard-{i}", "tenant", "ReplicaSet", "shards") for i in range(20)]
    single = pod("monolith", "tenant")
    owners = {o.uid: o for o in [owner("ReplicaSet", "shards", "tenant",
                                       parent=("Deployment", "shards")),
                                 owner("Deployment", "shards", "tenant")]}
    s = snapshot([(p, 150 * Mi) for p in split] + [(single, 2 * Gi)],
                 owners=owners, priorities=[WORKLOAD])
    outcome = decide(s)
    assert [v.group.name for v in outcome.victims] == ["tenant/Deployment/shards"]
    assert len(outcome.victims[0].group.pods) == 20
    # Per pod, the monolith would have looked worst: the split was hiding the workload.
    per_pod = decide(snapshot([(p, 150 * Mi) for p in split] + [(single, 2 * Gi)]))
    assert per_pod.ranking[0].group.name == "tenant/monolith"


def test_workload_split_into_many_containers_is_counted_whole() -> None:
    """Usage is hierarchical over the pod's cgroup: ten containers of 300Mi are one 3Gi pod."""
    many = pod("many-containers")
    one = pod("one-container")
    containers = [ContainerMemory(id=f"c{i}", usage=MemoryUsage(anon_bytes=300 * Mi))
                  for i in range(10)]
    s = snapshot([(one, 2 * Gi)], extra_usage=[PodMemory(
        uid=many.uid, usage=MemoryUsage(anon_bytes=3000 * Mi), containers=containers)])
    s = type(s)(**{**s.__dict__, "pods": [one, many]})
    assert decide(s).victims[0].group.name == "default/many-containers"


def test_user_protects_big_important_group_without_disabling_the_killer() -> None:
    """A high priority keeps the big database alive while others can pay; once only it
    is left, it is still a candidate: protection is not immunity."""
    db = pod("db", labels={"app": "db"})
    small = pod("cron")
    important = priority("db", priority=1000, podSelector={"matchLabels": {"app": "db"}})
    outcome = decide(snapshot([(db, 10 * Gi), (small, 2 * Gi)], priorities=[important]))
    assert [v.group.name for v in outcome.victims] == ["default/cron"]
    alone = decide(snapshot([(db, 10 * Gi)], priorities=[important]))
    assert [v.group.name for v in alone.victims] == ["default/db"]


def test_expected_big_groups_are_judged_against_their_allowance() -> None:
    """An 8Gi cache that is expected to use 10Gi ranks after a 1Gi pod that was expected
    to use 256Mi: size alone does not make a victim."""
    cache = pod("cache", labels={"app": "cache"})
    leaky = pod("leaky", requests_bytes=256 * Mi)
    outcome = decide(snapshot(
        [(cache, 8 * Gi), (leaky, 1 * Gi)],
        priorities=[priority("cache", allowance="10Gi",
                             podSelector={"matchLabels": {"app": "cache"}})],
    ))
    assert [r.group.name for r in outcome.ranking] == ["default/leaky", "default/cache"]
    assert "over its allowance" in outcome.ranking[0].reason


def test_whole_group_is_the_victim() -> None:
    """Every pod of the chosen group is a victim, not the biggest process or pod of it."""
    pods = [owned(f"job-{i}", "tenant", "Job", "etl") for i in range(5)]
    outcome = decide(snapshot([(p, 400 * Mi) for p in pods] + [(pod("api", "tenant"), 1 * Gi)],
                              priorities=[WORKLOAD]))
    assert outcome.victims[0].group.name == "tenant/Job/etl"
    assert {p.name for p in outcome.victims[0].group.pods} == {f"job-{i}" for i in range(5)}
