"""`oomguard rank` as users run it: a real process, real files, exit codes and output."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from oomguard.cli.commands import PrintableFormatter

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "cluster.yaml"


def oomguard(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oomguard", *map(str, args)],
                          capture_output=True, text=True, check=False, timeout=60)


def test_rank_json_follows_the_contract() -> None:
    result = oomguard("rank", "-f", EXAMPLE, "-o", "json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["node"] == "node-a"
    assert out["pressure"] == "Soft"
    assert out["needBytes"] > 0
    victim = out["victims"][0]
    assert victim["pods"] == [f"batch/report-gen-{i}" for i in range(4)]
    assert victim["action"] == "Evict"
    assert victim["expectedReclaimBytes"] >= out["needBytes"] - out["releasingBytes"]
    for entry in out["ranking"]:
        assert {"pods", "priority", "usageBytes", "allowanceBytes"} <= set(entry)
        assert all(isinstance(p, str) and "/" in p for p in entry["pods"])
    assert {"pod": "sandbox/old-api-6c9-z1z1z", "reason": "Terminating"}.items() <= \
        next(e for e in out["excluded"] if e["reason"] == "Terminating").items()
    clamped = next(p for p in out["priorities"] if p["name"] == "everything-matters")
    assert (clamped["effectivePriority"], clamped["clampedFrom"]) == (100, 1000)


def test_rank_table_is_readable() -> None:
    result = oomguard("rank", "-f", EXAMPLE)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("node node-a  policy standard (Enforce)  pressure Soft")
    assert lines[1].startswith("victims: batch/Job/report-gen  action Evict")
    assert any(line.split()[:2] == ["1", "batch/Job/report-gen"] for line in lines)
    assert any("EXCLUDED POD" in line for line in lines)


def _write(tmp_path: Path, name: str, docs: list[dict[str, Any]]) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs))
    return path


def test_invalid_input_exits_2_naming_file_object_and_field(tmp_path: Path) -> None:
    docs = list(yaml.safe_load_all(EXAMPLE.read_text()))
    docs.append({"apiVersion": "oomguard.io/v1alpha1", "kind": "OOMPriority",
                 "metadata": {"name": "too-high", "namespace": "shop"},
                 "spec": {"priority": 5000}})
    docs.append({"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"name": "bad-pod", "namespace": "shop", "uid": "u1"},
                 "spec": {"containers": [{"resources": {"requests": {"memory": "12 GB"}}}]}})
    path = _write(tmp_path, "cluster.yaml", docs)
    result = oomguard("rank", "-f", path, "-o", "json")
    assert result.returncode == 2
    assert result.stdout == ""
    errors = [line.strip() for line in result.stderr.splitlines()[1:]]
    assert len(errors) == 2, result.stderr  # only the two bad objects, nothing else
    assert errors[0].startswith(f"{path} (document {len(docs) - 1}): OOMPriority shop/too-high: "
                                "field spec.priority:")
    assert errors[1].startswith(f"{path} (document {len(docs)}): Pod shop/bad-pod: "
                                "field spec.containers[0].resources.requests.memory:")


def test_unreadable_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("kind: Pod\nmetadata: [unclosed\n")
    result = oomguard("rank", "-f", path)
    assert result.returncode == 2
    assert f"{path}: cannot read" in result.stderr


def test_missing_report_for_node_exits_2(tmp_path: Path) -> None:
    result = oomguard("rank", "-f", EXAMPLE, "--node", "node-z")
    assert result.returncode == 2
    assert "no NodeMemoryReport named 'node-z'" in result.stderr


def test_objects_from_several_files_and_kind_list(tmp_path: Path) -> None:
    docs = list(yaml.safe_load_all(EXAMPLE.read_text()))
    report = next(d for d in docs if d and d["kind"] == "NodeMemoryReport")
    rest = [d for d in docs if d and d is not report]
    listed = _write(tmp_path, "list.yaml", [{"apiVersion": "v1", "kind": "List", "items": rest}])
    result = oomguard("rank", "-f", listed, "-f", _write(tmp_path, "r.yaml", [report]),
                      "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["victims"][0]["group"] == "batch/Job/report-gen"


def test_a_budget_allowing_no_disruption_passes_its_pods_over(tmp_path: Path) -> None:
    """The example's first victim is the report-gen Job (action Evict under Soft); with a
    PodDisruptionBudget whose status allows no disruption, its pods are excluded and
    another group goes first."""
    budget = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
              "metadata": {"name": "report-gen", "namespace": "batch"},
              "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {}}},
              "status": {"disruptionsAllowed": 0}}
    result = oomguard("rank", "-f", EXAMPLE, "-f", _write(tmp_path, "pdb.yaml", [budget]),
                      "-o", "json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    excluded = {e["pod"]: e["reason"] for e in out["excluded"]}
    assert {excluded.get(f"batch/report-gen-{i}") for i in range(4)} == {"DisruptionBudget"}
    assert out["victims"] and not out["victims"][0]["pods"][0].startswith("batch/")


def test_one_error_is_counted_in_the_singular(tmp_path: Path) -> None:
    docs = [*yaml.safe_load_all(EXAMPLE.read_text()),
            {"apiVersion": "oomguard.io/v1alpha1", "kind": "OOMPriority",
             "metadata": {"name": "stringly", "namespace": "shop"},
             "spec": {"priority": "100"}}]
    result = oomguard("rank", "-f", _write(tmp_path, "cluster.yaml", docs))
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == "oomguard: invalid input (1 error):"
    assert "OOMPriority shop/stringly: field spec.priority:" in result.stderr


def test_an_oompriority_without_a_namespace_applies_to_default_as_kubectl_would(
    tmp_path: Path
) -> None:
    docs = [{"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": "web", "namespace": "default", "uid": "u-web"},
             "spec": {"nodeName": "node-a", "containers": [{"name": "main"}]},
             "status": {"phase": "Running"}},
            {"apiVersion": "oomguard.io/v1alpha1", "kind": "OOMPriority",
             "metadata": {"name": "keep"}, "spec": {"priority": 700}},
            {"apiVersion": "oomguard.io/v1alpha1", "kind": "NodeMemoryReport",
             "metadata": {"name": "node-a"},
             "status": {"node": {"capacityBytes": 16 << 30, "availableBytes": 1 << 30},
                        "pods": [{"uid": "u-web", "usage": {"anonBytes": 2 << 30}}]}}]
    result = oomguard("rank", "-f", _write(tmp_path, "cluster.yaml", docs), "-o", "json")
    assert result.returncode == 0, result.stderr
    [applied] = json.loads(result.stdout)["priorities"]
    assert (applied["namespace"], applied["matchedPods"]) == ("default", 1)


def test_the_kubectl_plugin_has_help() -> None:
    result = subprocess.run([sys.executable, "-c", "from oomguard.cli import kubectl_plugin; "
                             "raise SystemExit(kubectl_plugin(['--help']))"],
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: kubectl oomguard rank NODE")


def test_a_long_load_shows_progress_on_a_terminal_only(tmp_path: Path) -> None:
    docs = [*yaml.safe_load_all(EXAMPLE.read_text()),
            *({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns-{i}"}}
              for i in range(2_100))]
    path = _write(tmp_path, "cluster.yaml", docs)
    piped = oomguard("rank", "-f", path)
    assert piped.returncode == 0 and "reading" not in piped.stderr
    leader, follower = pty.openpty()
    with os.fdopen(leader, "rb", buffering=0) as terminal:
        result = subprocess.run([sys.executable, "-m", "oomguard", "rank", "-f", str(path)],
                                stdout=subprocess.PIPE, stderr=follower, check=False,
                                timeout=60)
        os.close(follower)
        shown = b""
        with contextlib.suppress(OSError):  # EIO once the writer has closed
            while chunk := terminal.read(4096):
                shown += chunk
    assert result.returncode == 0
    assert f"reading {path}: 2,000 objects".encode() in shown


def _pod(name: str, uid: str | None, node: str = "node-a") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "default"}
    if uid is not None:
        meta["uid"] = uid
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"nodeName": node, "containers": [{"name": "main"}]},
            "status": {"phase": "Running"}}


def _report(pods: list[str], available: int = 1 << 30) -> dict[str, Any]:
    return {"apiVersion": "oomguard.io/v1alpha1", "kind": "NodeMemoryReport",
            "metadata": {"name": "node-a"},
            "status": {"node": {"capacityBytes": 16 << 30, "availableBytes": available},
                       "pods": [{"uid": u, "usage": {"anonBytes": 1 << 30}} for u in pods]}}


@pytest.mark.parametrize(("docs", "errors"), [
    ([_pod("web", None), _report([])],
     ["Pod default/web: field metadata.uid: a Pod needs its UID"]),
    ([_pod("web", "u1"), _pod("api", "u1", node="node-b"), _report(["u1"])],
     ["Pod default/api: field metadata.uid: u1 is already the UID of Pod default/web in"]),
    ([_pod("web", "u1"), _report(["u1", "u1"])],
     ["NodeMemoryReport node-a: field status.pods: UID u1 is listed 2 times"]),
    ([_pod("web", "u1"), _report(["u1"], available=17 << 30)],
     ["NodeMemoryReport node-a: field status.node.availableBytes: 18253611008 is above "
      "capacityBytes 17179869184"]),
], ids=["pod-without-uid", "one-uid-two-pods", "pod-twice-in-report", "more-than-capacity"])
def test_inconsistent_objects_exit_2_naming_both_places(
    tmp_path: Path, docs: list[dict[str, Any]], errors: list[str]
) -> None:
    """What the API server never shows (#12): each is an error, not a ranking."""
    path = _write(tmp_path, "cluster.yaml", docs)
    result = oomguard("rank", "-f", path, "-o", "json")
    assert result.returncode == 2, result.stdout
    found = [line.strip() for line in result.stderr.splitlines()[1:]]
    assert len(found) == len(errors), result.stderr
    for line, error in zip(found, errors, strict=True):
        assert error in line, line
        assert line.startswith(f"{path} (document "), line


def test_names_reach_people_printable(tmp_path: Path) -> None:
    """A name as the API server would refuse it is refused, and said without its escape
    codes; a label value with a newline (what groups are named by) is escaped in the
    table, so that no output line is forged."""
    bad = _write(tmp_path, "bad.yaml", [_pod("web\x1b[2J", "u1"), _report(["u1"])])
    result = oomguard("rank", "-f", bad)
    assert result.returncode == 2
    assert "\x1b" not in result.stderr
    assert "field metadata.name: 'web\\x1b[2J' is not a valid name" in result.stderr
    pod = _pod("web", "u1")
    pod["metadata"]["labels"] = {"app": "x\nFAKE LINE"}
    grouping = {"apiVersion": "oomguard.io/v1alpha1", "kind": "OOMPriority",
                "metadata": {"name": "by-app", "namespace": "default"},
                "spec": {"group": {"by": "Label", "label": "app"}}}
    result = oomguard("rank", "-f", _write(tmp_path, "ok.yaml", [pod, grouping,
                                                                 _report(["u1"])]))
    assert result.returncode == 0, result.stderr
    assert "default/app=x\\nFAKE LINE" in result.stdout
    assert not any(line.startswith("FAKE LINE") for line in result.stdout.splitlines())


def test_log_lines_escape_what_they_quote() -> None:
    record = logging.LogRecord("oomguard", logging.WARNING, __file__, 1,
                               "killed %s", ("default/web\n2026-12-01 INFO forged",), None)
    line = PrintableFormatter("%(levelname)s %(message)s").format(record)
    assert line == "WARNING killed default/web\\n2026-12-01 INFO forged"


def test_under_pressure_without_a_victim_the_table_says_why(tmp_path: Path) -> None:
    system = _pod("dns", "u1")
    system["metadata"]["namespace"] = "kube-system"
    result = oomguard("rank", "-f", _write(tmp_path, "c.yaml", [system, _report(["u1"])]))
    assert result.returncode == 0, result.stderr
    assert "no victim: every pod is excluded (ProtectedNamespace 1)" in result.stdout
