"""The tests' hands on the real API server: what they do as its admin, and as the kubelet
and controllers that do not run here; who oomguard's components are; which calls they made.

One control plane serves the whole pytest session (support.controlplane). The chart is
installed into it once (`helm install oomguard charts/oomguard -n oomguard-system`), so
that the operator and the agents under test authenticate with tokens of the chart's own
ServiceAccounts and are authorised by its ClusterRoles, nothing else. Each test gets a
`Kube`: unique names for the namespaces and cluster-scoped objects it creates (so tests
never see each other's objects), removal of its cluster-scoped objects at the end, and the
audit log of its calls. docs/testing.md says what this proves.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import urllib3
import yaml
from kubernetes import client

from .controlplane import ControlPlane, kubeconfig
from .helm import CHART, NAMESPACE, RELEASE, helm

T = TypeVar("T")
Obj = dict[str, Any]
OPERATOR_ACCOUNT = f"{RELEASE}-operator"
AGENT_ACCOUNT = f"{RELEASE}-agent"
CLUSTER_SCOPED = frozenset({"nodes", "namespaces", "nodememoryreports", "oomdecisions",
                            "oompolicies", "clusterkopfpeerings", "customresourcedefinitions",
                            "validatingadmissionpolicies",
                            "validatingadmissionpolicybindings"})
PROBE = "oomguard-test-probe"
"""User-Agent of a test's own requests with a component's token, made to see what the
server refuses: the check that components make only listed calls leaves them out."""
OURS = ("nodememoryreports", "oomdecisions", "oompolicies")
"""Cluster-scoped kinds that oomguard's components create too: a test's are removed at its
end whoever created them (decisions and reports are named after the test's nodes)."""


class ApiError(Exception):
    """The API server refused a request of the test's own: status code and message."""

    def __init__(self, status: int, body: Obj) -> None:
        self.status, self.body = status, body
        super().__init__(f"{status} {body.get('reason', '')}: {body.get('message', body)}")


@dataclass(frozen=True)
class Identity:
    """Who a client is. `token` is None for the admin (client certificate). Tokens of one
    ServiceAccount share its username; `credential` (the token's JWT ID, as the audit log
    records it) tells them apart."""

    name: str
    username: str
    token: str | None = None
    credential: str | None = None


class ApiCall(NamedTuple):
    """One resource request from the audit log, in RBAC terms, with who made it and how it
    was answered; `body` is the request's object where the audit policy records it."""

    verb: str
    group: str
    resource: str
    subresource: str
    namespace: str | None
    name: str | None
    username: str
    credential: str | None
    user_agent: str
    code: int
    body: Obj | None
    received: float
    """When the API server received the request (seconds since the epoch)."""
    completed: float
    """When it completed its answer (ResponseComplete): the write is in etcd by then."""

    @property
    def rbac(self) -> tuple[str, str, str, str]:
        return self.verb, self.group, self.resource, self.subresource


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _jwt_id(token: str) -> str:
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"JTI={claims['jti']}"


def _path(resource: str, namespace: str | None, name: str | None = None,
          subresource: str | None = None) -> str:
    """The URL path of "v1/pods" or "oomguard.io/v1alpha1/oomdecisions" style names."""
    *group_version, plural = resource.split("/")
    prefix = "/api/" if len(group_version) == 1 else "/apis/"
    path = prefix + "/".join(group_version)
    if namespace is not None and plural not in CLUSTER_SCOPED:
        path += f"/namespaces/{namespace}"
    path += f"/{plural}"
    if name is not None:
        path += f"/{name}"
    if subresource is not None:
        path += f"/{subresource}"
    return path


class Rest:
    """JSON over HTTPS to the API server, as the admin: the tests' side door."""

    def __init__(self, plane: ControlPlane) -> None:
        self.server = plane.server
        self.pool = urllib3.PoolManager(
            ca_certs=str(plane.pki.ca), cert_file=str(plane.pki.path("admin.crt")),
            key_file=str(plane.pki.path("admin.key")), maxsize=4,
            timeout=urllib3.Timeout(connect=5, read=30), retries=False)

    def call(self, method: str, path: str, body: Obj | None = None, *,
             content_type: str = "application/json", query: Obj | None = None) -> Obj:
        """One request; a 429 (a starting server's storage, or flow control) is retried
        after its Retry-After, as client-go does."""
        url = f"{self.server}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        for _ in range(20):
            response = self.pool.request(
                method, url, body=None if body is None else json.dumps(body).encode(),
                headers={"Content-Type": content_type, "Accept": "application/json"})
            if response.status != 429:
                break
            time.sleep(min(float(response.headers.get("Retry-After") or 1), 1.0))
        answer = json.loads(response.data) if response.data else {}
        if response.status >= 400:
            raise ApiError(response.status, answer)
        return dict(answer)

    def get(self, path: str, **query: Any) -> Obj | None:
        try:
            return self.call("GET", path, query=query or None)
        except ApiError as error:
            if error.status == 404:
                return None
            raise


class AuditLog:
    """The API server's audit log (JSON lines), read from an offset on."""

    def __init__(self, path: Path, rest: Rest) -> None:
        self.path, self.rest = path, rest

    def end(self) -> int:
        """The offset after the last complete line: the API server may be halfway through
        writing one (a line can take several writes)."""
        if not self.path.exists():
            return 0
        with open(self.path, "rb") as log:
            end = log.seek(0, 2)
            while end > 0:
                start = max(0, end - 65536)
                log.seek(start)
                last = log.read(end - start).rfind(b"\n")
                if last >= 0:
                    return start + last + 1
                end = start
        return 0

    def calls(self, since: int) -> list[ApiCall]:
        """The resource requests logged after offset `since`, complete up to now: a marker
        request is made and awaited in the log (each request is logged as it completes)."""
        marker = uuid.uuid4().hex
        self.rest.get("/version", marker=marker)
        deadline = time.monotonic() + 10
        while True:
            with open(self.path, "rb") as log:
                log.seek(since)
                data = log.read()
            lines = data[:data.rfind(b"\n") + 1].splitlines()  # complete lines only
            if any(marker.encode() in line for line in lines[-200:]):
                break
            if time.monotonic() > deadline:
                raise TimeoutError("the audit log did not catch up within 10s")
            time.sleep(0.01)  # the API server writes the line as the request completes
        calls = []
        for line in lines:
            event = json.loads(line)
            ref = event.get("objectRef")
            if ref is None or not ref.get("resource"):
                continue
            user = event.get("user") or {}
            credential = (user.get("extra") or {}).get(
                "authentication.kubernetes.io/credential-id", [None])[0]
            calls.append(ApiCall(
                event["verb"], ref.get("apiGroup", ""), ref["resource"],
                ref.get("subresource", ""), ref.get("namespace"), ref.get("name"),
                user.get("username", ""), credential, event.get("userAgent", ""),
                (event.get("responseStatus") or {}).get("code", 0), event.get("requestObject"),
                _epoch(event["requestReceivedTimestamp"]), _epoch(event["stageTimestamp"])))
        return calls


@dataclass
class ClusterSession:
    """The session's control plane with the chart installed, and the identities of the
    chart's ServiceAccounts."""

    plane: ControlPlane
    rest: Rest = field(init=False)
    audit: AuditLog = field(init=False)
    operator: Identity = field(init=False)
    agent: Identity = field(init=False)
    _tests: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.rest = Rest(self.plane)
        self.audit = AuditLog(self.plane.audit_log, self.rest)

    @property
    def server(self) -> str:
        return self.plane.server

    @property
    def ca(self) -> Path:
        return self.plane.pki.ca

    def install_chart(self) -> None:
        """The chart as an admin installs it, into the session's cluster."""
        helm("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--create-namespace",
             kubeconfig=self.plane.admin_kubeconfig)
        for crd in ("nodememoryreports", "oomdecisions", "oompolicies", "oompriorities"):
            self.wait_established(f"{crd}.oomguard.io")
        self.operator = self.identity(OPERATOR_ACCOUNT)
        self.agent = self.identity(AGENT_ACCOUNT)

    def wait_established(self, crd: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            found = self.rest.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}")
            conditions = {c["type"]: c["status"]
                          for c in ((found or {}).get("status") or {}).get("conditions") or []}
            if conditions.get("Established") == "True":
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {crd} not Established within {timeout}s")
            time.sleep(0.05)  # the apiextensions controller establishes it

    def identity(self, account: str, namespace: str = NAMESPACE, *,
                 name: str | None = None, pod: Obj | None = None) -> Identity:
        """A new token of a ServiceAccount (TokenRequest, as the kubelet asks for a pod's
        projected token); bound to `pod` if given, as the kubelet binds it: the API server
        then names the pod's node in the token's user extra."""
        spec: Obj = {"expirationSeconds": 3600}
        if pod is not None:
            spec["boundObjectRef"] = {"apiVersion": "v1", "kind": "Pod",
                                      "name": pod["metadata"]["name"],
                                      "uid": pod["metadata"]["uid"]}
        answer = self.rest.call("POST", _path("v1/serviceaccounts", namespace, account, "token"),
                                {"apiVersion": "authentication.k8s.io/v1",
                                 "kind": "TokenRequest", "spec": spec})
        token = answer["status"]["token"]
        return Identity(name or account, f"system:serviceaccount:{namespace}:{account}",
                        token, _jwt_id(token))

    def next_test(self) -> int:
        return next(self._tests)


@contextlib.contextmanager
def cluster_with_chart(state: Path) -> Iterator[ClusterSession]:
    """A control plane (state in `state`) with the chart installed, until the block ends:
    the pytest session's, the arena's, the operator benchmark's."""
    plane = ControlPlane(state)
    plane.start()
    try:
        session = ClusterSession(plane)
        session.install_chart()
        yield session
    finally:
        plane.stop()


class Kube:
    """One test's view of the session cluster. Names: `name("batch")` is this test's
    "batch" (namespaces, nodes, policies). Writes: `store` creates or replaces an object,
    and its status through the status subresource, as a kubelet or controller would."""

    def __init__(self, session: ClusterSession) -> None:
        self.session = session
        self.rest = session.rest
        self.suffix = f"t{session.next_test()}"
        self.audit_from = session.audit.end()
        self.created: list[tuple[str, str | None, str]] = []
        self._agents: dict[str, Identity] = {}

    # --- names and identities ---

    def name(self, base: str) -> str:
        return f"{base}-{self.suffix}"

    @property
    def server_url(self) -> str:
        return self.session.server

    @property
    def ca(self) -> Path:
        return self.session.ca

    @property
    def operator(self) -> Identity:
        return self.session.operator

    @property
    def agent(self) -> Identity:
        """A token of the agent's ServiceAccount bound to no pod: the chart's admission
        policy lets it write nothing (agent_for(node) is what a node's agent has)."""
        return self.session.agent

    def agent_for(self, node: str, replica: int = 1) -> Identity:
        """The token of `node`'s agent: the chart's agent ServiceAccount, bound to an agent
        pod on that node as the DaemonSet's pod would be (one per node, replica and test;
        another replica is the agent's pod after a restart)."""
        key = f"{node}-{replica}"
        if key not in self._agents:
            pod = self.create("v1/pods", {
                "metadata": {"name": f"oomguard-agent-{key}", "namespace": NAMESPACE},
                "spec": {"nodeName": node, "serviceAccountName": AGENT_ACCOUNT,
                         "containers": [{"name": "agent",
                                         "image": "registry.invalid/oomguard-test"}]}})
            self._agents[key] = self.session.identity(AGENT_ACCOUNT, pod=pod,
                                                      name=f"agent {replica} of {node}")
        return self._agents[key]

    def identity(self, account: str, **kwargs: Any) -> Identity:
        return self.session.identity(account, **kwargs)

    def api_client(self, who: Identity | None = None, *, user_agent: str | None = None,
                   server: str | None = None, retries: int | None = None) -> client.ApiClient:
        """A `kubernetes` client for the API server (or `server`, a proxy in front of it)
        as `who` (default: the admin)."""
        configuration = client.Configuration(host=server or self.server_url)
        if retries is not None:
            configuration.retries = retries
        configuration.ssl_ca_cert = str(self.ca)
        if who is None or who.token is None:
            pki = self.session.plane.pki
            configuration.cert_file = str(pki.path("admin.crt"))
            configuration.key_file = str(pki.path("admin.key"))
        else:
            configuration.api_key = {"BearerToken": who.token}
            configuration.api_key_prefix = {"BearerToken": "Bearer"}
        api = client.ApiClient(configuration)
        if user_agent:
            api.user_agent = user_agent
        return api

    def kubeconfig(self, path: Path, who: Identity | None = None) -> Path:
        """A kubeconfig file for `who` (default: the admin's, as `make cluster` writes)."""
        pki = self.session.plane.pki
        if who is None or who.token is None:
            body = kubeconfig(self.server_url, pki.ca, cert=pki.path("admin.crt"),
                              key=pki.path("admin.key"))
        else:
            body = kubeconfig(self.server_url, pki.ca, token=who.token, user=who.name)
        path.write_text(yaml.safe_dump(body))
        return path

    # --- the server itself ---

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver: every client sees connections refused."""
        self.session.plane.stop_apiserver()
        self.rest.pool.clear()

    def start_apiserver(self) -> None:
        """Start it again, on the same port, and wait until it is ready."""
        self.session.plane.start_apiserver()
        self.rest.pool.clear()

    # --- objects ---

    def create(self, resource: str, body: Obj) -> Obj:
        """POST the object (its status, if any, written after); 409 if it exists. Unknown
        fields are refused, as kubectl has the server do (fieldValidation=Strict)."""
        body = json.loads(json.dumps(body))
        status = body.pop("status", None)
        meta = body.setdefault("metadata", {})
        namespace = meta.get("namespace")
        created = self.rest.call("POST", _path(resource, namespace), body,
                                 query={"fieldValidation": "Strict"})
        self.created.append((resource, namespace, created["metadata"]["name"]))
        if status:
            created = self.patch_status(resource, namespace, created["metadata"]["name"],
                                        status)
        return created

    def store(self, resource: str, body: Obj) -> Obj:
        """Create the object, or replace it (and its status) where it exists."""
        try:
            return self.create(resource, body)
        except ApiError as error:
            if error.status != 409:
                raise
        body = json.loads(json.dumps(body))
        status = body.pop("status", None)
        meta = body["metadata"]
        current = self.read(resource, meta.get("namespace"), meta["name"])
        assert current is not None
        meta["resourceVersion"] = current["metadata"]["resourceVersion"]
        stored = self.rest.call("PUT", _path(resource, meta.get("namespace"), meta["name"]),
                                body)
        if status:
            stored = self.patch_status(resource, meta.get("namespace"), meta["name"], status)
        return stored

    def patch_status(self, resource: str, namespace: str | None, name: str,
                     status: Obj) -> Obj:
        return self.rest.call("PATCH", _path(resource, namespace, name, "status"),
                              {"status": status},
                              content_type="application/merge-patch+json")

    def patch(self, resource: str, namespace: str | None, name: str, patch: Obj) -> Obj:
        return self.rest.call("PATCH", _path(resource, namespace, name), patch,
                              content_type="application/merge-patch+json")

    def read(self, resource: str, namespace: str | None, name: str) -> Obj | None:
        return self.rest.get(_path(resource, namespace, name))

    def read_all(self, resource: str, namespace: str | None = None, **query: str) -> list[Obj]:
        listed = self.rest.get(_path(resource, namespace), **query) or {}
        return list(listed.get("items") or [])

    def delete(self, resource: str, namespace: str | None, name: str, *,
               grace_seconds: int | None = None) -> None:
        options = {} if grace_seconds is None else {"gracePeriodSeconds": grace_seconds}
        with contextlib.suppress(ApiError):
            self.rest.call("DELETE", _path(resource, namespace, name), options or None)

    def remove(self, resource: str, namespace: str | None, name: str) -> None:
        """Gone at once, as when a kubelet confirms a pod's end: finalizers dropped,
        deleted with no grace period."""
        with contextlib.suppress(ApiError):
            self.patch(resource, namespace, name, {"metadata": {"finalizers": None}})
        self.delete(resource, namespace, name, grace_seconds=0)

    async def wait_for(self, condition: Callable[[], T | None], timeout: float = 10.0,
                       interval: float = 0.02) -> T:
        """Re-check `condition` (which reads the API server) until it returns something
        truthy, and return that; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            result = condition()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            await asyncio.sleep(interval)

    # --- namespaces, nodes and pods as a cluster holds them ---

    def namespace(self, base: str, labels: dict[str, str] | None = None) -> str:
        """This test's namespace `base`, with its default ServiceAccount (the pods'
        admission needs it; the controller manager creates it a moment later)."""
        name = self.name(base)
        self.create("v1/namespaces", {"metadata": {"name": name, "labels": labels or {}}})
        self.wait_for_service_account(name)
        return name

    def wait_for_service_account(self, namespace: str) -> None:
        deadline = time.monotonic() + 10
        while self.read("v1/serviceaccounts", namespace, "default") is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no default ServiceAccount in {namespace} within 10s")
            time.sleep(0.02)  # the service account controller creates it

    def node(self, base: str, labels: dict[str, str] | None = None) -> str:
        """This test's Node `base`, Ready as a kubelet reports it."""
        name = self.name(base)
        self.create("v1/nodes", {
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                  **(labels or {})}},
            "status": {"conditions": [{"type": "Ready", "status": "True",
                                       "reason": "KubeletReady", "message": "test node"}]}})
        return name

    def job(self, namespace: str, name: str) -> Obj:
        """A Job, and the controller ownerReference its pods carry (the garbage collector
        deletes pods whose owner does not exist). The test control plane runs no Job
        controller (support.controlplane): the test writes the Job's pods itself."""
        template = {"metadata": {"labels": {"job": name}}, "spec": {
            "containers": [{"name": "main", "image": "registry.invalid/oomguard-test"}],
            "restartPolicy": "Never"}}
        created = self.create("batch/v1/jobs", {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"template": template}})
        return {"apiVersion": "batch/v1", "kind": "Job", "name": name,
                "uid": created["metadata"]["uid"], "controller": True}

    def pod(self, name: str, namespace: str, node: str | None, *,
            labels: dict[str, str] | None = None, owner: Obj | None = None,
            requests: str | None = "100Mi", limits: str | None = None,
            priority_class: str | None = None, phase: str = "Running",
            containers: tuple[str, ...] = ("main",), **meta: Any) -> Obj:
        """A Pod bound to `node` and, for phase Running, Running and Ready as its kubelet
        reports it."""
        resources: Obj = {}
        if requests:
            resources["requests"] = {"memory": requests}
        if limits:
            resources["limits"] = {"memory": limits}
        spec: Obj = {"containers": [{"name": c, "image": "registry.invalid/oomguard-test",
                                     "resources": resources} for c in containers],
                     "automountServiceAccountToken": False}
        if node is not None:
            spec["nodeName"] = node
        if priority_class:
            spec["priorityClassName"] = priority_class
        metadata: Obj = {"name": name, "namespace": namespace, "labels": labels or {}, **meta}
        if owner is not None:
            metadata["ownerReferences"] = [owner]
        body: Obj = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
        if phase != "Pending":
            body["status"] = kubelet_status(phase, containers)
        return self.create("v1/pods", body)

    # --- what happened ---

    def calls(self, who: Identity | None = None) -> list[ApiCall]:
        """This test's resource requests, all of them or those of one identity (one token
        when it has one, else every token of its username)."""
        calls = self.session.audit.calls(self.audit_from)
        if who is None:
            return calls
        if who.credential is not None:
            return [c for c in calls if c.credential == who.credential]
        return [c for c in calls if c.username == who.username]

    def used_permissions(self, who: Identity) -> set[tuple[str, str, str, str]]:
        return {c.rbac for c in self.calls(who)}

    def cleanup(self) -> None:
        """Remove the test's cluster-scoped objects (its namespaces go with their contents,
        in the background): the next test starts from a cluster without them."""
        for plural in OURS:
            for obj in self.read_all(f"oomguard.io/v1alpha1/{plural}"):
                name = obj["metadata"]["name"]
                if name.endswith(self.suffix) or any(
                        v.endswith(self.suffix) for v in (obj["metadata"].get("labels") or {}
                                                          ).values()) or (
                        (obj.get("spec") or {}).get("nodeName", "").endswith(self.suffix)):
                    self.remove(f"oomguard.io/v1alpha1/{plural}", None, name)
        for resource, namespace, name in reversed(self.created):
            plural = resource.rsplit("/", 1)[-1]
            if plural == "pods":
                self.remove(resource, namespace, name)  # no kubelet to finish them
            elif plural in CLUSTER_SCOPED:
                self.remove(resource, None, name)


def kubelet_status(phase: str, containers: tuple[str, ...] = ("main",)) -> Obj:
    """A pod status as a kubelet writes it: Running pods are Ready."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    running = phase == "Running"
    conditions = [{"type": t, "status": "True" if running else "False",
                   "lastTransitionTime": now}
                  for t in ("PodReadyToStartContainers", "Initialized", "ContainersReady",
                            "Ready", "PodScheduled")]
    return {"phase": phase, "conditions": conditions, "startTime": now,
            "containerStatuses": [{
                "name": c, "image": "registry.invalid/oomguard-test", "imageID": "",
                "ready": running, "restartCount": 0, "started": running,
                "containerID": f"containerd://{uuid.uuid4().hex}{uuid.uuid4().hex}",
                "state": {"running": {"startedAt": now}} if running else {
                    "terminated": {"exitCode": 0, "reason": "Completed"}}}
                for c in containers]}
