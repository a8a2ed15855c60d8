"""The kopf start-up fix (controller/kopf_fixes.py) on kopf's own ToggleSet, with real
asyncio waiters: waiters still wake when the set's state flips, and no longer wake on
changes that do not flip it (one per listed object at start-up)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from kopf._cogs.aiokits.aiotoggles import ToggleSet

from oomguard.controller import kopf_fixes


class CountingAll:
    """all(), counting how often a waiter (or the set) asks for the state."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, states: Iterable[bool]) -> bool:
        self.calls += 1
        return all(states)


async def settle() -> None:
    for _ in range(5):  # let woken waiters run
        await asyncio.sleep(0)


async def test_waiters_wake_when_the_set_flips_and_only_then() -> None:
    assert kopf_fixes.apply()  # the pinned kopf is one the fix was made for
    counting = CountingAll()
    toggles = ToggleSet(counting)
    members = [await toggles.make_toggle(False, name=f"object-{i}") for i in range(100)]
    waiter = asyncio.create_task(toggles.wait_for(True))
    await settle()
    asked = counting.calls
    for member in members[:-1]:  # 99 objects indexed: the set stays off
        await toggles.drop_toggle(member)
    await settle()
    assert not waiter.done()
    # The dropping asks twice per change (before and after); a waiter woken per change
    # would ask once more each time.
    assert counting.calls - asked == 2 * 99
    await toggles.drop_toggle(members[-1])  # the last one: the set turns on
    await asyncio.wait_for(waiter, 1)


async def test_a_member_turned_on_still_wakes_the_waiters() -> None:
    kopf_fixes.apply()
    toggles = ToggleSet(all)
    member = await toggles.make_toggle(False, name="blocker")
    waiter = asyncio.create_task(toggles.wait_for(True))
    await settle()
    assert not waiter.done()
    await member.turn_to(True)
    await asyncio.wait_for(waiter, 1)
    off = asyncio.create_task(toggles.wait_for(False))
    await settle()
    await toggles.make_toggle(False, name="late")  # a new object: the set turns off
    await asyncio.wait_for(off, 1)
