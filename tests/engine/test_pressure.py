"""Pressure levels, need, and which policy governs a node."""

from __future__ import annotations

from dataclasses import replace

import pytest

from oomguard.api import NodeMemory
from oomguard.api.report import NodePSI
from oomguard.decisions import decision_from_outcome
from oomguard.engine import decide
from oomguard.engine.pressure import assess, select_policy

from builders import NOW, Gi, Mi, pod, policy, snapshot


@pytest.mark.parametrize(
    ("available", "spec", "pressure", "need"),
    [
        (8 * Gi, {}, "None", 0),
        (1 * Gi, {}, "Soft", int(2.4 * Gi) - 1 * Gi),  # soft 10%, reclaimTo 15% of 16Gi
        (512 * Mi, {}, "Hard", int(2.4 * Gi) - 512 * Mi),  # hard 5% = 819Mi
        (1 * Gi, {"thresholds": {"memoryAvailable": {"soft": "2Gi", "hard": "1Gi"}},
                  "reclaimTo": "3Gi"}, "Soft", 2 * Gi),
        (1 * Gi - 1, {"thresholds": {"memoryAvailable": {"soft": "2Gi", "hard": "1Gi"}},
                      "reclaimTo": "3Gi"}, "Hard", 2 * Gi + 1),
        # reclaimTo below soft cannot be written with like units; mixed units take the max.
        (1 * Gi, {"thresholds": {"memoryAvailable": {"soft": "10%", "hard": "1Gi"}},
                  "reclaimTo": "1Gi"}, "Soft", int(1.6 * Gi) - 1 * Gi + 1),
    ],
    ids=["plenty", "soft-percent", "hard-percent", "soft-quantity", "hard-quantity",
         "reclaimTo-floor-is-soft"],
)
def test_pressure_and_need(available: int, spec: dict[str, object], pressure: str,
                           need: int) -> None:
    a = assess(NodeMemory(capacity_bytes=16 * Gi, available_bytes=available), policy(**spec))
    assert a.pressure == pressure
    assert abs(a.need_bytes - need) <= 1


def test_psi_above_threshold_is_soft_pressure_with_a_need_of_at_least_one_byte() -> None:
    memory = NodeMemory(capacity_bytes=16 * Gi, available_bytes=8 * Gi,
                        psi=NodePSI(full_avg10=30.0))
    a = assess(memory, policy(thresholds={"psi": {"fullAvg10": 20}}))
    assert (a.pressure, a.need_bytes) == ("Soft", 1)
    assert assess(memory, policy()).pressure == "None"  # PSI unused unless configured


def test_most_specific_matching_policy_governs() -> None:
    general = policy("a-general")
    gpu = policy("b-gpu", nodeSelector={"matchLabels": {"gpu": "true"}})
    other = policy("c-other", nodeSelector={"matchLabels": {"pool": "other"}})
    assert select_policy([general, gpu, other], "n1", {"gpu": "true"}).metadata.name == "b-gpu"
    assert select_policy([gpu, general], "n1", {}).metadata.name == "a-general"
    assert select_policy([gpu], "n1", {}).metadata.name == "default"
    by_host = policy("host", nodeSelector={"matchLabels": {"kubernetes.io/hostname": "n1"}})
    assert select_policy([general, by_host], "n1", {}).metadata.name == "host"


def test_a_psi_triggered_decision_records_the_psi_it_saw() -> None:
    """Memory available, but tasks stalled 30% of the time: the decision says so (its
    trigger's PSI was always 0 before)."""
    web = pod("web-0")
    memory = NodeMemory(capacity_bytes=16 * Gi, available_bytes=8 * Gi,
                        psi=NodePSI(some_avg10=45.0, full_avg10=30.0))
    outcome = decide(replace(snapshot([(web, 1 * Gi)]), memory=memory,
                             policies=[policy(thresholds={"psi": {"fullAvg10": 20}})]))
    decision = decision_from_outcome(outcome, decided_by="agent", at=NOW)
    assert decision.spec.trigger.pressure == "Soft"
    assert decision.spec.trigger.psi_full_avg10 == 30.0
    assert decision.wire()["spec"]["trigger"]["psiFullAvg10"] == 30.0
