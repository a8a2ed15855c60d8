"""The operator's kopf handlers: indices fed by list+watch, and two event handlers.

Indices keep every object the engine reads in memory, so a decision makes no list call.
Reports and decisions are handled with `on.event`, which keeps no state in the objects:
no progress annotations written back for every one of a thousand nodes' reports.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf

from oomguard.api import GROUP, VERSION, OOMPolicy, OOMPriority
from oomguard.controller.deciding import Decider
from oomguard.controller.statuses import expired, policy_status, priority_status
from oomguard.controller.view import (
    ALL,
    ClusterView,
    index_decision,
    index_model,
    index_owner,
    index_pod,
)
from oomguard.kube import DECISIONS, REPORTS


@dataclass(frozen=True)
class Options:
    status_interval: float = 30.0
    """How often OOMPriority and OOMPolicy statuses are refreshed (written only if changed)."""
    keep_for: timedelta = timedelta(days=7)
    keep_per_node: int = 50
    retention_interval: float = 60.0

INDICES = ("pods", "replicasets", "jobs", "policies", "priorities", "namespaces", "nodes",
           "decisions")


def register(registry: kopf.OperatorRegistry, decider: Decider,
             options: Options | None = None) -> None:
    """Add oomguard's handlers to `registry` (one registry per operator instance)."""
    opts = options or Options()

    def index(*resource: str, id: str) -> Any:
        return kopf.index(*resource, id=id, registry=registry)

    index("v1", "pods", id="pods")(lambda body, **_: index_pod(body))
    index("apps", "v1", "replicasets", id="replicasets")(lambda body, **_: index_owner(body))
    index("batch", "v1", "jobs", id="jobs")(lambda body, **_: index_owner(body))
    index(GROUP, VERSION, "oompolicies", id="policies")(
        lambda body, **_: index_model(OOMPolicy, body, ALL))
    index(GROUP, VERSION, "oompriorities", id="priorities")(
        lambda body, namespace, **_: index_model(OOMPriority, body, namespace))
    index("v1", "namespaces", id="namespaces")(
        lambda name, labels, **_: {name: dict(labels)})
    index("v1", "nodes", id="nodes")(lambda name, labels, **_: {name: dict(labels)})
    index(GROUP, VERSION, DECISIONS, id="decisions")(lambda body, **_: index_decision(body))

    @kopf.on.event(GROUP, VERSION, REPORTS, registry=registry)
    async def report(body: kopf.Body, type: str | None, **indices: Any) -> None:
        if type == "DELETED":
            return
        view = ClusterView(
            pods=indices["pods"],
            owners=(indices["replicasets"], indices["jobs"]),
            policies=indices["policies"],
            priorities=indices["priorities"],
            namespaces=indices["namespaces"],
            nodes=indices["nodes"],
            decisions=indices["decisions"],
        )
        await decider.on_report(dict(body), view)

    @kopf.on.event(GROUP, VERSION, DECISIONS, registry=registry)
    async def decision(body: kopf.Body, type: str | None, **_: Any) -> None:
        if type != "DELETED":
            await decider.on_decision(dict(body))

    @kopf.timer(GROUP, VERSION, "oompriorities", interval=opts.status_interval,
                registry=registry)
    async def priority(body: kopf.Body, namespace: str | None, patch: kopf.Patch,
                 **indices: Any) -> None:
        obj = index_model(OOMPriority, body, ALL).get(ALL)
        if obj is None or namespace is None:
            return
        status = priority_status(
            obj,
            pods=indices["pods"].get(("ns", namespace), ()),
            siblings=indices["priorities"].get(namespace, ()),
            namespaces={namespace: _only(indices["namespaces"].get(namespace, ())) or {}},
            policies=list(indices["policies"].get(ALL, ())),
            previous=body.get("status", {}),
            now=datetime.now(UTC),
        )
        _write_if_changed(body, patch, status)

    @kopf.timer(GROUP, VERSION, "oompolicies", interval=opts.status_interval,
                registry=registry)
    async def policy(body: kopf.Body, patch: kopf.Patch, **indices: Any) -> None:
        obj = index_model(OOMPolicy, body, ALL).get(ALL)
        if obj is None:
            return
        status = policy_status(
            obj,
            policies=list(indices["policies"].get(ALL, ())),
            nodes={name: _only(store) or {} for name, store in indices["nodes"].items()},
            decisions=[d for store in indices["decisions"].values() for d in store],
            previous=body.get("status", {}),
            now=datetime.now(UTC),
        )
        _write_if_changed(body, patch, status)

    @kopf.timer(GROUP, VERSION, DECISIONS, interval=opts.retention_interval,
                registry=registry)
    async def retention(body: kopf.Body, name: str, **indices: Any) -> None:
        decision = next(iter(index_decision(body).values()), None)
        if decision is None:
            return
        same_node = indices["decisions"].get(decision.spec.node_name, ())
        if expired(decision, same_node, now=datetime.now(UTC), keep_for=opts.keep_for,
                   keep_per_node=opts.keep_per_node):
            await asyncio.to_thread(decider.cluster.delete_decision, name)


def _only(store: Any) -> Any:
    return next(iter(store), None)


def _write_if_changed(body: kopf.Body, patch: kopf.Patch, status: dict[str, Any]) -> None:
    """Status writes cost etcd writes: only what differs is sent."""
    current = body.get("status", {})
    for key, value in status.items():
        if current.get(key) != value and not (
            key == "conditions" and _same_conditions(current.get(key, []), value)
        ):
            patch.status[key] = value


def _same_conditions(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> bool:
    def key(c: dict[str, Any]) -> tuple[Any, ...]:
        return (c.get("type"), c.get("status"), c.get("reason"), c.get("message"),
                c.get("observedGeneration"))
    return sorted(map(key, old)) == sorted(map(key, new))
