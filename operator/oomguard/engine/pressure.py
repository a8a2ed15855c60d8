"""Which policy governs a node, how much pressure it is under, and how much to reclaim."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from oomguard.api import DEFAULT_POLICY, NodeMemory, OOMPolicy, Pressure, resolve_amount
from oomguard.engine.model import Assessment


def select_policy(
    policies: Sequence[OOMPolicy], node: str, node_labels: Mapping[str, str]
) -> OOMPolicy:
    """The matching policy with the most specific node selector, then the first by name;
    the documented default when none matches."""
    labels = {"kubernetes.io/hostname": node, **node_labels}
    matching = [p for p in policies if p.spec.node_selector.matches(labels)]
    if not matching:
        return DEFAULT_POLICY
    return min(matching, key=lambda p: (-p.spec.node_selector.specificity, p.metadata.name))


def assess_node(memory: NodeMemory, policies: Sequence[OOMPolicy], node: str,
                node_labels: Mapping[str, str]) -> Assessment:
    """The node's pressure under the policy that governs it: the cheap gate before any pod
    is read (the agent's quiet step, the operator's heartbeat). Under pressure, decide()
    assesses the full sample itself, and its Outcome carries that assessment."""
    return assess(memory, select_policy(policies, node, node_labels))


def assess(memory: NodeMemory, policy: OOMPolicy) -> Assessment:
    """Pressure level and the bytes to reclaim.

    Under any pressure the need is at least one byte, so that PSI-triggered pressure with
    memory still available takes one victim rather than none."""
    spec = policy.spec
    capacity = memory.capacity_bytes
    soft = resolve_amount(spec.thresholds.memory_available.soft, capacity)
    hard = resolve_amount(spec.thresholds.memory_available.hard, capacity)
    reclaim_to = max(resolve_amount(spec.reclaim_to, capacity), soft)
    available = memory.available_bytes
    psi_limit = spec.thresholds.psi.full_avg10
    pressure: Pressure = "None"
    if available < hard:
        pressure = "Hard"
    elif available < soft or (psi_limit is not None and memory.psi.full_avg10 > psi_limit):
        pressure = "Soft"
    need = 0 if pressure == "None" else max(reclaim_to - available, 1)
    return Assessment(pressure, need, soft)
