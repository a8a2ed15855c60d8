"""Properties of decide() that must hold on every node, checked on generated snapshots.

Table tests pin each ranking rule on two or three hand-picked pods; these check that the
rules compose: whatever the mix of namespaces, workloads, OOMPriority objects, policies
and pressure, the answer ignores input order, priority only ever protects, splitting a
workload hides nothing, and the victims are the shortest prefix that covers the need.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from itertools import pairwise
from typing import Any, TypeVar

from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from oomguard.api import MemoryUsage, NodeMemory, OOMPolicy, OOMPriority, PodMemory, parse_quantity
from oomguard.api.priority import GroupBy
from oomguard.engine import Outcome, Owner, OwnerRef, Pod, Snapshot, decide
from oomguard.engine.grouping import Workloads, group_name
from oomguard.engine.pressure import select_policy
from oomguard.engine.priorities import DEFAULT_PRIORITY, resolve, tenant_for

from builders import NODE, NODE_UID, NOW, Gi, Mi, decision, pod, policy, priority
from builders import snapshot as build_snapshot

T = TypeVar("T")

EXAMPLES = settings(max_examples=150, deadline=None)

CAPACITY = 16 * Gi
TEAMS = ("red", "blue")
TENANT_NAMESPACES = ("shop", "search", "batch", "ml")
APPS = ("api", "db", "cache", "worker")
TIERS = ("front", "back", "jobs")
NODE_LABELS = {"pool": "general"}
ALL_GROUPINGS: tuple[GroupBy, ...] = ("Pod", "Workload", "Label")
TARGET_LABEL = "oomguard.test/target"


def one_in(n: int) -> st.SearchStrategy[bool]:
    """True about once in `n` draws; shrinks to False."""
    return st.sampled_from([False] * (n - 1) + [True])


def mebibytes(high: int) -> st.SearchStrategy[int]:
    return st.integers(0, high).map(lambda m: m * Mi)


# --- snapshot strategies ----------------------------------------------------------------


@st.composite
def _pod_fields(draw: st.DrawFn) -> dict[str, Any]:
    """State of one pod: mostly running on this node, sometimes not a candidate at all."""
    requests = draw(st.sampled_from([0, 64 * Mi, 256 * Mi, 512 * Mi, 1 * Gi, 2 * Gi]))
    return {
        "created": float(draw(st.integers(0, 86_400))),
        "requests_bytes": requests,
        "limits_bytes": requests + draw(st.sampled_from([0, 256 * Mi, 1 * Gi])),
        "terminating": draw(one_in(8)),
        "phase": draw(st.sampled_from(["Running"] * 9 + ["Pending", "Succeeded"])),
        "node_name": draw(st.sampled_from([NODE] * 7 + ["node-b"])),
        "limited": draw(st.booleans()),
    }


POD_FIELDS = _pod_fields()


def workload_owner(namespace: str, kind: str, name: str, parent: Owner | None = None) -> Owner:
    """A controller object with a UID unique across namespaces, as the API server gives."""
    return Owner(namespace, kind, name, f"uid-{namespace}-{kind}-{name}",
                 reference(parent) if parent else None)


def reference(o: Owner) -> OwnerRef:
    return OwnerRef(o.kind, o.name, o.uid)


@st.composite
def workloads(
    draw: st.DrawFn, namespace: str, min_workloads: int = 0
) -> tuple[list[Pod], list[Owner]]:
    """The pods of one namespace, as controllers create them: Deployments whose pods
    belong to one or two ReplicaSets (a rollout), StatefulSets, ReplicaSets the informer
    has not seen yet, and bare pods. Pods of one ReplicaSet share its template labels."""
    pods: list[Pod] = []
    owners: list[Owner] = []
    for w in range(draw(st.integers(min_workloads, 3))):
        app = draw(st.sampled_from(APPS))
        tier = draw(st.sampled_from(TIERS))
        kind = draw(st.sampled_from(["Deployment", "StatefulSet", "UnknownReplicaSet", "Bare"]))
        name = f"{app}-{w}"
        controllers: list[OwnerRef | None]
        if kind == "Deployment":
            deployment = workload_owner(namespace, "Deployment", name)
            revisions = [
                workload_owner(namespace, "ReplicaSet", f"{name}-rev{r}", parent=deployment)
                for r in range(draw(st.integers(1, 2)))
            ]
            owners += [deployment, *revisions]
            controllers = [reference(rs) for rs in revisions]
        elif kind == "StatefulSet":
            statefulset = workload_owner(namespace, "StatefulSet", name)
            owners.append(statefulset)
            controllers = [reference(statefulset)]
        elif kind == "UnknownReplicaSet":
            controllers = [reference(workload_owner(namespace, "ReplicaSet", name))]
        else:
            controllers = [None]
        for i in range(draw(st.integers(1, 4))):
            controller = draw(st.sampled_from(controllers))
            revision = controller.name if controller else name
            labels = {"app": app, "tier": tier, "revision": revision}
            pods.append(pod(f"{name}-{i}", namespace, labels=labels, controller=controller,
                            **draw(POD_FIELDS)))
    return pods, owners


@st.composite
def system_pods(draw: st.DrawFn) -> list[Pod]:
    """kube-system: critical DaemonSet pods and static control-plane pods."""
    return [
        pod(f"system-{i}", "kube-system", critical=draw(st.booleans()),
            mirror_of=draw(st.sampled_from([None, OwnerRef("Node", NODE, NODE_UID)])),
            **draw(POD_FIELDS))
        for i in range(draw(st.integers(0, 2)))
    ]


SELECTORS: tuple[dict[str, Any], ...] = (
    {},
    *({"matchLabels": {"app": app}} for app in APPS),
    *({"matchLabels": {"tier": tier}} for tier in TIERS),
    {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["back", "jobs"]}]},
    {"matchLabels": {"app": "db", "tier": "back"}},
)
"""Realistic selectors of specificity 0 to 2; the target of a test uses 3, so it wins."""


@st.composite
def grouping(draw: st.DrawFn, group_bys: Sequence[GroupBy]) -> dict[str, str]:
    by = draw(st.sampled_from(group_bys))
    if by == "Label":
        return {"by": "Label", "label": draw(st.sampled_from(["app", "tier"]))}
    return {"by": by}


@st.composite
def oom_priorities(
    draw: st.DrawFn, namespace: str, group_bys: Sequence[GroupBy]
) -> list[OOMPriority]:
    return [
        priority(
            f"prio-{i}", namespace,
            podSelector=draw(st.sampled_from(SELECTORS)),
            priority=draw(st.integers(-1000, 1000)),
            preference=draw(st.sampled_from([None, None, "Prefer", "Avoid", "Never"])),
            allowance=draw(st.sampled_from(["Requests", "Limits", "512Mi", "2Gi"])),
            group=draw(grouping(group_bys)),
        )
        for i in range(draw(st.integers(0, 3)))
    ]


@st.composite
def oom_policies(draw: st.DrawFn, namespaces: Sequence[str],
                 min_tenants: int = 0) -> list[OOMPolicy]:
    """One cluster-wide policy and maybe a more specific one for the node's pool (which
    then governs it), with tenants bounding what the teams may claim."""
    result = []
    names = ["cluster"] + (["pool"] if draw(st.booleans()) else [])
    for name in names:
        tenants = [
            {"namespaceSelector": {"matchLabels": {"team": draw(st.sampled_from(TEAMS))}},
             "maxPriority": draw(st.integers(-1000, 1000)),
             "allowNever": draw(st.booleans()),
             "allowAvoid": draw(st.booleans()),
             "maxAllowance": draw(st.sampled_from([None, "512Mi", "2Gi"]))}
            for _ in range(draw(st.integers(min_tenants, 2)))
        ]
        protected = ["kube-system"]
        if draw(one_in(4)):
            protected.append(draw(st.sampled_from(namespaces)))
        spec: dict[str, Any] = {
            "ranking": draw(st.sampled_from(["Priority", "KubeletCompatible"])),
            "hierarchy": draw(st.sampled_from(["Flat", "Namespace"])),
            "reclaimTo": draw(st.sampled_from(["15%", "20%", "40%"])),
            "protectedNamespaces": protected,
            "tenants": tenants,
        }
        if name == "pool":
            spec["nodeSelector"] = {"matchLabels": NODE_LABELS}
        result.append(policy(name, **spec))
    return result


@st.composite
def node_memory(draw: st.DrawFn) -> NodeMemory:
    """Available memory below the hard threshold (5%), between hard and soft (10%), or
    above soft, so that every pressure level comes up often."""
    available = draw(st.one_of(
        st.integers(0, 800), st.integers(820, 1630), st.integers(1640, 16 * 1024)
    ))
    return NodeMemory(capacity_bytes=CAPACITY, available_bytes=available * Mi)


@st.composite
def _memory_usage(draw: st.DrawFn) -> MemoryUsage:
    return MemoryUsage(
        anon_bytes=draw(mebibytes(3072)),
        file_bytes=draw(mebibytes(512)),
        kernel_bytes=draw(mebibytes(64)),
        swap_bytes=draw(st.sampled_from([0, 0, 0, 128 * Mi])),
    )


MEMORY_USAGE = _memory_usage()
"""A pod's measured memory; anon dominates what the ranking counts, as in practice."""


