"""The test API server itself: each capability the end-to-end tests rely on, checked through
real clients (the `kubernetes` client, kopf, kubectl) over HTTP.

The `kubernetes` client blocks, so every call goes through `asyncio.to_thread`: the emulator
serves on the test's event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import kmock
import kopf
import kubernetes
import pytest
import yaml
from kubernetes.client import ApiException, CoreV1Api, CustomObjectsApi

from support import ClusterEmulator, Kubectl, running_operator
from support.emulator import CRD_DIR
from support.tables import human_duration

T = TypeVar("T")
GROUP, VERSION = "oomguard.io", "v1alpha1"
POLICIES = f"{GROUP}/{VERSION}/oompolicies"
DECISIONS = f"{GROUP}/{VERSION}/oomdecisions"
REPORTS = f"{GROUP}/{VERSION}/nodememoryreports"
PDBS = "policy/v1/poddisruptionbudgets"
CRDS = [crd for path in sorted(CRD_DIR.glob("*.yaml"))
        if (crd := yaml.safe_load(path.read_text()))["spec"]["group"] == GROUP]
"""oomguard's own CRDs (crds/ also holds kopf's peering CRD)."""


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A blocking client call, off the loop that serves the emulator."""
    return await asyncio.to_thread(fn, *args, **kwargs)


async def call_json(fn: Callable[..., object], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """A CustomObjectsApi call, whose answers are plain JSON objects."""
    return cast(dict[str, Any], await call(fn, *args, **kwargs))


def pod(name: str, node: str | None = "node-a", phase: str = "Running",
        **labels: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": "busybox"}]}
    if node is not None:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "labels": labels}, "spec": spec,
            "status": {"phase": phase}}


def eviction(name: str) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": {"name": name, "namespace": "default"}}


def policy(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "OOMPolicy",
            "metadata": {"name": name}, "spec": spec}


def names(items: list[Any]) -> list[str]:
    return sorted(item.metadata.name for item in items)


async def get_json(emulator: ClusterEmulator, path: str) -> Any:
    async with emulator.get(path) as response:
        assert response.status == 200, await response.text()
        return await response.json()


@pytest.fixture
def core(emulator: ClusterEmulator) -> CoreV1Api:
    return CoreV1Api(emulator.api_client(token="tests"))


@pytest.fixture
def custom(emulator: ClusterEmulator) -> CustomObjectsApi:
    return CustomObjectsApi(emulator.api_client(token="tests"))


@pytest.fixture
def kubectl(emulator: ClusterEmulator, tmp_path: Path) -> Kubectl:
    return Kubectl(emulator.server_url, tmp_path)


# -- resources and discovery ----------------------------------------------------------------

async def test_discovery_serves_the_crds_as_generated(emulator: ClusterEmulator) -> None:
    served = await get_json(emulator, f"/apis/{GROUP}/{VERSION}")
    entries = {entry["name"]: entry for entry in served["resources"]}
    for crd in CRDS:
        crd_names = crd["spec"]["names"]
        entry = entries[crd_names["plural"]]
        assert entry["kind"] == crd_names["kind"]
        assert entry["namespaced"] == (crd["spec"]["scope"] == "Namespaced")
        assert entry["shortNames"] == sorted(crd_names["shortNames"])
        assert entry["categories"] == crd_names["categories"]
        assert {"get", "list", "watch", "create", "update", "patch", "delete"} <= {
            *entry["verbs"]}
        assert f"{crd_names['plural']}/status" in entries
        assert emulator.read("apiextensions.k8s.io/v1/customresourcedefinitions", None,
                             crd["metadata"]["name"]) is not None
    groups = {g["name"]: g for g in (await get_json(emulator, "/apis"))["groups"]}
    assert groups[GROUP]["preferredVersion"]["version"] == VERSION
    assert groups["autoscaling"]["preferredVersion"]["version"] == "v2"
    core = {entry["name"] for entry in (await get_json(emulator, "/api/v1"))["resources"]}
    assert {"pods", "pods/eviction", "pods/status", "events", "namespaces"} <= core
    for path, plural in [("/apis/policy/v1", "poddisruptionbudgets"),
                         ("/apis/events.k8s.io/v1", "events")]:
        assert plural in {entry["name"] for entry in (await get_json(emulator, path))["resources"]}


