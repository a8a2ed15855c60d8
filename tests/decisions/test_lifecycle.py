"""The OOMDecision lifecycle, as data: each state change the agent, the operator and
standalone mode make, from one module (oomguard.decisions)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from oomguard.api import OOMDecision
from oomguard.decisions import (
    EVICTED,
    VictimResult,
    abandoned,
    claimed,
    escalated,
    executable,
    finished,
    finished_phase,
    for_create,
    left_to_evict,
    on_node,
    substituted,
    with_evictions,
)

from builders import NODE, NOW

OTHER = "node-b"


def decision(*, action: str = "Kill", phase: str = "Pending", mode: str = "Enforce",
             outcomes: dict[str, str] | None = None, conditions: tuple[str, ...] = (),
             age: timedelta = timedelta(0)) -> OOMDecision:
    """Pods a-0 (here), a-1 (node unknown: here), b-0 (on another node)."""
    pods = [("a-0", NODE), ("a-1", ""), ("b-0", OTHER)]
    outcomes = outcomes or {}
    return OOMDecision.model_validate({
        "metadata": {"name": "d-1", "uid": "u-d-1",
                     "creationTimestamp": (NOW - age).isoformat()},
        "spec": {"nodeName": NODE, "decidedBy": "operator", "action": action, "mode": mode,
                 "trigger": {"pressure": "Hard", "availableBytes": 0, "needBytes": 1},
                 "victims": [{"name": "ns/Job/a", "namespace": "ns", "expectedReclaimBytes": 1,
                              "pods": [{"namespace": "ns", "name": n, "uid": f"u-{n}",
                                        "nodeName": where} for n, where in pods]}]},
        "status": {"phase": phase, "victims": [
            {"namespace": "ns", "name": n, "uid": f"u-{n}",
             "outcome": outcomes.get(n, "Pending")} for n, _ in pods],
            "conditions": [{"type": c, "status": "True"} for c in conditions]},
    })


def test_the_victims_on_a_node_include_those_whose_node_is_unknown() -> None:
    assert on_node(decision(), NODE) == {"u-a-0", "u-a-1"}
    assert on_node(decision(), OTHER) == {"u-a-1", "u-b-0"}


@pytest.mark.parametrize(("change", "ours"), [
    ({}, True),
    ({"status": {"phase": "Executing"}}, False),
    ({"status": {"phase": "Completed"}}, False),
    ({"spec": {"nodeName": OTHER}}, False),
    ({"spec": {"mode": "DryRun"}}, False),
    ({"spec": {"action": "Evict"}}, False),
    ({"spec": {"action": "KillAndEvict"}}, True),
])
def test_what_an_agent_executes(change: dict[str, Any], ours: bool) -> None:
    wire = decision().wire()
    for part, fields in change.items():
        wire[part].update(fields)
    assert executable(wire, NODE) is ours


def test_a_claim_starts_execution_or_expires_an_old_decision() -> None:
    fresh = claimed(decision(), now=NOW, max_age=60)
    assert (fresh.phase, fresh.start_time) == ("Executing", NOW)
    old = claimed(decision(age=timedelta(minutes=2)), now=NOW, max_age=60)
    assert (old.phase, old.completion_time) == ("Failed", NOW)
    assert [(c.type, c.reason) for c in old.conditions] == [("Expired", "Expired")]


@pytest.mark.parametrize(("outcomes", "phase"), [
    (["Killed", "AlreadyGone", "Pending"], "Completed"),
    (["Evicted", "Evicted"], "Completed"),
    (["Killed", "Refused"], "Failed"),
    (["Killed", "Failed"], "Failed"),
])
def test_the_phase_a_decision_finishes_in(outcomes: list[str], phase: str) -> None:
    status = decision(outcomes=dict(zip(("a-0", "a-1", "b-0"), outcomes, strict=False)))
    assert status.status is not None
    assert finished_phase(status.status.victims[:len(outcomes)]) == phase


def test_finishing_applies_each_result_and_sums_what_was_reclaimed() -> None:
    status = decision(phase="Executing").status
    assert status is not None
    done = finished(status, {"u-a-0": VictimResult("Killed", reclaimed_bytes=100),
                             "u-a-1": VictimResult("AlreadyGone", "gone")},
                    now=NOW, duration_seconds=0.5)
    assert done.phase == "Completed"  # b-0 is left Pending: on another node
    assert [(v.name, v.outcome) for v in done.victims] == [
        ("a-0", "Killed"), ("a-1", "AlreadyGone"), ("b-0", "Pending")]
    assert (done.reclaimed_bytes, done.duration_seconds, done.completion_time) == (
        100, 0.5, NOW)


def test_a_substituted_action_is_said() -> None:
    changed = substituted(decision(action="Evict"), "Kill", reason="Standalone",
                          message="no API server")
    assert changed.spec.action == "Kill"
    assert changed.status is not None
    assert [(c.type, c.reason) for c in changed.status.conditions] == [
        ("ActionSubstituted", "Standalone")]


def test_a_refused_eviction_escalates_to_a_new_pending_kill() -> None:
    refused = decision(action="Evict", phase="Failed", outcomes={"a-0": "Refused"})
    kill = escalated(refused, at=NOW + timedelta(seconds=1))
    assert kill.metadata.name != refused.metadata.name
    assert kill.spec.action == "Kill"
    assert kill.status is not None
    assert kill.status.phase == "Pending"
    assert {v.outcome for v in kill.status.victims} == {"Pending"}
    assert [c.type for c in kill.status.conditions] == ["Escalated"]


@pytest.mark.parametrize(("fields", "left"), [
    ({"action": "KillAndEvict", "phase": "Completed",
      "outcomes": {"a-0": "Killed", "a-1": "AlreadyGone"}}, ["a-0", "b-0"]),
    ({"action": "Kill", "phase": "Completed", "outcomes": {"a-0": "Killed"}}, ["b-0"]),
    ({"action": "Kill", "phase": "Executing"}, []),
    ({"action": "Kill", "phase": "Completed", "conditions": [EVICTED]}, []),
    ({"action": "Kill", "phase": "DryRun", "mode": "DryRun"}, []),
    ({"action": "Evict", "phase": "Completed"}, []),
])
def test_what_the_operator_evicts_after_a_kill(fields: dict[str, Any], left: list[str]) -> None:
    assert [v.name for v in left_to_evict(decision(**fields))] == left


def test_evictions_after_a_kill_keep_the_kill_and_say_evicted() -> None:
    done = decision(action="KillAndEvict", phase="Completed", outcomes={"a-0": "Killed"})
    fields = with_evictions(done, {"u-a-0": VictimResult("Evicted"),
                                   "u-b-0": VictimResult("Refused", "budget")}, at=NOW)
    assert [(v["name"], v["outcome"]) for v in fields["victims"]] == [
        ("a-0", "Killed"), ("a-1", "Pending"), ("b-0", "Refused")]
    assert [c["type"] for c in fields["conditions"]] == [EVICTED]


def test_a_create_leaves_the_status_for_its_subresource() -> None:
    body, status = for_create(decision())
    assert "status" not in body
    assert status is not None and status["phase"] == "Pending"


@pytest.mark.parametrize(("phase", "age_seconds", "ends"), [
    ("Executing", 3600, True),  # its agent crashed mid-kill
    ("Pending", 3600, True),  # no agent ever claimed it
    ("Executing", 60, False),  # still within the bound
    ("Completed", 3600, False),  # finished: nothing to end
    ("Failed", 3600, False),
])
def test_an_abandoned_decision_is_ended_with_the_reason(phase: str, age_seconds: int,
                                                         ends: bool) -> None:
    old = decision(phase=phase, age=timedelta(seconds=age_seconds))
    ended = abandoned(old, now=NOW)
    if not ends:
        assert ended is None
        return
    assert ended is not None and ended["phase"] == "Failed"
    [condition] = ended["conditions"]
    assert (condition["type"], condition["reason"]) == ("Expired", "Abandoned")
    assert f"left {phase}" in condition["message"]


def test_a_decision_left_without_status_is_ended_too() -> None:
    old = decision(age=timedelta(hours=1)).model_copy(update={"status": None})
    ended = abandoned(old, now=NOW)
    assert ended is not None and "without a status" in ended["conditions"][0]["message"]
