"""The one Kubernetes edge: how oomguard connects (client), the operator's calls (cluster),
the agent's calls and caches (node, reflector), the live reading for `rank --node` (live),
and the list of every call made (permissions), which the chart's RBAC follows."""

from oomguard.kube.client import PAGE_SIZE, api_client, list_pages
from oomguard.kube.cluster import EVENT_SOURCE, Cluster, Eviction, EvictOutcome
from oomguard.kube.node import MERGE_PATCH, TIMEOUT, ApiHealth, NodeApi, Resource, UnreachableError
from oomguard.kube.reflector import Backoff, Reflector

__all__ = [
    "EVENT_SOURCE",
    "MERGE_PATCH",
    "PAGE_SIZE",
    "TIMEOUT",
    "ApiHealth",
    "Backoff",
    "Cluster",
    "EvictOutcome",
    "Eviction",
    "NodeApi",
    "Reflector",
    "Resource",
    "UnreachableError",
    "api_client",
    "list_pages",
]
