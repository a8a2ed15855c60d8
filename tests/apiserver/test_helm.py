"""`helm install`, `upgrade` and `uninstall` of charts/oomguard into the real API server,
with the default values and each values file under ci/: the server accepts every rendered
object, the CRDs are Established, and an uninstall leaves nothing behind but the CRDs.

The session's own release (support.cluster) is the default install as the README shows
it; these install further releases beside it, each in a namespace of its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from support import Kube
from support.helm import CHART, helm, values_files

CONFIGS = [None, *values_files()]
IDS = ["default", *(p.name for p in values_files())]

SERVICE_MONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
             "names": {"kind": "ServiceMonitor", "listKind": "ServiceMonitorList",
                       "plural": "servicemonitors", "singular": "servicemonitor"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                 "openAPIV3Schema": {"type": "object",
                                     "x-kubernetes-preserve-unknown-fields": True}}}]},
}
"""The Prometheus Operator's kind, as a stand-in without its schema (none is available
offline here): where it is installed, a cluster accepts the chart's ServiceMonitors."""


def _helm(kube: Kube, tmp_path: Path, *args: str) -> str:
    config = kube.kubeconfig(tmp_path / "admin.kubeconfig")
    return helm(*args, kubeconfig=config).stdout


def _release_objects(kube: Kube, release: str, namespace: str) -> list[str]:
    """Every object labelled as the release's, cluster-scoped or in its namespace, of the
    kinds the chart renders."""
    selector = f"app.kubernetes.io/instance={release}"
    found = []
    for resource in ("v1/serviceaccounts", "v1/services", "apps/v1/deployments",
                     "apps/v1/daemonsets", "policy/v1/poddisruptionbudgets",
                     "monitoring.coreos.com/v1/servicemonitors"):
        found += [f"{resource}/{o['metadata']['name']}"
                  for o in kube.read_all(resource, namespace, labelSelector=selector)]
    for resource in ("rbac.authorization.k8s.io/v1/clusterroles",
                     "rbac.authorization.k8s.io/v1/clusterrolebindings",
                     "oomguard.io/v1alpha1/oompolicies", "kopf.dev/v1/clusterkopfpeerings"):
        found += [f"{resource}/{o['metadata']['name']}"
                  for o in kube.read_all(resource, labelSelector=selector)]
    return found


@pytest.mark.parametrize("values", CONFIGS, ids=IDS)
def test_install_upgrade_uninstall(kube: Kube, tmp_path: Path, values: Path | None) -> None:
    if kube.read("apiextensions.k8s.io/v1/customresourcedefinitions", None,
                 SERVICE_MONITOR_CRD["metadata"]["name"]) is None:
        kube.session.rest.call("POST", "/apis/apiextensions.k8s.io/v1/"
                               "customresourcedefinitions", SERVICE_MONITOR_CRD)
        kube.session.wait_established(SERVICE_MONITOR_CRD["metadata"]["name"])
    release, namespace = kube.name("oomguard"), kube.name("helm")
    files = ["--values", str(values)] if values else []
    _helm(kube, tmp_path, "install", release, str(CHART), "--namespace", namespace,
          "--create-namespace", *files)
    rendered = [doc for doc in yaml.safe_load_all(_helm(
        kube, tmp_path, "get", "manifest", release, "--namespace", namespace)) if doc]
    for doc in rendered:  # each one stored by the server as rendered
        meta = doc["metadata"]
        stored = kube.read(_resource(doc), meta.get("namespace", namespace)
                           if _namespaced(doc) else None, meta["name"])
        assert stored is not None, f"{doc['kind']} {meta['name']} not stored"
        assert stored["metadata"]["labels"].items() >= meta.get("labels", {}).items()
    for crd in ("nodememoryreports", "oomdecisions", "oompolicies", "oompriorities"):
        kube.session.wait_established(f"{crd}.oomguard.io")

    _helm(kube, tmp_path, "upgrade", release, str(CHART), "--namespace", namespace, *files,
          "--set", "agent.heartbeatSeconds=7")
    [agent] = kube.read_all("apps/v1/daemonsets", namespace)
    assert "--heartbeat-seconds=7" in agent["spec"]["template"]["spec"]["containers"][0]["args"]

    assert _release_objects(kube, release, namespace)
    _helm(kube, tmp_path, "uninstall", release, "--namespace", namespace, "--wait")
    assert _release_objects(kube, release, namespace) == []
    for crd in ("nodememoryreports", "oomdecisions", "oompolicies", "oompriorities"):
        assert kube.read("apiextensions.k8s.io/v1/customresourcedefinitions", None,
                         f"{crd}.oomguard.io") is not None  # kept, as documented
    kube.delete("v1/namespaces", None, namespace)


def _namespaced(doc: dict[str, Any]) -> bool:
    return doc["kind"] not in ("ClusterRole", "ClusterRoleBinding", "OOMPolicy",
                               "ClusterKopfPeering", "ValidatingAdmissionPolicy",
                               "ValidatingAdmissionPolicyBinding")


def _resource(doc: dict[str, Any]) -> str:
    plurals = {"ServiceAccount": "serviceaccounts", "Service": "services",
               "Deployment": "deployments", "DaemonSet": "daemonsets",
               "PodDisruptionBudget": "poddisruptionbudgets", "ClusterRole": "clusterroles",
               "ClusterRoleBinding": "clusterrolebindings", "OOMPolicy": "oompolicies",
               "ClusterKopfPeering": "clusterkopfpeerings",
               "ServiceMonitor": "servicemonitors",
               "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
               "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings"}
    return f"{doc['apiVersion']}/{plurals[doc['kind']]}"
