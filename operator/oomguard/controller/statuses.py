"""Status of the objects users write, computed from the indices: what an OOMPriority
matched and what it was clamped to, what an OOMPolicy governs and decided last; and which
decisions have outlived their retention. Pure: housekeeping.py reads and writes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from oomguard.api import OOMDecision, OOMPolicy, OOMPriority
from oomguard.api.meta import Condition
from oomguard.decisions import is_terminal
from oomguard.engine import Pod
from oomguard.engine.model import PriorityReport
from oomguard.engine.pressure import select_policy
from oomguard.engine.priorities import resolve
from oomguard.inputs import Rejection

CLUSTER_WIDE = "(cluster-wide)"
"""Node name for choosing the policy whose tenant bounds an OOMPriority's status shows: the
policy that would govern a node without labels."""


def _condition(kind: str, ok: bool, reason: str, message: str, *, generation: int | None,
               previous: Iterable[Mapping[str, Any]], now: datetime) -> dict[str, Any]:
    """A condition that keeps its transition time while its status does not change."""
    status = "True" if ok else "False"
    before = next((c for c in previous if c.get("type") == kind), None)
    moment = now if before is None or before.get("status") != status else \
        datetime.fromisoformat(str(before.get("lastTransitionTime") or now.isoformat()))
    return Condition(type=kind, status=status, reason=reason, message=message,
                     observed_generation=generation, last_transition_time=moment).wire()


def namespace_reports(namespace: str, *, pods: Iterable[Pod], objs: Iterable[OOMPriority],
                      labels: Mapping[str, str],
                      policies: list[OOMPolicy]) -> dict[str, PriorityReport]:
    """What the engine makes of a namespace's OOMPriority objects, by object name: resolved
    together, as overlaps are between siblings."""
    policy = select_policy(policies, CLUSTER_WIDE, {})
    resolution = resolve(pods, list(objs), {namespace: labels}, policy)
    return {r.name: r for r in resolution.reports}


def priority_status(obj: OOMPriority, mine: PriorityReport, *, previous: Mapping[str, Any],
                    now: datetime) -> dict[str, Any]:
    """Matched pods, effective priority and preference, clamps and overlaps."""
    generation = obj.metadata.generation
    conditions = previous.get("conditions", [])
    clamp = (f"priority {mine.clamped_from} is above the tenant's maximum; "
             f"{mine.effective_priority} applies") if mine.clamped_from is not None else ""
    never = ("preference Never is not allowed for this namespace; "
             + ("no preference" if mine.avoid_denied else "Avoid") + " applies"
             ) if mine.never_denied else ""
    avoid = ("preference Avoid is not allowed for this namespace; no preference applies"
             if mine.avoid_denied and not mine.never_denied else "")
    allowance = (f"allowance {mine.allowance_capped_from} is above the tenant's maximum; "
                 f"{mine.effective_allowance} applies"
                 if mine.allowance_capped_from is not None else "")
    bounds = [m for m in (clamp, never, avoid, allowance) if m]
    return {
        "observedGeneration": generation,
        "matchedPods": mine.matched_pods,
        "effectivePriority": mine.effective_priority,
        "effectivePreference": mine.effective_preference,
        "overlaps": list(mine.overlaps),
        "conditions": [
            _condition("Ready", True, "Applied", f"decides {mine.matched_pods} pods",
                       generation=generation, previous=conditions, now=now),
            _condition("Clamped", bool(bounds), "TenantBounds" if bounds
                       else "WithinBounds", "; ".join(bounds),
                       generation=generation, previous=conditions, now=now),
            _condition("Overlapping", bool(mine.overlaps), "SelectorsOverlap"
                       if mine.overlaps else "NoOverlap",
                       ("also selecting some of its pods: " + ", ".join(mine.overlaps)
                        + "; the most specific selector wins, then the name")
                       if mine.overlaps else "", generation=generation, previous=conditions,
                       now=now),
        ],
    }


def policy_status(obj: OOMPolicy, *, policies: list[OOMPolicy],
                  nodes: Mapping[str, Mapping[str, str]],
                  decisions: Iterable[OOMDecision], previous: Mapping[str, Any],
                  now: datetime) -> dict[str, Any]:
    """The nodes this policy governs now, and its latest decision."""
    name = obj.metadata.name
    governed = sorted(n for n, labels in nodes.items()
                      if select_policy(policies, n, labels).metadata.name == name)
    latest = max((d for d in decisions if d.spec.policy == name),
                 key=lambda d: d.metadata.creation_timestamp or now, default=None)
    return {
        "observedGeneration": obj.metadata.generation,
        "nodes": governed,
        "lastDecision": latest.metadata.name if latest else None,
        "lastDecisionTime": (latest.metadata.creation_timestamp.isoformat()
                             if latest and latest.metadata.creation_timestamp else None),
        "conditions": [_condition("Ready", True, "Applied", f"governs {len(governed)} nodes",
                                  generation=obj.metadata.generation,
                                  previous=previous.get("conditions", []), now=now)],
    }


def refusing(status: dict[str, Any], rejection: Rejection | None, *,
             now: datetime) -> dict[str, Any]:
    """The status with the refusal of a newer version in its Ready condition: False,
    reason Invalid, naming the fields and what stays in force. Unchanged without one."""
    if rejection is None:
        return status
    previous = status.get("conditions", [])
    ready = _condition("Ready", False, "Invalid", rejection.message,
                       generation=rejection.generation, previous=previous, now=now)
    return {**status, "conditions": [
        ready, *(c for c in previous if c.get("type") != "Ready")]}


def expired(decision: OOMDecision, same_node: Iterable[OOMDecision], *, now: datetime,
            keep_for: timedelta, keep_per_node: int) -> bool:
    """A finished decision older than `keep_for`, or beyond the newest `keep_per_node` of its
    node, is deleted. Unfinished ones are kept: they are the in-flight record."""
    if not is_terminal(decision.status):
        return False
    created = decision.metadata.creation_timestamp or now
    if now - created > keep_for:
        return True
    newer = sum(1 for d in same_node
                if (d.metadata.creation_timestamp or now, d.metadata.name)
                > (created, decision.metadata.name))
    return newer >= keep_per_node
