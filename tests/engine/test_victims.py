"""Victim sets: cover the need, count what is already being released, wait for in-flight
victims, and escalate only under Hard pressure after the cooldown."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from oomguard.api import VictimStatus
from oomguard.engine import Pod, Snapshot, decide

from builders import NOW, Gi, Mi, decision, pod, policy, priority, snapshot

# Default policy on 16Gi: available 1Gi is Soft pressure; need = 2.4Gi - 1Gi = 1.4Gi.


def _names(outcome):  # type: ignore[no-untyped-def]
    return [v.group.name for v in outcome.victims]


def test_victims_are_the_shortest_prefix_covering_the_need() -> None:
    pods = [(pod(f"p{i}", requests_bytes=0), (5 - i) * 400 * Mi) for i in range(5)]
    outcome = decide(snapshot(pods))
    # ranking by usage: 2000Mi, 1600Mi, ...: the first alone covers 1.4Gi.
    assert _names(outcome) == ["default/p0"]
    small = decide(snapshot([(pod(f"s{i}"), 500 * Mi) for i in range(5)]))
    assert len(small.victims) == 3  # 3 x 500Mi >= 1.4Gi > 2 x 500Mi
    assert small.expected_reclaim_bytes == 1500 * Mi


def test_no_pressure_no_victims_but_a_full_ranking() -> None:
    outcome = decide(snapshot([(pod("a"), 1 * Gi)], available=8 * Gi))
    assert (outcome.pressure, outcome.need_bytes, outcome.victims) == ("None", 0, [])
    assert outcome.action is None
    assert len(outcome.ranking) == 1


def test_everything_is_taken_when_not_enough_memory_is_eligible() -> None:
    outcome = decide(snapshot([(pod("a"), 100 * Mi), (pod("b"), 200 * Mi)]))
    assert _names(outcome) == ["default/b", "default/a"]


def test_groups_holding_no_memory_are_not_killed_for_nothing() -> None:
    idle = pod("idle", labels={"x": "1"})
    outcome = decide(snapshot([(idle, 0), (pod("big"), 2 * Gi)], priorities=[
        priority("idle", preference="Prefer", podSelector={"matchLabels": {"x": "1"}})]))
    assert outcome.ranking[0].group.name == "default/idle"
    assert _names(outcome) == ["default/big"]


def test_terminating_pods_memory_counts_toward_the_need() -> None:
    leaving = pod("leaving", terminating=True)
    outcome = decide(snapshot([(leaving, 1 * Gi), (pod("a"), 300 * Mi), (pod("b"), 200 * Mi)]))
    assert outcome.releasing_bytes == 1 * Gi
    # 1.4Gi - 1Gi = 0.4Gi left: a (300Mi) is not enough, b joins it.
    assert _names(outcome) == ["default/a", "default/b"]


def test_action_follows_pressure_level() -> None:
    spec = {"actions": {"soft": "Kill", "hard": "Evict"}}
    soft = decide(snapshot([(pod("a"), 2 * Gi)], policies=[policy(**spec)]))
    hard = decide(snapshot([(pod("a"), 2 * Gi)], available=100 * Mi, policies=[policy(**spec)]))
    assert (soft.pressure, soft.action) == ("Soft", "Kill")
    assert (hard.pressure, hard.action) == ("Hard", "Evict")


def test_dry_run_policy_still_decides() -> None:
    outcome = decide(snapshot([(pod("a"), 2 * Gi)], policies=[policy(mode="DryRun")]))
    assert outcome.mode == "DryRun" and _names(outcome) == ["default/a"]


@pytest.mark.parametrize(
    ("available", "age_seconds", "phase", "mode", "blocked"),
    [
        (1 * Gi, 1, "Executing", "Enforce", True),  # victim still there: wait
        (1 * Gi, 100, "Executing", "Enforce", True),  # Soft: wait, within the bound
        (1 * Gi, 3600, "Executing", "Enforce", False),  # its agent crashed: not forever
        (1 * Gi, 3600, None, "Enforce", False),  # its operator crashed before the status
        (1 * Gi, 100, None, "Enforce", True),
        (1 * Gi, 3600, "Completed", "Enforce", False),  # the kubelet restarted the pod
        (100 * Mi, 1, "Executing", "Enforce", True),  # Hard, within cooldown: wait
        (100 * Mi, 15, "Executing", "Enforce", False),  # Hard after cooldown: escalate
        (100 * Mi, 1, "Completed", "Enforce", True),  # completed, cgroup still there
        (1 * Gi, 1, "Failed", "Enforce", False),  # failed: select again
        (1 * Gi, 1, "DryRun", "DryRun", False),  # dry runs act on nothing
    ],
    ids=["soft-wait", "soft-wait-long", "executing-abandoned", "no-status-abandoned",
         "no-status-recent", "completed-pod-restarted", "hard-in-cooldown",
         "hard-after-cooldown",
         "completed-still-present", "failed", "dry-run"],
)
def test_in_flight_victims_block_new_victims(available: int, age_seconds: int,
                                              phase: str | None,
                                              mode: str, blocked: bool) -> None:
    old = pod("old")
    started = NOW - timedelta(seconds=age_seconds)
    outcome = decide(snapshot(
        [(old, 2 * Gi), (pod("next"), 3 * Gi)], available=available,
        decisions=[decision("d1", [old], phase=phase, started=started, mode=mode)],
    ))
    assert (outcome.blocked_by == "d1") is blocked
    assert _names(outcome) == ([] if blocked else ["default/next"])


def test_victim_gone_unblocks_the_node() -> None:
    gone = pod("gone")
    outcome = decide(snapshot([(pod("next"), 3 * Gi)], decisions=[decision("d1", [gone])]))
    assert outcome.blocked_by is None and _names(outcome) == ["default/next"]


def test_decisions_for_other_nodes_do_not_block() -> None:
    old = pod("old")
    d = decision("d1", [old])
    d = d.model_copy(update={"spec": d.spec.model_copy(update={"node_name": "node-b"})})
    outcome = decide(snapshot([(old, 2 * Gi)], decisions=[d]))
    assert outcome.blocked_by is None and _names(outcome) == ["default/old"]


@pytest.mark.parametrize(("age_seconds", "excluded"), [(1, True), (15, False)],
                         ids=["within-cooldown", "after-cooldown"])
def test_pod_whose_eviction_was_refused_is_left_alone_for_the_cooldown(
    age_seconds: int, excluded: bool
) -> None:
    """Under Soft pressure a disruption budget's 429 makes the next candidate the victim."""
    guarded, other = pod("guarded"), pod("other")
    refused = decision("d1", [guarded], phase="Failed",
                       started=NOW - timedelta(seconds=age_seconds))
    assert refused.status is not None
    refused = refused.model_copy(update={"status": refused.status.model_copy(update={
        "victims": [VictimStatus(namespace="default", name="guarded", uid=guarded.uid,
                                 outcome="Refused", message="disruption budget")]})})
    outcome = decide(snapshot([(guarded, 3 * Gi), (other, 2 * Gi)], decisions=[refused]))
    reasons = {e.pod: e.reason for e in outcome.excluded}
    if excluded:
        assert reasons == {guarded.ref: "EvictionRefused"}
        assert _names(outcome) == ["default/other"]
    else:
        assert reasons == {}
        assert _names(outcome) == ["default/guarded"]


