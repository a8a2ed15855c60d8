"""The `oomguard` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from oomguard import __version__
from oomguard.agent import standalone
from oomguard.cli.render import outcome_json, outcome_table, printable
from oomguard.engine import decide
from oomguard.inputs import Inputs, load_files

EXIT_INVALID_INPUT = 2


def _fail(message: str) -> int:
    print(f"oomguard: {message}", file=sys.stderr)
    return EXIT_INVALID_INPUT


def rank(args: argparse.Namespace) -> int:
    """Who would be killed on a node, and why: from YAML files (-f), or from the cluster
    (--node without -f)."""
    if args.files:
        inputs = _load(args.files)
        source = ", ".join(map(str, args.files))
    elif args.node is None:
        return _fail("rank needs -f FILE, or --node NAME to read the cluster")
    else:
        inputs = _from_cluster(args)
        source = "the cluster (it may not have reported yet)"
    if inputs is None:
        return EXIT_INVALID_INPUT
    node = args.node
    if node is None:
        if len(inputs.reports) != 1:
            found = ", ".join(sorted(inputs.reports)) or "none"
            return _fail(f"need exactly one NodeMemoryReport or --node NAME (found: {found})")
        node = next(iter(inputs.reports))
    if node not in inputs.reports:
        return _fail(f"no NodeMemoryReport named {node!r} in {source}")
    status = inputs.reports[node].status
    assert status is not None
    now = status.observed_time or datetime.now(UTC)
    outcome = decide(inputs.reported(node, now))
    if args.output == "json":
        print(json.dumps(outcome_json(outcome), indent=2))
    else:
        print(outcome_table(outcome))
    return 0


def _from_cluster(args: argparse.Namespace) -> Inputs:
    from oomguard.kube import api_client  # noqa: PLC0415 - the client loads only when used
    from oomguard.kube.live import load_cluster  # noqa: PLC0415

    inputs = load_cluster(api_client(server=args.server, kubeconfig=args.kubeconfig), args.node)
    for warning in inputs.warnings:
        print(f"oomguard: warning: {warning}", file=sys.stderr)
    return inputs


def _load(files: list[Path]) -> Inputs | None:
    """Read the files (saying how far on a terminal: a big cluster's file takes seconds);
    print warnings, and every error, and return None on errors."""
    shown = sys.stderr.isatty()

    def progress(path: Path, documents: int) -> None:
        print(f"\rreading {path}: {documents:,} objects", end="", file=sys.stderr, flush=True)

    inputs = load_files(files, progress if shown else None)
    if shown:
        print("\r\033[K", end="", file=sys.stderr, flush=True)  # the progress line, cleared
    for warning in inputs.warnings:
        print(f"oomguard: warning: {printable(warning)}", file=sys.stderr)
    if inputs.errors:
        count = len(inputs.errors)
        print(f"oomguard: invalid input ({count} error{'' if count == 1 else 's'}):",
              file=sys.stderr)
        for error in inputs.errors:
            print(f"  {printable(error)}", file=sys.stderr)
        return None
    return inputs


def agent(args: argparse.Namespace) -> int:
    """Protect this node: sample memory, decide, kill whole pods before the kernel would."""
    if not args.standalone:
        return _cluster_agent(args)
    if args.cgroup_root is None:
        return _fail("--standalone needs --cgroup-root DIR")
    if args.server or args.kubeconfig:
        return _fail("--server and --kubeconfig are for the agent in a cluster; "
                     "--standalone reads only its -f files")
    if (problem := _cgroup_root_problem(args.cgroup_root)) is not None:
        return _fail(problem)
    inputs = _load(args.files)
    if inputs is None:
        return EXIT_INVALID_INPUT
    for name in sorted(inputs.reports):
        print(f"oomguard: warning: NodeMemoryReport {name} ignored: the standalone agent "
              "measures its node itself", file=sys.stderr)
    _log_to_stderr()
    return standalone.run(args.cgroup_root, inputs, sys.stdout, node=args.node,
                          state_dir=args.state_dir)


def operator(args: argparse.Namespace) -> int:
    """Run the operator: decide for pressured nodes, record decisions, evict, post events."""
    from oomguard import controller  # noqa: PLC0415 - kopf loads only for this command

    _log_to_stderr()
    controller.run(server=args.server, kubeconfig=args.kubeconfig, peering=args.peering,
                   liveness=args.liveness, metrics_port=args.metrics_port,
                   priority=args.priority)
    return 0


class PrintableFormatter(logging.Formatter):
    """Log lines whose message has its control characters escaped: a pod name from a file
    or a tenant must not forge a line of its own (tracebacks keep their lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's
        record.message = printable(record.message)
        return super().formatMessage(record)


def _log_to_stderr() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PrintableFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])


def _cgroup_root_problem(root: Path) -> str | None:
    """Why `root` is not a cgroup root with pods under it; None when it is."""
    if not root.exists():
        return f"{root} does not exist"
    if not root.is_dir():
        return f"{root} is not a directory"
    if not ((root / "kubepods").is_dir() or (root / "kubepods.slice").is_dir()):
        return f"{root} holds no kubepods or kubepods.slice cgroup"
    return None


