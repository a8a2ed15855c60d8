"""Test support for end-to-end tests: a Kubernetes API emulator served over HTTP (kmock,
extended), a real kubectl, and a real kopf operator running against it.
See docs/emulator.md."""

from .emulator import ApiCall, ClusterEmulator, running_emulator
from .kopf_runner import running_operator
from .kubectl import Kubectl, KubectlResult, kubectl_binary

OPERATOR_TOKEN = "oomguard-operator"
"""Bearer token of the tests' oomguard operator, so that its API calls can be told apart."""

AGENT_TOKEN = "oomguard-agent"
"""Bearer token of the tests' in-cluster agents."""

__all__ = [
    "AGENT_TOKEN",
    "OPERATOR_TOKEN",
    "ApiCall",
    "ClusterEmulator",
    "Kubectl",
    "KubectlResult",
    "kubectl_binary",
    "running_emulator",
    "running_operator",
]
