"""The OOMDecision lifecycle: every change of a decision's state, in one place, for the
agent, the operator and standalone mode alike. Pure: callers bring the time and do the
writing.

Phases only move forward: Pending -> Executing -> Completed | Failed; DryRun is final at
once. The node's agent claims a Pending Kill or KillAndEvict decision (Executing, or
Failed as Expired when too old), kills the victim pods on its node and finishes it; the
operator does the same for Evict, and after a kill evicts what is left to it (the pods of
KillAndEvict, members of the group on other nodes). Under Hard pressure a refused eviction
escalates to a Kill decision. Where the policy's action cannot be carried out as written
(no API server to evict through; an agent acting alone), it is substituted, and the
decision says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from oomguard.api import OOMDecision, OOMDecisionStatus, VictimStatus
from oomguard.api.decision import TERMINAL_PHASES, VictimOutcome
from oomguard.api.meta import Condition
from oomguard.decisions.record import decision_name
from oomguard.engine.victims import IN_FLIGHT_SECONDS

EXECUTABLE_ACTIONS = ("Kill", "KillAndEvict")
"""What a node's agent executes; the operator carries out Evict itself."""
FINISHED = frozenset({"Completed", "Failed"})
"""Terminal phases of a decision that acted (DryRun is terminal too, and acted on nothing)."""
DONE = frozenset({"Killed", "Evicted", "AlreadyGone", "Pending"})
"""Victim outcomes that complete a decision: the pod is gone, or left to another actor
(Pending: on another node, for the operator to evict)."""
EVICTED = "Evicted"
"""Condition the operator adds once it has evicted a kill's pods."""
EXPIRED = "Expired"
"""Condition of a decision not carried out in time: never acted on afterwards."""
EVICT_WITHIN = 60.0
"""Seconds after a kill finished within which the operator still evicts what it left;
later the decision is stale (an operator that was away comes back to old decisions)."""


@dataclass(frozen=True)
class VictimResult:
    """What was done to one victim pod: by a kill (the cgroup layer), an eviction (the
    Eviction API) or a check that refused to act."""

    outcome: VictimOutcome
    message: str = ""
    reclaimed_bytes: int = 0
    duration_seconds: float = 0.0


def is_terminal(status: OOMDecisionStatus | None) -> bool:
    return status is not None and status.phase in TERMINAL_PHASES


def is_finished(status: OOMDecisionStatus | None) -> bool:
    """Completed or Failed: acted, and done."""
    return status is not None and status.phase in FINISHED