async def test_namespaces_exist_and_gate_creation(emulator: ClusterEmulator,
                                                  core: CoreV1Api) -> None:
    listed = await call(core.list_namespace)
    assert names(listed.items) == ["default", "kube-node-lease", "kube-public", "kube-system"]
    default = await call(core.read_namespace, "default")
    assert default.metadata and default.metadata.labels == {
        "kubernetes.io/metadata.name": "default"}
    with pytest.raises(ApiException) as missing:
        await call(core.create_namespaced_pod, "team-a", pod("p"))
    assert missing.value.status == 404
    await call(core.create_namespace, {"metadata": {"name": "team-a"}})
    created = await call(core.create_namespaced_pod, "team-a", pod("p"))
    assert created.status and created.status.phase == "Pending"  # reset by the API server
    with pytest.raises(ApiException) as duplicate:
        await call(core.create_namespaced_pod, "team-a", pod("p"))
    assert duplicate.value.status == 409
    generated = await call(core.create_namespaced_pod, "team-a",
                           {**pod("ignored"), "metadata": {"generateName": "worker-"}})
    assert generated.metadata and generated.metadata.name
    assert generated.metadata.name.startswith("worker-") and len(generated.metadata.name) == 12


# -- selectors --------------------------------------------------------------------------------

@pytest.mark.parametrize(("selector", "expected"), [
    ("", ["a", "b", "c", "d"]),
    ("app=web", ["a", "b"]),
    ("app==web", ["a", "b"]),
    ("app!=web", ["c", "d"]),
    ("app in (web,db)", ["a", "b", "c"]),
    ("app notin (web)", ["c", "d"]),
    ("tier", ["a", "b"]),
    ("!tier", ["c", "d"]),
    ("app=web,tier!=front", ["b"]),
])
async def test_label_selectors(emulator: ClusterEmulator, core: CoreV1Api, selector: str,
                               expected: list[str]) -> None:
    emulator.store("v1/pods", pod("a", app="web", tier="front"))
    emulator.store("v1/pods", pod("b", app="web", tier="back"))
    emulator.store("v1/pods", pod("c", app="db"))
    emulator.store("v1/pods", pod("d"))
    listed = await call(core.list_namespaced_pod, "default", label_selector=selector)
    assert names(listed.items) == expected


async def test_field_selectors(emulator: ClusterEmulator, core: CoreV1Api,
                               custom: CustomObjectsApi) -> None:
    emulator.store("v1/pods", pod("a", node="node-a"))
    emulator.store("v1/pods", pod("b", node="node-a"))
    emulator.store("v1/pods", {**pod("c", node="node-b"), "metadata": {"name": "c",
                                                                       "namespace": "kube-system"}})
    for selector, expected in [("spec.nodeName=node-a", ["a", "b"]),
                               ("spec.nodeName!=node-a", ["c"]),
                               ("metadata.name=c", ["c"]),
                               ("spec.nodeName=node-a,metadata.name!=a", ["b"])]:
        listed = await call(core.list_pod_for_all_namespaces, field_selector=selector)
        assert names(listed.items) == expected, selector
    bad: list[tuple[Callable[..., object], tuple[str, ...], dict[str, str]]] = [
        (core.list_namespaced_pod, ("default",), {"label_selector": "app in web"}),
           (core.list_namespaced_pod, ("default",), {"field_selector": "spec.foo=x"}),
           (custom.list_cluster_custom_object, (GROUP, VERSION, "oomdecisions"),
            {"field_selector": "spec.nodeName=node-a"})]  # CRDs select by metadata only
    for fn, args, kwargs in bad:
        with pytest.raises(ApiException) as rejected:
            await call(fn, *args, **kwargs)
        assert rejected.value.status == 400, kwargs


# -- resource versions and watches ------------------------------------------------------------

