"""Caches kept by list+watch that ride out outages: the agent's view of the cluster."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

import urllib3
from kubernetes.client.exceptions import ApiException

from oomguard.kube.node import NodeApi, Resource, UnreachableError

log = logging.getLogger(__name__)

T = TypeVar("T")
Obj = dict[str, Any]


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


def uid_of(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""


class Reflector(Generic[T]):
    """Keeps a decoded copy of one collection: list, then watch from the list's
    resourceVersion; resume a dropped watch from the last version seen; list again on 410
    Gone; back off while the API server is unreachable. The copy survives outages: stale
    is better than nothing when the agent must act alone.

    `decode` turns an object into what is kept (an object it rejects, raising ValueError,
    is dropped with a warning; None: nothing to keep, as a LastGood says of an object
    that never parsed, or a filter of what is not wanted); `listener` sees every object
    stored, listed or watched. `before_list` and `after_list` run around each list: a
    filter that `relist` widens learns which list its change took effect in. `forget`
    hears the UID of each object that is gone (deleted, or not listed again), for a decoder
    that keeps state per object. `slim` drops what is not read from each listed object as
    its page arrives (a list is held whole until its last page)."""

    WATCH_SECONDS = (240, 300)
    SHORT_WATCH = 1.0
    """A watch that ends sooner than this (a proxy closing it, say) is retried after a
    backoff, not at once."""

    def __init__(self, api: NodeApi, res: Resource, decode: Callable[[Obj], T | None], *,
                 listener: Callable[[Obj], None] | None = None,
                 before_list: Callable[[], None] | None = None,
                 after_list: Callable[[], None] | None = None,
                 forget: Callable[[str], None] | None = None,
                 slim: Callable[[Obj], Obj] | None = None) -> None:
        self.api, self.res, self.decode, self.listener = api, res, decode, listener
        self.slim = slim
        self.before_list, self.after_list, self.forget = before_list, after_list, forget
        self._uids: set[str] = set()
        """UIDs seen since the last list, for `forget`."""
        self.synced = threading.Event()
        self.version = 0
        """Bumped on every change, so that readers rebuild only when something changed."""
        self._items: dict[tuple[str, str], T] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stream: urllib3.BaseHTTPResponse | None = None
        self._backoff = Backoff()
        self._relist_wanted = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{res.plural}",
                                        daemon=True)

    def items(self) -> list[T]:
        with self._lock:
            return list(self._items.values())

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._end_stream()
        self._thread.join(timeout)

    def relist(self) -> None:
        """List again soon (what `decode` keeps has changed); requests made before that
        list starts are served by it."""
        self._relist_wanted.set()
        self._end_stream()

    def _end_stream(self) -> None:
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.shutdown()  # unblocks the read in the watch thread

    def _run(self) -> None:
        since: str | None = None
        while not self._stop.is_set():
            try:
                if since is None or self._relist_wanted.is_set():
                    since = self._relist()
                began = time.monotonic()
                since = self._watch(since)
                if self._relist_wanted.is_set():
                    continue
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
        self._relist_wanted.clear()
        if self.before_list is not None:
            self.before_list()
        try:
            objects, since = self.api.list(self.res, self.slim)
        except BaseException:
            self._relist_wanted.set()  # still to be made, whatever was watched before
            raise
        fresh = {_key(obj): decoded for obj in objects
                 if (decoded := self._decode(obj)) is not None}
        with self._lock:
            self._items = fresh
            self.version += 1
        listed = {uid_of(obj) for obj in objects}
        gone, self._uids = self._uids - listed, listed
        for uid in gone:
            self._forget(uid)
        if self.after_list is not None:
            self.after_list()
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
            if self._relist_wanted.is_set():  # asked for before there was a stream to end
                return since
            for line in _lines(stream):
                if self._stop.is_set() or self._relist_wanted.is_set():
                    break
                if line.strip():
                    since = self._apply(json.loads(line), since)
        except (urllib3.exceptions.HTTPError, OSError):
            if not (self._stop.is_set() or self._relist_wanted.is_set()):
                raise
        finally:
            with self._lock:
                self._stream = None
            # A watch left before its end still streams: its connection must not go back
            # to the pool, where the next request would read the rest of this one.
            stream.close()
            stream.release_conn()
        return since

    def _apply(self, event: Obj, since: str) -> str:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            raise ApiException(status=obj.get("code", 500), reason=obj.get("message", ""))
        version = (obj.get("metadata") or {}).get("resourceVersion") or since
        if kind == "BOOKMARK":
            return str(version)
        if kind == "DELETED":
            self._uids.discard(uid_of(obj))
            self._forget(uid_of(obj))
            decoded = None
        else:
            self._uids.add(uid_of(obj))
            decoded = self._decode(obj)
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

    def _forget(self, uid: str) -> None:
        if self.forget is not None:
            self.forget(uid)

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
