"""Decisions: an engine outcome written down as an OOMDecision (record), and everything
that happens to it after (lifecycle). Pure: no I/O, no clock of its own."""

from oomguard.decisions.lifecycle import (
    EVICTED,
    EXECUTABLE_ACTIONS,
    VictimResult,
    claimed,
    escalated,
    executable,
    finished,
    finished_phase,
    for_create,
    is_finished,
    is_terminal,
    left_to_evict,
    on_node,
    substituted,
    with_evictions,
    with_results,
)
from oomguard.decisions.record import (
    NODE_LABEL,
    RANKING_SHOWN,
    decision_from_outcome,
    decision_name,
)

__all__ = [
    "EVICTED",
    "EXECUTABLE_ACTIONS",
    "NODE_LABEL",
    "RANKING_SHOWN",
    "VictimResult",
    "claimed",
    "decision_from_outcome",
    "decision_name",
    "escalated",
    "executable",
    "finished",
    "finished_phase",
    "for_create",
    "is_finished",
    "is_terminal",
    "left_to_evict",
    "on_node",
    "substituted",
    "with_evictions",
    "with_results",
]
