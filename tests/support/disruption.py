"""The eviction subresource's PodDisruptionBudget check.

A real cluster splits this between the disruption controller (which keeps
`status.disruptionsAllowed` up to date) and the eviction handler (which reads it). The
emulator has no controller, so it computes the budget from the live pods at eviction time:

- the pods a budget expects are the non-terminal pods its selector matches in its
  namespace (a real controller asks the owning workload's scale instead);
- a pod is healthy when it is Running, not terminating, and its `Ready` condition is not
  `False` (a Running pod without conditions counts as healthy, for terse tests).

Everything else follows the API server: pods that are Pending, finished or already
terminating are evicted without a budget check; an unhealthy pod may go while the budget
holds; a pod under two budgets cannot be evicted (500).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import ApiError
from .selection import selector_matches

Obj = Mapping[str, Any]

VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."


def _phase(pod: Obj) -> str:
    return str(pod.get("status", {}).get("phase", ""))


def _terminating(pod: Obj) -> bool:
    return bool(pod.get("metadata", {}).get("deletionTimestamp"))


def healthy(pod: Obj) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    ready = next((c.get("status") for c in conditions if c.get("type") == "Ready"), None)
    return _phase(pod) == "Running" and not _terminating(pod) and ready != "False"


def _scaled(value: int | str, expected: int) -> int:
    """An IntOrString budget field: `2`, or `"50%"` of the expected pods, rounded up."""
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * expected / 100)
    return int(value)


def desired_healthy(spec: Obj, expected: int) -> int:
    if spec.get("maxUnavailable") is not None:
        return max(0, expected - _scaled(spec["maxUnavailable"], expected))
    return _scaled(spec.get("minAvailable", 0), expected)


def _labels(obj: Obj) -> Mapping[str, str]:
    labels: Mapping[str, str] = obj.get("metadata", {}).get("labels") or {}
    return labels


def check_eviction(pod: Obj, budgets: Iterable[Obj], pods: Iterable[Obj]) -> None:
    """Raise the API server's error if evicting `pod` now would break its budget.

    `budgets` and `pods` are the PodDisruptionBudgets and pods of the pod's namespace.
    """
    if _phase(pod) in ("Pending", "Succeeded", "Failed") or _terminating(pod):
        return
    matching = [b for b in budgets if selector_matches(b.get("spec", {}).get("selector"),
                                                        _labels(pod))]
    if not matching:
        return
    if len(matching) > 1:
        raise ApiError(500, "InternalError", "This pod has more than one PodDisruptionBudget,"
                       " which the eviction subresource does not support.")
    budget = matching[0]
    selector = budget.get("spec", {}).get("selector")
    selected = [p for p in pods if selector_matches(selector, _labels(p))
                and _phase(p) not in ("Succeeded", "Failed")]
    current = sum(1 for p in selected if healthy(p))
    desired = desired_healthy(budget.get("spec", {}), len(selected))
    allowed = current - desired > 0 if healthy(pod) else current >= desired
    if not allowed:
        name = budget.get("metadata", {}).get("name", "")
        raise ApiError(429, "TooManyRequests", VIOLATION, {"causes": [{
            "reason": "DisruptionBudget",
            "message": f"The disruption budget {name} needs {desired} healthy pods"
                       f" and has {current} currently",
        }]})
