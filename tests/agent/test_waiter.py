"""The agent's wait between samples, on this machine's real kernel."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from oomguard.agent.host import Waiter

PSI = Path("/proc/pressure/memory")


@pytest.mark.skipif(not PSI.exists(), reason="this kernel has no memory PSI")
def test_memory_stall_trigger_is_armed_where_the_kernel_offers_it() -> None:
    waiter = Waiter(PSI)
    try:
        assert waiter.psi_trigger
    finally:
        waiter.close()


def test_a_signal_ends_the_wait_at_once() -> None:
    waiter = Waiter(None)
    previous = signal.signal(signal.SIGUSR1, lambda *_: None)
    waiter.wake_on_signals()
    try:
        start = time.monotonic()
        os.kill(os.getpid(), signal.SIGUSR1)  # pending before the wait: it must not sleep
        waiter.wait(10.0)
        assert time.monotonic() - start < 5.0
    finally:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGUSR1, previous)
        waiter.close()