def measured(p: Pod, usage: MemoryUsage) -> PodMemory:
    return PodMemory(uid=p.uid, usage=usage)


SELDOM_A_DECISION = st.sampled_from([0, 0, 0, 1])
"""Most nodes have no victim of an earlier decision still around."""


@st.composite
def snapshots(
    draw: st.DrawFn,
    *,
    group_bys: Sequence[GroupBy] = ALL_GROUPINGS,
    tenant_default: GroupBy | None = None,
    decision_counts: st.SearchStrategy[int] = SELDOM_A_DECISION,
    max_namespaces: int = len(TENANT_NAMESPACES),
    min_tenants: int = 0,
    min_namespaces: int = 1,
) -> Snapshot:
    """A node with a few tenant namespaces (two teams), kube-system, OOMPriority objects,
    policies, usage measured for most pods on the node, a pod cgroup whose Pod is not
    known, and perhaps earlier decisions whose victims are still there.

    `tenant_default` gives each namespace at least one workload and a catch-all
    OOMPriority grouping by it, which more specific objects override."""
    namespaces = draw(st.lists(st.sampled_from(TENANT_NAMESPACES), min_size=min_namespaces,
                               max_size=max_namespaces, unique=True))
    teams = {ns: {"team": draw(st.sampled_from(TEAMS))} for ns in namespaces}
    pods: list[Pod] = draw(system_pods())
    owners: list[Owner] = []
    priorities: list[OOMPriority] = []
    for ns in namespaces:
        ns_pods, ns_owners = draw(workloads(
            ns, min_workloads=1 if tenant_default or min_namespaces > 1 else 0))
        pods += ns_pods
        owners += ns_owners
        priorities += draw(oom_priorities(ns, group_bys))
        if tenant_default:
            priorities.append(priority("tenant-default", ns, group={"by": tenant_default}))
    on_node = [p for p in pods if p.node_name == NODE and p.phase == "Running"]
    usage = [measured(p, draw(MEMORY_USAGE)) for p in on_node if not draw(one_in(10))]
    if draw(one_in(5)):
        usage.append(measured(pod("cgroup-without-pod", "unknown"), draw(MEMORY_USAGE)))
    decisions = []
    for d in range(draw(decision_counts) if on_node else 0):
        victim = draw(st.sampled_from(on_node))
        age = timedelta(seconds=draw(st.sampled_from([0, 5, 60])))
        phase = draw(st.sampled_from(["Executing", "Completed", "Failed"]))
        decisions.append(decision(f"decision-{d}", [victim], phase=phase, started=NOW - age))
    return Snapshot(
        node=NODE,
        memory=draw(node_memory()),
        usage=usage,
        pods=pods,
        now=NOW,
        node_labels=NODE_LABELS,
        node_uid=NODE_UID,
        namespaces=teams,
        owners={o.uid: o for o in owners},
        policies=draw(oom_policies(namespaces, min_tenants)),
        priorities=priorities,
        decisions=decisions,
    )


