"""The operator's view of one node: which copy of a decision the engine gets when the
decisions index and the operator's own latest write disagree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from oomguard.api import NodeMemoryReport, OOMDecision
from oomguard.controller.view import ClusterView

NODE = "node-a"
NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)


def decision(phase: str) -> OOMDecision:
    return OOMDecision.model_validate({
        "metadata": {"name": f"{NODE}-1", "creationTimestamp": NOW.isoformat()},
        "spec": {"nodeName": NODE, "policy": "p", "action": "Evict", "decidedBy": "operator",
                 "trigger": {"pressure": "Soft", "availableBytes": 1, "needBytes": 1},
                 "victims": []},
        "status": {"phase": phase},
    })


def view(indexed: str | None, recent: str | None) -> ClusterView:
    index: dict[Any, list[Any]] = {NODE: [decision(indexed)] if indexed else []}
    return ClusterView(pods={}, owners=(), policies={}, priorities={}, namespaces={},
                       nodes={}, node_uids={}, decisions=index,
                       recent={NODE: decision(recent)} if recent else {})


@pytest.mark.parametrize(("indexed", "recent", "seen"), [
    ("Executing", "Failed", "Failed"),  # the index has not caught up with our write yet
    ("Completed", "Pending", "Completed"),  # the agent wrote after us
    ("Pending", "Pending", "Pending"),
    (None, "Pending", "Pending"),  # not in the index at all yet
    ("Completed", None, "Completed"),
])
def test_the_further_advanced_copy_of_a_decision_is_the_one_decided_on(
    indexed: str | None, recent: str | None, seen: str
) -> None:
    report = NodeMemoryReport.model_validate({
        "metadata": {"name": NODE},
        "status": {"node": {"capacityBytes": 100, "availableBytes": 50}}})
    [found] = view(indexed, recent).snapshot(report, NOW).decisions
    assert found.status is not None and found.status.phase == seen
