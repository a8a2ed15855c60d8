"""When a node's NodeMemoryReport is written, and how much of it.

Thousands of nodes write to one etcd, so at rest an agent writes a small heartbeat (the
node summary) and the per-pod detail only when it changed materially or every few
minutes, as the kubelet moved from 10 s node-status writes to leases. Under pressure the
operator needs fresh detail to decide: it is written at once when pressure starts or
changes, then every second.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Write = Literal["none", "summary", "full"]


@dataclass(frozen=True)
class PublishPolicy:
    heartbeat_seconds: float = 30.0
    detail_seconds: float = 300.0
    pressure_seconds: float = 1.0
    material_bytes: int = 64 << 20
    """A pod's usage changed materially when by more than this..."""
    material_fraction: float = 0.25
    """...and by more than this fraction of what was last published."""


@dataclass
class Publisher:
    """Remembers what was last written and plans the next write."""

    policy: PublishPolicy = field(default_factory=PublishPolicy)
    _written: float | None = None
    _detailed: float | None = None
    _pressure: str = "None"
    _pods: dict[str, int] = field(default_factory=dict)

    def plan(self, now: float, pressure: str, pods: Mapping[str, int]) -> Write:
        """`pods`: each pod's usage by UID. The caller writes, then calls `written`."""
        p = self.policy
        if self._detailed is None or pressure != self._pressure:
            return "full"
        if pressure != "None":
            return "full" if now - self._detailed >= p.pressure_seconds else "none"
        if now - self._detailed >= p.detail_seconds or self._changed(pods):
            return "full"
        if self._written is None or now - self._written >= p.heartbeat_seconds:
            return "summary"
        return "none"

    def written(self, write: Write, now: float, pressure: str, pods: Mapping[str, int]) -> None:
        if write == "none":
            return
        self._written = now
        if write == "full":
            self._detailed, self._pressure, self._pods = now, pressure, dict(pods)

    def _changed(self, pods: Mapping[str, int]) -> bool:
        if pods.keys() != self._pods.keys():
            return True
        p = self.policy
        for uid, usage in pods.items():
            delta = abs(usage - self._pods[uid])
            if delta > p.material_bytes and delta > p.material_fraction * self._pods[uid]:
                return True
        return False
