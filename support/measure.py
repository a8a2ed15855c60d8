"""What the benchmarks share: summaries of samples, where the time goes (cProfile, with the
garbage collector off), verdicts against goals, and a results file that says which machine
and which source were measured."""

from __future__ import annotations

import cProfile
import gc
import io
import json
import math
import os
import platform
import pstats
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import oomguard

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def quantiles(samples: Sequence[float], digits: int = 2) -> dict[str, float]:
    """Nearest-rank quantiles of milliseconds: with fewer than 100 samples, p99 is the
    maximum."""
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    return {"n": len(ordered), "median_ms": round(statistics.median(ordered), digits),
            "p90_ms": round(pick(0.90), digits), "p99_ms": round(pick(0.99), digits),
            "max_ms": round(ordered[-1], digits), "min_ms": round(ordered[0], digits)}


def spread(values: Sequence[float | None], digits: int = 1) -> dict[str, float | None]:
    """Median and worst (largest) of the values that were measured; None was not."""
    present = [v for v in values if v is not None]
    if not present:
        return {"median": None, "worst": None, "n": 0}
    return {"median": round(statistics.median(present), digits),
            "worst": round(max(present), digits), "n": len(present)}


def growth_exponent(sizes: Sequence[float], times: Sequence[float]) -> float:
    """k of t ~ n^k, by least squares on log t = k log n + c."""
    xs = [math.log(n) for n in sizes]
    ys = [math.log(t) for t in times]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs)


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def profiled(call: Callable[[], object], runs: int) -> pstats.Stats:
    """`call` run `runs` times under cProfile. The garbage collector is off meanwhile: its
    pauses would be charged to whichever function happened to allocate when a collection
    ran."""
    profiler = cProfile.Profile()
    gc.collect()
    gc.disable()
    try:
        profiler.enable()
        for _ in range(runs):
            call()
        profiler.disable()
    finally:
        gc.enable()
    return pstats.Stats(profiler)


def profile_text(stats: pstats.Stats, top: int) -> str:
    """pstats' own listing of the `top` functions by own time."""
    buffer = io.StringIO()
    stats.stream = buffer  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(top)
    return buffer.getvalue()


def top_functions(stats: pstats.Stats, count: int) -> list[dict[str, Any]]:
    """The functions with the most own time: where, own seconds, share of the total."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values()) or 1.0
    ranked = sorted(raw.items(), key=lambda item: item[1][2], reverse=True)[:count]
    rows = []
    for (path, line, name), entry in ranked:
        short = path.split("site-packages/")[-1].split("/operator/")[-1]
        rows.append({"function": f"{short}:{line}({name})", "own_s": round(entry[2], 4),
                     "share": round(entry[2] / total, 3)})
    return rows


def print_top(title: str, stats: pstats.Stats, count: int = 12) -> list[dict[str, Any]]:
    """top_functions as a markdown table under `title`; the rows, for the results file."""
    rows = top_functions(stats, count)
    print(f"\n{title}\n")
    print("| function | own s | share |")
    print("|---|---:|---:|")
    for r in rows:
        print(f"| `{r['function']}` | {r['own_s']:.3f} | {r['share']:.0%} |")
    return rows


def source_state() -> dict[str, Any]:
    """The package measured, the repository's commit and its package files changed on top
    of it, so that results from a work in progress are not mistaken for the commit's."""
    package = str(Path(oomguard.__file__).parent)

    def git(*args: str) -> list[str]:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              check=True, timeout=10).stdout.splitlines()

    try:
        return {"package": package, "commit": git("rev-parse", "--short", "HEAD")[0],
                "modified": git("status", "--porcelain", "--", "operator")}
    except (OSError, subprocess.SubprocessError, IndexError):
        return {"package": package}


def write_results(name: str, benchmark: str, payload: dict[str, Any]) -> Path:
    """bench/results/<name>.json: the payload after what every result says (benchmark,
    when, python, platform, cpus, load average, source)."""
    path = RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "benchmark": benchmark,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "source": source_state(),
        **payload,
    }, indent=2) + "\n")
    print(f"\nwrote {path}")
    return path
