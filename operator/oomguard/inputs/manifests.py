"""Kubernetes objects, as YAML documents or API dicts, turned into engine inputs.

Shared by `oomguard rank`, the standalone agent and the operator, so that a Pod means the
same thing everywhere. Errors name the file, the document, the object and the field.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from oomguard.api import (
    NodeMemory,
    NodeMemoryReport,
    NodeMemoryReportStatus,
    OOMDecision,
    OOMPolicy,
    OOMPriority,
    PodMemory,
    parse_quantity,
)
from oomguard.api.meta import LabelSelector, ObjectMeta
from oomguard.api.quantity import Quantity
from oomguard.engine import Owner, OwnerRef, Pod, Snapshot
from oomguard.inputs.lastgood import field_path, reason

CRITICAL_PRIORITY_CLASSES = frozenset({"system-node-critical", "system-cluster-critical"})
SYSTEM_CRITICAL_PRIORITY = 2_000_000_000
OWNER_KINDS = frozenset({
    "ReplicaSet", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob",
    "ReplicationController",
})
IGNORED_KINDS = frozenset({"Service", "ConfigMap", "Secret", "ServiceAccount", "Event"})


class _View(BaseModel):
    """A read-only view of a core object: camelCase, unknown fields ignored."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class _Resources(_View):
    requests: dict[str, Quantity] = Field(default_factory=dict)
    limits: dict[str, Quantity] = Field(default_factory=dict)


class _Container(_View):
    name: str = ""
    resources: _Resources = Field(default_factory=_Resources)
    restart_policy: str | None = None

    def memory(self, kind: str) -> int:
        amounts = self.resources.requests if kind == "requests" else self.resources.limits
        return parse_quantity(amounts["memory"]) if "memory" in amounts else 0


class _PodSpec(_View):
    node_name: str = ""
    priority_class_name: str = ""
    priority: int | None = None
    containers: list[_Container] = Field(default_factory=list)
    init_containers: list[_Container] = Field(default_factory=list)
    overhead: dict[str, Quantity] = Field(default_factory=dict)


class _PodStatus(_View):
    phase: str = "Unknown"


class _PodManifest(_View):
    metadata: ObjectMeta
    spec: _PodSpec = Field(default_factory=_PodSpec)
    status: _PodStatus = Field(default_factory=_PodStatus)


class _NamedManifest(_View):
    metadata: ObjectMeta


def _pod_memory(spec: _PodSpec, kind: str) -> int:
    """Pod-level memory the way the scheduler computes it: app containers and sidecars,
    or the largest init step if bigger, plus overhead. For limits, a container without a
    limit counts its request."""

    def amount(c: _Container) -> int:
        value = c.memory(kind)
        return value if value or kind == "requests" else c.memory("requests")

    total = sum(amount(c) for c in spec.containers)
    sidecars = 0
    init_peak = 0
    for c in spec.init_containers:
        if c.restart_policy == "Always":
            sidecars += amount(c)
            total += amount(c)
        else:
            init_peak = max(init_peak, sidecars + amount(c))
    overhead = parse_quantity(spec.overhead["memory"]) if "memory" in spec.overhead else 0
    return max(total, init_peak) + overhead


def _controller(meta: ObjectMeta) -> OwnerRef | None:
    for ref in meta.owner_references:
        if ref.controller:
            return OwnerRef(ref.kind, ref.name, ref.uid)
    return None


def _epoch(moment: datetime | None) -> float:
    return moment.timestamp() if moment else 0.0


def pod_from_manifest(obj: dict[str, Any]) -> Pod:
    """Digest a v1 Pod; raises pydantic.ValidationError on malformed fields."""
    manifest = _PodManifest.model_validate(obj)
    meta, spec = manifest.metadata, manifest.spec
    controller = _controller(meta)
    mirror = ("kubernetes.io/config.mirror" in meta.annotations and controller is not None
              and controller.kind == "Node")
    critical = spec.priority_class_name in CRITICAL_PRIORITY_CLASSES or (
        spec.priority or 0
    ) >= SYSTEM_CRITICAL_PRIORITY
    return Pod(
        namespace=meta.namespace or "default",
        name=meta.name,
        uid=meta.uid,
        node_name=spec.node_name,
        phase=manifest.status.phase,
        labels=meta.labels,
        controller=controller,
        created=_epoch(meta.creation_timestamp),
        terminating=meta.deletion_timestamp is not None,
        mirror_of=controller if mirror else None,
        critical=critical,
        requests_bytes=_pod_memory(spec, "requests"),
        limits_bytes=_pod_memory(spec, "limits"),
        limited=bool(spec.containers) and all(
            "memory" in c.resources.limits for c in [
                *spec.containers, *(i for i in spec.init_containers
                                    if i.restart_policy == "Always")]),
    )


def owner_from_manifest(obj: dict[str, Any]) -> Owner:
    meta = _NamedManifest.model_validate(obj).metadata
    return Owner(meta.namespace or "default", str(obj.get("kind")), meta.name, meta.uid,
                 _controller(meta))


