"""Form groups of pods and account their memory hierarchically.

A group's usage and allowance are sums over its pods on the node, so splitting a workload
into more pods changes nothing; its priority is the highest of its pods and its preference
the most protective (Never, then Avoid, then none, then Prefer).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from oomguard.api import parse_quantity
from oomguard.engine.model import Group, Owner, OwnerRef, Pod, PodPriority

PROTECTION = {"Prefer": 0, None: 1, "Avoid": 2, "Never": 3}


def top_controller(pod: Pod, owners: Mapping[str, Owner]) -> OwnerRef | None:
    """Follow controller references up as far as the owners are known."""
    ref = pod.controller
    seen = set()
    while ref is not None and ref.uid in owners and ref.uid not in seen:
        seen.add(ref.uid)
        parent = owners[ref.uid].controller
        if parent is None:
            break
        ref = parent
    return ref


def group_name(pod: Pod, setting: PodPriority, owners: Mapping[str, Owner]) -> str:
    """The group's name, which is also its identity: namespace/what-joins-it."""
    if setting.group_by == "Workload":
        top = top_controller(pod, owners)
        if top is not None:
            return f"{pod.namespace}/{top.kind}/{top.name}"
    elif setting.group_by == "Label" and setting.group_label:
        value = pod.labels.get(setting.group_label)
        if value is not None:
            return f"{pod.namespace}/{setting.group_label}={value}"
    return f"{pod.namespace}/{pod.name}"


def pod_allowance(pod: Pod, setting: PodPriority) -> int:
    if setting.allowance == "Requests":
        return pod.requests_bytes
    if setting.allowance == "Limits":
        return pod.limits_bytes
    return 0


def build_groups(
    members: Iterable[tuple[Pod, PodPriority, str]],
    usage: Mapping[str, int],
) -> dict[str, Group]:
    """Groups by name from (pod, its settings, its group name). A quantity allowance is the
    group's on the node: where pods disagree, the largest counts once."""
    groups: dict[str, Group] = {}
    quantities: dict[str, int] = {}
    for pod, setting, name in members:
        group = groups.get(name)
        if group is None:
            group = groups[name] = Group(
                name=name, namespace=pod.namespace, group_by=setting.group_by, pods=[],
                preference="Prefer", created=pod.created,
            )
        group.pods.append(pod)
        group.priority = max(group.priority, setting.priority)
        if PROTECTION[setting.preference] > PROTECTION[group.preference]:
            group.preference = setting.preference
        group.usage_bytes += usage.get(pod.uid, 0)
        group.created = min(group.created, pod.created)
        if setting.allowance in ("Requests", "Limits"):
            group.allowance_bytes += pod_allowance(pod, setting)
        else:
            quantities[name] = max(quantities.get(name, 0), parse_quantity(setting.allowance))
    for name, quantity in quantities.items():
        groups[name].allowance_bytes += quantity
    return groups
