"""An edit the API server took but oomguard's models refuse never weakens protection: the
last good version stays in force, the object's status and a Warning Event say what was
refused and why (field and reason), and a log line says it once. The operator's indices,
housekeeping and decider, without kopf or an API server; the agent's caches use the same
LastGood."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from oomguard.api import OOMPolicy
from oomguard.controller import Decider, Options
from oomguard.controller.housekeeping import Housekeeper
from oomguard.controller.view import ALL, index_model
from oomguard.inputs import LastGood

from small_cluster import NOW, OURS, PODS, PRIORITIES, Mi, report
from support.operator_fakes import Indices, RecordingCluster


def policy(generation: int, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": OURS, "kind": "OOMPolicy",
            "metadata": {"name": "cluster", "uid": "u-policy", "generation": generation},
            "spec": spec}


PROTECTING = policy(1, protectedNamespaces=["batch", "kube-system"],
                    actions={"soft": "Kill"})
BROKEN = policy(2, protectedNamespaces=[], actions={"soft": "Kill"},
                thresholds={"memoryAvailable": {"soft": "5%", "hard": "10%"}})
"""Hard above soft (a CRD without the CEL rules takes it): the models refuse it."""


def test_a_refused_edit_leaves_the_last_good_version_in_force(
        caplog: pytest.LogCaptureFixture) -> None:
    parse = LastGood("OOMPolicy", OOMPolicy.model_validate)
    assert index_model(parse, PROTECTING, ALL)[ALL].metadata.generation == 1
    with caplog.at_level(logging.WARNING):
        kept = index_model(parse, BROKEN, ALL)
        index_model(parse, BROKEN, ALL)  # the same version again: no second line
    assert kept[ALL].metadata.generation == 1
    assert kept[ALL].spec.protected_namespaces == ["batch", "kube-system"]
    [rejection] = parse.rejections()
    assert (rejection.generation, rejection.kept_generation) == (2, 1)
    assert "spec.thresholds.memoryAvailable" in rejection.message
    assert "generation 1 still applies" in rejection.message
    assert [r.message for r in caplog.records] == [f"OOMPolicy cluster: {rejection.message}"]
    fixed = policy(3, protectedNamespaces=["batch"])
    assert index_model(parse, fixed, ALL)[ALL].metadata.generation == 3
    assert parse.rejections() == []


def test_an_object_that_never_parsed_is_left_out_and_said_so() -> None:
    parse = LastGood("OOMPolicy", OOMPolicy.model_validate)
    assert index_model(parse, BROKEN, ALL) == {}
    [rejection] = parse.rejections()
    assert rejection.kept_generation is None
    assert "no earlier valid version applies" in rejection.message


async def test_the_decider_still_protects_and_the_status_and_an_event_say_why() -> None:
    parse = LastGood("OOMPolicy", OOMPolicy.model_validate)
    indices = Indices.of(pods=PODS, priorities=PRIORITIES,
                         namespaces={"batch": {}, "shop": {}}, nodes={"node-a": {}})
    for body in (PROTECTING, BROKEN):  # as kopf's index sees the edit
        indices.policies.clear()
        indices.policies[ALL] = list(index_model(parse, body, ALL).values())
    cluster = RecordingCluster(indices.decisions)
    made = await Decider(cluster, clock=lambda: NOW).on_report(report(500 * Mi), indices.view())
    assert made is not None
    victims = [p.namespace for v in made.spec.victims for p in v.pods]
    assert "batch" not in victims  # the etl Job would go first without the protection
    assert made.spec.policy == "cluster"

    housekeeper = Housekeeper(cluster, Options(), rejections=parse.rejections)
    for _ in range(2):
        await housekeeper._round(indices.view())
    ready = next(c for c in cluster.settings_statuses[("", "cluster")]["conditions"]
                 if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["observedGeneration"]) == (
        "False", "Invalid", 2)
    assert "spec.thresholds.memoryAvailable" in ready["message"]
    assert [(involved["uid"], message) for involved, reason, message in cluster.events
            if reason == "OOMGuardRejected"] == [  # once, not every round
        ("u-policy", "generation 2 refused: spec.thresholds.memoryAvailable: hard (10%) "
         "must not be above soft (5%); generation 1 still applies")]
