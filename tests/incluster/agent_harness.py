"""Running the in-cluster agent against the API emulator, on a real cgroup sandbox node.

The agent runs in a thread (its loop and client block); the emulator serves on the test's
event loop. Each client has its own bearer token, so that `emulator.calls` and the request
log tell the agent's requests from the test's (which plays the operator and the kubelet).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import Any

import kmock
from kubernetes import client
from yarl import URL

from oomguard.agent.cluster import AgentConfig, ClusterAgent
from oomguard.agent.kube import Api, api_client
from oomguard.agent.publish import PublishPolicy
from oomguard.api import (
    OOMDecision,
    OOMDecisionSpec,
    OOMDecisionStatus,
    PodRef,
    Trigger,
    VictimGroup,
    VictimStatus,
)
from oomguard.api.meta import ObjectMeta
from oomguard.decisions import NODE_LABEL
from oomguard.sandbox import Mi, SandboxNode, SandboxPod

from support import AGENT_TOKEN, ClusterEmulator

NODE = "node-a"
GROUP, VERSION = "oomguard.io", "v1alpha1"
REPORTS = f"{GROUP}/{VERSION}/nodememoryreports"
DECISIONS = f"{GROUP}/{VERSION}/oomdecisions"
POLICIES = f"{GROUP}/{VERSION}/oompolicies"
LIMIT = 256 * Mi
POLICY = {
    "apiVersion": f"{GROUP}/{VERSION}", "kind": "OOMPolicy", "metadata": {"name": "test"},
    "spec": {"thresholds": {"memoryAvailable": {"soft": "60%", "hard": "50%"}},
             "reclaimTo": "65%", "actions": {"hard": "KillAndEvict"}},
}
"""Hard below 128 MiB available of 256 MiB: reached by holding memory, far from the limit
(and the kernel OOM killer), so that tests do not race the kernel."""




def agent_api(url: str, token: str = AGENT_TOKEN) -> Api:
    """The agent's client, as the CLI builds it, with a token naming its calls."""
    api = api_client(server=url)
    api.configuration.api_key = {"BearerToken": token}
    api.configuration.api_key_prefix = {"BearerToken": "Bearer"}
    return Api(api)


def seed_node(emulator: ClusterEmulator, pods: list[SandboxPod], *,
              policy: dict[str, Any] | None = POLICY) -> None:
    """The Node, the pods' namespaces and pods (running on NODE), and the policy: what a
    cluster holds before the agent starts."""
    emulator.store("v1/nodes", {"metadata": {"name": NODE, "labels": {"zone": "a"}},
                                "spec": {}, "status": {}})
    for namespace in {p.namespace for p in pods}:
        emulator.store("v1/namespaces", {"metadata": {"name": namespace},
                                         "status": {"phase": "Active"}})
    for pod in pods:
        add_pod(emulator, pod)
    if policy is not None:
        emulator.store(POLICIES, policy)


def add_pod(emulator: ClusterEmulator, pod: SandboxPod, **meta: Any) -> dict[str, Any]:
    manifest = pod.manifest()
    manifest["metadata"].update(meta)
    manifest["spec"]["nodeName"] = NODE
    return emulator.store("v1/pods", manifest)


def config(node: SandboxNode, **overrides: Any) -> AgentConfig:
    fields: dict[str, Any] = {"node": NODE, "cgroup_root": node.root, "metrics_port": 0,
                              "act_alone_after": 1.0, **overrides}
    return AgentConfig(**fields)


@contextlib.asynccontextmanager
async def running_agent(cfg: AgentConfig, url: str,
                        token: str = AGENT_TOKEN) -> AsyncIterator[ClusterAgent]:
    """The agent, running in a thread until the block ends."""
    agent = ClusterAgent(cfg, agent_api(url, token))
    failures: list[BaseException] = []

    def run() -> None:
        try:
            agent.run()
        except BaseException as error:  # handed to the test below
            failures.append(error)

    thread = threading.Thread(target=run, name="cluster-agent", daemon=True)
    thread.start()
    try:
        yield agent
    finally:
        agent.stop()
        await asyncio.to_thread(thread.join, 15)
    assert not thread.is_alive(), "the agent did not stop"
    if failures:
        raise failures[0]


