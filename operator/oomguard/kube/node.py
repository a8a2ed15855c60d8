"""The node agent's API calls, and whether the API server answers them.

Everything here blocks (the `kubernetes` client does) and runs on the agent's own threads,
never on the sampling loop's path except to claim a decision before a kill.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from oomguard.api import GROUP, VERSION
from oomguard.kube.client import PAGE_SIZE, list_pages

log = logging.getLogger(__name__)

T = TypeVar("T")
Obj = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
TIMEOUT = (2.0, 5.0)
"""Seconds to connect, and to wait for an answer, outside watches."""


class UnreachableError(Exception):
    """The request did not reach the API server, or it failed to serve it (5xx, 429)."""


class ApiHealth:
    """Whether the API server answered the agent's latest request. The agent acts alone at
    once under Hard pressure while it does not."""

    def __init__(self) -> None:
        self.up = False  # unknown until the first answer: no operator can be relied on
        self.observers: list[Callable[[bool], None]] = []

    def answered(self, up: bool) -> None:
        if up != self.up:
            self.up = up
            log.log(logging.INFO if up else logging.WARNING, "API server %s",
                    "answers" if up else "unreachable")
        for observe in self.observers:
            observe(up)


@dataclass(frozen=True)
class Resource:
    """A collection the agent reads, across all namespaces, possibly filtered."""

    group: str  # "" for the core group
    version: str
    plural: str
    label_selector: str = ""
    field_selector: str = ""
    page_size: int | None = None
    """Objects per list page, where not the client's default: fewer for large objects."""

    def __str__(self) -> str:
        selectors = ",".join(s for s in (self.label_selector, self.field_selector) if s)
        return f"{self.plural}{f' ({selectors})' if selectors else ''}"


class NodeApi:
    """The calls the agent makes. Each marks `health`; failures to reach the server (or a
    5xx/429 answer) raise UnreachableError, other refusals the client's ApiException."""

    def __init__(self, api_client: client.ApiClient, page_size: int = PAGE_SIZE) -> None:
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.health = ApiHealth()
        self.page_size = page_size

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            result = fn(*args, **kwargs)
        except ApiException as error:
            if error.status >= 500 or error.status in (0, 429):
                self.health.answered(False)
                raise UnreachableError(f"{error.status} {error.reason}") from error
            self.health.answered(True)
            raise
        except (urllib3.exceptions.HTTPError, OSError) as error:
            self.health.answered(False)
            raise UnreachableError(str(error)) from error
        self.health.answered(True)
        return result

    def _lister(self, res: Resource) -> Callable[..., Any]:
        if res.group:
            return functools.partial(self.custom.list_cluster_custom_object, res.group,
                                     res.version, res.plural)
        listers: dict[str, Callable[..., Any]] = {
            "pods": self.core.list_pod_for_all_namespaces,
            "namespaces": self.core.list_namespace,
            "nodes": self.core.list_node,
        }
        return listers[res.plural]

    def _selectors(self, res: Resource) -> dict[str, str]:
        found = {"label_selector": res.label_selector, "field_selector": res.field_selector}
        return {k: v for k, v in found.items() if v}

    def list(self, res: Resource, slim: Callable[[Obj], Obj] | None = None
             ) -> tuple[list[Obj], str]:
        """The objects (page by page, each through `slim`), and the resourceVersion to
        watch from."""
        return self._call(list_pages, self._lister(res), **self._selectors(res),
                          page_size=res.page_size or self.page_size, slim=slim,
                          _request_timeout=TIMEOUT)

    def watch(self, res: Resource, since: str, seconds: int) -> urllib3.BaseHTTPResponse:
        """A watch stream of JSON lines from `since`; the server ends it after `seconds`."""
        response = self._call(
            self._lister(res), **self._selectors(res), watch=True, resource_version=since,
            allow_watch_bookmarks=True, timeout_seconds=seconds, _preload_content=False,
            _request_timeout=(TIMEOUT[0], seconds + 30))
        return cast(urllib3.BaseHTTPResponse, response)

    def create(self, plural: str, body: Obj) -> Obj:
        return cast(Obj, self._call(self.custom.create_cluster_custom_object, GROUP, VERSION,
                                    plural, body, _request_timeout=TIMEOUT))

    def get(self, plural: str, name: str) -> Obj:
        return cast(Obj, self._call(self.custom.get_cluster_custom_object, GROUP, VERSION,
                                    plural, name, _request_timeout=TIMEOUT))

    def merge_status(self, plural: str, name: str, body: Obj) -> Obj:
        """JSON merge patch of the status subresource: only the fields given change."""
        return cast(Obj, self._call(
            self.custom.patch_cluster_custom_object_status, GROUP, VERSION, plural, name, body,
            _content_type=MERGE_PATCH, _request_timeout=TIMEOUT))

    def replace_status(self, plural: str, name: str, body: Obj) -> Obj:
        """Replace the status subresource; fails with 409 Conflict unless the body's
        resourceVersion is the stored one."""
        return cast(Obj, self._call(
            self.custom.replace_cluster_custom_object_status, GROUP, VERSION, plural, name,
            body, _request_timeout=TIMEOUT))


