"""What the standalone agent costs at rest on a node with 110 pods (the kubelet's default
maximum): CPU as a share of one core, and resident memory.

Not a test: it reports numbers. A throw-away cgroup v1 node (4 GiB limit, so no pressure)
gets 110 pods, each with a `main` container running a workload that holds 4 MiB of
anonymous memory, and every other pod a `sidecar` container with an idle workload: 165
processes in 275 pod and container cgroups. That is a real node's cgroup tree and charges
(what the agent reads); a process in every container as well would only add startup time.
`oomguard agent --standalone` then runs as its own process, as a user starts it, and is
measured from outside through /proc, so that nothing in the package is instrumented:

- CPU: utime+stime of /proc/PID/stat over each window (10 ms ticks), cross-checked by the
  nanosecond run time of /proc/PID/schedstat;
- memory: VmRSS (with its anonymous and file-backed parts) and VmHWM of /proc/PID/status;
- samples: voluntary context switches (the agent sleeps once per sample; cgroup files
  never block), cross-checked by strace counting /proc/meminfo opens (one per sample)
  after the CPU windows, so that ptrace slows no measured sample.

The interval the agent chose at rest, and what one sample costs part by part, come from
an in-process Agent on the same node, after the agent process has stopped.

    python -m bench.agent_overhead [--quick] [--profile]

Needs root and a cgroup v1 memory hierarchy (otherwise it says so and exits 0). Prints
markdown tables and writes bench/results/agent_overhead.json.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from oomguard.agent.host import CgroupKiller, CgroupReader, SystemClock
from oomguard.agent.loop import Agent
from oomguard.agent.standalone import place_on_node
from oomguard.inputs import load_files
from oomguard.sandbox import SandboxNode, SandboxUnavailableError

from support.measure import profile_text, profiled, verdict, write_results

Gi = 2**30
PODS = 110
LIMIT = 4 * Gi
MAIN_MIB = 4
NAMESPACES = 10
NODE = "bench-node"
PREFIX = "oomguard-bench-overhead"
GOAL_CPU_PERCENT = 1.0
GOAL_RSS_MB = 60.0
STARTUP_TIMEOUT = 60.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Plan:
    warmup: float
    windows: int
    window: float
    strace: float
    steps: int


FULL = Plan(warmup=5.0, windows=3, window=30.0, strace=10.0, steps=60)
QUICK = Plan(warmup=3.0, windows=1, window=10.0, strace=4.0, steps=20)


# --- the node ---------------------------------------------------------------------------


def build_node(node: SandboxNode, manifest: Path) -> int:
    """110 pods in ten namespaces, a third of them owned by ReplicaSets; returns the number
    of workload processes started. Pod manifests go to `manifest` for the agent."""
    processes = 0
    for i in range(PODS):
        owner = ("ReplicaSet", f"app-{i % 12}") if i % 3 == 0 else None
        pod = node.add_pod(f"pod-{i:03d}", f"ns-{i % NAMESPACES}",
                           labels={"app": f"app-{i % 12}"}, owner=owner)
        node.start(pod, "anon", MAIN_MIB)
        processes += 1
        if i % 2 == 0:
            node.start(pod, "idle", container="sidecar")
            processes += 1
    manifest.write_text(yaml.safe_dump_all([p.manifest() for p in node.pods]))
    return processes


# --- reading /proc ----------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    wall: float
    cpu_ticks: int
    sys_ticks: int
    run_ns: int
    status: dict[str, int]
    """VmRSS, VmHWM, RssAnon, RssFile in kB, and voluntary_ctxt_switches: the agent
    sleeps once per sample (cgroup files never block), so this counts samples."""


def read_proc(pid: int) -> Reading:
    """One look at the process: CPU from stat (utime+stime, fields 14 and 15) and
    schedstat (ns on CPU), memory from status."""
    wall = time.monotonic()
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces
    user, system = int(fields[11]), int(fields[12])
    run_ns = int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    status = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "voluntary_ctxt_switches"):
            status[key] = int(value.split()[0])
    return Reading(wall, user + system, system, run_ns, status)


def window(pid: int, seconds: float) -> dict[str, Any]:
    """CPU as % of one core over `seconds`, and memory at the end of it."""
    start = read_proc(pid)
    time.sleep(seconds)
    end = read_proc(pid)
    wall = end.wall - start.wall
    sleeps = end.status["voluntary_ctxt_switches"] - start.status["voluntary_ctxt_switches"]
    cpu_ms = (end.run_ns - start.run_ns) / 1e6
    return {
        "seconds": round(wall, 2),
        "cpu_percent": round(100 * (end.cpu_ticks - start.cpu_ticks) / CLK_TCK / wall, 3),
        "cpu_percent_schedstat": round(100 * (end.run_ns - start.run_ns) / 1e9 / wall, 3),
        "sys_percent": round(100 * (end.sys_ticks - start.sys_ticks) / CLK_TCK / wall, 3),
        "sleeps": sleeps,
        "cpu_ms_per_sleep": round(cpu_ms / sleeps, 2) if sleeps else None,
        "rss_mb": round(end.status["VmRSS"] / 1024, 1),
        "rss_anon_mb": round(end.status["RssAnon"] / 1024, 1),
        "rss_file_mb": round(end.status["RssFile"] / 1024, 1),
        "hwm_mb": round(end.status["VmHWM"] / 1024, 1),
    }


def sample_times(pid: int, seconds: float, log: Path) -> list[float] | None:
    """When the agent sampled during `seconds`: each sample opens /proc/meminfo exactly
    once. None without strace."""
    strace = shutil.which("strace")
    if strace is None:
        return None
    tracer = subprocess.Popen([strace, "-qq", "-ttt", "-e", "trace=openat", "-e", "signal=none",
                               "-o", str(log), "-p", str(pid)], stderr=subprocess.DEVNULL)
    try:
        time.sleep(seconds)
    finally:
        tracer.send_signal(signal.SIGINT)  # strace detaches and leaves the agent running
        tracer.wait(timeout=10)
    return [float(line.split()[0]) for line in log.read_text().splitlines()
            if '"/proc/meminfo"' in line]


def median_period(times: list[float] | None) -> float | None:
    """Median seconds between samples: the chosen interval plus the time a sample takes."""
    if not times or len(times) < 2:
        return None
    return round(statistics.median(b - a for a, b in itertools.pairwise(times)), 4)


# --- the agent --------------------------------------------------------------------------


def start_agent(root: Path, manifest: Path, out: Path, err: Path) -> subprocess.Popen[bytes]:
    with out.open("wb") as stdout, err.open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "oomguard", "agent", "--standalone", "--cgroup-root",
             str(root), "--node", NODE, "-f", str(manifest),
             "--state-dir", str(manifest.parent / "state")],
            stdout=stdout, stderr=stderr)


def wait_protecting(agent: subprocess.Popen[bytes], err: Path) -> float:
    """Seconds until the agent logs that it protects the node (its first sample follows
    at once)."""
    start = time.monotonic()
    while "protecting" not in err.read_text():
        if agent.poll() is not None:
            raise RuntimeError(f"agent exited with {agent.returncode}: {err.read_text()}")
        if time.monotonic() - start > STARTUP_TIMEOUT:
            raise RuntimeError(f"agent not started after {STARTUP_TIMEOUT:g} s")
        time.sleep(0.05)
    return time.monotonic() - start


def stop_agent(agent: subprocess.Popen[bytes]) -> int:
    """SIGTERM, as a service manager would; SIGKILL if it does not stop."""
    if agent.poll() is None:
        agent.send_signal(signal.SIGTERM)
        try:
            return agent.wait(timeout=10)
        except subprocess.TimeoutExpired:
            agent.kill()
    return agent.wait(timeout=10)


# --- in process: the chosen interval and the cost of one sample --------------------------


def in_process_agent(root: Path, manifest: Path) -> Agent:
    """The agent `oomguard agent --standalone` builds, on the same node and pods."""
    inputs = load_files([manifest])
    assert not inputs.errors, inputs.errors
    return Agent(node=NODE, reader=CgroupReader(root), killer=CgroupKiller(root),
                 clock=SystemClock(), view=place_on_node(inputs, NODE),
                 emit=lambda decision: None, standalone=True)


def timed(call: Callable[[], object], runs: int) -> dict[str, float]:
    """Median wall and CPU milliseconds of `call`."""
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return {"wall_ms": round(1e3 * statistics.median(walls), 2),
            "cpu_ms": round(1e3 * statistics.median(cpus), 2)}


def sample_cost(agent: Agent, root: Path, runs: int) -> dict[str, Any]:
    """The interval chosen at rest, and what one step costs, split into its parts."""
    from oomguard import cgroups  # noqa: PLC0415 (only the in-process part needs it)
    from oomguard.engine import decide  # noqa: PLC0415

    step = agent.step()
    discovered = cgroups.discover_pods(root, containers=False)
    sample = agent.reader.read()
    snapshot = agent.view.snapshot(  # the engine input the loop builds under pressure
        agent.node, sample.memory, sample.pods, now=agent.clock.now(),
        unmeasured=sample.unmeasured)
    return {
        "interval_s": agent.next_interval(step),
        "pressure": step.assessment.pressure,
        "pods_read_at_rest": 0 if step.outcome is None else len(sample.pods),
        "step": timed(agent.step, runs),
        # What a step under pressure adds: every pod read, and the engine.
        "discovery": timed(lambda: cgroups.discover_pods(root, containers=False), runs),
        "read_files": timed(
            lambda: cgroups.read_snapshot(root, pods=discovered, containers=False), runs),
        "decide": timed(lambda: decide(snapshot), runs),
    }


# --- the run ----------------------------------------------------------------------------


def measure(plan: Plan, work: Path, with_profile: bool) -> dict[str, Any]:
    manifest, out, err = work / "pods.yaml", work / "agent.out", work / "agent.err"
    with SandboxNode(LIMIT, prefix=PREFIX) as node:
        started = time.monotonic()
        processes = build_node(node, manifest)
        build_seconds = time.monotonic() - started
        agent = start_agent(node.root, manifest, out, err)
        try:
            startup = wait_protecting(agent, err)
            at_start = read_proc(agent.pid)
            time.sleep(plan.warmup)
            windows = [window(agent.pid, plan.window) for _ in range(plan.windows)]
            samples = sample_times(agent.pid, plan.strace, work / "strace.log")
        finally:
            code = stop_agent(agent)
        if code != 0:
            raise RuntimeError(f"agent exited with {code}: {err.read_text()}")
        decisions = len(out.read_text().splitlines())
        in_process = in_process_agent(node.root, manifest)
        cost = sample_cost(in_process, node.root, plan.steps)
        profile = (profile_text(profiled(in_process.step, plan.steps), top=25)
                   if with_profile else "")
        cgroup_count = sum(1 for _ in os.walk(node.root / "kubepods"))
    if node.root.exists():
        raise RuntimeError(f"sandbox {node.root} left behind")
    return {
        "node": {"pods": PODS, "cgroups_under_kubepods": cgroup_count,
                 "workload_processes": processes, "limit_bytes": LIMIT,
                 "build_seconds": round(build_seconds, 1)},
        "startup": {"seconds": round(startup, 2),
                    "cpu_seconds": round(at_start.cpu_ticks / CLK_TCK, 2),
                    "rss_mb": round(at_start.status["VmRSS"] / 1024, 1)},
        "windows": windows,
        "samples": None if samples is None else len(samples),
        "sample_period_s": median_period(samples),
        "strace_seconds": plan.strace,
        "decisions_emitted": decisions,
        "in_process": cost,
        "profile": profile,
    }


def summarize(run: dict[str, Any]) -> dict[str, Any]:
    """Medians over the windows (max for the high-water mark), and the verdicts."""
    windows = run["windows"]

    def median(key: str) -> float:
        return statistics.median(w[key] for w in windows if w[key] is not None)

    cpu, cpu_ns = median("cpu_percent"), median("cpu_percent_schedstat")
    hwm = max(w["hwm_mb"] for w in windows)
    return {
        "cpu_percent": cpu, "cpu_percent_schedstat": cpu_ns,
        "samples_per_s": round(statistics.median(w["sleeps"] / w["seconds"] for w in windows), 3),
        "cpu_ms_per_sample": median("cpu_ms_per_sleep"),
        "rss_mb": median("rss_mb"), "hwm_mb": hwm,
        "goal_cpu_met": max(cpu, cpu_ns) < GOAL_CPU_PERCENT,
        "goal_rss_met": hwm < GOAL_RSS_MB,
    }


def report(run: dict[str, Any], summary: dict[str, Any]) -> None:
    node, cost, startup = run["node"], run["in_process"], run["startup"]
    print(f"## oomguard agent --standalone at rest: {node['pods']} pods, "
          f"{node['cgroups_under_kubepods']} cgroups, {node['workload_processes']} "
          f"workload processes (built in {node['build_seconds']} s)\n")
    print("| window | s | CPU % (stat) | of which system | CPU % (schedstat) | samples "
          "| CPU ms/sample | VmRSS MB | anon MB | file MB | VmHWM MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for i, w in enumerate(run["windows"], 1):
        print(f"| {i} | {w['seconds']:g} | {w['cpu_percent']:.3f} | {w['sys_percent']:.3f} | "
              f"{w['cpu_percent_schedstat']:.3f} | {w['sleeps']} | {w['cpu_ms_per_sleep']} | "
              f"{w['rss_mb']} | {w['rss_anon_mb']} | {w['rss_file_mb']} | {w['hwm_mb']} |")
    print()
    print("| measure | value | goal |")
    print("|---|---:|---|")
    print(f"| CPU, % of one core (median; stat / schedstat) | {summary['cpu_percent']:.3f} / "
          f"{summary['cpu_percent_schedstat']:.3f} | < {GOAL_CPU_PERCENT:g}: "
          f"{verdict(summary['goal_cpu_met'])} |")
    print(f"| VmRSS MB (median) / VmHWM MB (max) | {summary['rss_mb']} / {summary['hwm_mb']} | "
          f"< {GOAL_RSS_MB:g}: {verdict(summary['goal_rss_met'])} |")
    print(f"| samples per s (sleeps) / CPU ms per sample (median) | "
          f"{summary['samples_per_s']} / {summary['cpu_ms_per_sample']} | |")
    if run["samples"] is not None:
        print(f"| strace: samples in {run['strace_seconds']:g} s; median period s (slowed by "
              f"ptrace) | {run['samples']}; {run['sample_period_s']} | |")
    print(f"| interval the agent chose at rest (in process), s | {cost['interval_s']:g} | |")
    for part in ("step", "discovery", "read_files", "decide"):
        print(f"| one {part.replace('_', ' ')}, in process: wall / CPU ms (median) | "
              f"{cost[part]['wall_ms']} / {cost[part]['cpu_ms']} | |")
    print(f"| startup: s to first sample / CPU s / VmRSS MB | {startup['seconds']} / "
          f"{startup['cpu_seconds']} / {startup['rss_mb']} | |")
    print(f"| decisions emitted (expect 0: pressure {cost['pressure']}) | "
          f"{run['decisions_emitted']} | |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one 10 s window, for a smoke check")
    parser.add_argument("--profile", action="store_true",
                        help="also print a cProfile of the agent's step, run in process")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    # SIGTERM unwinds like Ctrl-C, so that the agent and the sandbox are always cleaned up.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        with tempfile.TemporaryDirectory(prefix="oomguard-bench-") as work:
            run = measure(plan, Path(work), args.profile)
    except SandboxUnavailableError as reason:
        print(f"agent_overhead: skipped, no real cgroup sandbox here: {reason}")
        return 0
    summary = summarize(run)
    report(run, summary)
    if args.profile:
        print(f"\n## cProfile: {plan.steps} agent steps in process, by own time, gc off\n")
        print(run["profile"])
    write_results("agent_overhead", "agent.overhead", {
        "quick": args.quick,
        "goals": {"cpu_percent": GOAL_CPU_PERCENT, "rss_mb": GOAL_RSS_MB},
        "summary": summary,
        **{k: v for k, v in run.items() if k != "profile"},
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
