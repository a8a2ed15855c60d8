"""Test support for end-to-end tests: a real Kubernetes control plane (etcd,
kube-apiserver, kube-controller-manager) per session, the tests' hands on it, a real
kubectl and helm, and a real kopf operator running against it. See docs/testing.md."""

from .cluster import (
    ApiCall,
    ApiError,
    ClusterSession,
    Identity,
    Kube,
    cluster_with_chart,
    kubelet_status,
)
from .controlplane import ControlPlane, free_port
from .kopf_runner import running_operator
from .kubectl import Kubectl, KubectlResult

__all__ = [
    "ApiCall",
    "ApiError",
    "ClusterSession",
    "ControlPlane",
    "Identity",
    "Kube",
    "Kubectl",
    "KubectlResult",
    "cluster_with_chart",
    "free_port",
    "kubelet_status",
    "running_operator",
]