def watch_pods(core: CoreV1Api, count: int, **kwargs: Any) -> list[tuple[str, str]]:
    """The first `count` events of a pod watch, as (type, pod name)."""
    watch: Any = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
    events: list[tuple[str, str]] = []
    for event in watch.stream(core.list_namespaced_pod, "default", **kwargs):
        events.append((event["type"], event["raw_object"]["metadata"]["name"]))
        if len(events) == count:
            watch.stop()
    return events


async def test_watch_resumes_after_a_resource_version_through_a_selector(
        emulator: ClusterEmulator, core: CoreV1Api) -> None:
    emulator.store("v1/pods", pod("a", node=None, app="web"))
    listed = await call(core.list_namespaced_pod, "default")
    since = listed.metadata and listed.metadata.resource_version
    await call(core.create_namespaced_pod, "default", pod("b", node=None, app="web"))
    await call(core.create_namespaced_pod, "default", pod("c", node=None, app="db"))
    await call(core.patch_namespaced_pod, "a", "default", {"metadata": {"labels": {"app": "db"}}})
    await call(core.patch_namespaced_pod, "c", "default", {"metadata": {"labels": {"app": "web"}}})
    await call(core.delete_namespaced_pod, "b", "default")  # unscheduled: gone at once
    async with asyncio.timeout(10):
        events = await call(watch_pods, core, 4, resource_version=since, label_selector="app=web")
        fresh = await call(watch_pods, core, 1, label_selector="app=web")
    # An object leaving the selection is DELETED for the watch, one entering it ADDED.
    assert events == [("ADDED", "b"), ("DELETED", "a"), ("ADDED", "c"), ("DELETED", "b")]
    assert fresh == [("ADDED", "c")]  # no resourceVersion: the current state first


async def test_watch_follows_live_changes_and_marks_the_initial_events(
        emulator: ClusterEmulator) -> None:
    emulator.store("v1/pods", pod("a"))
    params = {"watch": "true", "sendInitialEvents": "true", "allowWatchBookmarks": "true",
              "resourceVersionMatch": "NotOlderThan", "fieldSelector": "spec.nodeName=node-a"}
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(10), emulator.get("/api/v1/namespaces/default/pods",
                                                 params=params) as response:
        async for line in response.content:
            seen.append(json.loads(line))
            if seen[-1]["type"] == "BOOKMARK":
                emulator.store("v1/pods", pod("b", node="node-b"))  # not selected
                emulator.store("v1/pods", pod("c", node="node-a"))
            if len(seen) == 3:
                break
    assert [event["type"] for event in seen] == ["ADDED", "BOOKMARK", "ADDED"]
    assert [seen[0]["object"]["metadata"]["name"], seen[2]["object"]["metadata"]["name"]] == [
        "a", "c"]
    assert seen[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    versions = [int(event["object"]["metadata"]["resourceVersion"]) for event in seen]
    assert versions == sorted(versions)


async def test_writes_version_objects_and_reject_stale_ones(emulator: ClusterEmulator,
                                                            custom: CustomObjectsApi) -> None:
    plural = (GROUP, VERSION, "oompolicies")
    created = await call_json(custom.create_cluster_custom_object, *plural,
                              policy("p", mode="DryRun"))
    patched = await call_json(custom.patch_cluster_custom_object, *plural, "p",
                              {"spec": {"mode": "Enforce"}})
    listed = await call_json(custom.list_cluster_custom_object, *plural)
    first, second = (int(o["metadata"]["resourceVersion"]) for o in (created, patched))
    assert first < second == int(listed["metadata"]["resourceVersion"])
    assert (listed["kind"], listed["apiVersion"]) == ("OOMPolicyList", f"{GROUP}/{VERSION}")
    assert patched["metadata"]["generation"] == 2
    with pytest.raises(ApiException) as stale:
        await call_json(custom.replace_cluster_custom_object, *plural, "p", created)
    assert stale.value.status == 409
    # kopf's JSON patches guard themselves with a `test` of the resourceVersion: 422 if stale.
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": str(first)},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x"]}]
    with pytest.raises(ApiException) as failed_test:
        await call_json(custom.patch_cluster_custom_object, *plural, "p", ops,
                        _content_type="application/json-patch+json")
    assert failed_test.value.status == 422
    ops[0]["value"] = str(second)
    finalized = await call_json(custom.patch_cluster_custom_object, *plural, "p", ops,
                                _content_type="application/json-patch+json")
    assert finalized["metadata"]["finalizers"] == ["x"]


