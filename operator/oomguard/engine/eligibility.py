"""Which pods may be victims. Every pod that may not is listed with one reason: the first
that applies in the order of EXCLUSION_RULES."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from oomguard.engine.model import Exclusion, Pod


@dataclass(frozen=True)
class Context:
    """What exclusion rules need besides the pod itself."""

    node: str
    node_uid: str | None
    """The UID of the node's Node object, where known."""
    protected_namespaces: Collection[str]
    in_flight: dict[str, str]
    """UID of a pod already chosen by an earlier decision -> that decision's name."""
    refused: dict[str, str]
    """UID of a pod whose eviction was refused lately -> the decision that tried."""
    budget_exhausted: Collection[str] = frozenset()
    """UIDs of pods a disruption budget would refuse to evict now, when evicting."""


ExclusionRule = Callable[[Pod, Context], str | None]


def not_on_node(pod: Pod, ctx: Context) -> str | None:
    if pod.node_name != ctx.node:
        return f"runs on node {pod.node_name or '(unscheduled)'}, not {ctx.node}"
    return None


def not_running(pod: Pod, _: Context) -> str | None:
    return None if pod.phase == "Running" else f"phase is {pod.phase}"


def terminating(pod: Pod, _: Context) -> str | None:
    return "already terminating; its memory counts as being released" if pod.terminating else None


def mirror_pod(pod: Pod, ctx: Context) -> str | None:
    """A mirror pod (the API object of a static pod) is the kubelet's to manage. The
    annotation and owner reference that make one are writable by anyone who can create a
    pod: only a reference to this very Node, by its UID, is believed (a reference whose
    UID matches no Node gets the pod garbage-collected; the real UID is not the tenant's
    to know). Nothing else makes a pod static here: `kubernetes.io/config.source` is the
    kubelet's own bookkeeping, not something the API server checks."""
    owner = pod.mirror_of
    if owner is not None and ctx.node_uid is not None and (
            owner.name == ctx.node == pod.node_name and owner.uid == ctx.node_uid):
        return f"mirror pod of node {ctx.node}, managed by its kubelet"
    return None


def system_critical(pod: Pod, _: Context) -> str | None:
    return "system-critical priority class" if pod.critical else None


def protected_namespace(pod: Pod, ctx: Context) -> str | None:
    if pod.namespace in ctx.protected_namespaces:
        return f"namespace {pod.namespace} is protected by the policy"
    return None


def in_flight_victim(pod: Pod, ctx: Context) -> str | None:
    decision = ctx.in_flight.get(pod.uid)
    return f"victim of decision {decision}, still releasing memory" if decision else None


def eviction_refused(pod: Pod, ctx: Context) -> str | None:
    decision = ctx.refused.get(pod.uid)
    return f"eviction refused (disruption budget) in decision {decision}" if decision else None


def disruption_budget(pod: Pod, ctx: Context) -> str | None:
    if pod.uid in ctx.budget_exhausted:
        return "its PodDisruptionBudget allows no disruption now, and the action is Evict"
    return None


EXCLUSION_RULES: tuple[tuple[str, ExclusionRule], ...] = (
    ("NotOnNode", not_on_node),
    ("NotRunning", not_running),
    ("Terminating", terminating),
    ("StaticPod", mirror_pod),
    ("SystemCritical", system_critical),
    ("ProtectedNamespace", protected_namespace),
    ("InFlightVictim", in_flight_victim),
    ("EvictionRefused", eviction_refused),
    ("DisruptionBudget", disruption_budget),
)
NEVER = "Never"
"""Reason for pods of a group whose preference is Never: decided per group, not per pod."""
UNKNOWN_POD = "UnknownPod"
"""Reason for a pod cgroup on the node whose Pod object is not known."""


def exclusion(pod: Pod, ctx: Context) -> Exclusion | None:
    if (
        pod.node_name == ctx.node and pod.phase == "Running"
        and not (pod.terminating or pod.mirror_of or pod.critical)
        and pod.namespace not in ctx.protected_namespaces and pod.uid not in ctx.in_flight
        and pod.uid not in ctx.refused and pod.uid not in ctx.budget_exhausted
    ):
        return None  # the common case, in one test; the rules below name the reason
    for reason, rule in EXCLUSION_RULES:
        message = rule(pod, ctx)
        if message is not None:
            return Exclusion(pod.ref, pod.uid, reason, message)
    return None