@dataclass(frozen=True)
class Budget:
    """What a PodDisruptionBudget says of eviction now: the pods it selects, and how many
    of them may go (status.disruptionsAllowed, kept by the disruption controller; None
    until it has looked)."""

    namespace: str
    selector: LabelSelector
    allowed: int | None


def budget_from_manifest(obj: dict[str, Any]) -> Budget | None:
    """A policy/v1 PodDisruptionBudget; one without a selector selects no pod."""
    meta = _NamedManifest.model_validate(obj).metadata
    selector = (obj.get("spec") or {}).get("selector")
    if selector is None:
        return None
    allowed = (obj.get("status") or {}).get("disruptionsAllowed")
    return Budget(meta.namespace or "", LabelSelector.model_validate(selector), allowed)


def budget_exhausted(pods: Iterable[Pod], budgets: Iterable[Budget]) -> list[str]:
    """UIDs of the pods a budget would refuse to evict now (it allows no disruption)."""
    by_namespace: dict[str, list[Budget]] = {}
    for budget in budgets:
        if budget.allowed == 0:
            by_namespace.setdefault(budget.namespace, []).append(budget)
    return [p.uid for p in pods
            if any(b.selector.matches(p.labels) for b in by_namespace.get(p.namespace, ()))]


@dataclass
class Inputs:
    """Everything read from the files, ready to become a Snapshot."""

    pods: list[Pod] = field(default_factory=list)
    owners: Mapping[str, Owner] = field(default_factory=dict)
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)
    nodes: dict[str, dict[str, str]] = field(default_factory=dict)
    """Node name -> its labels."""
    node_uids: dict[str, str] = field(default_factory=dict)
    """Node name -> its UID."""
    policies: list[OOMPolicy] = field(default_factory=list)
    priorities: list[OOMPriority] = field(default_factory=list)
    decisions: list[OOMDecision] = field(default_factory=list)
    reports: dict[str, NodeMemoryReport] = field(default_factory=dict)
    budgets: list[Budget] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def snapshot(self, node: str, memory: NodeMemory, usage: Sequence[PodMemory], *,
                 now: datetime, decisions: Sequence[OOMDecision] | None = None,
                 unmeasured: Sequence[str] = (),
                 pressure_since: datetime | None = None) -> Snapshot:
        """The engine's input for `node`: its memory and pods' usage as sampled (the
        agent) or reported (the operator, `rank`), everything else from these inputs.
        The one builder of a Snapshot."""
        return Snapshot(
            node=node,
            memory=memory,
            usage=list(usage),
            pods=self.pods,
            now=now,
            node_labels=self.nodes.get(node, {}),
            node_uid=self.node_uids.get(node),
            namespaces=self.namespaces,
            owners=self.owners,
            policies=self.policies,
            priorities=self.priorities,
            decisions=list(self.decisions if decisions is None else decisions),
            unmeasured=tuple(unmeasured),
            pressure_since=pressure_since,
            budget_exhausted=budget_exhausted(
                (p for p in self.pods if p.node_name == node), self.budgets),
        )

    def reported(self, node: str, now: datetime) -> Snapshot:
        """The snapshot of the node as its NodeMemoryReport has it."""
        report = self.reports[node]
        assert report.status is not None
        return self.snapshot(node, report.status.node, report.status.pods, now=now,
                             unmeasured=report.status.unmeasured_pods,
                             pressure_since=report.status.pressure_since)


def _describe(obj: dict[str, Any]) -> str:
    kind = obj.get("kind") or "object without kind"
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    name = meta.get("name") or "(no name)"
    return f"{kind} {meta['namespace']}/{name}" if meta.get("namespace") else f"{kind} {name}"


SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's loader where PyYAML was built with it: the pure-Python scanner takes minutes
over a big cluster's file (bench/rank.py)."""


def _documents(path: Path) -> Iterator[tuple[int, Any]]:
    """(document number from 1, object), with `kind: List` items unrolled."""
    with path.open() as stream:
        for number, doc in enumerate(yaml.load_all(stream, Loader=SafeLoader), start=1):
            if isinstance(doc, dict) and doc.get("kind", "").endswith("List") and "items" in doc:
                for item in doc["items"] or []:
                    yield number, item
            elif doc is not None:
                yield number, doc


