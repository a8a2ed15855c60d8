"""The node agent's loop: sample, decide, act, and keep track of what is in flight.

The loop knows nothing of cgroup files or of the API server: it reads through a
NodeReader, kills through a PodKiller and asks a Clock for the time, so the same loop
serves the standalone mode, the in-cluster agent and tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from oomguard.api import NodeMemory, OOMDecision, PodMemory
from oomguard.decisions import (
    DryRunMark,
    VictimResult,
    decision_from_outcome,
    dry_run_due,
    finished,
    on_node,
    substituted,
)
from oomguard.engine import Outcome, decide
from oomguard.engine.model import Assessment
from oomguard.engine.pressure import assess_node
from oomguard.inputs import Inputs


@dataclass(frozen=True)
class NodeSample:
    memory: NodeMemory
    pods: list[PodMemory]
    unmeasured: tuple[str, ...] = ()
    """UIDs of pod cgroups present but unreadable this time: not gone."""


class NodeReader(Protocol):
    def read_node(self) -> NodeMemory:
        """The node's signals alone: cheap enough to read at every sample."""
        ...

    def read(self) -> NodeSample:
        """The node and every pod."""
        ...


class PodKiller(Protocol):
    def kill(self, uid: str) -> VictimResult:
        """Kill every process of the pod's cgroups, found from the UID alone."""
        ...


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def now(self) -> datetime: ...


def always(_outcome: Outcome) -> bool:
    """The standalone agent acts on every outcome: nobody else will."""
    return True


@dataclass(frozen=True)
class Step:
    """What one pass of the loop saw and did."""

    memory: NodeMemory
    assessment: Assessment
    outcome: Outcome | None = None
    """None on a quiet step: no pressure and nothing in flight, so no pod was read."""
    decision: OOMDecision | None = None
    pressure_since: float | None = None
    """Monotonic time of the first sample of the current pressure episode."""


@dataclass(frozen=True)
class Sampling:
    """How often to sample: the time the headroom above the soft threshold lasts at the
    assumed allocation rate (or twice the observed one), within [fastest, slowest]."""

    fastest: float = 0.02
    slowest: float = 1.0
    assumed_rate: float = float(1 << 30)
    """Bytes per second a burst may allocate; at least 1GiB/s."""

    def interval(self, headroom_bytes: int, observed_rate: float) -> float:
        rate = max(self.assumed_rate, 2 * observed_rate)
        return min(max(headroom_bytes / rate, self.fastest), self.slowest)


@dataclass
class Agent:
    """One node's agent. `view` holds pods, policies and priorities; `emit` receives each
    decision once executed. Dry runs are emitted when their victims change, or at most
    once per cooldown, not on every sample."""

    node: str
    reader: NodeReader
    killer: PodKiller
    clock: Clock
    view: Inputs
    emit: Callable[[OOMDecision], None]
    standalone: bool = False
    may_act: Callable[[Outcome], bool] = always
    """Whether to act on an outcome with victims now. The in-cluster agent acts only when
    it must act alone: the operator decides, and the agent executes its decisions."""
    sampling: Sampling = field(default_factory=Sampling)
    decisions: list[OOMDecision] = field(default_factory=list)
    _pressure_since: float | None = None
    _pressure_began: datetime | None = None
    """The wall time of `_pressure_since`: what a Soft grace period counts from."""
    _last: tuple[float, int] | None = None
    _rate: float = 0.0
    _last_dry_run: DryRunMark | None = None

    def step(self) -> Step:
        """Read the node; only under pressure, or with a victim in flight, read every pod
        and decide. At rest a sample costs a few file reads instead of a few per pod."""
        mono = self.clock.monotonic()
        memory = self.reader.read_node()
        assessment = assess_node(memory, self.view.policies, self.node,
                                 self.view.nodes.get(self.node, {}))
        if assessment.pressure == "None" and not self.decisions:
            self._observe_rate(mono, memory.available_bytes)
            self._pressure_since = self._pressure_began = None
            return Step(memory, assessment)
        sample = self.reader.read()
        self._observe_rate(mono, sample.memory.available_bytes)
        present = {p.uid for p in sample.pods}.union(sample.unmeasured)
        self.decisions = [d for d in self.decisions if _any_present(d, present)]
        now = self.clock.now()
        outcome = decide(self.view.snapshot(
            self.node, sample.memory, sample.pods, now=now,
            decisions=self.decisions, unmeasured=sample.unmeasured,
            pressure_since=self._pressure_began or now))
        if outcome.pressure == "None":
            self._pressure_since = self._pressure_began = None
        elif self._pressure_since is None:
            self._pressure_since, self._pressure_began = mono, now
        decision = None
        if outcome.victims and self.may_act(outcome):
            enforce = outcome.mode == "Enforce"
            decision = self._execute(outcome) if enforce else self._dry_run(outcome, mono)
        return Step(sample.memory, outcome.assessment, outcome, decision, self._pressure_since)

    def next_interval(self, step: Step) -> float:
        headroom = step.memory.available_bytes - step.assessment.soft_bytes
        return self.sampling.interval(max(headroom, 0), self._rate)

    def _observe_rate(self, mono: float, available: int) -> None:
        if self._last is not None and mono > self._last[0]:
            self._rate = max((self._last[1] - available) / (mono - self._last[0]), 0.0)
        self._last = (mono, available)

    def _dry_run(self, outcome: Outcome, mono: float) -> OOMDecision | None:
        victims = tuple(v.group.name for v in outcome.victims)
        if not dry_run_due(self._last_dry_run, victims, at=mono,
                           cooldown_seconds=outcome.cooldown_seconds):
            return None
        self._last_dry_run = (victims, mono)
        decision = decision_from_outcome(outcome, decided_by="agent", at=self.clock.now())
        self.emit(decision)
        return decision

    def _execute(self, outcome: Outcome) -> OOMDecision:
        """Kill every victim pod on this node; the decision records each outcome."""
        start = self.clock.monotonic()
        decision = decision_from_outcome(outcome, decided_by="agent", at=self.clock.now())
        if self.standalone and decision.spec.action != "Kill":
            decision = substituted(
                decision, "Kill", reason="Standalone",
                message=f"the policy's {decision.spec.action} acts as Kill: there is no API "
                "server to evict through")
        assert decision.status is not None
        self.decisions.append(decision)
        here = on_node(decision, self.node)  # pods on other nodes: left to their own agents
        results = {v.uid: self.killer.kill(v.uid) for v in decision.status.victims
                   if v.uid in here}
        decision = decision.model_copy(update={"status": finished(
            decision.status, results, now=self.clock.now(),
            duration_seconds=self.clock.monotonic() - start)})
        self.decisions[-1] = decision
        self.emit(decision)
        return decision


def _any_present(decision: OOMDecision, present: set[str]) -> bool:
    return any(p.uid in present for v in decision.spec.victims for p in v.pods)
