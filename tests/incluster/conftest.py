"""Fixtures of the in-cluster agent tests: a real cgroup v1 sandbox node."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from agent_harness import LIMIT

from oomguard.sandbox import SandboxNode, SandboxUnavailableError


@pytest.fixture
def node() -> Iterator[SandboxNode]:
    try:
        sandbox = SandboxNode(LIMIT, prefix="oomguard-incluster")
    except SandboxUnavailableError as reason:
        pytest.skip(f"no real cgroup sandbox: {reason}")
    with sandbox:
        yield sandbox
