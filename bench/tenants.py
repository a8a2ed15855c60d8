"""What the benchmarks' tenants declare, shared so that the engine and the operator
benchmarks rank the same kind of cluster."""

from __future__ import annotations

import random
from typing import Any

PrioritySpec = tuple[str, dict[str, Any]]


def typical_priorities(rng: random.Random) -> list[PrioritySpec]:
    """(name, spec) of a tenant's OOMPriority objects: a default grouping by workload,
    batch jobs preferred as victims and grouped by app label, a protected database, and
    sometimes a fixed allowance for a cache."""
    specs: list[PrioritySpec] = [
        ("default", {"priority": rng.randint(-200, 200), "group": {"by": "Workload"}}),
        ("batch", {"podSelector": {"matchLabels": {"tier": "batch"}}, "priority": -500,
                   "preference": "Prefer", "group": {"by": "Label", "label": "app"}}),
        ("database", {"podSelector": {"matchLabels": {"app": "db"}}, "priority": 800,
                      "preference": "Avoid", "allowance": "Limits"}),
    ]
    if rng.random() < 0.3:
        specs.append(("cache", {"podSelector": {"matchLabels": {"app": "cache"}},
                                "allowance": "4Gi", "group": {"by": "Workload"}}))
    return specs