def executable(obj: Mapping[str, Any], node: str) -> bool:
    """A Pending, enforced Kill or KillAndEvict decision of this node, as the API holds it
    (read before parsing: the agent's watch sees every decision labelled for its node)."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return (status.get("phase") == "Pending" and spec.get("nodeName") == node
            and spec.get("mode", "Enforce") == "Enforce"
            and spec.get("action") in EXECUTABLE_ACTIONS)


def on_node(decision: OOMDecision, node: str) -> set[str]:
    """UIDs of the victim pods on `node` (a pod whose node is unknown counts as there)."""
    return {p.uid for v in decision.spec.victims for p in v.pods
            if p.node_name in ("", node)}


def claimed(decision: OOMDecision, *, now: datetime, max_age: float) -> OOMDecisionStatus:
    """The status a claim writes: Executing from now; or Failed as Expired, when the
    decision is older than `max_age` seconds (the node has changed since)."""
    status = decision.status or OOMDecisionStatus()
    created = decision.metadata.creation_timestamp
    if created is not None and (now - created).total_seconds() > max_age:
        expired = Condition(
            type=EXPIRED, status="True", reason="Expired", last_transition_time=now,
            message=f"not executed within {max_age:g}s of the decision: the node has "
            "changed since")
        return status.model_copy(update={
            "phase": "Failed", "completion_time": now,
            "conditions": [*status.conditions, expired]})
    return status.model_copy(update={"phase": "Executing", "start_time": now})


def finished_phase(victims: Iterable[VictimStatus]) -> Literal["Completed", "Failed"]:
    """Completed when every victim pod is gone or left to another actor."""
    return "Completed" if all(v.outcome in DONE for v in victims) else "Failed"


def with_results(victims: Sequence[VictimStatus],
                 results: Mapping[str, VictimResult]) -> list[VictimStatus]:
    """The victims with what was done to them (by UID); the others as they were."""
    return [v.model_copy(update={
        "outcome": r.outcome, "message": r.message, "reclaimed_bytes": r.reclaimed_bytes,
        "duration_seconds": r.duration_seconds}) if (r := results.get(v.uid)) else v
        for v in victims]


def finished(status: OOMDecisionStatus, results: Mapping[str, VictimResult], *,
             now: datetime, duration_seconds: float | None = None) -> OOMDecisionStatus:
    """The status once its victims were acted on: their results, the phase that follows,
    what was reclaimed, when it ended."""
    victims = with_results(status.victims, results)
    update: dict[str, Any] = {
        "phase": finished_phase(victims), "victims": victims,
        "reclaimed_bytes": sum(v.reclaimed_bytes for v in victims), "completion_time": now}
    if duration_seconds is not None:
        update["duration_seconds"] = duration_seconds
    return status.model_copy(update=update)


def substituted(decision: OOMDecision, action: Literal["Kill", "KillAndEvict"], *,
                reason: str, message: str) -> OOMDecision:
    """The decision with its action replaced, and a condition that says so."""
    status = decision.status or OOMDecisionStatus()
    condition = Condition(type="ActionSubstituted", status="True", reason=reason,
                          message=message, last_transition_time=status.start_time)
    return decision.model_copy(update={
        "spec": decision.spec.model_copy(update={"action": action}),
        "status": status.model_copy(update={"conditions": [*status.conditions, condition]}),
    })


def escalated(refused: OOMDecision, *, at: datetime) -> OOMDecision:
    """A Kill decision for the same victims, after a disruption budget refused their
    eviction under Hard pressure: a budget cannot stand in the way then."""
    assert refused.status is not None
    return refused.model_copy(update={
        "metadata": refused.metadata.model_copy(update={
            "name": decision_name(refused.spec.node_name, at), "creation_timestamp": at}),
        "spec": refused.spec.model_copy(update={"action": "Kill"}),
        "status": refused.status.model_copy(update={
            "phase": "Pending", "start_time": at, "completion_time": None,
            "victims": [VictimStatus(namespace=v.namespace, name=v.name, uid=v.uid)
                        for v in refused.status.victims],
            "conditions": [Condition(
                type="Escalated", status="True", reason="EvictionRefused",
                message=f"decision {refused.metadata.name} could not evict under Hard "
                "pressure: a disruption budget refused", last_transition_time=at)],
        }),
    })


def left_to_evict(decision: OOMDecision) -> list[VictimStatus]:
    """After the agent's kill, what the operator evicts: the killed pods of KillAndEvict
    (so that their controllers replace them) and, for the operator's own decisions, the
    group's pods on other nodes. None once done (the Evicted condition), nor for dry runs
    or decisions still in progress."""
    spec, status = decision.spec, decision.status
    if (spec.mode != "Enforce" or spec.action not in EXECUTABLE_ACTIONS
            or not is_finished(status) or status is None
            or any(c.type in (EVICTED, EXPIRED) for c in status.conditions)):
        return []
    here = on_node(decision, spec.node_name)
    # An agent's decision speaks for its node only: pods elsewhere that it names are not
    # evicted on its word (its token may write only its own node's decisions).
    trusted_elsewhere = spec.decided_by == "operator"
    return [v for v in status.victims if (v.uid not in here and trusted_elsewhere) or (
        v.uid in here and spec.action == "KillAndEvict" and v.outcome == "Killed")]


NOT_ITS_NODE = VictimResult("Refused", "on another node: an agent's decision speaks for its "
                            "own node only")


def with_evictions(decision: OOMDecision, results: Mapping[str, VictimResult], *,
                   at: datetime) -> dict[str, Any]:
    """The status fields the operator writes after evicting what `left_to_evict` named:
    the outcome of the pods on other nodes (those on the node keep their Killed), and the
    Evicted condition."""
    assert decision.status is not None
    here = on_node(decision, decision.spec.node_name)
    elsewhere = {uid: r for uid, r in results.items() if uid not in here}
    if decision.spec.decided_by != "operator":
        elsewhere.update({v.uid: NOT_ITS_NODE for v in decision.status.victims
                          if v.uid not in here})
    victims = with_results(decision.status.victims, elsewhere)
    evicted = Condition(type=EVICTED, status="True", reason="Evicted",
                        message="pods evicted so that their controllers replace them",
                        last_transition_time=at)
    return {"victims": [v.wire() for v in victims],
            "conditions": [c.wire() for c in [*decision.status.conditions, evicted]]}


def too_late_to_evict(decision: OOMDecision, *, now: datetime,
                      within: float = EVICT_WITHIN) -> bool:
    """Whether the kill finished longer ago than `within` seconds (by its completion time,
    else its creation; with neither it cannot be dated, and is taken as stale)."""
    status = decision.status
    done = (status.completion_time if status is not None else None
            ) or decision.metadata.creation_timestamp
    return done is None or (now - done).total_seconds() > within


def evictions_expired(decision: OOMDecision, *, at: datetime,
                      within: float = EVICT_WITHIN) -> dict[str, Any]:
    """The status fields that end a stale decision's evictions: the pods left to the
    operator Failed, and the Expired condition, so that it is never replayed."""
    assert decision.status is not None
    left = {v.uid for v in left_to_evict(decision)}
    here = on_node(decision, decision.spec.node_name)
    message = (f"not evicted: the kill finished more than {within:g}s ago, and the pods "
               "may have been replaced since")
    victims = with_results(decision.status.victims, {
        uid: VictimResult("Failed", message) for uid in left if uid not in here})
    expired = Condition(type=EXPIRED, status="True", reason="EvictionsExpired",
                        message=message, last_transition_time=at)
    return {"victims": [v.wire() for v in victims],
            "conditions": [c.wire() for c in [*decision.status.conditions, expired]]}


DryRunMark = tuple[tuple[str, ...], float]
"""The victim groups of the last dry run on a node, and when (a monotonic clock)."""


def dry_run_due(last: DryRunMark | None, victims: Sequence[str], *, at: float,
                cooldown_seconds: float) -> bool:
    """Whether a dry run is worth recording: a dry run acts on nothing, so nothing stops
    the next report from deciding the same again; the same victims are recorded once per
    cooldown, not once a second (each with Events, crowding the node's retention)."""
    return last is None or last[0] != tuple(victims) or at - last[1] >= cooldown_seconds


def abandoned(decision: OOMDecision, *, now: datetime,
              bound: float = IN_FLIGHT_SECONDS) -> dict[str, Any] | None:
    """The status that ends a decision its writer left unfinished: without a status (the
    operator stopped between create and status), or Pending or Executing (the agent
    stopped), longer than `bound` seconds after it was made. The engine has stopped
    counting it in flight by then; this says so on the object. None if it is not."""
    status = decision.status
    if status is not None and status.phase in TERMINAL_PHASES:
        return None
    made = (status.start_time if status else None) or decision.metadata.creation_timestamp
    if made is not None and (now - made).total_seconds() <= bound:
        return None
    left = "without a status" if status is None else status.phase
    message = (f"left {left} for more than {bound:g}s: the agent or operator writing it "
               "stopped; it no longer holds the node back")
    condition = Condition(type=EXPIRED, status="True", reason="Abandoned",
                          message=message, last_transition_time=now)
    current = status or OOMDecisionStatus()
    return current.model_copy(update={
        "phase": "Failed", "completion_time": now,
        "conditions": [*current.conditions, condition]}).wire()


def for_create(decision: OOMDecision) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The body to create and the status to write after: a create ignores the status
    (it is a subresource)."""
    body = decision.wire()
    return body, body.pop("status", None)
