"""Connecting to the API server, one way for the operator, the agent and the CLI; and the
paged list every reader uses. (kopf's own login, from the same client: controller.)"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException


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


PAGE_SIZE = 500
"""Objects per list request, as client-go's pager takes them: a large cluster's pods in
pages, not in one answer the API server must build in memory."""


def list_pages(call: Callable[..., Any], *args: Any, page_size: int | None = None,
               slim: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
               **kwargs: Any) -> tuple[list[dict[str, Any]], str]:
    """Every item of a list call, page by page (`limit`/`continue`), as raw JSON (each
    item passed through `slim` as its page arrives: what is dropped is never held for the
    whole list), and the list's resourceVersion. A continue token that expired (410 Gone:
    etcd compacted the snapshot between two pages) restarts the list from its first
    page."""
    while True:
        items: list[dict[str, Any]] = []
        token = ""
        try:
            while True:
                page = json.loads(call(*args, limit=page_size or PAGE_SIZE,
                                       _continue=token or None,
                                       _preload_content=False, **kwargs).data)
                got = page.get("items") or []
                items += got if slim is None else [slim(item) for item in got]
                meta = page.get("metadata") or {}
                token = meta.get("continue") or ""
                if not token:
                    return items, str(meta.get("resourceVersion", ""))
        except ApiException as error:
            if error.status != 410 or not token:
                raise
