"""A test workload, run as its own process: join cgroups, then hold memory or fork in a
loop, and print "ready" once the memory is in place.

    workload.py MODE MIB [PROCS_FILE ...]

MODE: idle | anon | shmem (memfd) | mlock | file:PATH | fork. The holding modes exit at
end of stdin, so a test that dies takes them along; `fork` forks short-lived children
(some with a grandchild) without pause, and stops by itself after a minute.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
import time

MIB = 2**20
FORK_LIMIT_SECONDS = 60
LIVE_CHILDREN = 16


def join(procs_files: list[str]) -> None:
    for procs in procs_files:
        with open(procs, "w") as file:
            file.write(str(os.getpid()))


def hold(mode: str, size: int) -> object:
    """Allocate and touch `size` bytes of the kind MODE names; return what keeps them."""
    if mode == "idle":
        return None
    if mode == "anon":
        return b"\x01" * size
    if mode == "shmem":
        fd = os.memfd_create("oomguard-test")
        for _ in range(size // MIB):
            os.write(fd, b"\x01" * MIB)
        return fd
    if mode == "mlock":
        region = mmap.mmap(-1, size)
        region.write(b"\x01" * size)
        address = ctypes.addressof(ctypes.c_char.from_buffer(region))
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.mlock(ctypes.c_void_p(address), ctypes.c_size_t(size)) != 0:
            raise OSError(ctypes.get_errno(), "mlock failed")
        return region
    if mode.startswith("file:"):
        with open(mode.removeprefix("file:"), "wb") as file:
            for _ in range(size // MIB):
                file.write(b"\x01" * MIB)
        return None
    raise SystemExit(f"unknown mode {mode}")


def child() -> None:
    """A short-lived child; every other one forks a grandchild and reaps it."""
    grandchild = os.fork() if os.getpid() % 2 else -1
    if grandchild == 0:
        time.sleep(0.05)
        os._exit(0)
    time.sleep(0.05)
    if grandchild > 0:
        os.waitpid(grandchild, 0)
    os._exit(0)


def fork_loop() -> None:
    live: set[int] = set()
    stop = time.monotonic() + FORK_LIMIT_SECONDS
    while time.monotonic() < stop:
        while live:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            live.discard(pid)
        if len(live) < LIVE_CHILDREN:
            pid = os.fork()
            if pid == 0:
                child()
            live.add(pid)
        else:
            time.sleep(0.001)


def main() -> None:
    mode, mib, *procs_files = sys.argv[1:]
    join(procs_files)
    if mode == "fork":
        print("ready", flush=True)
        fork_loop()
        return
    kept = hold(mode, int(mib) * MIB)
    print("ready", flush=True)
    sys.stdin.read()
    del kept


if __name__ == "__main__":
    main()