# --- helpers ----------------------------------------------------------------------------


def shuffled(items: Sequence[T], rnd: random.Random) -> list[T]:
    result = list(items)
    rnd.shuffle(result)
    return result


def digest(outcome: Outcome) -> dict[str, Any]:
    """Everything the outcome says, in a form that compares by value: groups by name and
    attributes, pods as sorted UIDs (their order inside a group carries no meaning)."""
    return {
        "policy": outcome.policy,
        "pressure": outcome.pressure,
        "need": outcome.need_bytes,
        "releasing": outcome.releasing_bytes,
        "blocked_by": outcome.blocked_by,
        "victims": [v.group.name for v in outcome.victims],
        "ranking": [
            (r.position, r.group.name, r.group.priority, r.group.preference,
             r.group.usage_bytes, r.group.allowance_bytes, r.group.created,
             sorted(p.uid for p in r.group.pods), r.reason)
            for r in outcome.ranking
        ],
        "excluded": outcome.excluded,
        "priorities": outcome.priorities,
    }


def ranking_names(outcome: Outcome) -> list[str]:
    return [r.group.name for r in outcome.ranking]


def victim_names(outcome: Outcome) -> list[str]:
    return [v.group.name for v in outcome.victims]


@st.composite
def parts_of(draw: st.DrawFn, total: int, count: int) -> list[int]:
    """`total` in `count` non-negative integer parts that sum to it exactly."""
    cuts = draw(st.lists(st.integers(0, total), min_size=count - 1, max_size=count - 1))
    return [b - a for a, b in pairwise([0, *sorted(cuts), total])]


