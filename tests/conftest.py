"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from support import ClusterEmulator, running_emulator


@pytest.fixture
async def emulator() -> AsyncIterator[ClusterEmulator]:
    """A fresh Kubernetes API emulator on a free localhost port (see docs/emulator.md)."""
    async with running_emulator() as server:
        yield server
