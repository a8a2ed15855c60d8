"""`oomguard demo` as a user runs it: real cgroups, a real agent, the real kernel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from oomguard.sandbox import MEMORY_MOUNT


def _leftovers() -> list[str]:
    return [p.name for p in MEMORY_MOUNT.glob("oomguard-demo-*")]


@pytest.mark.skipif(os.geteuid() != 0, reason="the demo builds cgroups: needs root")
def test_demo_kills_the_job_with_oomguard_and_the_kernel_kills_the_database() -> None:
    result = subprocess.run([sys.executable, "-m", "oomguard", "demo"], capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    round1, round2 = result.stdout.split("Round 2:")
    assert "victim: batch/Job/report (all 2 pods)" in round1
    assert "kernel OOM kills: 0" in round1
    assert [line.split()[-1] for line in round1.splitlines() if line.startswith(
        ("shop/", "batch/"))] == ["running", "running", "KILLED", "KILLED"]
    assert "killed 1 process: shop/postgres-0" in round2
    assert _leftovers() == []


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0,
                    reason="needs unshare(1) and root to hide the cgroup mount")
def test_demo_without_cgroups_says_what_it_needs() -> None:
    """In a mount namespace where the memory controller's mount is an empty tmpfs."""
    script = (f"mount -t tmpfs none {MEMORY_MOUNT} && "
              f"exec {sys.executable} -m oomguard demo")
    result = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "needs root and a writable cgroup v1 memory controller" in result.stdout
    assert f"no cgroup hierarchy at {MEMORY_MOUNT}" in result.stdout
