"""The last good version of each object the admin or a tenant writes.

The API server can accept an edit that oomguard's models refuse (a rule its schema cannot
state, or a CRD installed from an older chart). Dropping the object would weaken
protection: a policy that protects namespaces would fall back to the default one. So a
refused version leaves the previous good one in force, and the refusal is kept here for
whoever reports it (status, Event), and logged once per version.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

log = logging.getLogger(__name__)

T = TypeVar("T")
UNREAD_METADATA = ("annotations", "labels", "managedFields")


@dataclass(frozen=True)
class Rejection:
    """A version of an object that was refused, and what stays in force instead."""

    kind: str
    namespace: str
    name: str
    uid: str
    generation: int | None
    problems: tuple[str, ...]
    """Each `field: reason`, as the CLI names them."""
    kept_generation: int | None
    """The generation still in force; None when no version was ever good."""

    @property
    def message(self) -> str:
        kept = (f"generation {self.kept_generation} still applies"
                if self.kept_generation is not None else "no earlier valid version applies")
        return f"generation {self.generation} refused: {'; '.join(self.problems)}; {kept}"


def problems(error: ValueError) -> tuple[str, ...]:
    """A validation error as `field: reason` lines."""
    if isinstance(error, ValidationError):
        return tuple(f"{field_path(e['loc'])}: {reason(e['msg'])}" for e in error.errors())
    return (str(error),)


def reason(message: str) -> str:
    """pydantic's message without its "Value error, " prefix (our validators' own words)."""
    return message.removeprefix("Value error, ")


def field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(object)"


class LastGood(Generic[T]):
    """Parses objects of one kind by UID, keeping each one's last version that parsed."""

    def __init__(self, kind: str, parse: Callable[[dict[str, Any]], T]) -> None:
        self.kind, self._parse = kind, parse
        self._good: dict[str, tuple[int | None, T]] = {}
        self._rejected: dict[str, Rejection] = {}

    def parse(self, body: Mapping[str, Any]) -> T | None:
        """The object as it is if it parses, else its last good version (None if it never
        had one)."""
        meta = body.get("metadata") or {}
        uid = str(meta.get("uid") or f"{meta.get('namespace', '')}/{meta.get('name', '')}")
        generation = meta.get("generation")
        # What oomguard never reads is not kept: annotations (up to 256 KiB an object),
        # labels (as many as the object's size allows), both the tenant's to fill, and
        # managed fields, in every cache of every agent.
        kept_meta = {k: v for k, v in meta.items() if k not in UNREAD_METADATA}
        try:
            parsed = self._parse({**body, "metadata": kept_meta})
        except ValueError as error:  # pydantic's ValidationError is a ValueError
            kept = self._good.get(uid)
            rejection = Rejection(
                self.kind, str(meta.get("namespace") or ""), str(meta.get("name") or ""),
                uid, generation, problems(error), kept[0] if kept else None)
            if self._rejected.get(uid) != rejection:
                where = f"{rejection.namespace}/{rejection.name}" if rejection.namespace \
                    else rejection.name
                log.warning("%s %s: %s", self.kind, where, rejection.message)
            self._rejected[uid] = rejection
            return kept[1] if kept else None
        self._good[uid] = (generation, parsed)
        self._rejected.pop(uid, None)
        return parsed

    def forget(self, uid: str) -> None:
        """The object was deleted."""
        self._good.pop(uid, None)
        self._rejected.pop(uid, None)

    def rejections(self) -> list[Rejection]:
        return list(self._rejected.values())