# --- 1. order independence --------------------------------------------------------------


@EXAMPLES
@given(snapshot=snapshots(), rnd=st.randoms(use_true_random=False))
def test_outcome_does_not_depend_on_input_order(snapshot: Snapshot, rnd: random.Random) -> None:
    """Informers and list calls return objects in no fixed order; the decision must not
    change with it."""
    reordered = replace(
        snapshot,
        pods=shuffled(snapshot.pods, rnd),
        usage=shuffled(snapshot.usage, rnd),
        priorities=shuffled(snapshot.priorities, rnd),
        policies=shuffled(snapshot.policies, rnd),
    )
    assert digest(decide(reordered)) == digest(decide(snapshot))


@EXAMPLES
@given(snapshot=snapshots(decision_counts=st.integers(2, 3), max_namespaces=2),
       rnd=st.randoms(use_true_random=False))
def test_outcome_does_not_depend_on_decision_order(
    snapshot: Snapshot, rnd: random.Random
) -> None:
    """Earlier decisions come from a list call too; which one holds the node back and
    which one a pod is attributed to must not depend on their order."""
    reordered = replace(snapshot, decisions=shuffled(snapshot.decisions, rnd))
    assert digest(decide(reordered)) == digest(decide(snapshot))


def test_blocking_decision_does_not_depend_on_order_when_started_together() -> None:
    """creationTimestamp has one-second resolution: an agent's and the operator's decision
    can start in the same second. The newest-decision tie must break on something stable."""
    a, b, c = pod("a"), pod("b"), pod("c")
    base = build_snapshot([(a, 1 * Gi), (b, 1 * Gi), (c, 2 * Gi)])
    d1, d2 = decision("d1", [a]), decision("d2", [b])
    forward = decide(replace(base, decisions=[d1, d2]))
    backward = decide(replace(base, decisions=[d2, d1]))
    assert forward.blocked_by == backward.blocked_by


def test_victim_of_two_decisions_is_attributed_independently_of_order() -> None:
    """A pod chosen by the agent acting alone and then by the operator is in two
    decisions; its exclusion must name the same one whatever the order."""
    a = pod("a")
    base = build_snapshot([(a, 1 * Gi), (pod("c"), 2 * Gi)])
    agent, operator = decision("agent-1", [a]), decision("operator-1", [a])
    forward = decide(replace(base, decisions=[agent, operator]))
    backward = decide(replace(base, decisions=[operator, agent]))
    assert forward.excluded == backward.excluded


# --- 2. priority only protects ----------------------------------------------------------