async def test_status_is_a_subresource(emulator: ClusterEmulator,
                                       custom: CustomObjectsApi) -> None:
    plural = (GROUP, VERSION, "oompolicies")
    created = await call_json(custom.create_cluster_custom_object, *plural,
                              {**policy("p", mode="DryRun"), "status": {"lastDecision": "forged"}})
    assert "status" not in created
    # /status writes the status only, and leaves the generation alone ...
    updated = await call_json(custom.patch_cluster_custom_object_status, *plural, "p",
                              {"spec": {"mode": "Enforce"}, "status": {"lastDecision": "d1"}})
    assert updated["spec"] == {"mode": "DryRun"}
    assert updated["status"] == {"lastDecision": "d1"}
    assert updated["metadata"]["generation"] == 1
    # ... and the resource itself writes all but the status.
    updated = await call_json(custom.patch_cluster_custom_object, *plural, "p",
                              {"spec": {"mode": "Enforce"}, "status": {"lastDecision": "forged"}})
    assert (updated["spec"], updated["status"]) == ({"mode": "Enforce"}, {"lastDecision": "d1"})
    assert updated["metadata"]["generation"] == 2
    replaced = await call_json(custom.replace_cluster_custom_object_status, *plural, "p",
                               {**updated, "status": {"lastDecision": "d2"}})
    fetched = await call_json(custom.get_cluster_custom_object_status, *plural, "p")
    assert replaced["status"] == fetched["status"] == {"lastDecision": "d2"}


# -- eviction ---------------------------------------------------------------------------------

async def test_eviction_terminates_a_running_pod_gracefully(emulator: ClusterEmulator,
                                                            core: CoreV1Api) -> None:
    emulator.store("v1/pods", pod("running"))
    emulator.store("v1/pods", pod("unscheduled", node=None, phase="Pending"))
    for name in ("running", "unscheduled"):
        await call(core.create_namespaced_pod_eviction, name, "default", eviction(name))
    # A pod on a node terminates: deletionTimestamp set, until its kubelet removes it.
    terminating = emulator.read("v1/pods", "default", "running")
    assert terminating is not None
    assert terminating["metadata"]["deletionGracePeriodSeconds"] == 30
    assert terminating["metadata"]["deletionTimestamp"]
    assert emulator.read("v1/pods", "default", "unscheduled") is None
    emulator.remove("v1/pods", "default", "running")
    assert emulator.read("v1/pods", "default", "running") is None


@pytest.mark.parametrize("budget", [{"minAvailable": 2}, {"minAvailable": "50%"},
                                    {"maxUnavailable": 2}, {"maxUnavailable": "50%"}])