def add_object(inputs: Inputs, obj: dict[str, Any]) -> None:
    """Add one API object; raises ValidationError or ValueError when it is malformed."""
    kind = obj.get("kind")
    api = str(obj.get("apiVersion", ""))
    if kind == "Pod":
        inputs.pods.append(pod_from_manifest(obj))
    elif kind == "Namespace":
        meta = _NamedManifest.model_validate(obj).metadata
        inputs.namespaces[meta.name] = meta.labels
    elif kind == "Node":
        meta = _NamedManifest.model_validate(obj).metadata
        inputs.nodes[meta.name] = meta.labels
        if meta.uid:
            inputs.node_uids[meta.name] = meta.uid
    elif kind in OWNER_KINDS:
        owner = owner_from_manifest(obj)
        assert isinstance(inputs.owners, dict), "owners read from objects are a dict"
        inputs.owners[owner.uid] = owner
    elif api == "policy/v1" and kind == "PodDisruptionBudget":
        budget = budget_from_manifest(obj)
        if budget is not None:
            inputs.budgets.append(budget)
    elif api.startswith("oomguard.io/") and kind == "OOMPolicy":
        inputs.policies.append(OOMPolicy.model_validate(obj))
    elif api.startswith("oomguard.io/") and kind == "OOMPriority":
        written = obj.get("metadata")
        if isinstance(written, dict) and not written.get("namespace"):
            obj = {**obj, "metadata": {**written, "namespace": "default"}}  # as kubectl does
        inputs.priorities.append(OOMPriority.model_validate(obj))
    elif api.startswith("oomguard.io/") and kind == "OOMDecision":
        inputs.decisions.append(OOMDecision.model_validate(obj))
    elif api.startswith("oomguard.io/") and kind == "NodeMemoryReport":
        report = NodeMemoryReport.model_validate(obj)
        if report.status is None:
            raise ValueError("status: a NodeMemoryReport needs its status (the measurements)")
        _check_report(report.status)
        inputs.reports[report.metadata.name] = report
    else:
        raise LookupError(f"kind {kind!r} (apiVersion {api!r}) is not used by oomguard")


PROGRESS_EVERY = 2000
"""Objects between two calls of load_files' `progress`."""


def _check_report(status: NodeMemoryReportStatus) -> None:
    """What an agent never writes: a pod cgroup listed twice (which entry would count?), or
    more memory available than there is."""
    listed = Counter(p.uid for p in status.pods)
    if twice := sorted(uid for uid, n in listed.items() if n > 1):
        raise ValueError(f"field status.pods: UID {twice[0]} is listed {listed[twice[0]]} "
                         "times (each pod cgroup is measured once)")
    node = status.node
    if node.available_bytes > node.capacity_bytes:
        raise ValueError(f"field status.node.availableBytes: {node.available_bytes} is above "
                         f"capacityBytes {node.capacity_bytes}")


def load_files(paths: Iterable[Path],
               progress: Callable[[Path, int], None] | None = None) -> Inputs:
    """Read every document of every file, one at a time (a big file is never held whole);
    collect all errors rather than stop at the first. `progress` hears the objects read
    so far, every PROGRESS_EVERY."""
    inputs = Inputs()
    pods_at: dict[str, str] = {}  # uid -> where that Pod was
    for path in paths:
        try:
            for count, (number, obj) in enumerate(_documents(path), start=1):
                if progress is not None and count % PROGRESS_EVERY == 0:
                    progress(path, count)
                where = f"{path} (document {number})"
                pods = len(inputs.pods)
                _add(inputs, where, obj)
                if len(inputs.pods) > pods:
                    _check_identity(inputs, where, _describe(obj), pods_at)
        except (OSError, yaml.YAMLError) as exc:
            inputs.errors.append(f"{path}: cannot read: {exc}")
    return inputs


def _check_identity(inputs: Inputs, where: str, what: str, pods_at: dict[str, str]) -> None:
    """A report names pods by UID: a Pod without one would be ranked at nothing, and two
    with one UID would both get its usage (a cluster never shows either)."""
    pod = inputs.pods[-1]
    if not pod.uid:
        inputs.errors.append(f"{where}: {what}: field metadata.uid: a Pod needs its UID "
                             "(a NodeMemoryReport names pods by UID)")
    elif pod.uid in pods_at:
        inputs.errors.append(f"{where}: {what}: field metadata.uid: {pod.uid} is already "
                             f"the UID of {pods_at[pod.uid]}")
    else:
        pods_at[pod.uid] = f"{what} in {where}"


DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _check_names(obj: dict[str, Any]) -> None:
    """Names as the API server takes them (a name from a file would otherwise reach
    tables and logs as it is): a DNS subdomain, a namespace a DNS label."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return
    name, namespace = meta.get("name"), meta.get("namespace")
    if isinstance(name, str) and not (len(name) <= 253 and DNS_SUBDOMAIN.fullmatch(name)):
        raise ValueError(f"field metadata.name: {name!r} is not a valid name (lower case "
                         "letters, digits, '-' and '.', at most 253 characters)")
    if isinstance(namespace, str) and namespace and not (
            len(namespace) <= 63 and DNS_LABEL.fullmatch(namespace)):
        raise ValueError(f"field metadata.namespace: {namespace!r} is not a valid namespace "
                         "(lower case letters, digits and '-', at most 63 characters)")


def _add(inputs: Inputs, where: str, obj: Any) -> None:
    if not isinstance(obj, dict):
        inputs.errors.append(f"{where}: not a Kubernetes object (a mapping)")
        return
    what = _describe(obj)
    try:
        _check_names(obj)
        add_object(inputs, obj)
    except ValidationError as exc:
        for err in exc.errors():
            inputs.errors.append(
                f"{where}: {what}: field {field_path(err['loc'])}: {reason(err['msg'])}"
            )
    except ValueError as exc:
        inputs.errors.append(f"{where}: {what}: {exc}")
    except LookupError as exc:
        if obj.get("kind") not in IGNORED_KINDS:
            inputs.warnings.append(f"{where}: {what}: ignored: {exc.args[0]}")
