"""Form groups of pods and account their memory hierarchically.

A group's usage and allowance are sums over its pods on the node, so splitting a workload
into more pods changes nothing; its priority is the highest of its pods and its preference
the most protective (Never, then Avoid, then none, then Prefer).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping

from oomguard.api import parse_quantity
from oomguard.engine.model import Group, Owner, OwnerRef, Pod, PodPriority

PROTECTION = {"Prefer": 0, None: 1, "Avoid": 2, "Never": 3}


class Workloads:
    """Top-level controllers of pods, each chain followed once per decision."""

    def __init__(self, owners: Mapping[str, Owner]) -> None:
        self._owners = owners
        self._top: dict[str, OwnerRef] = {}

    def top(self, ref: OwnerRef) -> OwnerRef:
        """Follow controller references up as far as the owners are known."""
        cached = self._top.get(ref.uid)
        if cached is not None:
            return cached
        top, seen = ref, {ref.uid}
        while (owner := self._owners.get(top.uid)) is not None:
            parent = owner.controller
            if parent is None or parent.uid in seen:
                break
            seen.add(parent.uid)
            top = parent
        self._top[ref.uid] = top
        return top


def group_name(pod: Pod, setting: PodPriority, workloads: Workloads) -> str:
    """The group's name, which is also its identity: namespace/what-joins-it."""
    if setting.group_by == "Workload":
        if pod.controller is not None:
            top = workloads.top(pod.controller)
            return f"{pod.namespace}/{top.kind}/{top.name}"
    elif setting.group_by == "Label" and setting.group_label:
        value = pod.labels.get(setting.group_label)
        if value is not None:
            return f"{pod.namespace}/{setting.group_label}={value}"
    return f"{pod.namespace}/{pod.name}"


def may_join(groups: Iterable[Group], workloads: Workloads) -> Callable[[Pod], bool]:
    """A cheap test for the pods that may be members of `groups` on other nodes: those of
    the same top-level controller as a Workload group, or with the label value of a Label
    group (a pod's own settings then decide whether it is grouped so)."""
    direct: dict[str, set[str]] = defaultdict(set)  # controllers of the members known
    tops: dict[str, set[str]] = defaultdict(set)
    labels: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for g in groups:
        if g.group_by == "Workload":
            for pod in g.pods:
                if pod.controller is not None:
                    direct[g.namespace].add(pod.controller.uid)
                    tops[g.namespace].add(workloads.top(pod.controller).uid)
        elif g.group_by == "Label" and g.group_label:
            labels[g.namespace][g.group_label].add(g.pods[0].labels[g.group_label])

    def test(pod: Pod) -> bool:
        for key, values in labels.get(pod.namespace, {}).items():
            if pod.labels.get(key) in values:
                return True
        controller = pod.controller
        if controller is None or pod.namespace not in tops:
            return False
        return controller.uid in direct[pod.namespace] or (
            workloads.top(controller).uid in tops[pod.namespace])
    return test


def build_groups(
    members: Iterable[tuple[Pod, PodPriority, str]],
    usage: Mapping[str, int],
) -> dict[str, Group]:
    """Groups by name from (pod, its settings, its group name). A quantity allowance is the
    group's on the node: where pods disagree, the largest counts once; never more than the
    group's pods' limits where they all have limits (a tenant cannot claim, by writing 1Pi,
    more than its pods can use)."""
    groups: dict[str, Group] = {}
    quantities: dict[str, int] = {}
    for pod, setting, name in members:
        group = groups.get(name)
        if group is None:
            group = groups[name] = Group(
                name=name, namespace=pod.namespace, group_by=setting.group_by, pods=[],
                group_label=setting.group_label,
                preference="Prefer", created=pod.created,
            )
        group.pods.append(pod)
        group.usage_bytes += usage.get(pod.uid, 0)
        group.priority = max(group.priority, setting.priority)
        if setting.preference != group.preference and (
            PROTECTION[setting.preference] > PROTECTION[group.preference]
        ):
            group.preference = setting.preference
        group.created = min(group.created, pod.created)
        if setting.allowance == "Requests":
            group.allowance_bytes += pod.requests_bytes
        elif setting.allowance == "Limits":
            group.allowance_bytes += pod.limits_bytes
        else:
            quantities[name] = max(quantities.get(name, 0), parse_quantity(setting.allowance))
    for name, claimed in quantities.items():
        groups[name].allowance_bytes += claimed
    for group in groups.values():
        if all(p.limited for p in group.pods):  # whatever mix of claims made it
            group.allowance_bytes = min(group.allowance_bytes,
                                        sum(p.limits_bytes for p in group.pods))
    return groups
