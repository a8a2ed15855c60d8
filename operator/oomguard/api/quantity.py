"""Kubernetes resource quantities ("512Mi", "1.5G", "100e6") and "N%" thresholds.

Parsed the way the API server does, then rounded up to whole bytes, so that a policy
written for the kubelet means the same thing here.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from math import ceil
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
AMOUNT_PATTERN = "^\\+?" + QUANTITY_PATTERN.removeprefix("^(\\+|-)?")
"""A quantity that is not negative: what the CRDs take for memory amounts (the API server
refuses what the models refuse)."""
PERCENT_PATTERN = r"^([0-9]+(\.[0-9]+)?)%$"
MAX_LENGTH = 64
"""Longest quantity or percentage taken: far beyond any real one, and it bounds what the
API server's CEL rules cost to evaluate."""

_SUFFIXES: dict[str, Decimal] = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"),
    "T": Decimal("1e12"), "P": Decimal("1e15"), "E": Decimal("1e18"),
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30),
    "Ti": Decimal(2**40), "Pi": Decimal(2**50), "Ei": Decimal(2**60),
}
_QUANTITY = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))([a-zA-Z]*|[eE][+-]?[0-9.]+)$")


@lru_cache(maxsize=4096)
def parse_quantity(text: str | int) -> int:
    """Return the quantity in bytes, rounded up; raise ValueError for anything else.
    Cached: a cluster uses few distinct quantities, and ranking parses them per pod."""
    if isinstance(text, int):
        return text
    match = _QUANTITY.match(text.strip())
    if not match or not re.match(QUANTITY_PATTERN, text.strip()):
        raise ValueError(f"{text!r} is not a Kubernetes quantity (like 512Mi, 2Gi or 1e9)")
    number, suffix = match.groups()
    try:
        if suffix in _SUFFIXES:  # before the exponent: "E" and "Ei" are exa and exbi
            value = Decimal(number) * _SUFFIXES[suffix]
        else:
            value = Decimal(number) * (Decimal(10) ** Decimal(suffix[1:]))
    except (InvalidOperation, KeyError) as exc:
        raise ValueError(f"{text!r} is not a Kubernetes quantity") from exc
    return ceil(value)


def cel_not_above(low: str, high: str) -> str:
    """The CEL twin of `not_above` (policy.py): `low` and `high` are CEL expressions of
    int-or-string quantities or percentages; true unless `low` is provably above `high`."""
    lo, hi = f"string({low})", f"string({high})"  # CRD rules have no cel.bind
    return (f"{lo}.endsWith('%') != {hi}.endsWith('%') || ({lo}.endsWith('%') ? "
            f"double({lo}.replace('%', '')) <= double({hi}.replace('%', '')) : "
            f"!isQuantity({lo}) || !isQuantity({hi}) || "
            f"quantity({lo}).compareTo(quantity({hi})) <= 0)")


def is_percent(text: str) -> bool:
    return text.strip().endswith("%")


def resolve_amount(text: str, capacity_bytes: int) -> int:
    """Bytes meant by a quantity or by a percentage of `capacity_bytes`."""
    text = text.strip()
    if is_percent(text):
        return ceil(Decimal(text[:-1]) * capacity_bytes / 100)
    return parse_quantity(text)


def _check_quantity(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a quantity is a number or a string such as 512Mi, not a boolean")
    if isinstance(value, int | float):
        value = str(int(value)) if float(value).is_integer() else str(value)
    if isinstance(value, str) and len(value) > MAX_LENGTH:
        raise ValueError(f"a quantity is at most {MAX_LENGTH} characters")
    if isinstance(value, str) and parse_quantity(value) < 0:
        raise ValueError(f"{value!r} is negative; memory amounts are >= 0")
    return value


def _check_quantity_or_percent(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_LENGTH:
        raise ValueError(f"a quantity or percentage is at most {MAX_LENGTH} characters")
    if isinstance(value, str) and is_percent(value):
        if not re.match(PERCENT_PATTERN, value.strip()):
            raise ValueError(f"{value!r} is not a percentage such as 10% or 2.5%")
        if Decimal(value.strip()[:-1]) > 100:
            raise ValueError(f"{value!r} is more than 100%")
        return value.strip()
    return _check_quantity(value)


_INT_OR_STRING = {"anyOf": [{"type": "integer"}, {"type": "string"}],
                  "x-kubernetes-int-or-string": True}

Quantity = Annotated[
    str,
    BeforeValidator(_check_quantity),
    WithJsonSchema({**_INT_OR_STRING, "pattern": AMOUNT_PATTERN, "maxLength": MAX_LENGTH}),
]
"""A Kubernetes quantity of bytes, kept as the user wrote it."""

QuantityOrPercent = Annotated[
    str,
    BeforeValidator(_check_quantity_or_percent),
    WithJsonSchema({
        **_INT_OR_STRING,
        "pattern": f"({AMOUNT_PATTERN})|({PERCENT_PATTERN})",
        "maxLength": MAX_LENGTH,
    }),
]
"""A quantity of bytes, or a percentage of the node's memory capacity."""
