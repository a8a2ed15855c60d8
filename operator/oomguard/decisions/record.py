"""An engine Outcome written down as an OOMDecision, the record SREs read."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from oomguard.api import (
    OOMDecision,
    OOMDecisionSpec,
    OOMDecisionStatus,
    PodRef,
    RankedGroup,
    Trigger,
    VictimGroup,
    VictimStatus,
)
from oomguard.api.meta import ObjectMeta
from oomguard.engine import Outcome, Pod

NODE_LABEL = "oomguard.io/node"
"""Label naming a decision's node, so that each agent watches only its own decisions."""
RANKING_SHOWN = 10
"""How much of the ranking a decision keeps: enough to see who would be next."""


def _ref(pod: Pod) -> PodRef:
    return PodRef(namespace=pod.namespace, name=pod.name, uid=pod.uid, node_name=pod.node_name)


def decision_name(node: str, at: datetime) -> str:
    """Sortable and unique per node and millisecond: node-YYYYmmdd-HHMMSS-mmm."""
    return f"{node}-{at:%Y%m%d-%H%M%S}-{at.microsecond // 1000:03d}"


def decision_from_outcome(
    outcome: Outcome,
    *,
    decided_by: Literal["operator", "agent"],
    at: datetime,
    report_time: datetime | None = None,
) -> OOMDecision:
    """The decision for an outcome that has victims; status starts Pending (DryRun for dry
    runs, which act on nothing). Named by the report it answers where there is one, so
    that two operators handling one report (replicas while peering settles, a restart
    handling it again) make one decision: the second create is refused (409)."""
    assert outcome.action is not None, "a decision needs pressure, hence an action"
    victims = [
        VictimGroup(
            name=v.group.name,
            namespace=v.group.namespace,
            group_by=v.group.group_by,
            priority=v.group.priority,
            usage_bytes=v.group.usage_bytes,
            allowance_bytes=v.group.allowance_bytes,
            expected_reclaim_bytes=v.group.usage_bytes,
            unmeasured_pods=len(v.group.unmeasured),
            pods=[_ref(p) for p in v.group.pods + v.group.elsewhere],
        )
        for v in outcome.victims
    ]
    dry_run = outcome.mode == "DryRun"
    return OOMDecision(
        metadata=ObjectMeta(
            name=decision_name(outcome.node, report_time or at),
            labels={NODE_LABEL: outcome.node},
            creation_timestamp=at,
        ),
        spec=OOMDecisionSpec(
            node_name=outcome.node,
            policy=outcome.policy,
            mode="DryRun" if dry_run else "Enforce",
            decided_by=decided_by,
            trigger=Trigger(
                pressure=outcome.pressure,
                available_bytes=outcome.available_bytes,
                capacity_bytes=outcome.capacity_bytes,
                need_bytes=outcome.need_bytes,
                psi_full_avg10=outcome.psi_full_avg10,
                report_time=report_time,
            ),
            action=outcome.action,
            victims=victims,
            ranking=[
                RankedGroup(
                    position=r.position,
                    name=r.group.name,
                    priority=r.group.priority,
                    preference=r.group.preference,
                    usage_bytes=r.group.usage_bytes,
                    allowance_bytes=r.group.allowance_bytes,
                    reason=r.reason,
                )
                for r in outcome.ranking[:RANKING_SHOWN]
            ],
        ),
        status=OOMDecisionStatus(
            phase="DryRun" if dry_run else "Pending",
            start_time=at,
            victims=[
                VictimStatus(namespace=p.namespace, name=p.name, uid=p.uid)
                for v in victims for p in v.pods
            ],
        ),
    )