async def test_eviction_honours_disruption_budgets(emulator: ClusterEmulator, core: CoreV1Api,
                                                   budget: dict[str, Any]) -> None:
    for name in ("web-1", "web-2", "web-3"):
        emulator.store("v1/pods", pod(name, app="web"))
    emulator.store("v1/pods", pod("web-pending", phase="Pending", app="web"))
    emulator.store(PDBS, {"metadata": {"name": "web"},
                          "spec": {**budget, "selector": {"matchLabels": {"app": "web"}}}})
    # The budget expects 4 pods, 3 of them healthy, and wants 2 healthy: one may go.
    await call(core.create_namespaced_pod_eviction, "web-1", "default", eviction("web-1"))
    with pytest.raises(ApiException) as refused:
        await call(core.create_namespaced_pod_eviction, "web-2", "default", eviction("web-2"))
    assert refused.value.status == 429
    status = json.loads(refused.value.body or "")
    assert status["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert status["details"]["causes"][0]["reason"] == "DisruptionBudget"
    web2 = emulator.read("v1/pods", "default", "web-2")
    assert web2 is not None and "deletionTimestamp" not in web2["metadata"]
    # A pending pod is not counted on by the budget: it may always go.
    await call(core.create_namespaced_pod_eviction, "web-pending", "default",
               eviction("web-pending"))


async def test_eviction_refuses_a_pod_under_two_budgets(emulator: ClusterEmulator,
                                                        core: CoreV1Api) -> None:
    emulator.store("v1/pods", pod("web-1", app="web"))
    for name in ("one", "two"):
        emulator.store(PDBS, {"metadata": {"name": name}, "spec": {
            "maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}})
    with pytest.raises(ApiException) as refused:
        await call(core.create_namespaced_pod_eviction, "web-1", "default", eviction("web-1"))
    assert refused.value.status == 500


async def test_reactions_inject_faults_instead_of_the_emulator(emulator: ClusterEmulator,
                                                               core: CoreV1Api) -> None:
    emulator.store("v1/pods", pod("p"))
    emulator["post", kmock.resource("v1/pods"), kmock.subresource("eviction")] << 500
    with pytest.raises(ApiException) as failed:
        await call(core.create_namespaced_pod_eviction, "p", "default", eviction("p"))
    assert failed.value.status == 500
    untouched = emulator.read("v1/pods", "default", "p")
    assert untouched is not None and "deletionTimestamp" not in untouched["metadata"]


# -- the call record --------------------------------------------------------------------------

async def test_calls_are_recorded_in_rbac_terms(emulator: ClusterEmulator,
                                                core: CoreV1Api) -> None:
    await call(core.create_namespaced_pod, "default", pod("p", node=None))
    current = await call(core.read_namespaced_pod, "p", "default")
    await call(core.replace_namespaced_pod, "p", "default", current)
    await call(core.patch_namespaced_pod, "p", "default", {"metadata": {"labels": {"a": "b"}}})
    await call(core.patch_namespaced_pod_status, "p", "default", {"status": {"phase": "Running"}})
    await call(core.list_namespaced_pod, "default")
    async with asyncio.timeout(10):
        await call(watch_pods, core, 1)
    await call(core.create_namespaced_pod_eviction, "p", "default", eviction("p"))
    await call(core.delete_collection_namespaced_pod, "default")
    await call(CoreV1Api(emulator.api_client(token="other")).read_namespace, "default")
    assert emulator.used_permissions("tests") == {
        ("create", "", "pods", ""), ("get", "", "pods", ""), ("update", "", "pods", ""),
        ("patch", "", "pods", ""), ("patch", "", "pods", "status"), ("list", "", "pods", ""),
        ("watch", "", "pods", ""), ("create", "", "pods", "eviction"),
        ("deletecollection", "", "pods", ""),
    }
    assert emulator.used_permissions("other") == {("get", "", "namespaces", "")}
    assert emulator.calls[0].namespace == "default"
    assert emulator.calls[1].name == "p"


# -- kubectl ----------------------------------------------------------------------------------

def seed_decision(emulator: ClusterEmulator) -> str:
    """An OOMDecision and an event about it; returns the decision's uid."""
    decision = emulator.store(DECISIONS, {
        "metadata": {"name": "node-a-1"},
        "spec": {"nodeName": "node-a", "decidedBy": "operator", "mode": "Enforce",
                 "trigger": {"pressure": "Hard"}, "action": "KillAndEvict",
                 "victims": [{"name": "batch/report-gen", "pods": []}]},
        "status": {"phase": "Succeeded", "reclaimedBytes": 1073741824}})
    uid: str = decision["metadata"]["uid"]
    emulator.store("v1/events", {
        "metadata": {"name": "node-a-1.1", "namespace": "default"}, "type": "Normal",
        "reason": "Evicted", "message": "evicted batch/report-gen-0",
        "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": "OOMDecision",
                           "name": "node-a-1", "uid": uid},
        "source": {"component": "oomguard"}, "count": 1})
    return uid


@pytest.mark.parametrize(("seconds", "shown"), [
    (59, "59s"), (150, "2m30s"), (600, "10m"), (3 * 3600 + 60, "3h1m"), (30 * 3600, "30h"),
    (50 * 3600, "2d2h"), (400 * 86400, "400d"), (3 * 365 * 86400, "3y"),
])
def test_ages_read_as_kubectl_prints_them(seconds: int, shown: str) -> None:
    assert human_duration(seconds) == shown


def table(output: str) -> list[list[str]]:
    return [line.split() for line in output.splitlines()]


async def test_kubectl_get_renders_the_crd_printer_columns(emulator: ClusterEmulator,
                                                           kubectl: Kubectl) -> None:
    seed_decision(emulator)
    emulator.store(POLICIES, policy("default", mode="Enforce", ranking="Priority", thresholds={
        "memoryAvailable": {"soft": "10%", "hard": "512Mi"}}))
    emulator.store(REPORTS, {"metadata": {"name": "node-a"}, "status": {
        "node": {"capacityBytes": 8, "availableBytes": 2}, "pods": [{"uid": "u1"}, {"uid": "u2"}]}})
    decisions = table((await kubectl("get", "oomdecisions")).stdout)
    assert decisions[0] == ["NAME", "NODE", "PRESSURE", "ACTION", "VICTIM", "OUTCOME",
                            "RECLAIMED", "AGE"]
    assert decisions[1][:7] == ["node-a-1", "node-a", "Hard", "KillAndEvict",
                                "batch/report-gen", "Succeeded", "1073741824"]
    assert table((await kubectl("get", "oomdec", "-o", "wide")).stdout)[0][7:9] == ["BY", "MODE"]
    policies = table((await kubectl("get", "oompolicies")).stdout)
    assert policies[0] == ["NAME", "MODE", "SOFT", "HARD", "RANKING", "LAST-DECISION", "AGE"]
    assert policies[1][:5] == ["default", "Enforce", "10%", "512Mi", "Priority"]
    reports = table((await kubectl("get", "nmr", "-o", "wide")).stdout)
    # As in a cluster: a missing value leaves its cell blank (PSI-FULL, OBSERVED, AGENT).
    assert reports[1] == ["node-a", "8", "2"]
    everything = (await kubectl("get", "oomguard")).stdout  # the CRDs' category
    assert "oomdecision.oomguard.io/node-a-1" in everything
    assert "oompolicy.oomguard.io/default" in everything


async def test_kubectl_describe_shows_the_object_and_its_events(emulator: ClusterEmulator,
                                                                kubectl: Kubectl) -> None:
    uid = seed_decision(emulator)
    described = (await kubectl("describe", "oomdecision", "node-a-1")).stdout
    assert "Kind:         OOMDecision" in described
    assert f"UID:                 {uid}" in described
    assert "Action:      KillAndEvict" in described
    assert "Evicted" in described.split("Events:")[1]
    events = table((await kubectl("get", "events")).stdout)
    assert events[0] == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert events[1][1:4] == ["Normal", "Evicted", "oomdecision/node-a-1"]


async def test_kubectl_writes_need_validation_off(kubectl: Kubectl, tmp_path: Path) -> None:
    manifest = tmp_path / "policy.yaml"
    manifest.write_text(yaml.safe_dump(policy("dry", mode="DryRun")))
    refused = await kubectl("apply", "-f", str(manifest), check=False)
    assert refused.returncode == 1 and "failed to download openapi" in refused.stderr
    await kubectl("apply", "--validate=false", "-f", str(manifest))
    await kubectl("label", "oompolicy", "dry", "team=a")
    selected = await kubectl("get", "oompolicies", "-l", "team=a", "-o", "name")
    assert selected.stdout.split() == ["oompolicy.oomguard.io/dry"]
    await kubectl("delete", "oompolicy", "dry")


# -- kopf -------------------------------------------------------------------------------------

def decided(emulator: ClusterEmulator, name: str) -> dict[str, Any] | None:
    """The policy `name` once a handler has written its `status.lastDecision`."""
    obj = emulator.read(POLICIES, None, name)
    return obj if obj is not None and obj.get("status", {}).get("lastDecision") else None


async def test_kopf_handles_objects_end_to_end(emulator: ClusterEmulator,
                                               custom: CustomObjectsApi) -> None:
    registry = kopf.OperatorRegistry()
    deleted: list[str] = []

    @kopf.on.create(GROUP, VERSION, "oompolicies", registry=registry)
    def seen(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        patch.status["lastDecision"] = "none yet"
        kopf.info(body, reason="Seen", message="policy accepted")

    @kopf.on.delete(GROUP, VERSION, "oompolicies", registry=registry)  # needs a finalizer
    def gone(name: str, **_: Any) -> None:
        deleted.append(name)

    async with running_operator(emulator.server_url, registry):
        await call_json(custom.create_cluster_custom_object, GROUP, VERSION, "oompolicies",
                        policy("p", mode="DryRun"))
        handled = await emulator.wait_for(lambda: decided(emulator, "p"))
        assert handled["status"]["lastDecision"] == "none yet"
        assert handled["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]
        events = await emulator.wait_for(lambda: emulator.read_all("v1/events", "default"))
        assert [(e["reason"], e["involvedObject"]["name"]) for e in events] == [("Seen", "p")]
        await call_json(custom.delete_cluster_custom_object, GROUP, VERSION, "oompolicies", "p")
        await emulator.wait_for(lambda: emulator.read(POLICIES, None, "p") is None)
    assert deleted == ["p"]
    assert ("patch", GROUP, "oompolicies", "status") in emulator.used_permissions("operator")


async def test_kopf_index_sees_listed_and_watched_objects(emulator: ClusterEmulator,
                                                          core: CoreV1Api) -> None:
    registry = kopf.OperatorRegistry()

    @kopf.index("v1", "pods", id="pods_by_node", registry=registry)
    def pods_by_node(name: str, spec: kopf.Spec, **_: Any) -> dict[str, str]:
        return {spec.get("nodeName", ""): name}

    @kopf.on.create(GROUP, VERSION, "oompolicies",  # type: ignore[arg-type]  # (index kwarg)
                    registry=registry)
    def count(patch: kopf.Patch, pods_by_node: kopf.Index[str, str], **_: Any) -> None:
        pods = sorted(pods_by_node.get("node-a", []))
        if len(pods) < 3:
            raise kopf.TemporaryError(f"only {pods} indexed so far", delay=0.1)
        patch.status["lastDecision"] = ",".join(pods)

    emulator.store("v1/pods", pod("listed-1"))
    emulator.store("v1/pods", pod("listed-2"))
    emulator.store("v1/pods", pod("elsewhere", node="node-b"))
    async with running_operator(emulator.server_url, registry):
        await call(core.create_namespaced_pod, "default", pod("watched"))
        emulator.store(POLICIES, policy("p"))
        handled = await emulator.wait_for(lambda: decided(emulator, "p"))
    assert handled["status"]["lastDecision"] == "listed-1,listed-2,watched"
    assert {("list", "", "pods", ""), ("watch", "", "pods", "")} <= emulator.used_permissions(
        "operator")


# -- why not plain kmock ----------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:read_binary is deprecated:DeprecationWarning")
async def test_plain_kmock_breaks_kopf_finalizers_and_resumed_watches() -> None:
    """kmock 0.8 as shipped: kopf cannot add its finalizer (its JSON patch tests a
    resourceVersion that kmock never sets: 500, retried until kopf gives up), and a watch
    resumed from a list's resourceVersion replays every object as ADDED."""
    plural = "/apis/oomguard.io/v1alpha1/oompolicies"
    async with kmock.KubernetesEmulator() as plain, kmock.Server(plain):
        plain.resources.load_bundled()
        plain.objects[POLICIES, None, "p"] = policy("p")
        ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": None},
               {"op": "add", "path": "/metadata/finalizers", "value": ["x"]}]
        async with plain.patch(f"{plural}/p", json=ops) as response:
            assert response.status == 500
        async with plain.get(plural) as response:
            version = (await response.json())["metadata"]["resourceVersion"]
        params = {"watch": "true", "resourceVersion": version}
        async with asyncio.timeout(10), plain.get(plural, params=params) as response:
            replayed = json.loads(await response.content.readline())
        assert (replayed["type"], replayed["object"]["metadata"]["name"]) == ("ADDED", "p")