@st.composite
def with_target(draw: st.DrawFn) -> tuple[Snapshot, Pod, OOMPriority, int]:
    """A snapshot plus one eligible pod grouped alone by its own OOMPriority (the most
    specific selector, so it wins every overlap), and a higher priority for it that the
    namespace's tenant bound does not clamp."""
    snapshot = draw(snapshots())
    namespace = draw(st.sampled_from(sorted(snapshot.namespaces)))
    governing = select_policy(snapshot.policies, snapshot.node, snapshot.node_labels)
    bound = tenant_for(namespace, snapshot.namespaces, governing).max_priority
    assume(bound > -1000)
    low = draw(st.integers(-1000, bound - 1))
    high = draw(st.integers(low + 1, bound))
    labels = {"app": draw(st.sampled_from(APPS)), "tier": draw(st.sampled_from(TIERS)),
              TARGET_LABEL: "yes"}
    target = pod("target", namespace, labels=labels,
                 created=float(draw(st.integers(0, 86_400))),
                 requests_bytes=draw(mebibytes(2048)))
    own = priority(
        "target", namespace, podSelector={"matchLabels": labels}, priority=low,
        preference=draw(st.sampled_from([None, "Prefer", "Avoid"])),
        allowance=draw(st.sampled_from(["Requests", "Limits", "1Gi"])),
    )
    snapshot = replace(
        snapshot,
        pods=[*snapshot.pods, target],
        usage=[*snapshot.usage, measured(target, draw(MEMORY_USAGE))],
        priorities=[*snapshot.priorities, own],
    )
    return snapshot, target, own, high


@EXAMPLES
@given(case=with_target())
def test_raising_a_groups_priority_never_moves_it_earlier(
    case: tuple[Snapshot, Pod, OOMPriority, int],
) -> None:
    """Flat: the group's sort key only grows. Namespace: the group only moves back inside
    its namespace's queue, and the namespaces' turns up to its old place are the same."""
    snapshot, target, own, high = case
    raised = own.model_copy(update={"spec": own.spec.model_copy(update={"priority": high})})
    others = [o for o in snapshot.priorities if o is not own]
    before = decide(snapshot)
    after = decide(replace(snapshot, priorities=[*others, raised]))
    name = f"{target.namespace}/{target.name}"
    assume(name in ranking_names(before))  # its namespace may be protected by the policy
    report = next(r for r in after.priorities if r.name == "target"
                  and r.namespace == target.namespace)
    assert (report.effective_priority, report.clamped_from) == (high, None)
    moved = ranking_names(after).index(name) - ranking_names(before).index(name)
    hierarchy = select_policy(snapshot.policies, NODE, NODE_LABELS).spec.hierarchy
    event(f"{hierarchy}: {'moved back' if moved else 'kept its place'}")
    assert moved >= 0


# --- 3. splitting a workload hides nothing ----------------------------------------------


@st.composite
def with_split_workload(draw: st.DrawFn) -> tuple[Snapshot, Snapshot, str]:
    """A snapshot where OOMPriority objects group by Workload, and the same node with each
    pod of one workload group replaced by one to four pods of the same controller and
    labels whose usage, requests and limits sum to the original's; the oldest part keeps
    the original's creation time."""
    snapshot = draw(snapshots(tenant_default="Workload"))
    outcome = decide(snapshot)
    workload_groups = [r.group for r in outcome.ranking
                       if r.group.group_by == "Workload" and r.group.name.count("/") == 2]
    assume(workload_groups)
    group = draw(st.sampled_from(workload_groups))
    usage_by_uid = {u.uid: u for u in snapshot.usage}
    replaced = {p.uid for p in group.pods}
    new_pods: list[Pod] = []
    new_usage: list[PodMemory] = []
    for n, original in enumerate(group.pods):
        parts = draw(st.integers(2 if n == 0 else 1, 4))
        requests = draw(parts_of(original.requests_bytes, parts))
        limits = draw(parts_of(original.limits_bytes, parts))
        found = usage_by_uid.get(original.uid)
        fields = found.usage.model_dump() if found else {}
        usage_parts = {field: draw(parts_of(value, parts)) for field, value in fields.items()}
        for i in range(parts):
            later = 0.0 if i == 0 else float(draw(st.integers(0, 3600)))
            part = replace(original, name=f"{original.name}-part{i}",
                           uid=f"{original.uid}-part{i}",
                           created=original.created + later,
                           requests_bytes=requests[i], limits_bytes=limits[i])
            new_pods.append(part)
            if found:
                new_usage.append(PodMemory(uid=part.uid, usage=MemoryUsage(
                    **{field: values[i] for field, values in usage_parts.items()})))
    split_snapshot = replace(
        snapshot,
        pods=[p for p in snapshot.pods if p.uid not in replaced] + new_pods,
        usage=[u for u in snapshot.usage if u.uid not in replaced] + new_usage,
    )
    return snapshot, split_snapshot, group.name


