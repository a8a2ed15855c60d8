"""A Kubernetes API server for tests: kmock's emulator, made realistic enough for kopf, the
`kubernetes` client and kubectl.

kmock 0.8 serves objects from memory over HTTP, but stores bodies as sent: no
resourceVersions (kopf's JSON patches test them), no selectors, no status subresource, no
eviction, a watch that replays every object whatever resourceVersion it is given (so kopf
may handle an object twice), and a path parser that fails on `/api/v1/namespaces`.
`ClusterEmulator` keeps kmock's server, request log, reaction DSL and object store, and
replaces how requests are served. docs/emulator.md lists what it provides and what it does
not prove.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import copy
import json
import random
import re
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import aiohttp.web
import attrs
import jsonpatch
import jsonpointer
import kmock
import kubernetes
import yaml
from kmock._internal.rendering import Response, StreamingError  # not in kmock.__all__

from .disruption import check_eviction
from .errors import (
    ApiError,
    already_exists,
    bad_request,
    conflict,
    invalid,
    not_allowed,
    not_found,
    not_served,
)
from .selection import (
    FieldRequirement,
    SelectorError,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)
from .tables import BUILTIN_COLUMNS, Column, printer_columns, render_table, wants_table

Obj = dict[str, Any]
T = TypeVar("T")

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"
VERBS = frozenset({"create", "delete", "deletecollection", "get", "list", "patch", "update",
                   "watch"})
PODS = kmock.resource(group="", version="v1", plural="pods")
NAMESPACES = kmock.resource(group="", version="v1", plural="namespaces")
PDBS = kmock.resource(group="policy", version="v1", plural="poddisruptionbudgets")
CRDS = kmock.resource(group="apiextensions.k8s.io", version="v1",
                      plural="customresourcedefinitions")
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")

# What oomguard needs whatever kmock bundles: resource, kind, subresources.
REQUIRED_BUILTINS: tuple[tuple[str, str, set[str]], ...] = (
    ("v1/pods", "Pod", {"status", "eviction"}),
    ("v1/events", "Event", set()),
    ("events.k8s.io/v1/events", "Event", set()),
    ("policy/v1/poddisruptionbudgets", "PodDisruptionBudget", {"status"}),
)

# Field selectors the real server supports beyond metadata.name and metadata.namespace.
FIELD_SELECTORS: dict[tuple[str, str], frozenset[str]] = {
    ("", "pods"): frozenset({
        "spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
        "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"}),
    ("", "events"): frozenset({
        "involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
        "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
        "involvedObject.fieldPath", "reason", "reportingComponent", "type"}),
    ("", "nodes"): frozenset({"spec.unschedulable"}),
    ("", "namespaces"): frozenset({"status.phase"}),
}
# The subresources served (and so advertised): others, like pods/log, answer 404.
SUBRESOURCE_VERBS = {"status": ["get", "patch", "update"], "eviction": ["create"]}
# Fields only the server sets: a write keeps the stored values whatever the client sent.
SYSTEM_METADATA = ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp",
                   "deletionGracePeriodSeconds", "generation", "generateName")


class ApiCall(NamedTuple):
    """One request for a resource, in RBAC terms, and who made it (bearer token, User-Agent)."""

    verb: str  # get list watch create update patch delete deletecollection
    group: str  # "" for the core group
    resource: str  # plural
    subresource: str  # "" for the resource itself
    namespace: str | None
    name: str | None
    token: str | None
    user_agent: str

    @property
    def rbac(self) -> tuple[str, str, str, str]:
        return self.verb, self.group, self.resource, self.subresource


class Route(NamedTuple):
    """What a URL path names; `group` is None outside `/api` and `/apis/<group>`."""

    group: str | None
    version: str | None
    plural: str | None
    namespace: str | None
    name: str | None
    subresource: str | None


class Change(NamedTuple):
    """One committed write, kept for watches that resume from a resourceVersion."""

    revision: int
    type: str  # ADDED MODIFIED DELETED
    obj: Obj  # the new state; the last state for DELETED
    old: Obj | None


def parse_route(path: str) -> Route:
    parts = [part for part in path.split("/") if part]
    if parts[:1] == ["api"]:
        group, rest = "", parts[1:]
    elif parts[:1] == ["apis"] and len(parts) > 1:
        group, rest = parts[1], parts[2:]
    else:
        return Route(None, None, None, None, None, None)
    version, rest = (rest[0], rest[1:]) if rest else (None, [])
    namespace = None
    # /api/v1/namespaces/NAME/status is the namespace's own subresource, not a resource in it.
    own_subresource = group == "" and len(rest) == 3 and rest[2] in ("status", "finalize")
    if len(rest) >= 3 and rest[0] == "namespaces" and not own_subresource:
        namespace, rest = rest[1], rest[2:]
    plural = rest[0] if rest else None
    name = rest[1] if len(rest) > 1 else None
    return Route(group, version, plural, namespace, name, "/".join(rest[2:]) or None)


def rbac_verb(method: str, named: bool, params: Mapping[str, str]) -> str:
    """The RBAC verb of a request for a resource (`named`: for one object)."""
    if method == "GET":
        if params.get("watch") in ("true", "1"):
            return "watch"
        return "get" if named else "list"
    if method == "DELETE":
        return "delete" if named else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


def _action(method: str, route: Route, params: Mapping[str, str]) -> kmock.action | None:
    """kmock's action for its DSL filters (`emulator['list', 'v1/pods']`)."""
    if route.plural is None:
        return None
    verb = rbac_verb(method, route.name is not None, params)
    actions = {"get": kmock.action.FETCH, "list": kmock.action.LIST,
               "watch": kmock.action.WATCH, "create": kmock.action.CREATE,
               "update": kmock.action.UPDATE, "patch": kmock.action.UPDATE,
               "delete": kmock.action.DELETE, "deletecollection": kmock.action.DELETE}
    return actions.get(verb)


