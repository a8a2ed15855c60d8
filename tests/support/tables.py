"""Server-side Table rendering: what `kubectl get` prints comes from the API server.

kubectl asks for `application/json;as=Table;v=v1;g=meta.k8s.io` and prints the cells it
gets. For custom resources the real server computes them from the CRD's
`additionalPrinterColumns`; this module does the same, with the JSONPath subset our CRDs use
(`.a.b`, `.a[0].b`, `.a[*].b`), so `kubectl get oomdecisions` shows here what it would show
in a cluster. Built-in kinds get a few hand-written columns (NAME/AGE at least).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Cell = str | int | float | bool | None
Obj = Mapping[str, Any]

_STEP = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+|\*)\]")


def jsonpath(obj: Obj, path: str) -> list[Any]:
    """All values at `path`; missing steps yield nothing rather than an error."""
    steps = list(_STEP.finditer(path))
    if "".join(step.group(0) for step in steps) != path:
        raise ValueError(f"unsupported JSONPath {path!r}: only .a.b, .a[0].b and .a[*].b")
    values: list[Any] = [obj]
    for step in steps:
        key, index = step.groups()
        found: list[Any] = []
        for value in values:
            if key is not None and isinstance(value, Mapping) and key in value:
                found.append(value[key])
            elif index == "*" and isinstance(value, list):
                found.extend(value)
            elif index not in (None, "*") and isinstance(value, list) and int(index) < len(value):
                found.append(value[int(index)])
        values = found
    return values


def human_duration(seconds: float) -> str:
    """Go's `duration.HumanDuration`, which kubectl shows in AGE columns."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes, hours = s // 60, s // 3600
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if hours < 24 * 365 * 2:
        return f"{days}d"
    if hours < 24 * 365 * 8:
        return f"{days // 365}y{days % 365}d" if days % 365 else f"{days // 365}y"
    return f"{days // 365}y"


def age(timestamp: Any, now: datetime) -> str:
    if not isinstance(timestamp, str) or not timestamp:
        return "<unknown>"
    try:
        then = datetime.fromisoformat(timestamp)
    except ValueError:
        return "<invalid>"
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    return human_duration((now - then).total_seconds())


@dataclass(frozen=True)
class Column:
    """A Table column: its definition, and how a row's cell is computed."""

    name: str
    type: str
    cell: Callable[[Obj, datetime], Cell]
    priority: int = 0
    format: str = ""
    description: str = ""

    def definition(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "format": self.format,
                "description": self.description, "priority": self.priority}


def _cell_for_json(kind: str, values: list[Any], now: datetime) -> Cell:
    """The CRD table convertor's rules: the first match only, even through `[*]`."""
    if not values:
        return None
    value = values[0]
    match kind:
        case "string":
            return value if isinstance(value, str) else json.dumps(value)
        case "integer" if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)
        case "number" if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        case "boolean" if isinstance(value, bool):
            return value
        case "date" if isinstance(value, str):
            return age(value, now)
    return None


def _name(obj: Obj, _: datetime) -> Cell:
    return str(obj.get("metadata", {}).get("name", ""))


NAME = Column("Name", "string", _name, format="name",
              description="Name must be unique within a namespace.")
AGE = Column("Age", "string",
             lambda obj, now: age(obj.get("metadata", {}).get("creationTimestamp"), now))


def printer_columns(definitions: Sequence[Mapping[str, Any]]) -> list[Column]:
    """NAME, then a CRD version's `additionalPrinterColumns` (NAME and AGE if it has none)."""
    if not definitions:
        return [NAME, AGE]

    def column(spec: Mapping[str, Any]) -> Column:
        path, kind = spec["jsonPath"], spec["type"]
        jsonpath({}, path)  # reject an unsupported path now, not on the first `kubectl get`
        return Column(spec["name"], kind,
                      lambda obj, now: _cell_for_json(kind, jsonpath(obj, path), now),
                      priority=spec.get("priority", 0), format=spec.get("format", ""),
                      description=spec.get("description", ""))

    return [NAME, *map(column, definitions)]


def _pod_ready(pod: Obj, _: datetime) -> Cell:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    ready = sum(1 for status in statuses if status.get("ready"))
    return f"{ready}/{len(pod.get('spec', {}).get('containers') or [])}"


def _pod_status(pod: Obj, _: datetime) -> Cell:
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return "Terminating"
    return str(pod.get("status", {}).get("phase", "Unknown"))


def _pod_restarts(pod: Obj, _: datetime) -> Cell:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return sum(int(status.get("restartCount", 0)) for status in statuses)


def _event_last_seen(event: Obj, now: datetime) -> Cell:
    meta = event.get("metadata", {})
    return age(event.get("lastTimestamp") or event.get("eventTime")
               or meta.get("creationTimestamp"), now)


def _event_object(event: Obj, _: datetime) -> Cell:
    involved = event.get("involvedObject") or event.get("regarding") or {}
    return f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"


def _field(*path: str) -> Callable[[Obj, datetime], Cell]:
    def cell(obj: Obj, _: datetime) -> Cell:
        value: Any = obj
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        return value if isinstance(value, str | int | float | bool) else None
    return cell


BUILTIN_COLUMNS: dict[tuple[str, str], list[Column]] = {
    ("", "pods"): [
        NAME, Column("Ready", "string", _pod_ready), Column("Status", "string", _pod_status),
        Column("Restarts", "integer", _pod_restarts), AGE,
        Column("IP", "string", _field("status", "podIP"), priority=1),
        Column("Node", "string", _field("spec", "nodeName"), priority=1),
    ],
    ("", "events"): [
        Column("Last Seen", "string", _event_last_seen), Column("Type", "string", _field("type")),
        Column("Reason", "string", _field("reason")), Column("Object", "string", _event_object),
        Column("Message", "string", _field("message")),
    ],
}


def render_table(objects: Sequence[Obj], columns: Sequence[Column], resource_version: str,
                 include_object: str) -> dict[str, Any]:
    """A `meta.k8s.io/v1 Table`; rows carry the object or its metadata (`includeObject`)."""
    now = datetime.now(UTC)
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": [column.cell(obj, now) for column in columns]}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": obj.get("metadata", {})}
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": [column.definition() for column in columns], "rows": rows}


def wants_table(accept: str) -> bool:
    """Whether an `Accept` header asks for a Table, as kubectl get does."""
    return any("as=Table" in part and "g=meta.k8s.io" in part for part in accept.split(","))