@EXAMPLES
@given(case=with_split_workload())
def test_splitting_a_workload_into_more_pods_changes_nothing(
    case: tuple[Snapshot, Snapshot, str],
) -> None:
    """The 2017 review's first demand: a workload must not escape by spreading the same
    memory over more, smaller pods (or cgroups)."""
    snapshot, split_snapshot, name = case
    before, after = decide(snapshot), decide(split_snapshot)

    def members(outcome: Outcome) -> int:
        return len(next(r.group for r in outcome.ranking if r.group.name == name).pods)

    assert members(after) > members(before)
    assert ranking_names(after) == ranking_names(before)
    assert victim_names(after) == victim_names(before)
    assert [(r.group.usage_bytes, r.group.allowance_bytes) for r in after.ranking] == [
        (r.group.usage_bytes, r.group.allowance_bytes) for r in before.ranking]


# --- 4. victims cover the need, minimally -----------------------------------------------


@EXAMPLES
@given(snapshot=snapshots())
def test_victims_cover_the_need_minimally_and_are_a_prefix(snapshot: Snapshot) -> None:
    """Kill enough to restore reclaimTo, counting what terminating pods release, and not
    one group more; always from the top of the ranking, never a group holding nothing."""
    outcome = decide(snapshot)
    need = max(outcome.need_bytes - outcome.releasing_bytes, 0)
    eligible = sum(r.group.usage_bytes for r in outcome.ranking)
    holding = [r for r in outcome.ranking if r.group.usage_bytes > 0]
    covered = outcome.expected_reclaim_bytes
    if outcome.blocked_by is not None or need == 0:
        event("no victim: blocked" if outcome.blocked_by else "no victim: nothing needed")
        assert outcome.victims == []
        return
    if eligible < need:
        event("victims: everything holding memory")
        assert outcome.victims == holding
        return
    event("victims: 1" if len(outcome.victims) == 1 else "victims: several, to cover the need")
    assert covered >= need
    assert covered - outcome.victims[-1].group.usage_bytes < need
    last = outcome.victims[-1].position
    assert outcome.victims == [r for r in holding if r.position <= last]


# --- 5. a tenant cannot push another tenant's group ahead of its own -------------------

POD_LABEL = "oomguard.test/pod"
CLAIMED_ALLOWANCES = ("Requests", "Limits", "1Mi", "512Mi", "2Gi", "64Gi", "1Pi")


@st.composite
def tenant_claims(draw: st.DrawFn, namespace: str) -> list[OOMPriority]:
    """Whatever a tenant may write in its namespace: any selector, priority, preference,
    allowance and grouping, overlapping as they please."""
    return [
        priority(
            f"claim-{i}", namespace,
            podSelector=draw(st.sampled_from(SELECTORS)),
            priority=draw(st.integers(-1000, 1000)),
            preference=draw(st.sampled_from([None, "Prefer", "Avoid", "Never"])),
            allowance=draw(st.sampled_from(CLAIMED_ALLOWANCES)),
            group=draw(grouping(ALL_GROUPINGS)),
        )
        for i in range(draw(st.integers(0, 4)))
    ]


def most_favourable(snapshot: Snapshot, namespace: str) -> list[OOMPriority]:
    """The claims, under the admin's rule for `namespace`, that put its pods as late as
    they can be, grouped as `snapshot`'s objects group them: one object per pod (chosen by
    its POD_LABEL) with the tenant's maxPriority, its most protective preference allowed,
    and the largest allowance its group can add up to on the node (all Limits where every
    pod there has limits, else the one with the smallest limit claims maxAllowance, or 1Ei
    uncapped)."""
    policy = select_policy(snapshot.policies, snapshot.node, snapshot.node_labels)
    tenant = tenant_for(namespace, snapshot.namespaces, policy)
    preference = "Never" if tenant.allow_never else "Avoid" if tenant.allow_avoid else None
    quantity = tenant.max_allowance or "1Ei"
    settings = resolve(snapshot.pods, snapshot.priorities, snapshot.namespaces, policy).by_pod
    workloads = Workloads(snapshot.owners)
    groups: dict[str, list[Pod]] = {}
    for p in snapshot.pods:
        if p.namespace == namespace:
            setting = settings.get(p.uid, DEFAULT_PRIORITY)
            groups.setdefault(group_name(p, setting, workloads), []).append(p)
    objects = []
    for members in groups.values():
        allowance = dict.fromkeys((p.uid for p in members), "Limits")
        counted = [p for p in members if p.node_name == snapshot.node
                   and p.phase == "Running" and not p.terminating]  # what the node sums
        smallest = min(counted, key=lambda p: p.limits_bytes, default=None)
        if smallest is not None and not all(p.limited for p in counted) and (
                parse_quantity(quantity) > smallest.limits_bytes):
            allowance[smallest.uid] = quantity
        for p in members:
            setting = settings.get(p.uid, DEFAULT_PRIORITY)
            grouped = ({"by": "Label", "label": setting.group_label}
                       if setting.group_by == "Label" else {"by": setting.group_by})
            objects.append(priority(
                f"best-{p.name}", namespace,
                podSelector={"matchLabels": {POD_LABEL: p.name}},
                priority=tenant.max_priority, preference=preference,
                allowance=allowance[p.uid], group=grouped))
    return objects


