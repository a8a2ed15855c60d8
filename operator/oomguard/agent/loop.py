"""The node agent's loop: sample, decide, act, and keep track of what is in flight.

The loop knows nothing of cgroup files or of the API server: it reads through a
NodeReader, kills through a PodKiller and asks a Clock for the time, so the same loop
serves the standalone mode, the in-cluster agent and tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from oomguard.api import NodeMemory, OOMDecision, PodMemory, VictimStatus
from oomguard.api.meta import Condition
from oomguard.decisions import decision_from_outcome
from oomguard.engine import Outcome, Snapshot, decide
from oomguard.engine.pressure import Assessment, assess, select_policy
from oomguard.inputs import Inputs

KillOutcome = Literal["Killed", "AlreadyGone", "Refused", "Failed"]


@dataclass(frozen=True)
class NodeSample:
    memory: NodeMemory
    pods: list[PodMemory]
    unmeasured: tuple[str, ...] = ()
    """UIDs of pod cgroups present but unreadable this time: not gone."""


@dataclass(frozen=True)
class KillResult:
    outcome: KillOutcome
    message: str = ""
    reclaimed_bytes: int = 0
    duration_seconds: float = 0.0


class NodeReader(Protocol):
    def read_node(self) -> NodeMemory:
        """The node's signals alone: cheap enough to read at every sample."""
        ...

    def read(self) -> NodeSample:
        """The node and every pod."""
        ...


class PodKiller(Protocol):
    def kill(self, uid: str) -> KillResult:
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
    _last: tuple[float, int] | None = None
    _rate: float = 0.0
    _last_dry_run: tuple[tuple[str, ...], float] | None = None

    def step(self) -> Step:
        """Read the node; only under pressure, or with a victim in flight, read every pod
        and decide. At rest a sample costs a few file reads instead of a few per pod."""
        mono = self.clock.monotonic()
        memory = self.reader.read_node()
        policy = select_policy(self.view.policies, self.node, self.view.nodes.get(self.node, {}))
        assessment = assess(memory, policy)
        if assessment.pressure == "None" and not self.decisions:
            self._observe_rate(mono, memory.available_bytes)
            self._pressure_since = None
            return Step(memory, assessment)
        sample = self.reader.read()
        self._observe_rate(mono, sample.memory.available_bytes)
        present = {p.uid for p in sample.pods}.union(sample.unmeasured)
        self.decisions = [d for d in self.decisions if _any_present(d, present)]
        outcome = decide(self._snapshot(sample))
        if outcome.pressure == "None":
            self._pressure_since = None
        elif self._pressure_since is None:
            self._pressure_since = mono
        decision = None
        if outcome.victims and self.may_act(outcome):
            enforce = outcome.mode == "Enforce"
            decision = self._execute(outcome) if enforce else self._dry_run(outcome, mono)
        return Step(sample.memory, assess(sample.memory, policy), outcome, decision,
                    self._pressure_since)

    def next_interval(self, step: Step) -> float:
        headroom = step.memory.available_bytes - step.assessment.soft_bytes
        return self.sampling.interval(max(headroom, 0), self._rate)

    def _observe_rate(self, mono: float, available: int) -> None:
        if self._last is not None and mono > self._last[0]:
            self._rate = max((self._last[1] - available) / (mono - self._last[0]), 0.0)
        self._last = (mono, available)

    def _snapshot(self, sample: NodeSample) -> Snapshot:
        return Snapshot(
            node=self.node,
            memory=sample.memory,
            usage=sample.pods,
            pods=self.view.pods,
            now=self.clock.now(),
            node_labels=self.view.nodes.get(self.node, {}),
            namespaces=self.view.namespaces,
            owners=self.view.owners,
            policies=self.view.policies,
            priorities=self.view.priorities,
            decisions=self.decisions,
            unmeasured=sample.unmeasured,
        )

    def _dry_run(self, outcome: Outcome, mono: float) -> OOMDecision | None:
        victims = tuple(v.group.name for v in outcome.victims)
        last = self._last_dry_run
        if last is not None and last[0] == victims and mono - last[1] < outcome.cooldown_seconds:
            return None
        self._last_dry_run = (victims, mono)
        decision = decision_from_outcome(outcome, decided_by="agent", at=self.clock.now())
        self.emit(decision)
        return decision

    def _execute(self, outcome: Outcome) -> OOMDecision:
        """Kill every victim pod on this node; the decision records each outcome."""
        start = self.clock.monotonic()
        decision = decision_from_outcome(outcome, decided_by="agent", at=self.clock.now())
        spec, status = decision.spec, decision.status
        assert status is not None
        if self.standalone and spec.action != "Kill":
            status = status.model_copy(update={"conditions": [_substituted(spec.action)]})
            spec = spec.model_copy(update={"action": "Kill"})
        self.decisions.append(decision.model_copy(update={"spec": spec, "status": status}))
        node_of = {p.uid: p.node_name for v in spec.victims for p in v.pods}
        victims = [  # pods on other nodes are left to their own agents
            self._kill(v) if node_of[v.uid] in ("", self.node) else v for v in status.victims
        ]
        status = status.model_copy(update={
            "phase": finished_phase(victims),
            "victims": victims,
            "reclaimed_bytes": sum(v.reclaimed_bytes for v in victims),
            "completion_time": self.clock.now(),
            "duration_seconds": self.clock.monotonic() - start,
        })
        decision = decision.model_copy(update={"spec": spec, "status": status})
        self.decisions[-1] = decision
        self.emit(decision)
        return decision

    def _kill(self, victim: VictimStatus) -> VictimStatus:
        result = self.killer.kill(victim.uid)
        return victim.model_copy(update={
            "outcome": result.outcome,
            "message": result.message,
            "reclaimed_bytes": result.reclaimed_bytes,
            "duration_seconds": result.duration_seconds,
        })


def _substituted(action: str) -> Condition:
    return Condition(
        type="ActionSubstituted", status="True", reason="Standalone",
        message=f"the policy's {action} acts as Kill: there is no API server to evict through",
    )


def finished_phase(statuses: list[VictimStatus]) -> Literal["Completed", "Failed"]:
    """Completed when every pod is gone or left to others (Pending: on another node)."""
    ok = {"Killed", "AlreadyGone", "Pending"}
    return "Completed" if all(s.outcome in ok for s in statuses) else "Failed"


def _any_present(decision: OOMDecision, present: set[str]) -> bool:
    return any(p.uid in present for v in decision.spec.victims for p in v.pods)
