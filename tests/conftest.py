"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from oomguard.permissions import AGENT, OPERATOR

from support import AGENT_TOKEN, OPERATOR_TOKEN, ClusterEmulator, running_emulator


@pytest.fixture
async def emulator() -> AsyncIterator[ClusterEmulator]:
    """A fresh Kubernetes API emulator on a free localhost port (see docs/emulator.md)."""
    async with running_emulator() as server:
        yield server


@pytest.fixture(autouse=True)
def _calls_are_listed(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every API call the operator or an agent makes in a test is one that
    oomguard.permissions lists
    (and so one the chart's RBAC grants)."""
    yield
    emulator = request.node.funcargs.get("emulator")
    if isinstance(emulator, ClusterEmulator):
        for token, listed in ((OPERATOR_TOKEN, OPERATOR), (AGENT_TOKEN, AGENT)):
            unlisted = emulator.used_permissions(token=token) - listed
            assert not unlisted, f"{token} API calls missing from oomguard.permissions: " \
                f"{unlisted}"