def _unreadable(broken: Pod) -> Snapshot:
    """The node: `broken`, preferred for killing, whose usage could not be read, and an
    innocent pod using 3Gi."""
    full = snapshot([(broken, 0), (pod("innocent"), 3 * Gi)],
                    priorities=[priority("p", preference="Prefer",
                                         podSelector={"matchLabels": {"app": "broken"}})])
    return replace(full, usage=[u for u in full.usage if u.uid != broken.uid],
                   unmeasured=[broken.uid])


def test_an_unmeasured_pod_is_not_passed_over_for_an_innocent_one() -> None:
    """Its memory.stat could not be read. Ranked first (Prefer), it was counted at 0 bytes,
    skipped as holding nothing, and the next pod was killed in its place. It is counted at
    what it may use (its limit, else its request), marked, and taken."""
    broken = pod("broken", labels={"app": "broken"}, requests_bytes=1 * Gi,
                 limits_bytes=2 * Gi, limited=True)
    outcome = decide(_unreadable(broken))
    first = outcome.ranking[0].group
    assert (first.name, first.usage_bytes, first.unmeasured) == (
        "default/broken", 2 * Gi, [broken.uid])
    assert _names(outcome)[0] == "default/broken"


def test_an_unmeasured_pod_without_requests_is_still_taken_first() -> None:
    broken = pod("broken", labels={"app": "broken"})  # no requests, no limits: 0 bytes
    outcome = decide(_unreadable(broken))
    assert _names(outcome)[0] == "default/broken"  # not skipped for holding "nothing"


@pytest.mark.parametrize(("pods_and_usage", "fields", "why"), [
    ([], {}, "no pods on the node"),
    ([(pod("dns", "kube-system"), 2 * Gi), (pod("etl", "jobs", terminating=True), 0)], {},
     "every pod is excluded (ProtectedNamespace 1, Terminating 1)"),
    ([(pod("db", "shop"), 2 * Gi)],
     {"priorities": [priority("keep", "shop", preference="Never")],
      "policies": [policy(tenants=[{"allowNever": True}])]},
     "every pod is excluded (Never 1)"),
    ([(pod("idle"), 0)], {}, "no eligible group holds any memory"),
    ([(pod("idle"), 0), (pod("leaving", terminating=True), 8 * Gi)], {},
     "memory already being released (8Gi) covers the need"),
], ids=["empty", "excluded", "never", "no-memory", "releasing"])
def test_under_pressure_without_a_victim_the_outcome_says_why(
    pods_and_usage: list[tuple[Pod, int]], fields: dict[str, object], why: str
) -> None:
    outcome = decide(snapshot(pods_and_usage, **fields))
    assert (outcome.pressure, outcome.victims, outcome.no_victim) == ("Soft", [], why)


def test_with_a_victim_or_no_pressure_there_is_nothing_to_explain() -> None:
    a = pod("a")
    assert decide(snapshot([(a, 3 * Gi)])).no_victim is None
    assert decide(snapshot([(a, 3 * Gi)], available=8 * Gi)).no_victim is None