async def until(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll a condition on something other than the emulator (a process, the agent's
    counters) until it holds; TimeoutError after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not (result := condition()):
            await asyncio.sleep(0.01)
        return result


def quiet_publishing(**overrides: Any) -> PublishPolicy:
    """Heartbeats too rare to matter within a test, unless overridden."""
    return PublishPolicy(**{"heartbeat_seconds": 300.0, **overrides})


def operator_decision(name: str, victims: list[SandboxPod], *, node: str = NODE,
                      label: str | None = None, action: str = "Kill") -> OOMDecision:
    """A Pending decision as the operator writes it."""
    refs = [PodRef(namespace=p.namespace, name=p.name, uid=p.uid, node_name=node)
            for p in victims]
    return OOMDecision(
        metadata=ObjectMeta(name=name, labels={NODE_LABEL: label or node}),
        spec=OOMDecisionSpec.model_validate({
            "nodeName": node, "policy": "test", "decidedBy": "operator", "action": action,
            "trigger": Trigger(pressure="Hard", available_bytes=10 * Mi, need_bytes=Mi),
            "victims": [VictimGroup(name=f"{p.namespace}/{p.name}", namespace=p.namespace,
                                    expected_reclaim_bytes=Mi, pods=[r])
                        for p, r in zip(victims, refs, strict=True)]}),
        status=OOMDecisionStatus(phase="Pending", victims=[
            VictimStatus(namespace=r.namespace, name=r.name, uid=r.uid) for r in refs]),
    )


async def create_decision(emulator: ClusterEmulator, decision: OOMDecision) -> None:
    """Create, then write the Pending status, as the operator does (a create drops it)."""
    custom = client.CustomObjectsApi(emulator.api_client(token="operator"))
    body = decision.wire()
    status = body.pop("status")
    await asyncio.to_thread(custom.create_cluster_custom_object, GROUP, VERSION,
                            "oomdecisions", body)
    await asyncio.to_thread(custom.patch_cluster_custom_object_status, GROUP, VERSION,
                            "oomdecisions", decision.metadata.name, {"status": status},
                            _content_type="application/merge-patch+json")


def when(text: str) -> datetime:
    """An API timestamp, to compare (fractions of a second are left out when zero)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def status_of(emulator: ClusterEmulator, resource: str, name: str) -> dict[str, Any]:
    obj = emulator.read(resource, None, name)
    return (obj or {}).get("status") or {}


def phases(emulator: ClusterEmulator, name: str) -> list[str]:
    """Every phase a decision went through, in order, from the emulator's history."""
    key = (kmock.resource(DECISIONS), None, name)
    seen = [(version.get("status") or {}).get("phase") for version in
            emulator.objects[key].history]
    return [p for i, p in enumerate(seen) if p and (i == 0 or p != seen[i - 1])]


def requests(emulator: ClusterEmulator, token: str, method: str,
             path_part: str) -> Iterator[tuple[str, Any, int]]:
    """(path, parsed body, body bytes) of one client's requests of a method (any: "")."""
    for request in emulator:
        if (request.headers.get("Authorization") == f"Bearer {token}"
                and method in (request.method.value, "") and path_part in request.url.path):
            yield request.url.path, json.loads(request.body) if request.body else None, \
                len(request.body)


class Proxy:
    """A TCP proxy in front of the emulator, on the test's loop, that can take the API
    server away (refuse connections, cut open ones) and bring it back on the same port."""

    def __init__(self, upstream: str) -> None:
        url = URL(upstream)
        self.host, self.upstream_port = url.host or "127.0.0.1", url.port or 80
        self.port = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port,
                                                  reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.upstream_port)
        self._open.update((writer, up_writer))
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()