def ns_is_bounded(namespace: str, snapshot: Snapshot, policy: OOMPolicy) -> bool:
    labels = {"kubernetes.io/metadata.name": namespace, **snapshot.namespaces[namespace]}
    return any(t.namespace_selector.matches(labels) for t in policy.spec.tenants)


def _story(outcome: Outcome) -> list[tuple[str, int, str | None, int, int]]:
    return [(r.group.name, r.group.priority, r.group.preference, r.group.usage_bytes // Mi,
             r.group.allowance_bytes // Mi) for r in outcome.ranking]


def positions(outcome: Outcome) -> dict[str, int]:
    """Each ranked pod's place, by UID."""
    return {p.uid: r.position for r in outcome.ranking for p in r.group.pods}


@settings(max_examples=300, deadline=None)
@given(snapshot=snapshots(min_tenants=1, min_namespaces=2), data=st.data())
def test_no_claim_of_a_tenant_ranks_another_tenants_group_earlier(
    snapshot: Snapshot, data: st.DataObject
) -> None:
    """Whatever a tenant writes in its namespace, each group of another namespace that is
    ranked before one of the tenant's pods is ranked before it under the most favourable
    claims the tenant's admin rule allows too: no claim buys more than the rule gives.
    The tenant is mostly one a tenants entry bounds (open namespaces are bounded too:
    no Never, and limits cap quantities)."""
    policy = select_policy(snapshot.policies, snapshot.node, snapshot.node_labels)
    bounded_ones = [ns for ns in sorted(snapshot.namespaces)
                    if ns_is_bounded(ns, snapshot, policy)]
    namespace = data.draw(st.sampled_from(bounded_ones or sorted(snapshot.namespaces)))
    event(f"tenant bounded by an entry: {bool(bounded_ones)}")
    claims = data.draw(tenant_claims(namespace))
    event(f"pressure {decide(snapshot).pressure}")
    assert claim_violations(snapshot, namespace, claims) == []


def claim_violations(snapshot: Snapshot, namespace: str,
                     claims: list[OOMPriority]) -> list[str]:
    """Each group of another namespace that `claims` (the tenant's objects in `namespace`,
    in place of its own) rank before a pod of the tenant, and that the most favourable
    claims allowed do not."""
    pods = [replace(p, labels={**p.labels, POD_LABEL: p.name})
            if p.namespace == namespace else p for p in snapshot.pods]
    others = [o for o in snapshot.priorities if o.metadata.namespace != namespace]
    claimed = replace(snapshot, pods=pods, priorities=others + claims)
    bounded = replace(claimed, priorities=others + most_favourable(claimed, namespace))
    under_claims, under_bound = decide(claimed), decide(bounded)
    before, bound = positions(under_claims), positions(under_bound)
    placed = {r.group.name: r.position for r in under_bound.ranking}
    tenant = [p.uid for p in pods if p.namespace == namespace]
    never = float("inf")  # not ranked at all: after everything
    return [
        f"{ranked.group.name} went before {uid} by the tenant's claims only:\n"
        f"claimed: {_story(under_claims)}\nbounded: {_story(under_bound)}"
        for ranked in under_claims.ranking if ranked.group.namespace != namespace
        for uid in tenant
        if ranked.position < before.get(uid, never)
        and not placed[ranked.group.name] < bound.get(uid, never)
    ]
