"""The node agent's side of the Kubernetes API: the calls it makes, whether the API server
answers, and caches kept by list+watch that ride out outages.

Everything here blocks (the `kubernetes` client does) and runs on the agent's own threads,
never on the sampling loop's path except to claim a decision before a kill.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from oomguard import kube
from oomguard.api import GROUP, VERSION

log = logging.getLogger(__name__)

T = TypeVar("T")
Obj = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
TIMEOUT = (2.0, 5.0)
"""Seconds to connect, and to wait for an answer, outside watches."""


class UnreachableError(Exception):
    """The request did not reach the API server, or it failed to serve it (5xx, 429)."""


def api_client(*, server: str | None = None, kubeconfig: Path | None = None,
               user_agent: str = "oomguard-agent") -> client.ApiClient:
    """The agent's client: no retries of its own (the agent retries with backoff)."""
    return kube.api_client(server=server, kubeconfig=kubeconfig, user_agent=user_agent,
                           retries=0)


class Health:
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

    def __str__(self) -> str:
        selectors = ",".join(s for s in (self.label_selector, self.field_selector) if s)
        return f"{self.plural}{f' ({selectors})' if selectors else ''}"


class Api:
    """The calls the agent makes. Each marks `health`; failures to reach the server (or a
    5xx/429 answer) raise UnreachableError, other refusals the client's ApiException."""

    def __init__(self, api_client: client.ApiClient, page_size: int = kube.PAGE_SIZE) -> None:
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.health = Health()
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

    def list(self, res: Resource) -> tuple[list[Obj], str]:
        """The objects (page by page), and the resourceVersion to watch from."""
        return self._call(kube.list_pages, self._lister(res), **self._selectors(res),
                          page_size=self.page_size, _request_timeout=TIMEOUT)

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


class Backoff:
    """Exponential delays with jitter, from `first` up to `cap` seconds."""

    def __init__(self, first: float = 0.1, cap: float = 5.0) -> None:
        self.first, self.cap = first, cap
        self._next = first

    def reset(self) -> None:
        self._next = self.first

    def delay(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.cap)
        return delay * random.uniform(0.5, 1.0)


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""


class Reflector(Generic[T]):
    """Keeps a decoded copy of one collection: list, then watch from the list's
    resourceVersion; resume a dropped watch from the last version seen; list again on 410
    Gone; back off while the API server is unreachable. The copy survives outages: stale
    is better than nothing when the agent must act alone.

    `decode` turns an object into what is kept (an object it rejects is dropped, with a
    warning); `listener` sees every object stored, listed or watched."""

    WATCH_SECONDS = (240, 300)
    SHORT_WATCH = 1.0
    """A watch that ends sooner than this (a proxy closing it, say) is retried after a
    backoff, not at once."""

    def __init__(self, api: Api, res: Resource, decode: Callable[[Obj], T], *,
                 listener: Callable[[Obj], None] | None = None) -> None:
        self.api, self.res, self.decode, self.listener = api, res, decode, listener
        self.synced = threading.Event()
        self.version = 0
        """Bumped on every change, so that readers rebuild only when something changed."""
        self._items: dict[tuple[str, str], T] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stream: urllib3.BaseHTTPResponse | None = None
        self._backoff = Backoff()
        self._thread = threading.Thread(target=self._run, name=f"watch-{res.plural}",
                                        daemon=True)

    def items(self) -> list[T]:
        with self._lock:
            return list(self._items.values())

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.shutdown()  # unblocks the read in the watch thread
        self._thread.join(timeout)

    def _run(self) -> None:
        since: str | None = None
        while not self._stop.is_set():
            try:
                if since is None:
                    since = self._relist()
                began = time.monotonic()
                since = self._watch(since)
                if time.monotonic() - began >= self.SHORT_WATCH:
                    self._backoff.reset()
                else:
                    self._stop.wait(self._backoff.delay())
            except ApiException as error:
                if error.status == 410:
                    since = None  # too old to resume from: start over
                    continue
                log.warning("%s: %s %s", self.res, error.status, error.reason)
                self._stop.wait(self._backoff.delay())
            except (UnreachableError, urllib3.exceptions.HTTPError, OSError, ValueError) as error:
                if not self._stop.is_set():
                    log.debug("%s: %s", self.res, error)
                    self._stop.wait(self._backoff.delay())
            except Exception:  # a cache that stops silently would go stale unnoticed
                log.exception("%s: unexpected error; listing again", self.res)
                since = None
                self._stop.wait(self._backoff.delay())

    def _relist(self) -> str:
        objects, since = self.api.list(self.res)
        fresh = {_key(obj): decoded for obj in objects
                 if (decoded := self._decode(obj)) is not None}
        with self._lock:
            self._items = fresh
            self.version += 1
        self.synced.set()
        for obj in objects:
            self._notify(obj)
        return since

    def _watch(self, since: str) -> str:
        """Apply events until the stream ends; the last resourceVersion seen."""
        stream = self.api.watch(self.res, since, random.randint(*self.WATCH_SECONDS))
        with self._lock:
            self._stream = stream
        try:
            for line in _lines(stream):
                if self._stop.is_set():
                    break
                if line.strip():
                    since = self._apply(json.loads(line), since)
        except (urllib3.exceptions.HTTPError, OSError):
            if not self._stop.is_set():
                raise
        finally:
            with self._lock:
                self._stream = None
            stream.release_conn()
        return since

    def _apply(self, event: Obj, since: str) -> str:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            raise ApiException(status=obj.get("code", 500), reason=obj.get("message", ""))
        version = (obj.get("metadata") or {}).get("resourceVersion") or since
        if kind == "BOOKMARK":
            return str(version)
        decoded = None if kind == "DELETED" else self._decode(obj)
        with self._lock:
            if decoded is None:
                self._items.pop(_key(obj), None)
            else:
                self._items[_key(obj)] = decoded
            self.version += 1
        if decoded is not None:
            self._notify(obj)
        return str(version)

    def _decode(self, obj: Obj) -> T | None:
        try:
            return self.decode(obj)
        except ValueError as error:  # pydantic's ValidationError is a ValueError
            log.warning("%s: ignoring %s/%s: %s", self.res, *_key(obj), error)
            return None

    def _notify(self, obj: Obj) -> None:
        if self.listener is not None:
            self.listener(obj)


def _lines(stream: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    """The stream's lines as they arrive: a watch sends one JSON event per line."""
    pending = b""
    for chunk in stream.stream(None, decode_content=False):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        yield from lines
