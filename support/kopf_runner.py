"""Run a real kopf operator against the test cluster, inside the test process.

kopf runs in a thread with an event loop of its own: `kopf.operator()` treats every task
created on its loop after it started as its own (on exit it waits up to 5 s for them and
cancels them), so it must not share the test's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

import kopf

from .cluster import Identity, Kube


@contextlib.asynccontextmanager
async def running_operator(kube: Kube, registry: kopf.OperatorRegistry, *,
                           who: Identity | None = None, server: str | None = None,
                           settings: kopf.OperatorSettings | None = None,
                           peering: str | None = None,
                           timeout: float = 30.0) -> AsyncIterator[None]:
    """Run the handlers of `registry` cluster-wide against the test cluster (or `server`,
    a proxy in front of it) until the block ends; the block starts once kopf is ready.
    Adds a login handler to `registry` (so use a registry per test) with the token of
    `who` (default: the chart's operator ServiceAccount). With `peering`, it takes part in
    kopf peering under that name, as replicas do."""
    who = who or kube.operator

    @kopf.on.login(registry=registry, id="test-cluster")
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=server or kube.server_url, ca_path=str(kube.ca),
                                   scheme="Bearer", token=who.token)

    stop, ready = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(kopf.operator(registry=registry, settings=settings, clusterwide=True,
                                      standalone=peering is None, peering_name=peering,
                                      stop_flag=stop, ready_flag=ready))
        except BaseException as e:  # handed to the test below
            failures.append(e)
        finally:
            ready.set()  # never leave the test waiting for an operator that died

    thread = threading.Thread(target=run, name="kopf-operator", daemon=True)
    thread.start()
    try:
        if not await asyncio.to_thread(ready.wait, timeout):
            raise TimeoutError(f"kopf was not ready within {timeout}s")
        if failures:
            raise failures[0]
        yield
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, timeout)
    if thread.is_alive():
        raise TimeoutError(f"kopf did not stop within {timeout}s")
    if failures:
        raise failures[0]
