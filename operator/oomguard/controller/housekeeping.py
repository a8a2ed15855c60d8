"""Statuses of OOMPriority and OOMPolicy objects, and decision retention, refreshed at most
once per interval from the indices; written only where they changed."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from oomguard.api import OOMDecision, OOMPolicy, OOMPriority
from oomguard.controller.statuses import (
    expired,
    namespace_reports,
    policy_status,
    priority_status,
)
from oomguard.controller.view import ALL, ClusterView
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

    def __init__(self, cluster: Cluster, options: Options) -> None:
        self.cluster, self.options = cluster, options
        self._due = 0.0
        self._view: ClusterView | None = None
        self._poked = False
        self._task: asyncio.Task[None] | None = None
        self._written: dict[tuple[str, str, str], dict[str, Any]] = {}

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
        policies: list[OOMPolicy] = list(view.policies.get(ALL, ()))
        nodes: dict[str, dict[str, str]] = {
            name: next(iter(store), {}) for name, store in view.nodes.items()}
        decisions = [d for store in view.decisions.values() for d in store]
        for policy in policies:
            status = policy_status(policy, policies=policies, nodes=nodes, decisions=decisions,
                                   previous=self._previous("policy", "", policy), now=now)
            await self._write("policy", "", policy, status)
        for namespace, store in view.priorities.items():
            siblings: list[OOMPriority] = list(store)
            reports = namespace_reports(
                namespace, pods=view.pods.get(("ns", namespace), ()), objs=siblings,
                labels=next(iter(view.namespaces.get(namespace, ())), {}), policies=policies)
            for obj in siblings:
                status = priority_status(obj, reports[obj.metadata.name],
                                         previous=self._previous("priority", namespace, obj),
                                         now=now)
                await self._write("priority", namespace, obj, status)

    async def _retention(self, view: ClusterView) -> None:
        now = datetime.now(UTC)
        for store in view.decisions.values():
            same_node: list[OOMDecision] = list(store)
            for decision in same_node:
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
