"""Real cgroup sandboxes for tests: the package's sandbox, skipping (with the reason) where
real cgroups cannot be created."""

from __future__ import annotations

from pathlib import Path

import pytest

from oomguard.sandbox import (
    FREEZER_MOUNT,
    MEMORY_MOUNT,
    UNIFIED_MOUNT,
    Mi,
    Processes,
    Sandbox,
    SandboxUnavailableError,
    become_subreaper,
    check_hierarchy,
    new_name,
    pod_path,
    procs,
    wait_until,
)

__all__ = [
    "FREEZER_MOUNT",
    "MEMORY_MOUNT",
    "UNIFIED_MOUNT",
    "Mi",
    "Processes",
    "Sandbox",
    "become_subreaper",
    "new_sandbox_name",
    "pod_path",
    "procs",
    "require_hierarchy",
    "wait_until",
]


def require_hierarchy(mount: Path, marker: str) -> None:
    """Skip, saying why, unless we are root and `mount` is the expected hierarchy."""
    try:
        check_hierarchy(mount, marker)
    except SandboxUnavailableError as reason:
        pytest.skip(str(reason))


def new_sandbox_name() -> str:
    return new_name("oomguard-test")
