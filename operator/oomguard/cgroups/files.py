"""Reading cgroup and /proc files: one read per file, simple parsers, and every failure
sorted into the reason a scan counts it under.

Cgroups come and go while the agent samples them, so a failed read is routine: it raises
`CgroupReadError` with a `reason`, and the caller skips that cgroup instead of reporting a
number it does not have.
"""

from __future__ import annotations

import errno
import os
from typing import Literal

SkipReason = Literal["vanished", "incomplete", "malformed", "unreadable"]
"""vanished: the cgroup was removed (ENOENT with its directory gone, or ENODEV).
incomplete: the directory exists but the file does not (controller not enabled).
malformed: the content is not what the kernel writes (garbage, truncated, missing keys).
unreadable: any other OS error (EACCES, EIO...)."""

# Limits at or above this are "no limit": cgroup v1 writes PAGE_COUNTER_MAX * PAGE_SIZE,
# which is 2**63 rounded down to the page size, whatever the page size.
UNLIMITED_FLOOR = 2**62


class CgroupReadError(Exception):
    """A cgroup or /proc file could not be read or parsed; `reason` says how."""

    def __init__(self, reason: SkipReason, path: str, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.reason: SkipReason = reason
        self.path = path


def read_text(path: str) -> str:
    """The whole file. Paths are strings and reads are raw syscalls: this runs for a few
    hundred cgroups per sample."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(fd)
    except FileNotFoundError:
        reason: SkipReason = "incomplete" if os.path.isdir(os.path.dirname(path)) else "vanished"
        raise CgroupReadError(reason, path, "no such file") from None
    except OSError as error:
        reason = "vanished" if error.errno == errno.ENODEV else "unreadable"
        raise CgroupReadError(reason, path, error.strerror or str(error)) from None
    try:
        return b"".join(chunks).decode("ascii")
    except UnicodeDecodeError:
        raise CgroupReadError("malformed", path, "not ASCII") from None


def parse_count(text: str, path: str) -> int:
    """A single non-negative integer, as in memory.current or memory.usage_in_bytes."""
    try:
        value = int(text)
    except ValueError:
        raise CgroupReadError("malformed", path, f"not an integer: {text[:40]!r}") from None
    if value < 0:
        raise CgroupReadError("malformed", path, f"negative: {value}")
    return value


def parse_limit(text: str, path: str) -> int | None:
    """A memory limit; None for no limit (v2 "max", v1's huge sentinel)."""
    if text.strip() == "max":
        return None
    value = parse_count(text, path)
    return None if value >= UNLIMITED_FLOOR else value


def parse_flat_keyed(
    text: str, path: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, int]:
    """The `required` and present `optional` keys of a "key value" per line file such as
    memory.stat. A missing required key, a value that is not a non-negative integer, or a
    line that is not a key and a value (a truncated write) makes the file malformed: it
    must not turn into a plausible-looking number. Keys not asked for are not converted."""
    tokens = text.split()
    if len(tokens) % 2:
        raise CgroupReadError("malformed", path, "a line without a value")
    raw = dict(zip(tokens[::2], tokens[1::2], strict=True))
    values: dict[str, int] = {}
    for key in required + optional:
        value = raw.get(key)
        if value is None:
            if key in required:
                raise CgroupReadError("malformed", path, f"no {key}")
            continue
        if not value.isdigit():
            raise CgroupReadError("malformed", path, f"{key} is {value[:40]!r}")
        values[key] = int(value)
    return values


def parse_psi(text: str, path: str) -> tuple[float, float]:
    """(some avg10, full avg10), percent, from a PSI file such as /proc/pressure/memory."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        for field in rest.split():
            name, _, value = field.partition("=")
            if name == "avg10":
                try:
                    found[kind] = float(value)
                except ValueError:
                    raise CgroupReadError("malformed", path, f"bad avg10 {value!r}") from None
    if "some" not in found or "full" not in found:
        raise CgroupReadError("malformed", path, "missing some/full avg10")
    some, full = found["some"], found["full"]
    if not (0.0 <= some <= 100.0 and 0.0 <= full <= 100.0):  # also rejects NaN
        raise CgroupReadError("malformed", path, f"avg10 out of range: {some}, {full}")
    return some, full


def parse_meminfo(text: str, path: str) -> dict[str, int]:
    """/proc/meminfo in bytes ("MemTotal:  24684096 kB" -> 25276514304)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if not fields or not fields[0].isdigit():
            raise CgroupReadError("malformed", path, f"bad line {line[:60]!r}")
        scale = 1024 if fields[1:] == ["kB"] else 1
        values[key] = int(fields[0]) * scale
    return values
