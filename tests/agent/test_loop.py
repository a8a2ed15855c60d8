"""The agent loop's bookkeeping, with an in-memory node: in-flight victims, re-selection
from fresh data, dry-run throttling, and the sampling interval. Real cgroups are exercised
in test_standalone.py; here the node is a table we edit between steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from oomguard.agent.loop import Agent, NodeSample, Sampling
from oomguard.api import MemoryUsage, NodeMemory, OOMDecision, PodMemory
from oomguard.decisions import VictimResult
from oomguard.inputs import Inputs

from builders import Gi, Mi, pod, policy


@dataclass
class TableNode:
    """A node whose pods and available memory the test sets; kills remove pods."""

    available: int
    usage: dict[str, int]
    unkillable: set[str] = field(default_factory=set)
    kills: list[str] = field(default_factory=list)
    full_reads: int = 0
    t: float = 0.0

    def read_node(self) -> NodeMemory:
        return NodeMemory(capacity_bytes=16 * Gi, available_bytes=self.available)

    def read(self) -> NodeSample:
        self.full_reads += 1
        return NodeSample(
            self.read_node(),
            [PodMemory(uid=u, usage=MemoryUsage(anon_bytes=b)) for u, b in self.usage.items()],
        )

    def kill(self, uid: str) -> VictimResult:
        self.kills.append(uid)
        if uid in self.unkillable:
            return VictimResult("Failed", "processes in uninterruptible sleep")
        if uid not in self.usage:
            return VictimResult("AlreadyGone")
        freed = self.usage.pop(uid)
        self.available += freed
        return VictimResult("Killed", reclaimed_bytes=freed, duration_seconds=0.01)

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return datetime(2026, 11, 26, tzinfo=UTC) + timedelta(seconds=self.t)


def _agent(node: TableNode, pods: list, **spec) -> tuple[Agent, list[OOMDecision]]:  # type: ignore[no-untyped-def,type-arg]
    emitted: list[OOMDecision] = []
    view = Inputs(pods=pods, policies=[policy(**spec)])
    agent = Agent("node-a", node, node, node, view, emitted.append, standalone=True)
    return agent, emitted


def test_kills_the_chosen_group_and_records_the_outcome() -> None:
    a, b = pod("a"), pod("b")
    node = TableNode(available=1 * Gi, usage={a.uid: 3 * Gi, b.uid: 1 * Gi})
    agent, emitted = _agent(node, [a, b])
    step = agent.step()
    assert node.kills == [a.uid]
    assert step.decision is not None and step.decision.status is not None
    status = step.decision.status
    assert (status.phase, status.reclaimed_bytes) == ("Completed", 3 * Gi)
    assert [v.outcome for v in status.victims] == ["Killed"]
    assert step.decision.spec.action == "Kill"  # KillAndEvict/Evict mean Kill standalone
    assert [(c.type, c.reason) for c in status.conditions] == [("ActionSubstituted",
                                                                "Standalone")]
    assert "Evict acts as Kill" in status.conditions[0].message
    assert emitted == [step.decision]


def test_no_second_victim_while_the_first_still_releases_memory() -> None:
    a, b = pod("a"), pod("b")
    node = TableNode(available=1 * Gi, usage={a.uid: 3 * Gi, b.uid: 1 * Gi}, unkillable=set())
    agent, _ = _agent(node, [a, b])
    # The kill "succeeds" but the cgroup lingers (still releasing): put it back.
    agent.step()
    node.usage[a.uid] = 2 * Gi
    node.available = 1 * Gi
    node.t = 1.0
    step = agent.step()
    assert step.decision is None and step.outcome.blocked_by is not None
    assert node.kills == [a.uid]
    # Once it is gone, a new victim may be chosen.
    del node.usage[a.uid]
    node.t = 2.0
    assert agent.step().decision is not None
    assert node.kills == [a.uid, b.uid]


def test_failed_kill_is_reselected_from_fresh_data_never_a_random_kill() -> None:
    a, b = pod("a"), pod("b")
    node = TableNode(available=1 * Gi, usage={a.uid: 3 * Gi, b.uid: 2 * Gi}, unkillable={a.uid})
    agent, _ = _agent(node, [a, b])
    first = agent.step()
    assert first.decision is not None and first.decision.status is not None
    assert first.decision.status.phase == "Failed"
    node.t = 0.1
    agent.step()  # a failed decision bars nothing: the ranking decides again
    assert node.kills == [a.uid, a.uid]
    # A vanished victim: the next sample no longer shows it, so the next group is chosen.
    node.unkillable.clear()
    del node.usage[a.uid]
    node.t = 0.2
    assert agent.step().decision is not None
    assert node.kills[-1] == b.uid


def test_dry_run_acts_on_nothing_and_is_not_repeated_every_sample() -> None:
    a = pod("a")
    node = TableNode(available=1 * Gi, usage={a.uid: 3 * Gi})
    agent, emitted = _agent(node, [a], mode="DryRun", cooldownSeconds=10)
    for t in range(5):
        node.t = float(t)
        agent.step()
    assert node.kills == []
    assert [d.status.phase for d in emitted if d.status] == ["DryRun"]
    node.t = 11.0
    agent.step()
    assert len(emitted) == 2


def test_sampling_tightens_as_headroom_shrinks_and_with_fast_allocation() -> None:
    s = Sampling(fastest=0.02, slowest=1.0, assumed_rate=float(1 << 30))
    assert s.interval(8 * Gi, 0.0) == 1.0
    assert s.interval(256 * Mi, 0.0) == 0.25
    assert s.interval(0, 0.0) == 0.02
    assert s.interval(256 * Mi, 4.0 * Gi) == 256 * Mi / (8.0 * Gi)


def test_at_rest_only_the_node_is_read() -> None:
    a = pod("a")
    node = TableNode(available=8 * Gi, usage={a.uid: 3 * Gi})
    agent, _ = _agent(node, [a])
    step = agent.step()
    assert (step.assessment.pressure, step.outcome, node.full_reads) == ("None", None, 0)
    node.available = 1 * Gi  # pressure: the same step reads every pod and decides
    step = agent.step()
    assert node.full_reads == 1 and step.outcome is not None and step.decision is not None
