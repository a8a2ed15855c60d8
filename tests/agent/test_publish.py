"""When the agent writes its NodeMemoryReport: table-driven over a timeline."""

from __future__ import annotations

import pytest

from oomguard.agent.publish import Publisher, PublishPolicy

Mi = 2**20
BASE = {"a": 100 * Mi, "b": 1000 * Mi}


def _after_first_write(t: float = 0.0) -> Publisher:
    publisher = Publisher(PublishPolicy())
    assert publisher.plan(t, "None", BASE) == "full"
    publisher.written("full", t, "None", BASE)
    return publisher


@pytest.mark.parametrize(
    ("t", "pressure", "pods", "expected"),
    [
        (1.0, "None", BASE, "none"),
        (29.9, "None", BASE, "none"),
        (30.0, "None", BASE, "summary"),
        (299.0, "None", BASE, "summary"),
        (300.0, "None", BASE, "full"),
        (1.0, "Soft", BASE, "full"),  # pressure starts: at once
        (1.0, "None", {"a": 100 * Mi}, "full"),  # a pod went away
        (1.0, "None", {**BASE, "c": 1}, "full"),  # a pod came
        (1.0, "None", {"a": 200 * Mi, "b": 1000 * Mi}, "full"),  # +100Mi, +100%
        (1.0, "None", {"a": 150 * Mi, "b": 1000 * Mi}, "none"),  # +50Mi: not material
        (1.0, "None", {"a": 100 * Mi, "b": 1100 * Mi}, "none"),  # +10%: not material
    ],
)
def test_plan_from_a_fresh_full_write(t: float, pressure: str, pods: dict[str, int],
                                      expected: str) -> None:
    assert _after_first_write().plan(t, pressure, pods) == expected


def test_under_pressure_every_second_and_at_once_when_it_changes() -> None:
    publisher = _after_first_write()
    publisher.written("full", 1.0, "Soft", BASE)
    assert publisher.plan(1.5, "Soft", BASE) == "none"
    assert publisher.plan(2.0, "Soft", BASE) == "full"
    assert publisher.plan(1.2, "Hard", BASE) == "full"
    assert publisher.plan(1.2, "None", BASE) == "full"  # pressure ended: say so at once


def test_heartbeat_counts_from_the_last_write_of_any_kind() -> None:
    publisher = _after_first_write()
    publisher.written("summary", 30.0, "None", BASE)
    assert publisher.plan(59.0, "None", BASE) == "none"
    assert publisher.plan(60.0, "None", BASE) == "summary"
