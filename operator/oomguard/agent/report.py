"""Writing this node's NodeMemoryReport, on the cadence `Publisher` plans.

Thousands of agents write to one etcd, so a write carries only what is due: a "summary"
is a merge patch of the node's signals, the pressure and the times (a few hundred bytes,
every heartbeat at rest); a "full" write adds the per-pod detail (when it changed
materially, every few minutes at rest, every second under pressure). The sampling loop
reads only node signals at rest, so the writer reads the pods itself: every `scan_seconds`
to notice a material change, and afresh for every full write.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from oomguard import __version__
from oomguard.agent.loop import Clock, NodeReader
from oomguard.agent.metrics import AgentMetrics
from oomguard.agent.publish import Publisher, PublishPolicy, Write
from oomguard.api import (
    API_VERSION,
    REPORTS,
    NodeMemory,
    NodeMemoryReportStatus,
    PodMemory,
    Pressure,
)
from oomguard.kube import Backoff, NodeApi, UnreachableError

log = logging.getLogger(__name__)


REST_TICK = 1.0
"""How often the writer looks at rest: a plan costs nothing, a scan is every scan_seconds."""
SUMMARY_FIELDS = {"node", "observed_time", "heartbeat_time", "pressure", "pressure_since"}
OWNER_WAIT = 2.0
"""How long the first write waits for the Node (the report's owner) to be known."""


@dataclass(frozen=True)
class Observation:
    """The sampling loop's latest view of the node."""

    memory: NodeMemory
    pressure: Pressure
    at: datetime
    since: datetime | None = None
    """When the current episode of pressure began; None without pressure."""


class ReportWriter:
    """Owns the node's report: creates it, then patches its status as planned. Runs on its
    own thread, woken by the loop when pressure changes; `tick` is one round."""

    def __init__(self, api: NodeApi, node: str, reader: NodeReader, clock: Clock,
                 metrics: AgentMetrics, *, policy: PublishPolicy | None = None,
                 scan_seconds: float = 10.0,
                 owner: Callable[[], dict[str, Any] | None] = lambda: None) -> None:
        self.api, self.node, self.reader, self.clock = api, node, reader, clock
        self.metrics = metrics
        self.policy = policy or PublishPolicy()
        self.scan_seconds = scan_seconds
        self.owner = owner
        """An ownerReference to the Node once it is known, so that the report goes with
        its node."""
        self._started = clock.monotonic()
        self._publisher = Publisher(self.policy)
        self._latest: Observation | None = None
        self._pods: list[PodMemory] = []
        self._unmeasured: list[str] = []
        self._pods_memory: NodeMemory | None = None
        self._pods_read: tuple[float, datetime] | None = None
        self._exists = False
        self._since_written = True
        """Whether the report may hold a pressureSince, to be removed when pressure ends
        (at start it may: an earlier run's)."""
        self._last_write = float("-inf")
        self._retry_at = float("-inf")
        self._backoff = Backoff(first=0.5, cap=5.0)
        self._wakeup = threading.Condition()
        self._stopping = False
        self._poked = False
        self._thread = threading.Thread(target=self._run, name="node-report", daemon=True)

    def observe(self, memory: NodeMemory, pressure: Pressure) -> None:
        """The loop's latest sample; a change of pressure is written at once."""
        with self._wakeup:
            before = self._latest
            now = self.clock.now()
            since = None if pressure == "None" else (
                before.since if before is not None and before.since is not None else now)
            self._latest = Observation(memory, pressure, now, since)
            if before is None or before.pressure != pressure:
                self._poked = True
                self._wakeup.notify_all()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            try:
                delay = self.tick()  # not under the lock: `observe` must not wait for the API
            except Exception:  # a writer that stops silently would leave the report stale
                log.exception("report: unexpected error")
                delay = REST_TICK
            with self._wakeup:
                if not self._poked and not self._stopping:
                    self._wakeup.wait(delay)
                if self._stopping:
                    return
                self._poked = False

    def tick(self) -> float:
        """Write what is due; the seconds until it is worth looking again."""
        latest = self._latest
        now = self.clock.monotonic()
        if latest is None:
            return REST_TICK
        if not self._exists and self.owner() is None and now - self._started < OWNER_WAIT:
            return 0.1
        if now < self._retry_at:
            return self._retry_at - now
        if self._pods_read is None or now - self._pods_read[0] >= self.scan_seconds:
            self._read_pods(now)
        write = self._publisher.plan(now, latest.pressure, self._usage())
        if write == "full" and self._pods_read is not None and now > self._pods_read[0]:
            self._read_pods(now)  # the operator decides from it: node and pods of one read
        if write != "none":
            try:
                self._write(write, latest)
            except UnreachableError as error:
                log.debug("report not written: %s", error)
                self._retry_at = now + self._backoff.delay()
                return self._retry_at - now
            except ApiException as error:
                log.warning("report write refused: %s %s", error.status, error.reason)
                if error.status == 404:  # deleted under us: create it again, in full
                    self._exists = False
                    self._publisher = Publisher(self.policy)
                self._retry_at = now + self._backoff.delay()
                return self._retry_at - now
            self._backoff.reset()
            self._publisher.written(write, now, latest.pressure, self._usage())
            self._last_write = now
        if latest.pressure == "None":
            return min(REST_TICK, self.scan_seconds, self.policy.heartbeat_seconds)
        return max(self.policy.pressure_seconds - (now - self._last_write), 0.05)

    def _usage(self) -> dict[str, int]:
        return {p.uid: p.usage.unreclaimable_bytes for p in self._pods}

    def _read_pods(self, now: float) -> None:
        sample = self.reader.read()
        self._pods, self._pods_memory = sample.pods, sample.memory
        self._unmeasured = sorted(sample.unmeasured)
        self._pods_read = (now, self.clock.now())

    def _write(self, write: Write, latest: Observation) -> None:
        if not self._exists:
            self._create()
        # A full write carries node and pods measured together: available memory newer
        # than the pods would make a growing pod look small against the need.
        memory = self._pods_memory if write == "full" and self._pods_memory else latest.memory
        status = NodeMemoryReportStatus(
            node=memory, observed_time=latest.at, heartbeat_time=self.clock.now(),
            pressure=latest.pressure, pressure_since=latest.since,
            heartbeat_seconds=self.policy.heartbeat_seconds,
            agent_version=__version__,
            pods_observed_time=self._pods_read[1] if self._pods_read else None)
        if write == "full":
            wire = status.model_dump(mode="json", by_alias=True, exclude_none=True)
            # Zero counters are the schema's defaults: leaving them out halves the detail.
            wire["pods"] = [p.model_dump(mode="json", by_alias=True, exclude_defaults=True)
                            for p in self._pods]
            wire["unmeasuredPods"] = self._unmeasured
        else:
            wire = status.model_dump(mode="json", by_alias=True, exclude_none=True,
                                     include=SUMMARY_FIELDS)
        if latest.since is None and self._since_written:
            wire["pressureSince"] = None  # a merge patch's null: the episode has ended
        self._send(write, {"status": wire})
        self._since_written = latest.since is not None

    def _create(self) -> None:
        meta: dict[str, Any] = {"name": self.node}
        if (owner := self.owner()) is not None:
            meta["ownerReferences"] = [owner]
        body = {"apiVersion": API_VERSION, "kind": "NodeMemoryReport", "metadata": meta}
        try:
            self.api.create(REPORTS, body)
        except ApiException as error:
            if error.status != 409:  # 409: it exists, from an earlier run
                raise
        self._count("create", body)
        self._exists = True

    def _send(self, write: Write, body: dict[str, Any]) -> None:
        self.api.merge_status(REPORTS, self.node, body)
        self._count(write, body)

    def _count(self, kind: str, body: dict[str, Any]) -> None:
        """The body's size as the client sends it (json.dumps with default separators)."""
        self.metrics.report_writes.labels(kind).inc()
        self.metrics.report_bytes.labels(kind).inc(len(json.dumps(body)))
