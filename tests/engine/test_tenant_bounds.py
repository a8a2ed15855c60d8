"""Every claim a tenant makes is bounded by the tenants[] entry that applies to its
namespace: priority, Never, Avoid and a quantity allowance. Each bound is shown on the
ranking and reported, and a tenant cannot use one claim to get round another."""

from __future__ import annotations

from typing import Any

import pytest

from oomguard.engine import OwnerRef, decide
from oomguard.engine.priorities import resolve

from builders import Gi, owner, pod, policy, priority, snapshot

BRONZE = {"bronze": {"tier": "bronze"}, "gold": {"tier": "gold"}}


def _bronze(**entry: Any) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"tier": "bronze"}}, **entry}


@pytest.mark.parametrize(("entry", "claim", "preference", "allowance", "flags"), [
    # (the bronze entry, what the tenant claims, then what applies and is reported)
    ({}, {"preference": "Avoid"}, None, "Requests", {"avoid_denied": True}),
    ({"allowAvoid": True}, {"preference": "Avoid"}, "Avoid", "Requests", {}),
    ({}, {"preference": "Never"}, None, "Requests",
     {"never_denied": True, "avoid_denied": True}),
    ({"allowAvoid": True}, {"preference": "Never"}, "Avoid", "Requests",
     {"never_denied": True}),
    ({"allowNever": True}, {"preference": "Never"}, "Never", "Requests", {}),
    ({}, {"preference": "Prefer"}, "Prefer", "Requests", {}),
    ({"maxAllowance": "8Gi"}, {"allowance": "1Pi"}, None, "8Gi",
     {"allowance_capped_from": "1Pi"}),
    ({"maxAllowance": "8Gi"}, {"allowance": "2Gi"}, None, "2Gi", {}),
    ({"maxAllowance": "8Gi"}, {"allowance": "Limits"}, None, "Limits", {}),
    ({}, {"allowance": "1Pi"}, None, "1Pi", {}),  # no cap in the entry
])
def test_a_claim_is_bounded_by_the_tenants_entry(
        entry: dict[str, Any], claim: dict[str, Any], preference: str | None,
        allowance: str, flags: dict[str, Any]) -> None:
    p = pod("x", "bronze")
    r = resolve([p], [priority("claim", "bronze", **claim)], BRONZE,
                policy(tenants=[_bronze(**entry)]))
    assert (r.by_pod[p.uid].preference, r.by_pod[p.uid].allowance) == (preference, allowance)
    report = r.reports[0]
    reported = {"never_denied": report.never_denied, "avoid_denied": report.avoid_denied,
                "allowance_capped_from": report.allowance_capped_from}
    assert reported == {"never_denied": False, "avoid_denied": False,
                        "allowance_capped_from": None, **flags}


def test_a_namespace_no_entry_matches_may_avoid_but_not_never() -> None:
    p, q = pod("x", "open"), pod("y", "open")
    r = resolve([p, q], [priority("a", "open", preference="Avoid", podSelector={
        "matchLabels": {"k": "x"}}), priority("n", "open", preference="Never")],
        {}, policy(tenants=[_bronze(maxPriority=100)]))
    assert r.by_pod[q.uid].preference == "Avoid"  # Never denied, Avoid allowed


def test_avoid_does_not_get_a_clamped_tenant_behind_a_more_important_one() -> None:
    """Preference ranks before priority: a bronze tenant clamped to priority 100 that
    says Avoid would otherwise go after gold's priority-500 group."""
    leak = pod("leak", "bronze", labels={"app": "leak"})
    gold = pod("api", "gold", labels={"app": "api"})
    outcome = decide(snapshot(
        [(leak, 5 * Gi), (gold, 1 * Gi)],
        namespaces=BRONZE,
        policies=[policy(tenants=[_bronze(maxPriority=100),
                                  {"namespaceSelector": {"matchLabels": {"tier": "gold"}},
                                   "maxPriority": 1000, "allowAvoid": True}])],
        priorities=[priority("mine", "bronze", priority=1000, preference="Avoid"),
                    priority("api", "gold", priority=500)]))
    assert [r.group.name for r in outcome.ranking] == ["bronze/leak", "gold/api"]
    assert [v.group.name for v in outcome.victims] == ["bronze/leak"]


