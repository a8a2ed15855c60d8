"""Statuses of OOMPriority and OOMPolicy objects, and decision retention, refreshed at most
once per interval from the indices; written only where they changed."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from oomguard.api import GROUP, VERSION, OOMDecision, OOMPolicy, OOMPriority
from oomguard.controller.statuses import (
    expired,
    namespace_reports,
    policy_status,
    priority_status,
    refusing,
)
from oomguard.controller.view import ALL, ClusterView
from oomguard.decisions import abandoned
from oomguard.inputs import Rejection
from oomguard.kube import Cluster

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Options:
    status_interval: float = 30.0
    """How often statuses and retention are looked at."""
    keep_for: timedelta = timedelta(days=7)
    """Finished decisions older than this are deleted."""
    keep_per_node: int = 50
    """At most this many finished decisions are kept per node."""


class Housekeeper:
    """Coalesces pokes (a report, a priority, a policy or a decision changed) into at most
    one round per interval, and always runs one more round after the last poke."""

    def __init__(self, cluster: Cluster, options: Options, *,
                 rejections: Callable[[], list[Rejection]] = list) -> None:
        self.cluster, self.options = cluster, options
        self.rejections = rejections
        """Versions of policies and priorities that did not parse (the last good ones stay
        in force): their statuses say so, and a Warning Event once per version."""
        self._announced: set[tuple[str, int | None]] = set()
        self._due = 0.0
        self._view: ClusterView | None = None
        self._poked = False
        self._task: asyncio.Task[None] | None = None
        self._written: dict[tuple[str, str, str], dict[str, Any]] = {}

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """A policy or priority was deleted: its last written status is not kept."""
        key = "policy" if kind == "OOMPolicy" else "priority"
        self._written.pop((key, namespace, name), None)
        self._written.pop((kind, namespace, name), None)

    def poke(self, view: ClusterView) -> None:
        self._view, self._poked = view, True
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while self._poked and self._view is not None:
            self._poked = False
            delay = self._due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing: one round per interval at most
            self._due = time.monotonic() + self.options.status_interval
            await self._round(self._view)

    async def _round(self, view: ClusterView) -> None:
        try:
            await self._statuses(view)
            await self._retention(view)
        except Exception:  # a failed round is retried next interval, never fatal
            log.exception("housekeeping round failed")

    async def _statuses(self, view: ClusterView) -> None:
        now = datetime.now(UTC)
        refused = {(r.kind, r.namespace, r.name): r for r in self.rejections()}
        policies: list[OOMPolicy] = list(view.policies.get(ALL, ()))
        nodes: dict[str, dict[str, str]] = {
            name: next(iter(store), {}) for name, store in view.nodes.items()}
        decisions = [d for store in view.decisions.values() for d in store]
        for policy in policies:
            status = policy_status(policy, policies=policies, nodes=nodes, decisions=decisions,
                                   previous=self._previous("policy", "", policy), now=now)
            rejection = refused.pop(("OOMPolicy", "", policy.metadata.name), None)
            await self._write("policy", "", policy, refusing(status, rejection, now=now))
        for namespace, store in view.priorities.items():
            siblings: list[OOMPriority] = list(store)
            reports = namespace_reports(
                namespace, pods=view.pods.get(("ns", namespace), ()), objs=siblings,
                labels=next(iter(view.namespaces.get(namespace, ())), {}), policies=policies)
            for obj in siblings:
                status = priority_status(obj, reports[obj.metadata.name],
                                         previous=self._previous("priority", namespace, obj),
                                         now=now)
                rejection = refused.pop(("OOMPriority", namespace, obj.metadata.name), None)
                await self._write("priority", namespace, obj,
                                  refusing(status, rejection, now=now))
        for rejection in refused.values():  # never valid: nothing indexed, only the refusal
            await self._write_refusal(rejection, refusing({}, rejection, now=now))
        for rejection in self.rejections():
            await self._announce(rejection)

    async def _write_refusal(self, rejection: Rejection, status: dict[str, Any]) -> None:
        key = (rejection.kind, rejection.namespace, rejection.name)
        if _same(self._written.get(key, {}), status):
            return
        self._written[key] = status
        if rejection.kind == "OOMPolicy":
            await asyncio.to_thread(self.cluster.patch_policy_status, rejection.name, status)
        else:
            await asyncio.to_thread(self.cluster.patch_priority_status, rejection.namespace,
                                    rejection.name, status)

    async def _announce(self, rejection: Rejection) -> None:
        """A Warning Event on the object, once per refused version."""
        key = (rejection.uid, rejection.generation)
        if key in self._announced:
            return
        self._announced.add(key)
        involved = {"kind": rejection.kind, "name": rejection.name, "uid": rejection.uid,
                    "apiVersion": f"{GROUP}/{VERSION}"}
        if rejection.namespace:
            involved["namespace"] = rejection.namespace
        await asyncio.to_thread(self.cluster.event, involved, "OOMGuardRejected",
                                rejection.message, "Warning")

    async def _retention(self, view: ClusterView) -> None:
        now = datetime.now(UTC)
        for store in view.decisions.values():
            same_node: list[OOMDecision] = list(store)
            for decision in same_node:
                ended = abandoned(decision, now=now)
                if ended is not None:
                    log.warning("decision %s: %s", decision.metadata.name,
                                ended["conditions"][-1]["message"])
                    await asyncio.to_thread(self.cluster.patch_decision_status,
                                            decision.metadata.name, ended)
                    continue
                if expired(decision, same_node, now=now, keep_for=self.options.keep_for,
                           keep_per_node=self.options.keep_per_node):
                    await asyncio.to_thread(self.cluster.delete_decision,
                                            decision.metadata.name)

    def _previous(self, kind: str, namespace: str,
                  obj: OOMPolicy | OOMPriority) -> dict[str, Any]:
        written = self._written.get((kind, namespace, obj.metadata.name))
        if written is not None:
            return written
        return obj.status.wire() if obj.status is not None else {}

    async def _write(self, kind: str, namespace: str, obj: OOMPolicy | OOMPriority,
                     status: dict[str, Any]) -> None:
        key = (kind, namespace, obj.metadata.name)
        if _same(self._previous(kind, namespace, obj), status):
            return
        if kind == "policy":
            await asyncio.to_thread(self.cluster.patch_policy_status, obj.metadata.name, status)
        else:
            await asyncio.to_thread(self.cluster.patch_priority_status, namespace,
                                    obj.metadata.name, status)
        self._written[key] = status


def _same(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Equal but for the conditions' transition times."""
    def strip(status: dict[str, Any]) -> dict[str, Any]:
        return {**status, "conditions": sorted(
            tuple(sorted((k, str(v)) for k, v in c.items() if k != "lastTransitionTime"))
             for c in status.get("conditions", []))}
    return strip({k: v for k, v in old.items() if v is not None}) == strip(
        {k: v for k, v in new.items() if v is not None})