def _cluster_agent(args: argparse.Namespace) -> int:
    """The DaemonSet's agent: reports, executes the operator's decisions, acts alone when
    it must."""
    from oomguard import kube  # noqa: PLC0415 - only this mode needs them
    from oomguard.agent import cluster  # noqa: PLC0415
    from oomguard.agent.publish import PublishPolicy  # noqa: PLC0415

    if args.files:
        return _fail("-f FILE is for --standalone; in a cluster the agent reads the API")
    node = args.node or os.environ.get("NODE_NAME")
    if not node:
        return _fail("no node name: pass --node NAME or set NODE_NAME (the downward API's "
                     "spec.nodeName)")
    root = args.cgroup_root or cluster.default_cgroup_root()
    if (problem := _cgroup_root_problem(root)) is not None:
        return _fail(problem)
    _log_to_stderr()
    config = cluster.AgentConfig(
        node=node, cgroup_root=root, act_alone_after=args.act_alone_after,
        publish=PublishPolicy(heartbeat_seconds=args.heartbeat_seconds),
        metrics_port=args.metrics_port, state_dir=args.state_dir)
    # No retries of the client's own: the agent retries with its backoff, and a claim on
    # the kill path must not wait through urllib3's default connect retries.
    client = kube.api_client(server=args.server, kubeconfig=args.kubeconfig,
                             user_agent=f"oomguard-agent/{__version__}", retries=0)
    return cluster.run(config, kube.NodeApi(client))


def demo(_args: argparse.Namespace) -> int:
    """Show oomguard on a throw-away node built on real cgroups (needs root)."""
    from oomguard.cli import demo as demo_module  # noqa: PLC0415 - only this command needs it

    return demo_module.run()


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="oomguard",
        description="Group-aware, priority-driven OOM protection for Kubernetes nodes.",
    )
    top.add_argument("--version", action="version", version=f"oomguard {__version__}")
    commands = top.add_subparsers(dest="command", required=True)

    p = commands.add_parser("rank", help=rank.__doc__, description=rank.__doc__)
    p.add_argument("-f", "--filename", dest="files", type=Path, action="append", default=[],
                   help="YAML file of Pods, Namespaces, OOMPolicy, OOMPriority, OOMDecision "
                   "and NodeMemoryReport objects; repeatable")
    p.add_argument("--node", help="node to rank (default: the only NodeMemoryReport's node); "
                   "without -f, read from the cluster")
    p.add_argument("--kubeconfig", type=Path, help="without -f: kubeconfig file")
    p.add_argument("--server", help="without -f: API server URL")
    p.add_argument("-o", "--output", choices=("json", "table"), default="table")
    p.set_defaults(run=rank)

    p = commands.add_parser("agent", help=agent.__doc__, description=agent.__doc__)
    p.add_argument("--standalone", action="store_true",
                   help="no Kubernetes: policies and pods from files, decisions on stdout")
    p.add_argument("--cgroup-root", type=Path,
                   help="directory holding the kubelet's kubepods (or kubepods.slice) cgroup "
                   "(in a cluster, default: /sys/fs/cgroup on cgroup v2 hosts, "
                   "/sys/fs/cgroup/memory on v1)")
    p.add_argument("-f", "--filename", dest="files", type=Path, action="append", default=[],
                   help="YAML file of OOMPolicy, OOMPriority, Pod and Namespace objects")
    p.add_argument("--node", help="node name (default: standalone, the host name; in a "
                   "cluster, $NODE_NAME)")
    p.add_argument("--kubeconfig", type=Path,
                   help="kubeconfig, when not running in a pod (default: ~/.kube/config)")
    p.add_argument("--server", help="API server URL, without authentication (tests, "
                   "kubectl proxy); overrides the in-cluster config and the kubeconfig")
    p.add_argument("--metrics-port", type=int, default=9102,
                   help="port of /metrics and /healthz (default: 9102)")
    p.add_argument("--heartbeat-seconds", type=float, default=30.0,
                   help="NodeMemoryReport heartbeat at rest (default: 30)")
    p.add_argument("--state-dir", type=Path, default=Path("/var/lib/oomguard"),
                   help="directory on the node's disk that outlives the agent: a kill's "
                   "freezes are noted there until thawed, so that an agent killed "
                   "mid-kill leaves nothing frozen (default: /var/lib/oomguard)")
    p.add_argument("--act-alone-after", type=float, default=2.0, metavar="SECONDS",
                   help="Hard pressure without a decision from the operator for this long: "
                   "the agent decides and kills alone (default: 2)")
    p.set_defaults(run=agent)

    p = commands.add_parser("operator", help=operator.__doc__, description=operator.__doc__)
    p.add_argument("--kubeconfig", type=Path,
                   help="kubeconfig, when not running in a pod (default: $KUBECONFIG, then "
                   "~/.kube/config)")
    p.add_argument("--server", help="API server URL, without authentication (kubectl proxy); "
                   "overrides the in-cluster config and the kubeconfig")
    p.add_argument("--peering", help="kopf peering name: replicas elect one active peer")
    p.add_argument("--liveness", help="kopf liveness endpoint, e.g. http://0.0.0.0:8081/healthz")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port")
    p.add_argument("--priority", type=int,
                   help="with --peering: this replica's peering priority, the highest acts "
                   "(default: random, so that replicas of one Deployment differ: kopf pauses "
                   "every peer when two share the highest priority)")
    p.set_defaults(run=operator)

    p = commands.add_parser("demo", help=demo.__doc__, description=demo.__doc__)
    p.set_defaults(run=demo)
    return top


def kubectl_plugin(argv: list[str] | None = None) -> int:
    """`kubectl oomguard rank NODE [-o json|table]`: who is next on a node, live."""
    args = sys.argv[1:] if argv is None else argv
    usage = "usage: kubectl oomguard rank NODE [-o json|table] [--kubeconfig FILE]"
    if args in (["-h"], ["--help"]):
        print(f"{usage}\n\nWho is next on a node, ranked live from the cluster "
              "(oomguard rank --node NODE).")
        return 0
    if len(args) < 2 or args[0] != "rank" or args[1].startswith("-"):
        print(usage, file=sys.stderr)
        return EXIT_INVALID_INPUT
    return main(["rank", "--node", args[1], *args[2:]])


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
