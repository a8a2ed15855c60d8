"""The in-cluster agent's Prometheus metrics and its `/metrics` and `/healthz` endpoint.

The metrics live in a registry of their own, so that several agents can run in one
process (tests) without clashing in the global one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

PRESSURE_LEVELS = {"None": 0, "Soft": 1, "Hard": 2}
KILL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HealthCheck = Callable[[], tuple[bool, str]]
"""Whether the agent is healthy, and a line saying why."""


class AgentMetrics:
    """What an SRE watches of one agent: sampling, pressure, kills, API writes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.samples = Counter(
            "oomguard_agent_samples", "Samples taken: node signals alone, or every pod too.",
            ["scope"], registry=r)
        self.scan_errors = Counter(
            "oomguard_agent_scan_errors", "Cgroups a scan skipped, and node signals that fell "
            "back to a weaker source, by reason.", ["reason"], registry=r)
        self.pressure = Gauge(
            "oomguard_agent_pressure_level", "Pressure the agent sees: 0 None, 1 Soft, 2 Hard.",
            registry=r)
        self.available = Gauge(
            "oomguard_agent_available_bytes", "Available memory at the last sample.", registry=r)
        self.decisions = Counter(
            "oomguard_agent_decisions", "Decisions executed (or, acting alone, made) by this "
            "agent, by who decided and final phase.", ["decided_by", "phase"], registry=r)
        self.victims = Counter(
            "oomguard_agent_victim_pods", "Victim pods acted on, by outcome.", ["outcome"],
            registry=r)
        self.kill_seconds = Histogram(
            "oomguard_agent_kill_duration_seconds", "Time to kill every process of a pod.",
            buckets=KILL_BUCKETS, registry=r)
        self.report_writes = Counter(
            "oomguard_agent_report_writes", "NodeMemoryReport writes, by kind (create, "
            "summary, full).", ["kind"], registry=r)
        self.report_bytes = Counter(
            "oomguard_agent_report_bytes", "Bytes of NodeMemoryReport request bodies, by kind.",
            ["kind"], registry=r)
        self.api_up = Gauge(
            "oomguard_agent_api_up", "1 while the API server answers the agent.", registry=r)
        self.cached_objects = Gauge(
            "oomguard_agent_cached_objects", "Objects the agent keeps, by resource: its "
            "node's pods, the priorities of their namespaces, every policy and namespace.",
            ["resource"], registry=r)
        self.api_errors = Counter(
            "oomguard_agent_api_errors", "API requests that failed to reach the API server or "
            "that it failed to serve.", registry=r)

    def observe_caches(self, counts: dict[str, int]) -> None:
        for resource, count in counts.items():
            self.cached_objects.labels(resource).set(count)

    def observe_pressure(self, pressure: str, available_bytes: int) -> None:
        self.pressure.set(PRESSURE_LEVELS[pressure])
        self.available.set(available_bytes)


def serve(metrics: AgentMetrics, health: HealthCheck, port: int,
          address: str = "") -> ThreadingHTTPServer:
    """Serve `/metrics` and `/healthz` on a daemon thread; `shutdown()` the server to stop.
    Port 0 takes a free port (see `server_address`)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._answer(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                ok, why = health()
                self._answer(200 if ok else 503, f"{why}\n".encode(), "text/plain")
            else:
                self._answer(404, b"not found\n", "text/plain")

        def _answer(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Scrapes and probes every few seconds are not worth a log line."""

    server = ThreadingHTTPServer((address, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="agent-metrics", daemon=True).start()
    return server
