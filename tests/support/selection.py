"""Label and field selectors, parsed and applied as the API server does.

Query strings (`labelSelector=a=b,c in (x,y),!d`) and structured LabelSelectors (as in a
PodDisruptionBudget) become the same requirement list. A selector the real server rejects
raises `SelectorError`, which the emulator answers with 400, so a bad selector fails here as
it would in a cluster.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any, NamedTuple


class SelectorError(ValueError):
    """A selector the real API server rejects with 400 Bad Request."""


class Requirement(NamedTuple):
    """One label requirement; `op` is one of `=`, `!=`, `in`, `notin`, `exists`, `!`."""

    key: str
    op: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case "=" | "in":
                return present and value in self.values
            case "!=" | "notin":
                return not present or value not in self.values
            case "exists":
                return present
            case _:  # "!"
                return not present


_KEY = r"[A-Za-z0-9](?:[-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_EQUALITY = re.compile(rf"({_KEY})\s*(==|=|!=)\s*({_VALUE})")
_SET = re.compile(rf"({_KEY})\s+(in|notin)\s*\(([^()]*)\)")
_EXISTS = re.compile(rf"(!?)\s*({_KEY})")


def _split_terms(text: str) -> list[str]:
    """Split on the commas that separate requirements, not those inside `in (a,b)`."""
    terms, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return [term.strip() for term in terms]


def parse_label_selector(text: str) -> list[Requirement]:
    """Requirements of a `labelSelector` query parameter; empty text selects everything."""
    if not text.strip():
        return []
    requirements = []
    for term in _split_terms(text):
        if m := _EQUALITY.fullmatch(term):
            key, op, value = m.groups()
            requirements.append(Requirement(key, "!=" if op == "!=" else "=", frozenset([value])))
        elif m := _SET.fullmatch(term):
            key, op, values = m.groups()
            items = frozenset(v.strip() for v in values.split(","))
            if not all(re.fullmatch(_VALUE, v) for v in items):
                raise SelectorError(f"invalid label selector value in {term!r}")
            requirements.append(Requirement(key, op, items))
        elif m := _EXISTS.fullmatch(term):
            bang, key = m.groups()
            requirements.append(Requirement(key, "!" if bang else "exists"))
        else:
            raise SelectorError(f"unable to parse requirement: {term!r}")
    return requirements


_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}


def parse_structured_selector(selector: Mapping[str, Any]) -> list[Requirement]:
    """Requirements of a structured LabelSelector (`matchLabels`, `matchExpressions`)."""
    requirements = [Requirement(key, "=", frozenset([value]))
                    for key, value in (selector.get("matchLabels") or {}).items()]
    for expression in selector.get("matchExpressions") or []:
        op = _OPERATORS.get(expression.get("operator", ""))
        if op is None:
            raise SelectorError(f"invalid operator in {expression!r}")
        values = frozenset(expression.get("values") or [])
        requirements.append(Requirement(expression["key"], op, values))
    return requirements


def labels_match(requirements: Collection[Requirement], labels: Mapping[str, str]) -> bool:
    return all(requirement.matches(labels) for requirement in requirements)


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A structured selector: a null one selects nothing, an empty one everything (policy/v1)."""
    if selector is None:
        return False
    return labels_match(parse_structured_selector(selector), labels)


class FieldRequirement(NamedTuple):
    """`path=value` or `path!=value` over an object's fields; a missing field reads as ``""``."""

    path: str
    negated: bool
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return (field_value(obj, self.path) == self.value) != self.negated


_FIELD = re.compile(r"([A-Za-z0-9.]+)\s*(==|=|!=)\s*(.*)")


def parse_field_selector(text: str, supported: Collection[str]) -> list[FieldRequirement]:
    """Requirements of a `fieldSelector`; fields outside `supported` are rejected as the
    real server rejects them (each resource supports only a few fields)."""
    if not text.strip():
        return []
    requirements = []
    for term in text.split(","):
        m = _FIELD.fullmatch(term.strip())
        if m is None:
            raise SelectorError(f"invalid field selector: {term!r}")
        path, op, value = m.groups()
        if path not in supported:
            raise SelectorError(f'field label not supported: {path}')
        requirements.append(FieldRequirement(path, op == "!=", value.strip()))
    return requirements


def field_value(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
