"""Matching OOMPriority objects to pods: selectors, overlaps, tenant bounds."""

from __future__ import annotations

from oomguard.engine.priorities import resolve

from builders import pod, policy, priority


def test_match_labels_and_expressions() -> None:
    web = pod("web", "shop", labels={"app": "web", "tier": "front"})
    db = pod("db", "shop", labels={"app": "db"})
    other_ns = pod("web", "blog", labels={"app": "web", "tier": "front"})
    obj = priority("front", "shop", priority=7, podSelector={
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]},
                             {"key": "canary", "operator": "DoesNotExist"}],
    })
    r = resolve([web, db, other_ns], [obj], {}, policy())
    assert set(r.by_pod) == {web.uid}
    assert r.by_pod[web.uid].priority == 7
    assert r.reports[0].matched_pods == 1


def test_pods_are_told_apart_by_the_labels_selectors_read_even_when_absent() -> None:
    """Matching is done once per combination of the values of the keys the selectors read:
    pods differing only in other labels share a result, a missing key is not a value."""
    plain = pod("web-1", "shop", labels={"app": "web", "pod-template-hash": "a"})
    sibling = pod("web-2", "shop", labels={"app": "web", "pod-template-hash": "b"})
    canary = pod("web-3", "shop", labels={"app": "web", "canary": ""})
    no_app = pod("other", "shop", labels={"pod-template-hash": "a"})
    obj = priority("stable", "shop", priority=5, podSelector={
        "matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["db"]},
                             {"key": "canary", "operator": "DoesNotExist"}],
    })
    r = resolve([canary, plain, no_app, sibling], [obj], {}, policy())
    assert set(r.by_pod) == {plain.uid, sibling.uid, no_app.uid}
    assert r.reports[0].matched_pods == 3


def test_overlap_most_specific_wins_then_name_and_is_reported_on_all() -> None:
    p = pod("web", labels={"app": "web", "team": "x"})
    broad = priority("a-broad", priority=1)
    narrow = priority("z-narrow", priority=2, podSelector={"matchLabels": {"app": "web"}})
    twin = priority("m-twin", priority=3, podSelector={"matchLabels": {"team": "x"}})
    r = resolve([p], [broad, twin, narrow], {}, policy())
    assert r.by_pod[p.uid].source == "m-twin"  # as specific as z-narrow, first by name
    overlaps = {rep.name: rep.overlaps for rep in r.reports}
    assert overlaps == {
        "a-broad": ("m-twin", "z-narrow"),
        "m-twin": ("a-broad", "z-narrow"),
        "z-narrow": ("a-broad", "m-twin"),
    }


def test_tenant_clamps_priority_and_reports_it() -> None:
    p = pod("x", "bronze-ns")
    pol = policy(tenants=[
        {"namespaceSelector": {"matchLabels": {"tier": "gold"}}, "maxPriority": 1000},
        {"namespaceSelector": {"matchLabels": {"tier": "bronze"}}, "maxPriority": 100},
    ])
    r = resolve([p], [priority("greedy", "bronze-ns", priority=900)],
                {"bronze-ns": {"tier": "bronze"}}, pol)
    assert r.by_pod[p.uid].priority == 100
    assert (r.reports[0].effective_priority, r.reports[0].clamped_from) == (100, 900)


def test_first_matching_tenant_applies_and_namespace_name_label_is_implicit() -> None:
    pol = policy(tenants=[
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "vip"}},
         "allowNever": True},
        {"maxPriority": 0},
    ])
    vip, plain = pod("a", "vip"), pod("b", "plain")
    r = resolve([vip, plain], [priority("n", "vip", preference="Never", priority=50),
                               priority("n", "plain", preference="Never", priority=50)],
                {}, pol)
    assert (r.by_pod[vip.uid].preference, r.by_pod[vip.uid].priority) == ("Never", 50)
    # Never not allowed would be Avoid, and Avoid is not allowed either: no preference
    assert (r.by_pod[plain.uid].preference, r.by_pod[plain.uid].priority) == (None, 0)


def test_pods_without_priority_object_get_defaults() -> None:
    r = resolve([pod("lonely")], [], {}, policy())
    assert r.by_pod == {} and r.reports == []


def test_a_preference_applies_only_to_pods_of_its_own_namespace() -> None:
    """systemd-oomd's test_oomd_fetch_cgroup_oom_preference reads a cgroup's avoid/omit
    marks only from a writer who owns it. Here the owner is the namespace: an OOMPriority
    that selects every pod, with labels a pod of another namespace carries, decides
    nothing there (and a pod's annotations cannot claim anything: the engine's Pod does
    not even carry them)."""
    mine = pod("db", "shop", labels={"app": "db"})
    theirs = pod("batch", "jobs", labels={"app": "db"})
    r = resolve([mine, theirs], [
        priority("everyone", "jobs", preference="Prefer", priority=-1000),
        priority("dbs", "jobs", podSelector={"matchLabels": {"app": "db"}}, priority=-900),
    ], {}, policy())
    assert set(r.by_pod) == {theirs.uid}
    assert r.by_pod[theirs.uid].source == "dbs"
    assert sum(report.matched_pods for report in r.reports) == 1
