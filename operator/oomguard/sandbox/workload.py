"""A workload process for sandbox nodes: join cgroups, then hold, grow or fork, and print
"ready" once it is in place.

    python -m oomguard.sandbox.workload MODE MIB [PROCS_FILE ...]

MODE is one of
    idle | anon | shmem (memfd) | mlock | file:PATH   hold MIB of that kind of memory
    grow:RATE            anonymous memory growing at RATE MiB/s up to MIB, then held
    grow-exit:RATE       the same, but exits by itself on reaching MIB
    many:N               N processes, each holding MIB/N anonymous memory
    fork                 forks short-lived children without pause, for a minute

Holding modes exit at the end of stdin, so that a parent that dies takes them along.
Progress goes to stdout as "held N" lines (MiB), once per MiB grown.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
import threading
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
    if mode == "threaded":  # idle, with a second thread (which a test may move elsewhere)
        thread = threading.Thread(target=threading.Event().wait, daemon=True)
        thread.start()
        return thread
    if mode == "anon":
        return b"\x01" * size
    if mode == "shmem":
        fd = os.memfd_create("oomguard-sandbox")
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


def grow(size: int, rate_mib_s: float) -> list[bytes]:
    """Allocate 1MiB chunks, paced to `rate_mib_s`, until `size` bytes are held."""
    chunks: list[bytes] = []
    start = time.monotonic()
    while len(chunks) * MIB < size:
        due = start + len(chunks) / rate_mib_s
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)  # pacing the allocation rate, not waiting for anything
        chunks.append(b"\x01" * MIB)
        print(f"held {len(chunks)}", flush=True)
    return chunks


def many(count: int, size: int) -> list[int]:
    """Fork `count` children that each hold `size // count` bytes until stdin closes."""
    children = []
    for _ in range(count):
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            kept = b"\x01" * (size // count)
            os.write(ready_w, b"1")
            sys.stdin.read()
            del kept
            os._exit(0)
        os.close(ready_w)
        os.read(ready_r, 1)
        os.close(ready_r)
        children.append(pid)
    return children


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
    size = int(mib) * MIB
    join(procs_files)
    kind, _, argument = mode.partition(":")
    if mode == "fork":
        print("ready", flush=True)
        fork_loop()
        return
    if kind in ("grow", "grow-exit"):
        print("ready", flush=True)
        kept: object = grow(size, float(argument))
        if kind == "grow-exit":
            return
    elif kind == "many":
        kept = many(int(argument), size)
        print("ready", flush=True)
    else:
        kept = hold(mode, size)
        print("ready", flush=True)
    sys.stdin.read()
    del kept


if __name__ == "__main__":
    main()
