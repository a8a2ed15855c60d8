"""Fixtures for the cgroup layer: fake trees in tmp_path, and real cgroup sandboxes that
are removed after each test whatever happened in it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fake_tree import Driver, FakeTree, Version
from real_cgroups import (
    FREEZER_MOUNT,
    MEMORY_MOUNT,
    UNIFIED_MOUNT,
    Mi,
    Processes,
    Sandbox,
    become_subreaper,
    new_sandbox_name,
    require_hierarchy,
)

SANDBOX_LIMIT = 512 * Mi


@pytest.fixture
def make_tree(tmp_path: Path) -> Callable[..., FakeTree]:
    """make_tree(version, driver="cgroupfs") -> a fresh fake cgroup root and /proc."""
    count = 0

    def make(version: Version, driver: Driver = "cgroupfs") -> FakeTree:
        nonlocal count
        count += 1
        return FakeTree(tmp_path / f"tree{count}", version, driver)

    return make


@pytest.fixture(scope="session")
def subreaper() -> None:
    become_subreaper()


@pytest.fixture
def workloads(subreaper: None) -> Iterator[Processes]:
    running = Processes()
    yield running
    running.close()


@pytest.fixture
def sandbox_name() -> str:
    return new_sandbox_name()


@pytest.fixture
def v1_memory(sandbox_name: str) -> Iterator[Sandbox]:
    """A v1 memory cgroup limited to 512Mi, so that no workload can hurt the machine."""
    require_hierarchy(MEMORY_MOUNT, "memory.usage_in_bytes")
    sandbox = Sandbox(MEMORY_MOUNT, sandbox_name)
    try:
        (sandbox.root / "memory.limit_in_bytes").write_text(str(SANDBOX_LIMIT))
        yield sandbox
    finally:
        sandbox.close()


@pytest.fixture
def v1_freezer(sandbox_name: str, v1_memory: Sandbox) -> Iterator[Sandbox]:
    """The v1 freezer cgroup at the same path as `v1_memory`."""
    require_hierarchy(FREEZER_MOUNT, "tasks")
    sandbox = Sandbox(FREEZER_MOUNT, sandbox_name)
    try:
        yield sandbox
    finally:
        sandbox.close()


@pytest.fixture
def v2_unified(sandbox_name: str) -> Iterator[Sandbox]:
    """A cgroup on the cgroup2 hierarchy (no memory controller there: kill paths only)."""
    require_hierarchy(UNIFIED_MOUNT, "cgroup.controllers")
    sandbox = Sandbox(UNIFIED_MOUNT, sandbox_name)
    try:
        if not (sandbox.root / "cgroup.kill").exists():
            pytest.skip("this kernel's cgroup2 has no cgroup.kill (Linux < 5.14)")
        yield sandbox
    finally:
        sandbox.close()
