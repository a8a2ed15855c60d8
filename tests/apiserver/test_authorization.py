"""The chart's RBAC on the real authorizer: every call oomguard.kube.permissions lists is allowed
to the component's ServiceAccount, and calls outside the list are refused with 403, both
as the server's SubjectAccessReview answers and as real requests with the tokens. (That the
whole loop works with exactly these roles: the end-to-end tests, which authenticate so.)"""

from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from oomguard.kube.permissions import AGENT, OPERATOR, Permission

from support import Identity, Kube
from support.cluster import AGENT_ACCOUNT, OPERATOR_ACCOUNT, PROBE
from support.helm import NAMESPACE

OUTSIDE: dict[str, list[Permission]] = {
    OPERATOR_ACCOUNT: [("list", "", "secrets", ""), ("delete", "", "pods", ""),
                       ("update", "oomguard.io", "oompolicies", ""),
                       ("patch", "oomguard.io", "nodememoryreports", "status"),
                       ("create", "", "pods", "")],
    AGENT_ACCOUNT: [("list", "", "secrets", ""), ("delete", "", "pods", ""),
                    ("create", "", "pods", "eviction"), ("delete", "oomguard.io",
                                                          "oomdecisions", ""),
                    ("patch", "oomguard.io", "oompolicies", "status"),
                    ("create", "", "events", "")],
}


def _allowed(kube: Kube, account: str, permission: Permission) -> bool:
    verb, group, resource, subresource = permission
    review = kube.rest.call("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": f"system:serviceaccount:{NAMESPACE}:{account}",
                 "groups": ["system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}",
                            "system:authenticated"],
                 "resourceAttributes": {"verb": verb, "group": group, "resource": resource,
                                        "subresource": subresource,
                                        # peering: the chart's own object by name
                                        "name": "oomguard" if resource ==
                                        "clusterkopfpeerings" else ""}}})
    return bool(review["status"].get("allowed"))


@pytest.mark.parametrize(("account", "listed"), [(OPERATOR_ACCOUNT, OPERATOR),
                                                 (AGENT_ACCOUNT, AGENT)])
def test_every_listed_call_is_allowed_and_others_are_not(kube: Kube, account: str,
                                                         listed: frozenset[Permission]) -> None:
    refused = sorted(p for p in listed if not _allowed(kube, account, p))
    assert refused == [], f"listed for {account} but refused by the server"
    granted = [p for p in OUTSIDE[account] if _allowed(kube, account, p)]
    assert granted == [], f"not listed for {account} but allowed"


def _status(call: object) -> int:
    try:
        call()  # type: ignore[operator]
    except ApiException as error:
        return int(error.status)
    return 200


def test_calls_outside_the_roles_are_refused_with_403(kube: Kube) -> None:
    shop = kube.namespace("shop")
    kube.pod("web-0", shop, None, phase="Pending")

    def core(who: Identity) -> client.CoreV1Api:
        return client.CoreV1Api(kube.api_client(who, user_agent=PROBE))

    agent, operator = core(kube.agent), core(kube.operator)
    assert _status(lambda: agent.delete_namespaced_pod("web-0", shop)) == 403
    assert _status(lambda: agent.list_namespaced_secret(shop)) == 403
    assert _status(lambda: agent.create_namespaced_pod_eviction("web-0", shop, client.V1Eviction(
        metadata=client.V1ObjectMeta(name="web-0", namespace=shop)))) == 403
    assert _status(operator.list_secret_for_all_namespaces) == 403
    assert _status(lambda: operator.delete_namespaced_pod("web-0", shop)) == 403
    assert _status(agent.list_pod_for_all_namespaces) == 200  # listed: allowed
    anonymous = client.CoreV1Api(kube.api_client(Identity("anonymous", "system:anonymous",
                                                          token="not-a-token")))
    assert _status(anonymous.list_pod_for_all_namespaces) == 401
    assert kube.read("v1/pods", shop, "web-0") is not None
