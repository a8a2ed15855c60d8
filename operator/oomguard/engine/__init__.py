"""The policy engine: pure functions from a node snapshot to a ranking and victims.

No I/O and no clock: callers pass the time in the snapshot.
"""

from oomguard.engine.decide import decide, join_members_elsewhere
from oomguard.engine.model import (
    Exclusion,
    Group,
    Outcome,
    Owner,
    OwnerRef,
    Pod,
    PriorityReport,
    Ranked,
    Snapshot,
)

__all__ = [
    "Exclusion",
    "Group",
    "Outcome",
    "Owner",
    "OwnerRef",
    "Pod",
    "PriorityReport",
    "Ranked",
    "Snapshot",
    "decide",
    "join_members_elsewhere",
]
