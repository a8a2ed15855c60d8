"""The chart's admission policies on the real API server: a node's agent writes only its
own node's report and decisions (its token, bound to its pod, names its node), an unbound
agent token writes none, and a decision's phase only moves forward, whoever writes it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from oomguard.api import GROUP, VERSION

from support import Identity, Kube

Mi = 2**20


def _custom(kube: Kube, who: Identity | None) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube.api_client(who))


def _answer(call: Callable[[], object]) -> tuple[int, str]:
    try:
        call()
    except ApiException as error:
        return int(error.status), str(error.body)
    return 200, ""


def _report(node: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "NodeMemoryReport",
            "metadata": {"name": node}}


def _decision(name: str, node: str, label: str | None = None) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "OOMDecision",
            "metadata": {"name": name, "labels": {"oomguard.io/node": label or node}},
            "spec": {"nodeName": node, "policy": "default", "decidedBy": "agent",
                     "action": "Kill",
                     "trigger": {"pressure": "Hard", "availableBytes": Mi, "needBytes": Mi},
                     "victims": []}}


def _create(api: client.CustomObjectsApi, plural: str,
            body: dict[str, Any]) -> Callable[[], object]:
    return lambda: api.create_cluster_custom_object(GROUP, VERSION, plural, body)


def _status(api: client.CustomObjectsApi, plural: str, name: str,
            status: dict[str, Any]) -> Callable[[], object]:
    return lambda: api.patch_cluster_custom_object_status(
        GROUP, VERSION, plural, name, {"status": status},
        _content_type="application/merge-patch+json")


@pytest.fixture
def nodes(kube: Kube) -> tuple[str, str]:
    return kube.node("node-a"), kube.node("node-b")


def test_an_agent_writes_its_own_nodes_report_and_no_other(
        kube: Kube, nodes: tuple[str, str]) -> None:
    mine, theirs = nodes
    agent = _custom(kube, kube.agent_for(mine))
    assert _answer(_create(agent, "nodememoryreports", _report(mine)))[0] == 200
    kube.created.append((f"{GROUP}/{VERSION}/nodememoryreports", None, mine))
    code, body = _answer(_create(agent, "nodememoryreports", _report(theirs)))
    assert code == 403 and f"the agent of node {mine} may write only its own" in body
    kube.store(f"{GROUP}/{VERSION}/nodememoryreports", _report(theirs))  # their own agent's
    pressured = {"node": {"capacityBytes": 8 * 2**30, "availableBytes": Mi},
                 "pressure": "Hard"}
    assert _answer(_status(agent, "nodememoryreports", theirs, pressured))[0] == 403
    assert _answer(_status(agent, "nodememoryreports", mine, pressured))[0] == 200


def test_an_agent_records_decisions_of_its_own_node_only(
        kube: Kube, nodes: tuple[str, str]) -> None:
    mine, theirs = nodes
    agent = _custom(kube, kube.agent_for(mine))
    own = kube.name("own")
    assert _answer(_create(agent, "oomdecisions", _decision(own, mine)))[0] == 200
    kube.created.append((f"{GROUP}/{VERSION}/oomdecisions", None, own))
    assert _answer(_create(agent, "oomdecisions",
                           _decision(kube.name("x"), theirs)))[0] == 403
    assert _answer(_create(agent, "oomdecisions",  # its node, labelled for another
                           _decision(kube.name("y"), mine, label=theirs)))[0] == 403
    posing = _decision(kube.name("z"), mine)
    posing["spec"]["decidedBy"] = "operator"  # the operator evicts on its decisions' word
    assert _answer(_create(agent, "oomdecisions", posing))[0] == 403
    # The operator decides for any node; only that node's agent executes it.
    other = kube.name("other")
    operator = _custom(kube, kube.operator)
    assert _answer(_create(operator, "oomdecisions", _decision(other, theirs)))[0] == 200
    kube.created.append((f"{GROUP}/{VERSION}/oomdecisions", None, other))
    assert _answer(_status(operator, "oomdecisions", other, {"phase": "Pending"}))[0] == 200
    assert _answer(_status(agent, "oomdecisions", other, {"phase": "Executing"}))[0] == 403
    assert _answer(_status(_custom(kube, kube.agent_for(theirs)), "oomdecisions", other,
                           {"phase": "Executing"}))[0] == 200


def test_an_agent_token_bound_to_no_pod_writes_nothing(
        kube: Kube, nodes: tuple[str, str]) -> None:
    mine, _ = nodes
    unbound = _custom(kube, kube.agent)
    code, body = _answer(_create(unbound, "nodememoryreports", _report(mine)))
    assert code == 403 and "not bound to a pod on a node" in body
    assert _answer(_create(unbound, "oomdecisions", _decision(kube.name("d"), mine)))[0] == 403


PATH_TO = {"Pending": ["Pending"], "Executing": ["Pending", "Executing"],
           "Completed": ["Pending", "Executing", "Completed"],
           "Failed": ["Pending", "Executing", "Failed"], "DryRun": ["DryRun"]}
"""The phases a decision goes through to reach each one, forward."""


@pytest.mark.parametrize(("before", "after", "allowed"), [
    ("Pending", "Executing", True),
    ("Executing", "Completed", True),
    ("Executing", "Failed", True),
    ("Completed", "Pending", False),  # executed again, were it let through
    ("Failed", "Executing", False),
    ("Executing", "Pending", False),
    ("DryRun", "Pending", False),
    ("Completed", "Completed", True),  # a finished decision's other fields (Evicted)
    ("Pending", "Pending", True),
])
def test_a_decisions_phase_only_moves_forward(kube: Kube, nodes: tuple[str, str],
                                               before: str, after: str,
                                               allowed: bool) -> None:
    mine, _ = nodes
    name = kube.name("phases")
    operator = _custom(kube, kube.operator)
    _create(operator, "oomdecisions", _decision(name, mine))()
    kube.created.append((f"{GROUP}/{VERSION}/oomdecisions", None, name))
    admin = _custom(kube, None)
    for phase in PATH_TO[before]:
        _status(admin, "oomdecisions", name, {"phase": phase})()
    code, body = _answer(_status(admin, "oomdecisions", name, {"phase": after}))
    assert (code == 200) is allowed, body
    if not allowed:
        assert "only moves forward" in body