async def _parse_request(raw: aiohttp.web.BaseRequest, id: int) -> kmock.Request:
    body = await raw.read()
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    route = parse_route(raw.path)
    params = dict(raw.query)
    resource = (None if route.group is None else
                kmock.resource(group=route.group, version=route.version, plural=route.plural))
    return kmock.Request(
        id=id, raw_request=raw, url=raw.url, method=raw.method, params=params,
        headers=dict(raw.headers), cookies=dict(raw.cookies), body=body,
        text=body.decode("utf-8", "replace"), data=data,
        action=_action(raw.method, route, params), resource=resource,
        namespace=route.namespace, name=route.name, subresource=route.subresource)


def _reply(payload: Any, status: int = 200) -> Response:
    """Every answer names its status: kmock keeps the last status a reaction answered with
    and reuses it for later answers that name none (a 201 would follow a create)."""
    return payload if isinstance(payload, Response) else Response(
        status=status, payload=payload)


def _header(request: kmock.Request, name: str) -> str:
    return next((v for k, v in request.headers.items() if k.lower() == name.lower()), "")


def _now(offset: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%SZ")


def api_version(resource: kmock.resource) -> str:
    return f"{resource.group}/{resource.version}" if resource.group else str(resource.version)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, `null` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _content(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an object whose changes bump `metadata.generation`."""
    return {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata", "status")}


_VERSION = re.compile(r"v(\d+)(?:(alpha|beta)(\d+))?")


def _version_priority(version: str) -> tuple[int, int, int, str]:
    """Kubernetes' order of versions: GA over beta over alpha, then the higher numbers."""
    m = _VERSION.fullmatch(version)
    if m is None:
        return (-1, 0, 0, version)
    major, stage, minor = m.groups()
    return ({"alpha": 0, "beta": 1}.get(stage or "", 2), int(major), int(minor or 0), "")


def _gone(request: kmock.Request) -> bool:
    raw = request._raw_request
    transport = raw.transport if raw is not None else None
    return transport is None or transport.is_closing()


def _matches(change: Change, selected: Callable[[Obj], bool]) -> dict[str, Any] | None:
    """The event a selecting watch sees: an object that starts or stops matching its
    selector is ADDED or DELETED for it, as on a real server."""
    now = selected(change.obj)
    before = change.old is not None and selected(change.old)
    if change.type == "MODIFIED":
        kind = ("MODIFIED" if now and before else "ADDED" if now
                else "DELETED" if before else None)
    else:
        kind = change.type if now else None
    return None if kind is None else {"type": kind, "object": change.obj}


@attrs.define(kw_only=True)
class ClusterEmulator(kmock.KubernetesEmulator):
    """kmock's KubernetesEmulator with the API semantics oomguard's clients rely on.

    Serve it with `running_emulator()`. Objects live in kmock's `objects` store (with their
    history); `store`, `read`, `read_all` and `remove` are the test's (or the kubelet's) side
    door, and `calls` records every resource request for RBAC checks.
    """

    crd_dir: Path = CRD_DIR
    calls: list[ApiCall] = attrs.field(factory=list, init=False)
    _printer_columns: dict[kmock.resource, list[Column]] = attrs.field(factory=dict, init=False)
    _revision: int = attrs.field(default=0, init=False)
    _log: dict[kmock.resource, list[Change]] = attrs.field(factory=dict, init=False)
    _wakeup: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _closing: bool = attrs.field(default=False, init=False)
    _random: random.Random = attrs.field(factory=lambda: random.Random(0), init=False)

    def __attrs_post_init__(self) -> None:
        # Keep kmock's discovery and 404 scaffold, not its naive CRUD fallbacks.
        kmock.KubernetesScaffold.__attrs_post_init__(self)
        self.fallback[lambda request: request.resource is not None
                      and request.resource.plural is not None] << self._serve_resource
        # Unknown URLs (kubectl asks for /openapi/v3) are a client's 404, not an emulator bug
        # for `strict` to report: answer them before kmock's catch-all raises.
        (self.fallback ** -1) << _reply(not_served().status(), 404)
        with warnings.catch_warnings():  # kmock 0.8 calls a deprecated importlib function
            warnings.simplefilter("ignore", DeprecationWarning)
            self.resources.load_bundled()  # before anything else: kopf needs the built-ins
        for key, kind, subresources in REQUIRED_BUILTINS:
            if key not in self.resources:
                self.resources[key] = kmock.ResourceInfo(
                    kind=kind, namespaced=True, verbs=VERBS, subresources=subresources)
        for path in sorted(self.crd_dir.glob("*.yaml")):
            self.register_crd(yaml.safe_load(path.read_text()))
        for name in SYSTEM_NAMESPACES:
            self.store(NAMESPACES, {"metadata": {"name": name}, "status": {"phase": "Active"}})

    # -- the test's side of the API ---------------------------------------------------------

    @property
    def server_url(self) -> str:
        return str(self.url).rstrip("/")

    def api_client(self, token: str | None = None) -> kubernetes.client.ApiClient:
        """A `kubernetes` client for this server; the token tells its calls apart in `calls`.
        Call it through `asyncio.to_thread`: it blocks, and the server runs on this loop."""
        config = kubernetes.client.Configuration(host=self.server_url)
        if token is not None:
            config.api_key = {"BearerToken": token}
            config.api_key_prefix = {"BearerToken": "Bearer"}
        return kubernetes.client.ApiClient(config)

    def register_crd(self, crd: Mapping[str, Any]) -> None:
        """Serve a CustomResourceDefinition's resource (shortNames, categories, subresources
        and printer columns as in the CRD) and store the CRD itself."""
        spec = crd["spec"]
        names = spec["names"]
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            resource = kmock.resource(group=spec["group"], version=version["name"],
                                      plural=names["plural"])
            self.resources[resource] = kmock.ResourceInfo(
                namespaced=spec["scope"] == "Namespaced", kind=names["kind"],
                singular=names.get("singular", names["kind"].lower()), verbs=VERBS,
                shortnames=names.get("shortNames", ()), categories=names.get("categories", ()),
                subresources=(version.get("subresources") or {}).keys())
            self._printer_columns[resource] = printer_columns(
                version.get("additionalPrinterColumns") or ())
        self.store(CRDS, crd)

    def store(self, resource: str | kmock.resource, body: Mapping[str, Any]) -> Obj:
        """Create or replace an object as given, status included, as the kubelet or a
        controller would leave it: seeds tests. Skips the API's rules; fills in only the
        missing metadata (namespace `default`, uid, creationTimestamp, generation)."""
        res = kmock.resource(resource)
        info = self._info(res)
        obj = copy.deepcopy(dict(body))
        meta = obj.setdefault("metadata", {})
        name = meta["name"]
        namespace = meta.setdefault("namespace", "default") if info.namespaced else None
        current = self._current(res, namespace, name)
        before = current["metadata"] if current else {}
        obj.update(apiVersion=api_version(res), kind=info.kind)
        meta.setdefault("uid", before.get("uid") or self._uid())
        meta.setdefault("creationTimestamp", before.get("creationTimestamp") or _now())
        meta.setdefault("generation", before.get("generation", 1))
        return copy.deepcopy(self._commit(res, self._admit(res, obj)))

    def read(self, resource: str | kmock.resource, namespace: str | None,
             name: str) -> Obj | None:
        """The object as stored now (a copy), or None."""
        current = self._current(kmock.resource(resource), namespace, name)
        return copy.deepcopy(current)

    def read_all(self, resource: str | kmock.resource,
                 namespace: str | None = None) -> list[Obj]:
        """Copies of the stored objects of a resource (of one namespace, if given)."""
        return [copy.deepcopy(obj) for obj in self._live(kmock.resource(resource))
                if namespace is None or obj["metadata"].get("namespace") == namespace]

    def remove(self, resource: str | kmock.resource, namespace: str | None, name: str) -> None:
        """Remove an object whatever its finalizers: the kubelet ending a terminating pod,
        or the garbage collector."""
        res = kmock.resource(resource)
        if self._current(res, namespace, name) is None:
            raise KeyError((resource, namespace, name))
        self._discard(res, namespace, name)

    async def wait_for(self, condition: Callable[[], T | None], timeout: float = 10.0) -> T:
        """Wait until `condition()` is truthy, checking it after every write to the
        emulator, and return its value; TimeoutError after `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    wakeup = self._wakeup
                    if result := condition():
                        return result
                    await wakeup.wait()
        except TimeoutError:
            raise TimeoutError(f"condition not met within {timeout}s") from None

    def used_permissions(self, token: str | None = None) -> set[tuple[str, str, str, str]]:
        """The distinct (verb, group, resource, subresource) of the calls made with `token`."""
        return {call.rbac for call in self.calls if call.token == token}

    def close_watches(self) -> None:
        """End every watch stream, as a stopping API server does."""
        self._closing = True
        self._wake()

    # -- storage ----------------------------------------------------------------------------

    def _uid(self) -> str:
        return str(uuid.UUID(int=self._random.getrandbits(128), version=4))

    def _info(self, res: kmock.resource) -> kmock.ResourceInfo:
        if res not in self.resources:
            raise not_served()
        return self.resources[res]

    def _current(self, res: kmock.resource, namespace: str | None, name: str) -> Obj | None:
        key = (res, namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return self.objects[key].raw

    def _live(self, res: kmock.resource) -> list[Obj]:
        found = [obj.raw for (r, _, _), obj in self.objects.items() if r == res and not obj.deleted]
        return sorted(found, key=lambda o: (o["metadata"].get("namespace", ""),
                                            o["metadata"]["name"]))

    def _wake(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    def _record(self, res: kmock.resource, kind: str, obj: Obj, old: Obj | None) -> None:
        self._log.setdefault(res, []).append(Change(self._revision, kind, obj, old))
        self._wake()

    def _commit(self, res: kmock.resource, obj: Obj) -> Obj:
        """Store a new state under a new resourceVersion and tell the watches."""
        meta = obj["metadata"]
        key = (res, meta.get("namespace"), meta["name"])
        old = self._current(*key)
        self._revision += 1
        meta["resourceVersion"] = str(self._revision)
        if key in self.objects:
            self.objects[key].history.append(obj)
        else:
            self.objects[key] = obj
        self._record(res, "ADDED" if old is None else "MODIFIED", obj, old)
        return obj

    def _discard(self, res: kmock.resource, namespace: str | None, name: str) -> Obj:
        old = self.objects[res, namespace, name].raw
        self._revision += 1
        last = copy.deepcopy(old)
        last["metadata"]["resourceVersion"] = str(self._revision)
        self.objects[res, namespace, name].delete()
        self._record(res, "DELETED", last, old)
        return last

    # -- serving ----------------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """kmock's entry point, with our request parser: kmock's fails on /api/v1/namespaces."""
        raw_response: aiohttp.web.StreamResponse | None = None
        try:
            request = await _parse_request(raw_request, len(self._requests))
            self._requests.append(request)
            if request.resource is not None and request.resource.plural is not None:
                token = raw_request.headers.get("Authorization", "").removeprefix("Bearer ")
                self.calls.append(ApiCall(
                    rbac_verb(raw_request.method, request.name is not None, request.params),
                    request.resource.group or "", request.resource.plural,
                    request.subresource or "", request.namespace, request.name, token or None,
                    raw_request.headers.get("User-Agent", "")))
            try:
                return await self._handle(request)
            except StreamingError as e:  # a stream failed after its headers went out
                raw_response = e.args[0]
                if e.__cause__ is None:
                    raise
                raise e.__cause__ from None
        except Exception as e:
            if not self._errors:
                raise
            self._errors[-1].append(e)
            if raw_response is None or not raw_response.prepared:
                return await self._render_error(e)
            await self._stream_error(e, raw_response)
            await raw_response.write_eof()
            return raw_response

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        # Skip KubernetesEmulator._handle, which would store writes its own way first.
        return await super(kmock.KubernetesEmulator, self)._handle(request)

    async def _serve_resource(self, request: kmock.Request) -> Response:
        try:
            return _reply(self._dispatch(request))
        except ApiError as error:
            return _reply(error.status(), error.code)

    def _dispatch(self, request: kmock.Request) -> Any:
        res = request.resource
        assert res is not None
        info = self._info(res)
        if request.namespace is not None and not info.namespaced:
            raise not_served()
        verb = rbac_verb(request.method.value, request.name is not None, request.params)
        sub = request.subresource
        if sub is not None and (sub not in info.subresources or sub not in SUBRESOURCE_VERBS):
            raise ApiError(404, "NotFound", f"the emulator does not serve {res.plural}/{sub}")
        allowed = info.verbs if sub is None else SUBRESOURCE_VERBS[sub]
        if verb not in allowed:
            raise not_allowed()
        if verb == "list":
            return self._list(request, res, info)
        if verb == "watch":
            return self._watch(request, res, info)
        if verb == "create" and sub is None:
            if request.name is not None:
                raise not_allowed()
            return _reply(self._create(request, res, info), 201)
        if verb == "deletecollection":
            selected = self._selector(request, res)
            deleted = [self._terminate(res, obj, None) for obj in self._live(res) if selected(obj)]
            return {"kind": f"{info.kind}List", "apiVersion": api_version(res),
                    "metadata": {"resourceVersion": str(self._revision)}, "items": deleted}
        assert request.name is not None  # a verb on one object
        current = self._current(res, request.namespace, request.name)
        if current is None:
            raise not_found(res.group or "", str(res.plural), request.name)
        if sub == "eviction":
            return _reply(self._evict(request, current), 201)
        if verb == "get":
            return self._render(request, res, [current]) or current
        if verb == "delete":
            return self._delete(request, res, current)
        proposed = self._body(request) if verb == "update" else self._patched(request, res, current)
        return self._write(request, res, info, proposed, current)

    def _body(self, request: kmock.Request) -> Obj:
        if not isinstance(request.data, dict):
            raise bad_request("the request body must be a JSON object")
        return copy.deepcopy(request.data)

    def _selector(self, request: kmock.Request, res: kmock.resource) -> Callable[[Obj], bool]:
        supported = {"metadata.name", "metadata.namespace"}
        supported |= FIELD_SELECTORS.get((res.group or "", str(res.plural)), frozenset())
        try:
            labels = parse_label_selector(request.params.get("labelSelector", ""))
            fields = parse_field_selector(request.params.get("fieldSelector", ""), supported)
        except SelectorError as e:
            raise bad_request(str(e)) from None
        if request.name is not None:  # a watch on one object
            fields.append(FieldRequirement("metadata.name", False, request.name))

        def selected(obj: Obj) -> bool:
            meta = obj["metadata"]
            return ((request.namespace is None or meta.get("namespace") == request.namespace)
                    and labels_match(labels, meta.get("labels") or {})
                    and all(field.matches(obj) for field in fields))
        return selected

    def _render(self, request: kmock.Request, res: kmock.resource,
                objects: list[Obj]) -> dict[str, Any] | None:
        """A Table of `objects` if the client asked for one (kubectl get does)."""
        if not wants_table(_header(request, "Accept")):
            return None
        columns = (self._printer_columns.get(res)
                   or BUILTIN_COLUMNS.get((res.group or "", str(res.plural)))
                   or printer_columns(()))
        return render_table(objects, columns, str(self._revision),
                            request.params.get("includeObject", "Metadata"))

    def _list(self, request: kmock.Request, res: kmock.resource,
              info: kmock.ResourceInfo) -> dict[str, Any]:
        selected = self._selector(request, res)
        items = [obj for obj in self._live(res) if selected(obj)]
        return self._render(request, res, items) or {
            "kind": f"{info.kind}List", "apiVersion": api_version(res),
            "metadata": {"resourceVersion": str(self._revision)}, "items": items}

    def _watch(self, request: kmock.Request, res: kmock.resource,
               info: kmock.ResourceInfo) -> AsyncIterator[Any]:
        """Events after `resourceVersion`; without one (or "0"), every matching object as
        ADDED first. `sendInitialEvents` ends those with the initial-events-end BOOKMARK."""
        selected = self._selector(request, res)
        since = request.params.get("resourceVersion") or "0"
        initial = request.params.get("sendInitialEvents") == "true"
        if not since.isdigit():
            raise bad_request(f"invalid resourceVersion {since!r}")
        fresh = since == "0" or initial  # from the current state, not from a past version
        start = self._revision if fresh else int(since)
        first = [{"type": "ADDED", "object": o} for o in self._live(res) if fresh and selected(o)]
        if initial:
            first.append({"type": "BOOKMARK", "object": {
                "kind": info.kind, "apiVersion": api_version(res), "metadata": {
                    "resourceVersion": str(start),
                    "annotations": {"k8s.io/initial-events-end": "true"}}}})
        timeout = float(request.params.get("timeoutSeconds") or "inf")
        return self._stream(request, res, start=start, first=first, selected=selected,
                            timeout=timeout)

    async def _stream(self, request: kmock.Request, res: kmock.resource, *, start: int,
                      first: list[dict[str, Any]], selected: Callable[[Obj], bool],
                      timeout: float) -> AsyncIterator[Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        yield b""  # send the headers now: clients wait for them before reading events
        for item in first:
            yield item
        log = self._log.setdefault(res, [])
        position = bisect.bisect_right(log, start, key=lambda change: change.revision)
        while True:
            wakeup = self._wakeup
            if position < len(log):
                position += 1
                if seen := _matches(log[position - 1], selected):
                    yield seen
                continue
            remaining = deadline - asyncio.get_running_loop().time()
            if self._closing or _gone(request) or remaining <= 0:
                return
            # Wake up now and then to notice clients that went away without a word.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), timeout=min(1.0, remaining))

    def _create(self, request: kmock.Request, res: kmock.resource,
                info: kmock.ResourceInfo) -> Obj:
        obj = self._body(request)
        meta = obj.setdefault("metadata", {})
        namespace = request.namespace
        if info.namespaced:
            if namespace is None:
                raise not_served()
            if meta.get("namespace") not in (None, "", namespace):
                raise bad_request("the namespace of the provided object does not match the"
                                  " namespace sent on the request")
            if self._current(NAMESPACES, None, namespace) is None:
                raise not_found("", "namespaces", namespace)
        name = meta.get("name") or (meta.get("generateName") and
                                    meta["generateName"] + self._suffix())
        if not name:
            raise invalid(f"{info.kind} is invalid: metadata.name: Required value: name or"
                          " generateName is required")
        if self._current(res, namespace, name) is not None:
            raise already_exists(res.group or "", str(res.plural), name)
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion"):
            meta.pop(key, None)
        meta.update(name=name, uid=self._uid(), creationTimestamp=_now(), generation=1)
        if info.namespaced:
            meta["namespace"] = namespace
        obj.update(apiVersion=api_version(res), kind=info.kind)
        if "status" in info.subresources:
            obj.pop("status", None)  # written through /status only
        if res == PODS:
            obj["status"] = {"phase": "Pending"}
        if res == NAMESPACES:
            obj["status"] = {"phase": "Active"}
        return self._commit(res, self._admit(res, obj))

    def _suffix(self) -> str:
        return "".join(self._random.choices("bcdfghjklmnpqrstvwxz2456789", k=5))

    @staticmethod
    def _admit(res: kmock.resource, obj: Obj) -> Obj:
        """What admission always adds: a namespace's `kubernetes.io/metadata.name` label."""
        if res == NAMESPACES:
            labels = obj["metadata"].setdefault("labels", {})
            labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
        return obj

    def _patched(self, request: kmock.Request, res: kmock.resource, current: Obj) -> Obj:
        kind = _header(request, "Content-Type").split(";")[0].strip()
        if kind == "application/json-patch+json":
            if not isinstance(request.data, list):
                raise bad_request("a JSON patch must be a list of operations")
            try:
                patched: Obj = jsonpatch.apply_patch(current, request.data)
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
                raise invalid(f"the server rejected our request due to an error in our"
                              f" request: {e}") from None
            return patched
        strategic = kind == "application/strategic-merge-patch+json"
        custom = res in self._printer_columns
        if kind == "application/merge-patch+json" or (strategic and not custom):
            # Strategic merge patches are applied as merge patches: lists are replaced.
            if not isinstance(request.data, dict):
                raise bad_request("a merge patch must be a JSON object")
            result: Obj = merge_patch(current, request.data)
            return result
        raise ApiError(415, "UnsupportedMediaType",
                       f"the body of the request was in an unknown format - accepted media types"
                       f" include: application/json-patch+json, application/merge-patch+json"
                       f"{'' if strategic else ', application/strategic-merge-patch+json'}"
                       f" (server-side apply is not emulated)")

    def _write(self, request: kmock.Request, res: kmock.resource, info: kmock.ResourceInfo,
               proposed: Obj, current: Obj) -> Obj:
        """Store an update or a patch result as the API server would."""
        meta = proposed.get("metadata")
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if meta.get("name", request.name) != request.name:
            raise bad_request(f"the name of the object ({meta.get('name')}) does not match the"
                              f" name on the URL ({request.name})")
        before = current["metadata"]
        version = meta.get("resourceVersion")
        if version and version != before["resourceVersion"]:
            raise conflict(res.group or "", str(res.plural), str(request.name))
        new = copy.deepcopy(proposed)
        new.update(apiVersion=current["apiVersion"], kind=current["kind"])
        for key in SYSTEM_METADATA:
            if key in before:
                new["metadata"][key] = before[key]
            else:
                new["metadata"].pop(key, None)
        if "status" in info.subresources and request.subresource == "status":
            status = new.get("status")
            new = copy.deepcopy(current)  # the status subresource changes the status only
            new.pop("status", None)
            if status is not None:
                new["status"] = status
        elif "status" in info.subresources:
            new.pop("status", None)  # and the resource itself all but the status
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
        if _content(new) != _content(current):
            new["metadata"]["generation"] = before.get("generation", 0) + 1
        meta = new["metadata"]
        if (meta.get("deletionTimestamp") and not meta.get("finalizers")
                and not meta.get("deletionGracePeriodSeconds")):
            return self._discard(res, meta.get("namespace"), meta["name"])  # last finalizer gone
        return self._commit(res, self._admit(res, new))

    def _delete(self, request: kmock.Request, res: kmock.resource, current: Obj) -> Obj:
        options = request.data if isinstance(request.data, dict) else {}
        preconditions = options.get("preconditions") or {}
        for key in ("uid", "resourceVersion"):
            if preconditions.get(key) not in (None, current["metadata"].get(key)):
                raise conflict(res.group or "", str(res.plural), str(request.name))
        grace = request.params.get("gracePeriodSeconds", options.get("gracePeriodSeconds"))
        return self._terminate(res, current, None if grace is None else int(grace))

    def _terminate(self, res: kmock.resource, obj: Obj, grace: int | None) -> Obj:
        """Delete as the API server does: a running pod on a node terminates gracefully
        (deletionTimestamp set, the kubelet removes it: `remove()`); an object with finalizers
        waits for them; anything else is gone at once."""
        meta = obj["metadata"]
        phase = obj.get("status", {}).get("phase")
        if (res == PODS and obj.get("spec", {}).get("nodeName") and grace != 0
                and phase not in ("Succeeded", "Failed")):
            if meta.get("deletionTimestamp"):
                return obj
            seconds = obj["spec"].get("terminationGracePeriodSeconds", 30) if grace is None \
                else grace
            new = copy.deepcopy(obj)
            new["metadata"].update(deletionTimestamp=_now(seconds),
                                   deletionGracePeriodSeconds=seconds)
            return self._commit(res, new)
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp") and meta.get("deletionGracePeriodSeconds") == 0:
                return obj
            new = copy.deepcopy(obj)
            new["metadata"].update(deletionTimestamp=meta.get("deletionTimestamp") or _now(),
                                   deletionGracePeriodSeconds=0)
            return self._commit(res, new)
        return self._discard(res, meta.get("namespace"), meta["name"])

    def _evict(self, request: kmock.Request, pod: Obj) -> dict[str, Any]:
        """POST pods/NAME/eviction: delete the pod unless a disruption budget forbids it."""
        body = request.data if isinstance(request.data, dict) else {}
        if body.get("metadata", {}).get("name") not in (None, request.name):
            raise bad_request("name in URL does not match name in Eviction object")
        namespace = pod["metadata"]["namespace"]
        budgets = [b for b in self._live(PDBS) if b["metadata"]["namespace"] == namespace]
        pods = [p for p in self._live(PODS) if p["metadata"]["namespace"] == namespace]
        check_eviction(pod, budgets, pods)
        grace = (body.get("deleteOptions") or {}).get("gracePeriodSeconds")
        self._terminate(PODS, pod, grace)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "code": 201}

    # -- discovery --------------------------------------------------------------------------

    def _group_versions(self) -> dict[str, list[str]]:
        """Each served group's versions, the preferred one first."""
        groups: dict[str, set[str]] = {}
        for res in self.resources:
            if res.group is not None and res.version is not None and res.plural is not None:
                groups.setdefault(res.group, set()).add(res.version)
        return {group: sorted(versions, key=_version_priority, reverse=True)
                for group, versions in sorted(groups.items())}

    @staticmethod
    def _group(name: str, versions: list[str]) -> dict[str, Any]:
        entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        return {"name": name, "versions": entries, "preferredVersion": entries[0]}

    async def _serve_api(self, request: kmock.Request) -> Response:
        return _reply({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": request.url.raw_authority}]})

    async def _serve_apis(self, request: kmock.Request) -> Response:
        return _reply({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            self._group(name, versions)
            for name, versions in self._group_versions().items() if name]})

    async def _serve_group(self, request: kmock.Request) -> Response:
        group = parse_route(request.url.path).group or ""
        versions = self._group_versions().get(group)
        if not versions:
            return _reply(not_served().status(), 404)
        return _reply({"kind": "APIGroup", "apiVersion": "v1", **self._group(group, versions)})

    async def _serve_version(self, request: kmock.Request) -> Response:
        route = parse_route(request.url.path)
        served = [(res, self.resources[res]) for res in self.resources
                  if (res.group, res.version) == (route.group, route.version)
                  and res.plural is not None]
        if not served:
            return _reply(not_served().status(), 404)
        group_version = f"{route.group}/{route.version}" if route.group else str(route.version)
        return _reply({
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
            "resources": [entry for res, info in sorted(served, key=lambda s: str(s[0].plural))
                          for entry in self._discovery(res, info)]})

    @staticmethod
    def _discovery(res: kmock.resource, info: kmock.ResourceInfo) -> list[dict[str, Any]]:
        kind = info.kind or str(res.plural).capitalize()
        main: dict[str, Any] = {"name": res.plural, "singularName": info.singular or "",
                                "namespaced": bool(info.namespaced), "kind": kind,
                                "verbs": sorted(info.verbs)}
        if info.shortnames:
            main["shortNames"] = sorted(info.shortnames)
        if info.categories:
            main["categories"] = sorted(info.categories)
        entries = [main]
        for sub in sorted(info.subresources & SUBRESOURCE_VERBS.keys()):
            entry = {"name": f"{res.plural}/{sub}", "singularName": "",
                     "namespaced": bool(info.namespaced), "kind": kind,
                     "verbs": SUBRESOURCE_VERBS[sub]}
            if sub == "eviction":
                entry.update(group="policy", version="v1", kind="Eviction")
            entries.append(entry)
        return entries


@contextlib.asynccontextmanager
async def running_emulator(crd_dir: Path = CRD_DIR) -> AsyncIterator[ClusterEmulator]:
    """A ClusterEmulator served on a free localhost port for the duration of the block.

    It is strict: a request the emulator failed to serve (a bug here, not an API error)
    fails the block on exit.
    """
    emulator = ClusterEmulator(crd_dir=crd_dir, strict=True)
    async with emulator, kmock.Server(emulator):
        try:
            yield emulator
        finally:
            emulator.close_watches()  # or the server waits for them when it stops
