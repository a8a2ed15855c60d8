"""Victims: in-flight decisions that hold the node back, and the prefix of the ranking that
covers the need."""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from oomguard.api import OOMDecision, Pressure
from oomguard.engine.model import Ranked

IN_FLIGHT_SECONDS = 120.0
"""How long after its start a decision can hold the node back at all. A kill's memory is
free within seconds, an eviction's within its grace period; a decision older than this
that still holds a pod means its writer stopped (an agent that crashed while Executing,
an operator that crashed between create and status) or the kubelet restarted the killed
containers in the same pod: it must not bar new victims, nor protect its pods, forever."""


@dataclass(frozen=True)
class InFlight:
    """Victims of earlier decisions whose pod cgroups are still on the node."""

    pods: dict[str, str] = field(default_factory=dict)
    """Pod UID -> name of the decision that chose it."""
    blocking: str | None = None
    """Name of the newest decision that bars a new victim, if any does."""
    refused: dict[str, str] = field(default_factory=dict)
    """Pod UID -> decision whose eviction of it was refused within the cooldown."""


def in_flight(
    decisions: Sequence[OOMDecision],
    node: str,
    *,
    present: Container[str],
    pressure: Pressure,
    cooldown_seconds: int,
    now: datetime,
) -> InFlight:
    """A victim still present is still releasing memory: it bars a new victim until it is
    gone, or until the cooldown passed and pressure is still Hard. Dry runs and failed
    decisions never bar anything. A pod whose eviction was refused (a disruption budget)
    is left alone for the cooldown, so that the next candidate is taken. A decision older
    than IN_FLIGHT_SECONDS holds nothing."""
    # Ties are broken on (start, name), newest wins, so input order never matters.
    pods: dict[str, tuple[datetime, str]] = {}
    refused: dict[str, tuple[datetime, str]] = {}
    blocking: tuple[datetime, str] | None = None
    for decision in decisions:
        spec, status = decision.spec, decision.status
        if spec.node_name != node or spec.mode == "DryRun":
            continue
        started = (status.start_time if status else None) or decision.metadata.creation_timestamp
        mark = (started or now, decision.metadata.name)
        if status is not None and (now - mark[0]).total_seconds() < cooldown_seconds:
            for victim in status.victims:
                if victim.outcome == "Refused" and (
                    victim.uid not in refused or mark > refused[victim.uid]
                ):
                    refused[victim.uid] = mark
        if status is not None and status.phase in ("Failed", "DryRun"):
            continue
        if (now - mark[0]).total_seconds() > IN_FLIGHT_SECONDS:
            continue
        chosen = [p.uid for v in spec.victims for p in v.pods if p.uid in present]
        if not chosen:
            continue
        for uid in chosen:
            if uid not in pods or mark > pods[uid]:
                pods[uid] = mark
        cooled = (now - mark[0]).total_seconds() >= cooldown_seconds
        if not (cooled and pressure == "Hard") and (blocking is None or mark > blocking):
            blocking = mark
    return InFlight(
        {uid: mark[1] for uid, mark in pods.items()},
        blocking[1] if blocking else None,
        {uid: mark[1] for uid, mark in refused.items()},
    )


def take_victims(ranking: Sequence[Ranked], need_bytes: int) -> list[Ranked]:
    """The shortest prefix of the ranking (skipping groups that hold no memory, but never
    one whose usage could not be read) whose usage covers the need, or every group when
    even all of them do not."""
    victims: list[Ranked] = []
    covered = 0
    for ranked in ranking:
        if covered >= need_bytes:
            break
        if ranked.group.usage_bytes > 0 or ranked.group.unmeasured:
            victims.append(ranked)
            covered += ranked.group.usage_bytes
    return victims
