"""Which OOMPriority decides each pod, within the bounds the admin gave its namespace.

Overlap rule: when several objects of a namespace select one pod, the one with the most
specific pod selector (most matchLabels plus matchExpressions) wins, then the first by
name. Every object involved reports the others as overlaps.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from oomguard.api import OOMPolicy, OOMPriority, parse_quantity
from oomguard.api.policy import Tenant
from oomguard.api.priority import ALLOWANCE_KEYWORDS, Preference
from oomguard.engine.model import Pod, PodPriority, PriorityReport

DEFAULT_PRIORITY = PodPriority()
_UNSEEN = PodPriority(source="(not matched yet)")
_OPEN_TENANT = Tenant(allow_avoid=True)
"""For a namespace no tenants entry matches: any priority, Avoid, any allowance; not
Never, which takes a pod out of reach altogether."""


@dataclass(frozen=True)
class Resolution:
    """Per-pod settings (by pod UID) and per-object reports."""

    by_pod: dict[str, PodPriority]
    reports: list[PriorityReport]


def tenant_for(
    namespace: str, namespaces: Mapping[str, Mapping[str, str]], policy: OOMPolicy
) -> Tenant:
    """The first tenant entry whose selector matches the namespace; without one, a
    namespace may claim any priority, Avoid and any allowance, but not Never."""
    labels = {"kubernetes.io/metadata.name": namespace, **namespaces.get(namespace, {})}
    for tenant in policy.spec.tenants:
        if tenant.namespace_selector.matches(labels):
            return tenant
    return _OPEN_TENANT


def _read_keys(objs: Iterable[OOMPriority]) -> tuple[str, ...]:
    """The label keys that any of these objects' pod selectors reads."""
    return tuple(sorted(
        {key for o in objs for key in o.spec.pod_selector.match_labels}
        | {req.key for o in objs for req in o.spec.pod_selector.match_expressions}
    ))


def _preference(claimed: Preference | None, tenant: Tenant) -> Preference | None:
    """What the tenant may claim of what it claimed: a Never not allowed acts as Avoid,
    an Avoid not allowed as no preference."""
    if claimed == "Never" and not tenant.allow_never:
        claimed = "Avoid"
    if claimed == "Avoid" and not tenant.allow_avoid:
        return None
    return claimed


def _allowance(claimed: str, tenant: Tenant) -> str:
    """A quantity allowance, capped to the tenant's maxAllowance."""
    if (tenant.max_allowance is None or claimed in ALLOWANCE_KEYWORDS
            or parse_quantity(claimed) <= parse_quantity(tenant.max_allowance)):
        return claimed
    return tenant.max_allowance


def _effective(obj: OOMPriority, tenant: Tenant) -> PodPriority:
    spec = obj.spec
    return PodPriority(
        priority=min(spec.priority, tenant.max_priority),
        preference=_preference(spec.preference, tenant),
        allowance=_allowance(spec.allowance, tenant),
        group_by=spec.group.by,
        group_label=spec.group.label,
        source=obj.metadata.name,
    )


def resolve(
    pods: Iterable[Pod],
    priorities: Sequence[OOMPriority],
    namespaces: Mapping[str, Mapping[str, str]],
    policy: OOMPolicy,
) -> Resolution:
    by_namespace: dict[str, list[OOMPriority]] = defaultdict(list)
    for obj in priorities:
        by_namespace[obj.metadata.namespace or ""].append(obj)
    for objs in by_namespace.values():
        objs.sort(key=lambda o: (-o.spec.pod_selector.specificity, o.metadata.name))

    effective: dict[tuple[str, str], PodPriority] = {}
    for namespace, objs in by_namespace.items():
        tenant = tenant_for(namespace, namespaces, policy)
        for obj in objs:
            effective[namespace, obj.metadata.name] = _effective(obj, tenant)

    by_pod: dict[str, PodPriority] = {}
    overlaps: dict[tuple[str, str], set[str]] = defaultdict(set)
    # Selectors read few label keys, and the pods of a workload agree on them: match each
    # distinct combination of the values of those keys once (None: absent), and count the
    # pods per combination rather than per object.
    read_keys = {namespace: _read_keys(objs) for namespace, objs in by_namespace.items()}
    winners: dict[tuple[str, tuple[str | None, ...]], PodPriority | None] = {}
    pods_per_set: dict[tuple[str, tuple[str | None, ...]], int] = defaultdict(int)
    defaults: dict[str, PodPriority | None] = {}

    def unselected(namespace: str) -> PodPriority | None:
        """The default priority, 0, is bounded by the tenant's maxPriority too: a tenant
        bounded below 0 must not get above its bound by writing nothing."""
        if namespace not in defaults:
            bound = tenant_for(namespace, namespaces, policy).max_priority
            defaults[namespace] = (PodPriority(priority=bound, source=None)
                                   if bound < DEFAULT_PRIORITY.priority else None)
        return defaults[namespace]

    for pod in pods:
        keys = read_keys.get(pod.namespace)
        if keys is None:
            if (default := unselected(pod.namespace)) is not None:
                by_pod[pod.uid] = default
            continue
        in_namespace = by_namespace[pod.namespace]
        label_set = (pod.namespace, tuple(map(pod.labels.get, keys)))
        winner = winners.get(label_set, _UNSEEN)
        if winner is _UNSEEN:
            selecting = [o.metadata.name for o in in_namespace
                         if o.spec.pod_selector.matches(pod.labels)]
            winner = winners[label_set] = (
                effective[pod.namespace, selecting[0]] if selecting else None)
            if len(selecting) > 1:
                names = set(selecting)
                for name in names:
                    overlaps[pod.namespace, name] |= names - {name}
        if winner is not None:
            by_pod[pod.uid] = winner
            pods_per_set[label_set] += 1
        elif (default := unselected(pod.namespace)) is not None:
            by_pod[pod.uid] = default
    matched: dict[tuple[str, str], int] = defaultdict(int)
    for label_set, count in pods_per_set.items():
        setting = winners[label_set]
        assert setting is not None and setting.source is not None
        matched[label_set[0], setting.source] += count

    reports = []
    for namespace, objs in sorted(by_namespace.items()):
        for obj in objs:
            key = (namespace, obj.metadata.name)
            eff = effective[key]
            reports.append(PriorityReport(
                namespace=namespace,
                name=obj.metadata.name,
                matched_pods=matched[key],
                effective_priority=eff.priority,
                effective_preference=eff.preference,
                clamped_from=obj.spec.priority if eff.priority != obj.spec.priority else None,
                never_denied=obj.spec.preference == "Never" and eff.preference != "Never",
                avoid_denied=obj.spec.preference in ("Never", "Avoid")
                and eff.preference is None,
                effective_allowance=eff.allowance,
                allowance_capped_from=obj.spec.allowance
                if eff.allowance != obj.spec.allowance else None,
                overlaps=tuple(sorted(overlaps[key])),
            ))
    return Resolution(by_pod, reports)
