"""The operator's kopf handlers: indices fed by list+watch, and two event handlers.

Indices keep every object the engine reads in memory, so a decision makes no list call.
Reports and decisions are handled with `on.event`, which keeps no state in the objects:
no progress annotations or finalizers written for every one of a thousand nodes' reports.
Housekeeping (statuses, retention) is poked by these event handlers, so that it runs only
in the active peer, as the handlers do, and needs no timer (kopf puts finalizers on objects
with timers: a decision could then not be deleted while the operator is away).
"""

from __future__ import annotations

import gc
from typing import Any

import kopf

from oomguard.api import DECISIONS, GROUP, REPORTS, VERSION, OOMPolicy, OOMPriority
from oomguard.controller import kopf_fixes
from oomguard.controller.deciding import Decider
from oomguard.controller.housekeeping import Housekeeper, Options
from oomguard.controller.view import (
    ALL,
    ClusterView,
    index_budget,
    index_decision,
    index_model,
    index_owner,
    index_pod,
)
from oomguard.inputs import LastGood

GC_THRESHOLDS = (20_000, 10, 10)
"""Young collections every 20,000 allocations instead of 700: with the caches frozen, the
collector's long-lived count is small, so the default thresholds run a full collection
several times a second (measured: docs/architecture.md)."""


def settle_garbage_collector() -> None:
    """The loaded caches out of the collector's generations, and fewer collections of
    what handling events allocates, which is short-lived."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def register(registry: kopf.OperatorRegistry, decider: Decider,
             options: Options | None = None, *, freeze_caches: bool = False) -> None:
    """Add oomguard's handlers to `registry` (one registry per operator instance).

    With `freeze_caches` (the operator process; not tests sharing one interpreter), the
    loaded indices are moved out of the garbage collector's generations once: otherwise
    each full collection walks the whole cluster's objects; see settle_garbage_collector."""
    kopf_fixes.apply()
    policies = LastGood("OOMPolicy", OOMPolicy.model_validate)
    priorities = LastGood("OOMPriority", OOMPriority.model_validate)
    housekeeper = Housekeeper(decider.cluster, options or Options(),
                              rejections=lambda: [*policies.rejections(),
                                                  *priorities.rejections()])

    def index(*resource: str, id: str) -> Any:
        return kopf.index(*resource, id=id, registry=registry)

    index("v1", "pods", id="pods")(lambda body, **_: index_pod(body))
    index("apps", "v1", "replicasets", id="replicasets")(lambda body, **_: index_owner(body))
    index("batch", "v1", "jobs", id="jobs")(lambda body, **_: index_owner(body))
    index(GROUP, VERSION, "oompolicies", id="policies")(
        lambda body, **_: index_model(policies, body, ALL))
    index(GROUP, VERSION, "oompriorities", id="priorities")(
        lambda body, namespace, **_: index_model(priorities, body, namespace))
    index("v1", "namespaces", id="namespaces")(
        lambda name, labels, **_: {name: dict(labels)})
    index("v1", "nodes", id="nodes")(lambda name, labels, **_: {name: dict(labels)})
    index("v1", "nodes", id="node_uids")(lambda name, uid, **_: {name: uid})
    index(GROUP, VERSION, DECISIONS, id="decisions")(lambda body, **_: index_decision(body))
    index("policy", "v1", "poddisruptionbudgets", id="budgets")(
        lambda body, **_: index_budget(body))

    frozen = not freeze_caches

    def view(indices: dict[str, Any]) -> ClusterView:
        nonlocal frozen
        if not frozen:  # kopf calls no handler before every index has its initial listing
            settle_garbage_collector()
            frozen = True
        return ClusterView(
            pods=indices["pods"],
            owners=(indices["replicasets"], indices["jobs"]),
            policies=indices["policies"],
            priorities=indices["priorities"],
            namespaces=indices["namespaces"],
            nodes=indices["nodes"],
            node_uids=indices["node_uids"],
            decisions=indices["decisions"],
            budgets=indices["budgets"],
        )

    @kopf.on.event(GROUP, VERSION, REPORTS, registry=registry)
    async def report(body: kopf.Body, type: str | None, **indices: Any) -> None:
        cluster = view(indices)
        housekeeper.poke(cluster)
        if type == "DELETED":
            decider.forget_node(str(body.get("metadata", {}).get("name", "")))
        else:
            await decider.on_report(dict(body), cluster)

    @kopf.on.event(GROUP, VERSION, DECISIONS, registry=registry)
    async def decision(body: kopf.Body, name: str, type: str | None,
                       **indices: Any) -> None:
        housekeeper.poke(view(indices))
        if type == "DELETED":
            decider.forget(name)
        else:
            await decider.on_decision(dict(body))

    @kopf.on.cleanup(registry=registry)
    async def stop(**_: Any) -> None:
        decider.close()

    @kopf.on.event(GROUP, VERSION, "oompriorities", registry=registry)
    @kopf.on.event(GROUP, VERSION, "oompolicies", registry=registry)
    async def settings_changed(type: str | None, uid: str, body: kopf.Body,
                               **indices: Any) -> None:
        if type == "DELETED":
            policies.forget(uid)
            priorities.forget(uid)
            housekeeper.forget(str(body.get("kind")), body.metadata.namespace or "",
                               body.metadata.name or "")
        housekeeper.poke(view(indices))
