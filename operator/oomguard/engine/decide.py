"""One decision for one node: policy, pressure, eligibility, groups, ranking, victims."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime

from oomguard.engine.eligibility import NEVER, UNKNOWN_POD, Context, exclusion
from oomguard.engine.grouping import Workloads, build_groups, group_name
from oomguard.engine.model import (
    Exclusion,
    Group,
    Outcome,
    Pod,
    PodPriority,
    Ranked,
    Snapshot,
)
from oomguard.engine.pressure import assess, select_policy
from oomguard.engine.priorities import DEFAULT_PRIORITY, resolve
from oomguard.engine.ranking import rank, size
from oomguard.engine.victims import in_flight, take_victims


def decide(snapshot: Snapshot) -> Outcome:
    """Rank the node's groups and pick the victims. Pure: the same snapshot always gives
    the same outcome, whatever the order of its inputs."""
    s = snapshot
    policy = select_policy(s.policies, s.node, s.node_labels)
    spec = policy.spec
    assessment = assess(s.memory, policy)
    usage = {p.uid: p.usage.unreclaimable_bytes for p in s.usage}
    flight = in_flight(
        s.decisions, s.node, present=usage.keys() | set(s.unmeasured), pressure=assessment.pressure,
        cooldown_seconds=spec.cooldown_seconds, now=s.now,
    )
    # A pod whose cgroup is on the node but whose usage could not be read is not a pod
    # using nothing: it counts at what it may use, is marked, and is never passed over for
    # holding "no memory", so that no other pod dies in its place. (A pod with neither a
    # reading nor an unreadable cgroup has no cgroup here: it holds nothing.)
    unmeasured = set(s.unmeasured) - usage.keys()
    if unmeasured:
        usage.update({p.uid: estimated_usage(p) for p in s.pods if p.uid in unmeasured})
    action = {"None": None, "Soft": spec.actions.soft, "Hard": spec.actions.hard}[
        assessment.pressure
    ]
    ctx = Context(s.node, s.node_uid, frozenset(spec.protected_namespaces), flight.pods,
                  flight.refused,
                  frozenset(s.budget_exhausted) if action == "Evict" else frozenset())
    resolution = resolve(s.pods, s.priorities, s.namespaces, policy)
    workloads = Workloads(s.owners)

    excluded: list[Exclusion] = []
    members: list[tuple[Pod, PodPriority, str]] = []
    elsewhere: list[Pod] = []
    releasing = 0
    settings = resolution.by_pod
    for pod in s.pods:
        setting = settings.get(pod.uid, DEFAULT_PRIORITY)
        reason = exclusion(pod, ctx)
        if reason is None:
            members.append((pod, setting, group_name(pod, setting, workloads)))
            continue
        excluded.append(reason)
        if reason.reason == "Terminating" or (
            reason.reason == "InFlightVictim" and flight.blocking
        ):
            releasing += usage.get(pod.uid, 0)
        elif reason.reason == "NotOnNode":
            elsewhere.append(pod)
    known = {pod.uid for pod in s.pods}
    excluded.extend(
        Exclusion(p.uid, p.uid, UNKNOWN_POD, "pod cgroup on the node with no known Pod object")
        for p in s.usage
        if p.uid not in known
    )

    groups = build_groups(members, usage)
    if unmeasured:
        for group in groups.values():
            group.unmeasured = [p.uid for p in group.pods if p.uid in unmeasured]
    _join(groups, elsewhere, settings, workloads)
    candidates = []
    for group in groups.values():
        if group.preference == NEVER:
            excluded.extend(
                Exclusion(p.ref, p.uid, NEVER, f"group {group.name} has preference Never")
                for p in group.pods
            )
        else:
            candidates.append(group)
    excluded.sort(key=lambda e: (e.pod, e.uid))

    ranking = rank(candidates, spec.ranking, spec.hierarchy, groups.values())
    need = max(assessment.need_bytes - releasing, 0)
    grace = soft_grace_remaining(assessment.pressure, spec.thresholds.soft_grace_seconds,
                                 s.pressure_since, s.now)
    victims = ([] if flight.blocking or need == 0 or grace is not None
               else take_victims(ranking, need))
    return Outcome(
        node=s.node,
        policy=policy.metadata.name,
        mode=spec.mode,
        pressure=assessment.pressure,
        capacity_bytes=s.memory.capacity_bytes,
        available_bytes=s.memory.available_bytes,
        need_bytes=assessment.need_bytes,
        releasing_bytes=releasing,
        action=action,
        victims=victims,
        ranking=ranking,
        excluded=excluded,
        priorities=resolution.reports,
        soft_threshold_bytes=assessment.soft_bytes,
        psi_full_avg10=s.memory.psi.full_avg10,
        cooldown_seconds=spec.cooldown_seconds,
        blocked_by=flight.blocking,
        grace_remaining_seconds=grace,
        no_victim=None if victims or assessment.pressure == "None" or flight.blocking
        or grace is not None else why_no_victim(need, releasing, ranking, excluded),
    )


def why_no_victim(need: int, releasing: int, ranking: list[Ranked],
                  excluded: list[Exclusion]) -> str:
    """Why pressure chose nobody: an SRE's first question when the node stays pressured."""
    if need == 0:
        return f"memory already being released ({size(releasing)}) covers the need"
    if ranking:
        return "no eligible group holds any memory"
    if not excluded:
        return "no pods on the node"
    reasons = Counter(e.reason for e in excluded)
    listed = ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items()))
    return f"every pod is excluded ({listed})"


def soft_grace_remaining(pressure: str, grace_seconds: int, since: datetime | None,
                         now: datetime) -> float | None:
    """Seconds of the Soft grace period still to run; None when it does not hold a victim
    back (no grace, no Soft pressure, or it has passed). Hard pressure never waits."""
    if pressure != "Soft" or grace_seconds == 0:
        return None
    held = 0.0 if since is None else max((now - since).total_seconds(), 0.0)
    return grace_seconds - held if held < grace_seconds else None


def estimated_usage(pod: Pod) -> int:
    """What an unmeasured pod is counted at: its memory limit where every container has
    one (it cannot use more), else the larger of its request and limits."""
    return pod.limits_bytes if pod.limited else max(pod.requests_bytes, pod.limits_bytes)


def join_members_elsewhere(victims: Iterable[Group], pods: Iterable[Pod],
                           snapshot: Snapshot) -> None:
    """Add to each victim group's `elsewhere` its members among `pods` on other nodes.
    The operator decides on a node's own pods, then looks further only for the victims'
    members, out of namespaces that may hold thousands of pods; pods elsewhere never
    change a ranking (usage counts on the node only), so the outcome stands."""
    policy = select_policy(snapshot.policies, snapshot.node, snapshot.node_labels)
    pods = [p for p in pods if p.node_name != snapshot.node]
    settings = resolve(pods, snapshot.priorities, snapshot.namespaces, policy).by_pod
    _join({g.name: g for g in victims}, pods, settings, Workloads(snapshot.owners))


def _join(groups: Mapping[str, Group], pods: Iterable[Pod],
          settings: Mapping[str, PodPriority], workloads: Workloads) -> None:
    """Running pods of other nodes join the group their own settings name, if it is one
    of `groups`: they are killed or evicted with it."""
    for pod in pods:
        if pod.phase == "Running" and not pod.terminating:
            group = groups.get(group_name(pod, settings.get(pod.uid, DEFAULT_PRIORITY),
                                          workloads))
            if group is not None:
                group.elsewhere.append(pod)
