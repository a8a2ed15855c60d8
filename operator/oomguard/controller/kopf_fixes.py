"""A fix to kopf 1.45 that makes the operator's start-up linear in the cluster's size.

kopf holds every object's worker until all indices have their initial listing: each
worker waits on one `ToggleSet`, and `make_toggle`/`drop_toggle` wake every waiter on
every change, while one toggle is made and dropped per listed object: n²/2 wake-ups, a
start-up quadratic in the cluster's size (measured before and after: docs/architecture.md).
Every waiter waits for the set's overall state, so waking them only when that state flips
loses nothing. Applied to kopf 1.45 only (it replaces private methods); worth proposing
upstream.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import version

from kopf._cogs.aiokits.aiotoggles import Toggle, ToggleSet

FIXED_VERSIONS = "1.45."


async def _make_toggle(self: ToggleSet, __val: bool = False, *,
                       name: str | None = None) -> Toggle:
    toggle = Toggle(__val, name=name, condition=self._condition)
    async with self._condition:
        was_on = self.is_on()
        self._toggles.add(toggle)
        if self.is_on() != was_on:
            self._condition.notify_all()
    return toggle


async def _drop_toggles(self: ToggleSet, toggles: Iterable[Toggle]) -> None:
    async with self._condition:
        was_on = self.is_on()
        self._toggles.difference_update(toggles)
        if self.is_on() != was_on:
            self._condition.notify_all()


async def _drop_toggle(self: ToggleSet, toggle: Toggle) -> None:
    await _drop_toggles(self, (toggle,))


def apply() -> bool:
    """Patch kopf's ToggleSet if this kopf is one the fix was made for; True if patched.
    Idempotent."""
    if not version("kopf").startswith(FIXED_VERSIONS):
        return False
    ToggleSet.make_toggle = _make_toggle  # type: ignore[method-assign]
    ToggleSet.drop_toggle = _drop_toggle  # type: ignore[method-assign]
    ToggleSet.drop_toggles = _drop_toggles  # type: ignore[method-assign]
    return True
