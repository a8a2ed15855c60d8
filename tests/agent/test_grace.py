"""Pressure transitions and the Soft grace period (the kubelet's TestMemoryPressure): a
pressure that comes and goes within the policy's softGraceSeconds decides nothing, one
that holds decides once it has held that long, and Hard pressure never waits. The loop
runs on an in-memory node, one sample a second of a timeline."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_loop import TableNode, _agent

from oomguard.engine import decide

from builders import Gi, Mi, pod, policy, snapshot

SOFT, HARD, NONE = 1 * Gi, 512 * Mi, 4 * Gi
"""Available memory of 16Gi under the default thresholds (soft 10%, hard 5%)."""


@pytest.mark.parametrize(("grace", "timeline", "killed_at"), [
    # (softGraceSeconds, available memory at t = 0, 1, 2, ... s, when the kill happens)
    (10, [SOFT] * 15, 10),
    (10, [SOFT] * 6 + [NONE] + [SOFT] * 12, 17),  # the episode starts again at 7
    (10, [SOFT, NONE] * 10, None),  # flapping: no decision at all
    (10, [HARD] * 3, 0),  # Hard never waits
    (10, [SOFT] * 3 + [HARD] * 3, 3),  # nor Soft turned Hard
    (0, [SOFT] * 3, 0),  # no grace: Soft acts at once
], ids=["held", "interrupted", "flapping", "hard", "soft-then-hard", "no-grace"])
def test_soft_pressure_decides_only_once_it_held_for_the_grace_period(
    grace: int, timeline: list[int], killed_at: int | None
) -> None:
    a, b = pod("a"), pod("b")
    node = TableNode(available=timeline[0], usage={a.uid: 3 * Gi, b.uid: 1 * Gi})
    agent, emitted = _agent(node, [a, b], thresholds={"softGraceSeconds": grace})
    killed = None
    for t, available in enumerate(timeline):
        node.t, node.available = float(t), available
        if agent.step().decision is not None:
            killed = t
            break
    assert killed == killed_at
    assert node.kills == ([] if killed_at is None else [a.uid])
    assert len(emitted) == len(node.kills)


def test_within_the_grace_period_the_outcome_says_how_long_is_left() -> None:
    a = pod("a")
    base = snapshot([(a, 3 * Gi)], policies=[policy(thresholds={"softGraceSeconds": 30})])
    waiting = decide(replace(base, pressure_since=base.now))
    assert (waiting.pressure, waiting.victims, waiting.grace_remaining_seconds) == (
        "Soft", [], 30.0)
    assert [r.group.name for r in waiting.ranking] == ["default/a"]  # ranked, not chosen
    unknown = decide(base)  # no episode start known: the grace has not passed
    assert unknown.grace_remaining_seconds == 30.0 and not unknown.victims
