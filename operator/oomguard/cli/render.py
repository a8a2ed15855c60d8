"""An Outcome as the JSON of `oomguard rank -o json` and as a readable table."""

from __future__ import annotations

import unicodedata
from typing import Any

from oomguard.engine import Outcome, Ranked
from oomguard.engine.ranking import size


def _group_json(ranked: Ranked) -> dict[str, Any]:
    g = ranked.group
    return {
        "position": ranked.position,
        "group": g.name,
        "groupBy": g.group_by,
        "pods": [p.ref for p in g.pods],
        "podsOnOtherNodes": [p.ref for p in g.elsewhere],
        "priority": g.priority,
        "preference": g.preference,
        "usageBytes": g.usage_bytes,
        "unmeasuredPods": len(g.unmeasured),
        "allowanceBytes": g.allowance_bytes,
        "reason": ranked.reason,
    }


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    o = outcome
    return {
        "node": o.node,
        "policy": o.policy,
        "mode": o.mode,
        "pressure": o.pressure,
        "capacityBytes": o.capacity_bytes,
        "availableBytes": o.available_bytes,
        "needBytes": o.need_bytes,
        "releasingBytes": o.releasing_bytes,
        "blockedBy": o.blocked_by,
        "graceRemainingSeconds": o.grace_remaining_seconds,
        "noVictim": o.no_victim,
        "victims": [
            {**_group_json(v), "action": o.action, "expectedReclaimBytes": v.group.usage_bytes}
            for v in o.victims
        ],
        "ranking": [_group_json(r) for r in o.ranking],
        "excluded": [
            {"pod": e.pod, "uid": e.uid, "reason": e.reason, "message": e.message}
            for e in o.excluded
        ],
        "priorities": [
            {
                "namespace": p.namespace,
                "name": p.name,
                "matchedPods": p.matched_pods,
                "effectivePriority": p.effective_priority,
                "effectivePreference": p.effective_preference,
                "clampedFrom": p.clamped_from,
                "neverDenied": p.never_denied,
                "avoidDenied": p.avoid_denied,
                "allowanceCappedFrom": p.allowance_capped_from,
                "overlaps": list(p.overlaps),
            }
            for p in o.priorities
        ],
    }


def printable(text: str) -> str:
    """`text` with control and format characters escaped (\\n, \\x1b, ...): a name from an
    input file could otherwise move the cursor, recolour the terminal or forge a line."""
    if text.isprintable():
        return text
    return "".join(ch if unicodedata.category(ch)[0] != "C" or ch == " "
                   else ch.encode("unicode_escape").decode() for ch in text)


def table(rows: list[list[str]]) -> str:
    """Left-aligned columns, two spaces apart, like kubectl; every cell printable."""
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _pods(ranked: Ranked, limit: int = 3) -> str:
    refs = [p.name for p in ranked.group.pods]
    more = len(refs) - limit
    return ",".join(refs[:limit]) + (f" (+{more})" if more > 0 else "")


def outcome_table(outcome: Outcome) -> str:
    o = outcome
    victims = {v.group.name for v in o.victims}
    lines = [
        f"node {printable(o.node)}  policy {printable(o.policy)} ({o.mode})  "
        f"pressure {o.pressure}  "
        f"available {size(o.available_bytes)} of {size(o.capacity_bytes)}  "
        f"need {size(o.need_bytes)}"
        + (f"  releasing {size(o.releasing_bytes)}" if o.releasing_bytes else ""),
    ]
    if o.blocked_by:
        lines.append(f"no new victim: decision {printable(o.blocked_by)} is still releasing "
                     "memory")
    elif o.no_victim is not None:
        lines.append(f"no victim: {o.no_victim}")
    elif o.grace_remaining_seconds is not None:
        lines.append(f"no victim yet: Soft pressure must last {o.grace_remaining_seconds:.0f}s "
                     "more (the policy's softGraceSeconds)")
    elif o.victims:
        lines.append(
            f"victims: {', '.join(printable(v.group.name) for v in o.victims)}  "
            f"action {o.action}  "
            f"expected reclaim {size(o.expected_reclaim_bytes)}"
        )
    lines.append("")
    rows = [["#", "GROUP", "PODS", "PRIO", "PREF", "USAGE", "ALLOWANCE", "VICTIM", "WHY"]]
    rows += [
        [
            str(r.position), r.group.name, _pods(r), str(r.group.priority),
            r.group.preference or "-",
            size(r.group.usage_bytes) + ("*" if r.group.unmeasured else ""),
            size(r.group.allowance_bytes), "yes" if r.group.name in victims else "",
            r.reason,
        ]
        for r in o.ranking
    ]
    lines.append(table(rows) if o.ranking else "no eligible groups")
    if any(r.group.unmeasured for r in o.ranking):
        lines.append("* usage of a pod could not be read: counted at its memory limit "
                     "(else request)")
    if o.excluded:
        lines += ["", table([["EXCLUDED POD", "REASON", "WHY"]] + [
            [e.pod, e.reason, e.message] for e in o.excluded
        ])]
    return "\n".join(lines)
