"""The operator: kopf handlers that decide for pressured nodes, record, evict and tell."""

from __future__ import annotations

import asyncio
import secrets
import threading
from pathlib import Path
from typing import Any

import kopf
import prometheus_client
from kubernetes import client

from oomguard.controller.deciding import Decider
from oomguard.controller.handlers import register
from oomguard.controller.housekeeping import Options
from oomguard.kube import Cluster, api_client

__all__ = ["Decider", "Options", "connection_info", "register", "run"]


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



def run(*, server: str | None = None, kubeconfig: Path | None = None,
        peering: str | None = None,
        liveness: str | None = None, metrics_port: int | None = None,
        priority: int | None = None, stop: threading.Event | None = None) -> None:
    """Run the operator until stopped. With `peering`, replicas elect one active peer
    (kopf peering): the one of highest `priority`, random by default, as kopf pauses every
    peer when two share the highest. Without, this process acts alone. `/metrics` on
    `metrics_port`."""
    registry = kopf.OperatorRegistry()
    settings = kopf.OperatorSettings()
    settings.peering.priority = priority if priority is not None else secrets.randbelow(2**31)
    api = api_client(server=server, kubeconfig=kubeconfig)
    decider = Decider(Cluster(api))
    register(registry, decider, freeze_caches=True)
    if metrics_port is not None:
        prometheus_client.start_http_server(metrics_port, registry=decider.metrics.registry)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        """kopf talks to the API server as the Decider's client does: one source of
        credentials (in a pod, its projected token, re-read as the kubelet rotates it)."""
        return connection_info(api.configuration)

    asyncio.run(kopf.operator(
        registry=registry, settings=settings, clusterwide=True, standalone=peering is None,
        peering_name=peering, liveness_endpoint=liveness, stop_flag=stop,
    ))
