"""The operator's Prometheus metrics, in a registry of its own (one per operator, so that
tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.decisions = Counter(
            "oomguard_decisions", "Decisions made, by action and mode.",
            ["action", "mode"], registry=self.registry)
        self.outcomes = Counter(
            "oomguard_decision_outcomes", "Decisions finished, by action and phase.",
            ["action", "phase"], registry=self.registry)
        self.latency = Histogram(
            "oomguard_decision_latency_seconds",
            "From a pressured report's arrival to its decision recorded.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=self.registry)
        self.pressured = Gauge(
            "oomguard_nodes_under_pressure",
            "Nodes whose latest report shows pressure (Stale: pressured, but too old to act "
            "on).",
            ["pressure"], registry=self.registry)
        self.stale_reports = Counter(
            "oomguard_stale_reports",
            "Pressured reports older than the bound, which started no decision.",
            registry=self.registry)
        self.report_age = Histogram(
            "oomguard_report_age_seconds", "Age of reports when the operator receives them.",
            buckets=(0.1, 0.5, 1, 5, 30, 60, 300), registry=self.registry)
