"""Read what `oomguard rank --node NAME` needs from a live cluster: the same objects the
files would hold, listed once through the API, so that "who is next" is answered with
the same engine and the same output as offline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes import client

from oomguard.api import GROUP, VERSION
from oomguard.decisions import NODE_LABEL
from oomguard.inputs import Inputs, add_object
from oomguard.kube.client import list_pages

OURS = f"{GROUP}/{VERSION}"


def load_cluster(api: client.ApiClient, node: str, page_size: int | None = None) -> Inputs:
    """The node's pods and report, the pods of their namespaces (group members on other
    nodes), their namespaces, owners and disruption budgets, and the policies, priorities
    and decisions; lists in pages of `page_size` (default kube.PAGE_SIZE)."""

    def _listed(call: Callable[..., Any], *args: str, api_version: str, kind: str,
                **selectors: Any) -> list[dict[str, Any]]:
        """A list call's items as the API sends them (raw JSON: no model round trip),
        with the kind and apiVersion that a list leaves out of its items."""
        items, _ = list_pages(call, *args, page_size=page_size, **selectors)
        return [{"apiVersion": api_version, "kind": kind, **item} for item in items]

    core, apps, batch = client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)
    disruption = client.PolicyV1Api(api)
    custom = client.CustomObjectsApi(api)
    objects = _listed(core.list_pod_for_all_namespaces, api_version="v1", kind="Pod",
                      field_selector=f"spec.nodeName={node}")
    namespaces = sorted({p["metadata"]["namespace"] for p in objects})
    for ns in namespaces:
        objects += [p for p in _listed(core.list_namespaced_pod, ns, api_version="v1",
                                       kind="Pod")
                    if p.get("spec", {}).get("nodeName") != node]
        objects += _listed(apps.list_namespaced_replica_set, ns, api_version="apps/v1",
                           kind="ReplicaSet")
        objects += _listed(batch.list_namespaced_job, ns, api_version="batch/v1", kind="Job")
        objects += _listed(disruption.list_namespaced_pod_disruption_budget, ns,
                           api_version="policy/v1", kind="PodDisruptionBudget")
        objects += _listed(custom.list_namespaced_custom_object, GROUP, VERSION, ns,
                           "oompriorities", api_version=OURS, kind="OOMPriority")
    objects += [n for n in _listed(core.list_namespace, api_version="v1", kind="Namespace")
                if n["metadata"]["name"] in namespaces]
    objects += _listed(core.list_node, api_version="v1", kind="Node",
                       field_selector=f"metadata.name={node}")
    objects += _listed(custom.list_cluster_custom_object, GROUP, VERSION, "oompolicies",
                       api_version=OURS, kind="OOMPolicy")
    objects += _listed(custom.list_cluster_custom_object, GROUP, VERSION, "oomdecisions",
                       api_version=OURS, kind="OOMDecision",
                       label_selector=f"{NODE_LABEL}={node}")
    objects += _listed(custom.list_cluster_custom_object, GROUP, VERSION, "nodememoryreports",
                       api_version=OURS, kind="NodeMemoryReport",
                       field_selector=f"metadata.name={node}")
    inputs = Inputs()
    for obj in objects:
        try:
            add_object(inputs, obj)
        except (ValueError, LookupError) as error:
            meta = obj.get("metadata", {})
            inputs.warnings.append(f"{obj.get('kind')} {meta.get('namespace', '')}/"
                                   f"{meta.get('name')}: skipped: {error}")
    return inputs