@pytest.mark.parametrize("hierarchy", ["Flat", "Namespace"])
@pytest.mark.parametrize("ranking", ["Priority", "KubeletCompatible"])
def test_an_inflated_allowance_does_not_hide_a_leak(hierarchy: str, ranking: str) -> None:
    """allowance: 1Pi would put a leaking group within its allowance, behind every other
    tenant's group: the tenant's maxAllowance caps it."""
    leak = pod("leak", "bronze", requests_bytes=1 * Gi)
    other = pod("web", "gold", requests_bytes=1 * Gi)
    outcome = decide(snapshot(
        [(leak, 6 * Gi), (other, 2 * Gi)], namespaces=BRONZE,
        policies=[policy(ranking=ranking, hierarchy=hierarchy,
                         tenants=[_bronze(maxAllowance="2Gi")])],
        priorities=[priority("huge", "bronze", allowance="1Pi")]))
    assert outcome.ranking[0].group.name == "bronze/leak"
    assert outcome.ranking[0].group.allowance_bytes == 2 * Gi


def test_a_quantity_allowance_is_never_above_the_groups_limits() -> None:
    """Where every pod of the group has memory limits, it cannot use more than them:
    claiming more only hides usage."""
    limited = pod("leak", "bronze", requests_bytes=1 * Gi, limits_bytes=3 * Gi, limited=True)
    unlimited = pod("other", "bronze", requests_bytes=1 * Gi, limits_bytes=3 * Gi)
    outcome = decide(snapshot(
        [(limited, 2 * Gi), (unlimited, 2 * Gi)], namespaces=BRONZE,
        priorities=[priority("huge", "bronze", allowance="1Pi")]))
    allowance = {r.group.name: r.group.allowance_bytes for r in outcome.ranking}
    assert allowance == {"bronze/leak": 3 * Gi, "bronze/other": 2**50}


def test_mixed_claims_do_not_lift_a_group_above_its_limits() -> None:
    """Found by the property test below: one pod of a workload under an object saying
    Limits and another under one saying 10Gi added 10Gi (capped) to the first pod's limit,
    so the group's allowance exceeded what its pods can use at all."""
    job = owner("Job", "etl", "bronze")
    controller = OwnerRef(job.kind, job.name, job.uid)
    a = pod("etl-a", "bronze", labels={"part": "a"}, controller=controller,
            requests_bytes=1 * Gi, limits_bytes=1 * Gi, limited=True)
    b = pod("etl-b", "bronze", labels={"part": "b"}, controller=controller,
            requests_bytes=1 * Gi, limits_bytes=1 * Gi, limited=True)
    outcome = decide(snapshot(
        [(a, 1 * Gi), (b, 1 * Gi)], namespaces=BRONZE, owners={job.uid: job},
        priorities=[
            priority("a", "bronze", podSelector={"matchLabels": {"part": "a"}},
                     allowance="Limits", group={"by": "Workload"}),
            priority("b", "bronze", podSelector={"matchLabels": {"part": "b"}},
                     allowance="10Gi", group={"by": "Workload"})]))
    [group] = [r.group for r in outcome.ranking]
    assert (group.name, group.allowance_bytes) == ("bronze/Job/etl", 2 * Gi)


def test_writing_nothing_does_not_lift_a_tenant_above_its_bound() -> None:
    """Found by the property test below: a tenant bounded to maxPriority -100 stayed at
    the default priority 0 by writing no OOMPriority at all, and so went after another
    tenant's group at -50."""
    bronze = pod("idle", "bronze", requests_bytes=1 * Gi)
    gold = pod("web", "gold", requests_bytes=1 * Gi)
    outcome = decide(snapshot(
        [(bronze, 2 * Gi), (gold, 2 * Gi)], namespaces=BRONZE,
        policies=[policy(tenants=[_bronze(maxPriority=-100)])],
        priorities=[priority("low", "gold", priority=-50)]))
    assert [(r.group.name, r.group.priority) for r in outcome.ranking] == [
        ("bronze/idle", -100), ("gold/web", -50)]
