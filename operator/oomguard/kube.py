"""The Kubernetes API calls oomguard makes, in one place, over the `kubernetes` client.

Calls are synchronous (the client is); async callers run them with `asyncio.to_thread`.
Every call here is listed in docs/api-calls.md, which the chart's RBAC follows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast

import kopf
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from oomguard.api import GROUP, VERSION, OOMDecision

EvictOutcome = Literal["Evicted", "Refused", "AlreadyGone", "Failed"]
REPORTS, DECISIONS = "nodememoryreports", "oomdecisions"
EVENT_SOURCE = "oomguard"


def api_client(*, server: str | None = None, kubeconfig: Path | None = None,
               user_agent: str = "oomguard", retries: int | None = None) -> client.ApiClient:
    """A client for `server` (tests, kubectl proxy), else the pod's service account, else
    a kubeconfig. `retries=0` for callers that retry with their own backoff (the agent:
    a claim on the kill path must not wait through urllib3's default connect retries)."""
    if server is not None:
        configuration = client.Configuration(host=server)
    else:
        configuration = client.Configuration()
        try:
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig) if kubeconfig else None,
                client_configuration=configuration)
    if retries is not None:
        configuration.retries = retries
    api = client.ApiClient(configuration)
    api.user_agent = user_agent
    return api


def connection_info(configuration: client.Configuration) -> kopf.ConnectionInfo:
    """kopf's credentials from a `kubernetes` client configuration: server, CA, client
    certificate or bearer token. An in-cluster configuration re-reads its token file
    first, so that a kopf re-login after a 401 picks up the rotated token."""
    if configuration.refresh_api_key_hook is not None:
        configuration.refresh_api_key_hook(configuration)
    header = configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
    scheme, _, token = (header or "").partition(" ")
    return kopf.ConnectionInfo(
        server=configuration.host, ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        certificate_path=configuration.cert_file, private_key_path=configuration.key_file,
        scheme=scheme.capitalize() or None, token=token or None)


PAGE_SIZE = 500
"""Objects per list request, as client-go's pager takes them: a large cluster's pods in
pages, not in one answer the API server must build in memory."""


def list_pages(call: Callable[..., Any], *args: Any, page_size: int | None = None,
               **kwargs: Any) -> tuple[list[dict[str, Any]], str]:
    """Every item of a list call, page by page (`limit`/`continue`), as raw JSON, and the
    list's resourceVersion. A continue token that expired (410 Gone: etcd compacted the
    snapshot between two pages) restarts the list from its first page."""
    while True:
        items: list[dict[str, Any]] = []
        token = ""
        try:
            while True:
                page = json.loads(call(*args, limit=page_size or PAGE_SIZE,
                                       _continue=token or None,
                                       _preload_content=False, **kwargs).data)
                items += page.get("items") or []
                meta = page.get("metadata") or {}
                token = meta.get("continue") or ""
                if not token:
                    return items, str(meta.get("resourceVersion", ""))
        except ApiException as error:
            if error.status != 410 or not token:
                raise


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
        body = decision.wire()
        status = body.pop("status", None)
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
            GROUP, VERSION, "oompolicies", name, {"status": status})

    def patch_priority_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, "oompriorities", name, {"status": status})

    def delete_decision(self, name: str) -> None:
        try:
            self.custom.delete_cluster_custom_object(GROUP, VERSION, DECISIONS, name)
        except ApiException as error:
            if error.status != 404:
                raise

    def evict(self, namespace: str, name: str) -> Eviction:
        """Evict through the Eviction API, so that disruption budgets are honoured."""
        body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=namespace))
        try:
            self.core.create_namespaced_pod_eviction(name, namespace, body)
        except ApiException as error:
            if error.status == 429:
                return Eviction("Refused", f"disruption budget: {_reason(error)}")
            if error.status == 404:
                return Eviction("AlreadyGone", "pod not found")
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
