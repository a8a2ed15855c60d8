"""Groups: by pod, by top-level workload, by label; hierarchical usage and allowance."""

from __future__ import annotations

import pytest

from oomguard.api import MemoryUsage, PodMemory
from oomguard.engine import Pod, decide, join_members_elsewhere
from oomguard.engine.grouping import Workloads, may_join

from builders import Gi, Mi, owned, owner, pod, priority, snapshot


def _groups(s):  # type: ignore[no-untyped-def]
    return {r.group.name: r.group for r in decide(s).ranking}


def test_workload_follows_owners_to_the_top_level_controller() -> None:
    pods = [owned(f"web-{i}", "shop", "ReplicaSet", "web-abc") for i in range(3)]
    owners = {o.uid: o for o in [
        owner("ReplicaSet", "web-abc", "shop", parent=("Deployment", "web")),
        owner("Deployment", "web", "shop"),
    ]}
    groups = _groups(snapshot([(p, 100 * Mi) for p in pods], owners=owners,
                              priorities=[priority("all", "shop", group={"by": "Workload"})]))
    assert list(groups) == ["shop/Deployment/web"]
    assert groups["shop/Deployment/web"].usage_bytes == 300 * Mi


def test_workload_without_known_owners_uses_the_nearest_controller() -> None:
    pods = [owned("a", "ns", "ReplicaSet", "rs-1"), owned("b", "ns", "ReplicaSet", "rs-2")]
    groups = _groups(snapshot([(p, 1 * Gi) for p in pods],
                              priorities=[priority("all", "ns", group={"by": "Workload"})]))
    assert sorted(groups) == ["ns/ReplicaSet/rs-1", "ns/ReplicaSet/rs-2"]


def test_workload_pod_without_controller_is_its_own_group() -> None:
    groups = _groups(snapshot([(pod("bare", "ns"), 1 * Gi)],
                              priorities=[priority("all", "ns", group={"by": "Workload"})]))
    assert list(groups) == ["ns/bare"]


def test_label_groups_pods_sharing_the_value_and_leaves_unlabelled_alone() -> None:
    pods = [pod("a", labels={"team": "x"}), pod("b", labels={"team": "x"}),
            pod("c", labels={"team": "y"}), pod("d")]
    groups = _groups(snapshot([(p, 1 * Gi) for p in pods],
                              priorities=[priority("t", group={"by": "Label", "label": "team"})]))
    assert sorted(groups) == ["default/d", "default/team=x", "default/team=y"]
    assert groups["default/team=x"].usage_bytes == 2 * Gi


def test_group_priority_is_the_highest_and_allowance_the_sum() -> None:
    a = pod("a", labels={"team": "x", "role": "main"}, requests_bytes=1 * Gi)
    b = pod("b", labels={"team": "x"}, requests_bytes=2 * Gi)
    groups = _groups(snapshot(
        [(a, 1 * Gi), (b, 1 * Gi)],
        priorities=[priority("team", priority=10, group={"by": "Label", "label": "team"}),
                    priority("main", priority=90, group={"by": "Label", "label": "team"},
                             podSelector={"matchLabels": {"role": "main"}})],
    ))
    g = groups["default/team=x"]
    assert (g.priority, g.allowance_bytes, g.usage_bytes) == (90, 3 * Gi, 2 * Gi)


def test_quantity_allowance_is_per_group_on_the_node() -> None:
    pods = [owned(f"w{i}", "ns", "StatefulSet", "db") for i in range(4)]
    groups = _groups(snapshot([(p, 1 * Gi) for p in pods], priorities=[
        priority("db", "ns", allowance="6Gi", group={"by": "Workload"})]))
    assert groups["ns/StatefulSet/db"].allowance_bytes == 6 * Gi


def test_usage_counts_only_what_the_kernel_cannot_reclaim() -> None:
    p = pod("p")
    u = PodMemory(uid=p.uid, usage=MemoryUsage(
        anon_bytes=100, file_bytes=10_000, shmem_bytes=5_000, unevictable_bytes=20,
        kernel_bytes=3, swap_bytes=7, working_set_bytes=99_999))
    s = snapshot([], extra_usage=[u])
    s = type(s)(**{**s.__dict__, "pods": [p]})
    assert _groups(s)["default/p"].usage_bytes == 130


ELSEWHERE = {"node_name": "node-b"}
WORKLOAD_OWNERS = {o.uid: o for o in [
    owner("ReplicaSet", "web-1", "shop", parent=("Deployment", "web")),
    owner("ReplicaSet", "web-2", "shop", parent=("Deployment", "web")),
    owner("Deployment", "web", "shop"),
]}


@pytest.mark.parametrize(("elsewhere", "joins"), [
    (owned("web-2-x", "shop", "ReplicaSet", "web-2", **ELSEWHERE), True),  # other revision
    (owned("api-x", "shop", "ReplicaSet", "api-1", **ELSEWHERE), False),  # other workload
    (owned("web-2-y", "blog", "ReplicaSet", "web-2", **ELSEWHERE), False),  # other namespace
    (pod("etl-x", "shop", labels={"app": "etl"}, **ELSEWHERE), True),  # same label value
    (pod("etl-y", "shop", labels={"app": "report"}, **ELSEWHERE), False),  # other value
    (pod("etl-z", "shop", **ELSEWHERE), False),  # unlabelled
    (pod("etl-w", "blog", labels={"app": "etl"}, **ELSEWHERE), False),  # other namespace
])
def test_may_join_finds_the_members_of_victim_groups_on_other_nodes(
    elsewhere: Pod, joins: bool
) -> None:
    """The operator's cheap filter for pods on other nodes: a Workload group's pods of any
    revision, a Label group's pods with the same value, in the group's namespace."""
    here = [owned("web-1-a", "shop", "ReplicaSet", "web-1"),
            pod("etl-a", "shop", labels={"app": "etl"})]
    groups = _groups(snapshot([(p, 1 * Gi) for p in here], owners=WORKLOAD_OWNERS, priorities=[
        priority("web", "shop", group={"by": "Workload"}),
        priority("etl", "shop", group={"by": "Label", "label": "app"},
                 podSelector={"matchLabels": {"app": "etl"}}),
    ]))
    assert sorted(groups) == ["shop/Deployment/web", "shop/app=etl"]
    member = may_join(groups.values(), Workloads(WORKLOAD_OWNERS))
    assert member(elsewhere) is joins


def test_victims_are_joined_by_their_members_elsewhere_as_their_own_settings_group_them(
) -> None:
    """What the operator does after deciding on a node's own pods: the victim group gets
    its running members of other nodes, grouped as their own settings say."""
    here = owned("web-1-a", "shop", "ReplicaSet", "web-1")
    snap = snapshot([(here, 1 * Gi)], owners=WORKLOAD_OWNERS, priorities=[
        priority("web", "shop", group={"by": "Workload"}),
        priority("canary", "shop", podSelector={"matchLabels": {"track": "canary"}}),
    ])
    [victim] = [v.group for v in decide(snap).victims]
    member = owned("web-2-x", "shop", "ReplicaSet", "web-2", **ELSEWHERE)
    leaving = owned("web-2-y", "shop", "ReplicaSet", "web-2", terminating=True, **ELSEWHERE)
    own_group = owned("web-2-z", "shop", "ReplicaSet", "web-2", labels={"track": "canary"},
                      **ELSEWHERE)  # grouped by Pod by its own settings
    join_members_elsewhere([victim], [member, leaving, own_group, here], snap)
    assert [p.name for p in victim.elsewhere] == ["web-2-x"]
