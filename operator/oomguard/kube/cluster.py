"""The operator's API calls: decisions, statuses, evictions, Events.

Calls are synchronous (the client is); async callers run them with `asyncio.to_thread`.
Every call is listed in kube/permissions.py, which the chart's RBAC follows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from oomguard.api import DECISIONS, GROUP, POLICIES, PRIORITIES, VERSION, OOMDecision
from oomguard.decisions import for_create

EvictOutcome = Literal["Evicted", "Refused", "AlreadyGone", "Failed"]
EVENT_SOURCE = "oomguard"


@dataclass(frozen=True)
class Eviction:
    outcome: EvictOutcome
    message: str = ""


class Cluster:
    """oomguard's view of the API: decisions, evictions, events."""

    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)

    def create_decision(self, decision: OOMDecision) -> dict[str, Any]:
        """Create the decision, then write its status (the status subresource ignores
        status on create)."""
        body, status = for_create(decision)
        created = cast(dict[str, Any], self.custom.create_cluster_custom_object(
            GROUP, VERSION, DECISIONS, body))
        if status:
            created = self.patch_decision_status(decision.metadata.name, status)
        return created

    def patch_decision_status(self, name: str, status: dict[str, Any]) -> dict[str, Any]:
        return cast(dict[str, Any], self.custom.patch_cluster_custom_object_status(
            GROUP, VERSION, DECISIONS, name, {"status": status}))

    def patch_policy_status(self, name: str, status: dict[str, Any]) -> None:
        self.custom.patch_cluster_custom_object_status(
            GROUP, VERSION, POLICIES, name, {"status": status})

    def patch_priority_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PRIORITIES, name, {"status": status})

    def delete_decision(self, name: str) -> None:
        try:
            self.custom.delete_cluster_custom_object(GROUP, VERSION, DECISIONS, name)
        except ApiException as error:
            if error.status != 404:
                raise

    def evict(self, namespace: str, name: str, uid: str) -> Eviction:
        """Evict through the Eviction API, so that disruption budgets are honoured; only
        the pod with this UID (a precondition the API server checks): a pod of the same
        name made since is another pod."""
        body = client.V1Eviction(
            metadata=client.V1ObjectMeta(name=name, namespace=namespace),
            delete_options=client.V1DeleteOptions(
                preconditions=client.V1Preconditions(uid=uid)))
        try:
            self.core.create_namespaced_pod_eviction(name, namespace, body)
        except ApiException as error:
            if error.status == 429:
                return Eviction("Refused", f"disruption budget: {_reason(error)}")
            if error.status == 404:
                return Eviction("AlreadyGone", "pod not found")
            if error.status == 409:
                return Eviction("AlreadyGone", f"the pod named so is another one now, not "
                                f"UID {uid}: {_reason(error)}")
            return Eviction("Failed", f"{error.status}: {_reason(error)}")
        return Eviction("Evicted")

    def event(self, involved: dict[str, str], reason: str, message: str,
              kind: Literal["Normal", "Warning"] = "Warning") -> None:
        """A core v1 Event, as `kubectl describe` shows it. Cluster-scoped objects (nodes)
        have their events in the default namespace."""
        namespace = involved.get("namespace") or "default"
        now = datetime.now(UTC)
        self.core.create_namespaced_event(namespace, client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{involved['name']}.", namespace=namespace),
            involved_object=client.V1ObjectReference(**involved),
            reason=reason, message=message, type=kind,
            first_timestamp=now, last_timestamp=now, count=1,
            source=client.V1EventSource(component=EVENT_SOURCE),
            reporting_component=EVENT_SOURCE,
        ))


def _reason(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "{}").get("message") or error.reason)
    except ValueError:
        return str(error.reason)
