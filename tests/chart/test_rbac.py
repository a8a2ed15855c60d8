"""The chart's RBAC is exactly oomguard.kube.permissions: every (verb, group, resource,
subresource) its ClusterRoles grant is listed, and every listed one is granted, for each
configuration of the chart.

Together with the end-to-end tests (tests/conftest.py: every call they make is listed, and
in a whole run every listed one is made), this makes the RBAC what the code uses, no more
and no less. The ClusterRoles are written by hand in charts/oomguard/templates/ (one rule
per resource or resource/subresource, with a comment on why); these tests are their drift
check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from oomguard.kube.permissions import AGENT, OPERATOR, Permission

from support.helm import NAMESPACE, Manifest, find, one, render, values_files

CONFIGS = [None, *values_files()]
IDS = ["default", *(p.name for p in values_files())]

PEERING = frozenset(p for p in OPERATOR if p[1] == "kopf.dev")


def granted(role: Manifest) -> set[Permission]:
    """The (verb, group, resource, subresource) a ClusterRole grants."""
    found: set[Permission] = set()
    for rule in role["rules"]:
        assert not rule.get("nonResourceURLs"), rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                name, _, sub = resource.partition("/")
                found |= {(verb, group, name, sub) for verb in rule["verbs"]}
    return found


def expected(manifests: tuple[Manifest, ...]) -> dict[str, frozenset[Permission]]:
    """The lists, less kopf's peering where the chart runs the operator standalone."""
    peering = bool(find(manifests, "ClusterKopfPeering"))
    return {"operator": OPERATOR if peering else OPERATOR - PEERING, "agent": AGENT}


@pytest.mark.parametrize("values", CONFIGS, ids=IDS)
def test_cluster_roles_grant_exactly_the_listed_calls(values: Path | None) -> None:
    manifests = render(values)
    for component, listed in expected(manifests).items():
        rules = granted(one(manifests, "ClusterRole", component))
        assert not rules - listed, f"{component}: granted, not listed: {rules - listed}"
        assert not listed - rules, f"{component}: listed, not granted: {listed - rules}"


def test_peering_rules_follow_peering() -> None:
    """Both configurations are covered above: the default (peering) and standalone."""
    with_peering = [expected(render(v))["operator"] == OPERATOR for v in CONFIGS]
    assert True in with_peering and False in with_peering


@pytest.mark.parametrize("values", CONFIGS, ids=IDS)
def test_no_wildcards_and_names_only_for_the_peering(values: Path | None) -> None:
    manifests = render(values)
    peering = [p["metadata"]["name"] for p in find(manifests, "ClusterKopfPeering")]
    for role in find(manifests, "ClusterRole"):
        for rule in role["rules"]:
            assert "*" not in [*rule["apiGroups"], *rule["resources"], *rule["verbs"]], rule
            if "resourceNames" in rule:
                assert rule == {"apiGroups": ["kopf.dev"], "resources": ["clusterkopfpeerings"],
                                "resourceNames": peering, "verbs": ["patch"]}
    assert not find(manifests, "Role") and not find(manifests, "RoleBinding")


@pytest.mark.parametrize("values", CONFIGS, ids=IDS)
def test_each_role_is_bound_to_its_own_service_account(values: Path | None) -> None:
    manifests = render(values)
    for component in ("operator", "agent"):
        role = one(manifests, "ClusterRole", component)
        binding = one(manifests, "ClusterRoleBinding", component)
        account = one(manifests, "ServiceAccount", component)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                      "kind": "ClusterRole", "name": role["metadata"]["name"]}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "namespace": NAMESPACE,
                                        "name": account["metadata"]["name"]}]
        kind = "Deployment" if component == "operator" else "DaemonSet"
        pod: dict[str, Any] = one(manifests, kind, component)["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert len(find(manifests, "ClusterRoleBinding")) == 2
