"""The Helm chart, rendered by a real helm: lint, validation of every manifest against
Kubernetes' own schemas (the three newest minor versions kubernetes-validate knows, strict)
and against the CRDs, the operator's restricted pod, the agent's privileges, and what the
values switch on and off. The RBAC rules: test_rbac.py. What this proves and does not:
docs/install.md."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate.utils import latest_version, major_minor

from oomguard.api import OOMPolicy
from oomguard.api.crd import render as render_crds
from oomguard.cli import parser

from support.helm import (
    CHART,
    NAMESPACE,
    ROOT,
    Manifest,
    find,
    helm,
    one,
    render,
    values_files,
)
from support.podsecurity import restricted_violations
from support.schemas import builtin_errors, custom_errors, is_custom, newest_kubernetes_versions

CONFIGS = [None, *values_files()]
"""The default values, and each values file under charts/oomguard/ci/."""

IDS = ["default", *(p.name for p in values_files())]

VERSIONS = newest_kubernetes_versions()

NO_SCHEMA = {("monitoring.coreos.com/v1", "ServiceMonitor")}
"""Kinds of other projects' CRDs, which no schema here describes: checked by their
references instead (test_service_monitors_select_the_metrics_services)."""

EVERYTHING = CHART / "ci" / "everything-values.yaml"
HA = CHART / "ci" / "ha-values.yaml"
STANDALONE = CHART / "ci" / "standalone-values.yaml"


def pod_spec(manifests: tuple[Manifest, ...], component: str) -> dict[str, Any]:
    kind = "Deployment" if component == "operator" else "DaemonSet"
    spec: dict[str, Any] = one(manifests, kind, component)["spec"]["template"]["spec"]
    return spec


def container(manifests: tuple[Manifest, ...], component: str) -> dict[str, Any]:
    (only,) = pod_spec(manifests, component)["containers"]
    return dict(only)


@pytest.mark.parametrize("values", CONFIGS, ids=IDS)
def test_helm_lint_is_clean(values: Path | None) -> None:
    """`helm lint --strict` fails on warnings; informational notes (such as "icon is
    recommended") are all it may print."""
    result = helm("lint", "--strict", str(CHART), *(["--values", str(values)] if values else []))
    problems = [line for line in result.stdout.splitlines()
                if line.startswith(("[WARNING]", "[ERROR]"))]
    assert not problems, result.stdout


@pytest.mark.parametrize("values", CONFIGS, ids=IDS)
def test_every_manifest_validates_offline(values: Path | None) -> None:
    """Kubernetes' own kinds against its schemas for each of the three newest minor
    versions, strictly; oomguard's and kopf's kinds against the CRDs in crds/."""
    manifests = render(values)
    assert manifests
    errors = []
    for manifest in manifests:
        where = f"{manifest['kind']}/{manifest['metadata']['name']}"
        if is_custom(manifest):
            errors += [f"{where}: {e}" for e in custom_errors(manifest)]
        elif (manifest["apiVersion"], manifest["kind"]) not in NO_SCHEMA:
            errors += [f"{where}: {e}" for v in VERSIONS for e in builtin_errors(manifest, v)]
    assert not errors, "\n".join(errors)


def test_the_three_newest_kubernetes_versions_are_the_ones_checked() -> None:
    assert len(VERSIONS) == 3
    majors_minors = [tuple(int(p) for p in v.split(".")) for v in VERSIONS]
    assert majors_minors == sorted(majors_minors) and len(set(majors_minors)) == 3
    assert VERSIONS[-1] == major_minor(latest_version())


def test_strict_validation_refuses_what_kubectl_would() -> None:
    """The checks above can fail: an unknown field, a wrong type, a bad custom resource."""
    deployment = one(render(None), "Deployment", "operator")
    unknown = yaml.safe_load(yaml.safe_dump(deployment))
    unknown["spec"]["template"]["spec"]["containers"][0]["securityContext"]["bogus"] = True
    assert builtin_errors(unknown, VERSIONS[-1])
    mistyped = yaml.safe_load(yaml.safe_dump(deployment))
    mistyped["spec"]["replicas"] = "two"
    assert builtin_errors(mistyped, VERSIONS[-1])
    policy = {"apiVersion": "oomguard.io/v1alpha1", "kind": "OOMPolicy",
              "metadata": {"name": "p"}, "spec": {"mode": "Sometimes", "threshold": {}}}
    problems = "\n".join(custom_errors(policy))
    assert "'Sometimes' is not one of" in problems
    assert "'threshold' was unexpected" in problems


def test_the_crds_validate_against_kubernetes_schemas() -> None:
    """The CRDs themselves are manifests too (helm installs them from crds/)."""
    errors = []
    for path in sorted((CHART / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        errors += [f"{path.name}: {e}" for v in VERSIONS for e in builtin_errors(crd, v)]
    assert not errors, "\n".join(errors)


def test_chart_crds_are_the_generated_ones() -> None:
    """charts/oomguard/crds/ is written by `make crds` from the models, like crds/."""
    chart_crds = CHART / "crds"
    assert sorted(p.name for p in chart_crds.glob("*.yaml")) == sorted(render_crds())
    for name, text in render_crds().items():
        assert (chart_crds / name).read_text() == text, f"{name} is out of date: `make crds`"


def test_example_custom_resources_validate_against_the_crds() -> None:
    examples = sorted((ROOT / "examples").glob("*.yaml"))
    checked, errors = 0, []
    for path in examples:
        for manifest in yaml.safe_load_all(path.read_text()):
            if manifest and is_custom(manifest):
                checked += 1
                errors += [f"{path.name}: {manifest['kind']}/{manifest['metadata']['name']}: "
                           f"{e}" for e in custom_errors(manifest)]
    assert checked >= 5, f"only {checked} custom resources in examples/"
    assert not errors, "\n".join(errors)


def test_default_policy_from_values_is_a_valid_oompolicy() -> None:
    """Valid for the CRD (what the API server checks) and for the model (what the
    operator and the agents read, with the rules a schema cannot say)."""
    assert not find(render(None), "OOMPolicy")
    policy = one(render(EVERYTHING), "OOMPolicy")
    assert policy["metadata"]["name"] == "cluster-default"
    assert not custom_errors(policy)
    assert OOMPolicy.model_validate(policy).spec.mode == "DryRun"
    default = one(render(None, "defaultPolicy.enabled=true"), "OOMPolicy")
    assert not custom_errors(default)
    assert OOMPolicy.model_validate(default).spec == OOMPolicy.model_validate(
        {"metadata": {"name": "x"}}).spec, "values.yaml's default policy is the built-in one"


@pytest.mark.parametrize("values", CONFIGS, ids=IDS)
def test_operator_pod_is_restricted(values: Path | None) -> None:
    """Pod Security "restricted", and a read-only root file system."""
    manifests = render(values)
    assert restricted_violations(pod_spec(manifests, "operator")) == []
    assert container(manifests, "operator")["securityContext"]["readOnlyRootFilesystem"]


def test_the_restricted_check_refuses_the_agent() -> None:
    """The agent is privileged on purpose, and the check says exactly how."""
    violations = restricted_violations(pod_spec(render(None), "agent"))
    assert violations == [
        "hostPID: true",
        "volume cgroup: type hostPath",
        "volume state: type hostPath",
        "container agent: runAsUser 0",
        "container agent: adds capabilities ['KILL']",
        "container agent: runAsNonRoot is not true",
    ]


@pytest.mark.parametrize("values", CONFIGS, ids=IDS)
def test_agent_privileges_are_these_and_no_more(values: Path | None) -> None:
    """What docs/install.md explains: host PID namespace, the host's cgroups read-write at
    their usual path, a state directory of its own on the node's disk, root with only
    KILL, nothing else of the host."""
    manifests = render(values)
    spec = pod_spec(manifests, "agent")
    agent = container(manifests, "agent")
    assert spec["hostPID"] is True
    assert not spec.get("hostNetwork") and not spec.get("hostIPC")
    assert spec["volumes"] == [
        {"name": "cgroup", "hostPath": {"path": "/sys/fs/cgroup", "type": "Directory"}},
        {"name": "state", "hostPath": {"path": "/var/lib/oomguard",
                                       "type": "DirectoryOrCreate"}}]
    assert agent["volumeMounts"] == [{"name": "cgroup", "mountPath": "/sys/fs/cgroup"},
                                     {"name": "state", "mountPath": "/var/lib/oomguard"}]
    sc = agent["securityContext"]
    assert sc["runAsUser"] == 0 and sc["runAsGroup"] == 0
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["KILL"]}
    assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not any(port.get("hostPort") for port in agent["ports"])


@pytest.mark.parametrize("values", CONFIGS, ids=IDS)
def test_agent_runs_on_every_node_and_is_never_the_victim(values: Path | None) -> None:
    manifests = render(values)
    spec = pod_spec(manifests, "agent")
    agent = container(manifests, "agent")
    assert {"operator": "Exists"} in spec["tolerations"], "tolerates every taint"
    assert spec["priorityClassName"] == "system-node-critical"
    assert {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}} \
        in agent["env"]
    resources = agent["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert set(resources["limits"]) == {"memory"}, "a memory limit, and no CPU throttling"


def _cli(args: list[str]) -> argparse.Namespace:
    try:
        return parser().parse_args(args)
    except SystemExit as exit_:
        raise AssertionError(f"oomguard does not take {args}") from exit_


@pytest.mark.parametrize("values", CONFIGS, ids=IDS)
def test_containers_run_options_the_cli_takes(values: Path | None) -> None:
    """The command line of each container parses (a renamed flag fails here, not in a
    CrashLoopBackOff), and its ports and probes agree with it."""
    manifests = render(values)
    operator, agent = container(manifests, "operator"), container(manifests, "agent")
    assert operator["command"] == agent["command"] == ["oomguard"]
    op = _cli(operator["args"])
    ports = {p["name"]: p["containerPort"] for p in operator["ports"]}
    assert op.run.__name__ == "operator"
    assert op.metrics_port == ports["metrics"]
    assert op.liveness == f"http://0.0.0.0:{ports['health']}/healthz"
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    ag = _cli(agent["args"])
    assert ag.run.__name__ == "agent" and not ag.standalone
    assert ag.node is None and ag.cgroup_root is None, "NODE_NAME, and the default root"
    assert ag.metrics_port == {p["name"]: p["containerPort"] for p in agent["ports"]}["metrics"]
    assert agent["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}


def test_values_reach_the_command_lines() -> None:
    ag = _cli(container(render(EVERYTHING), "agent")["args"])
    assert (ag.heartbeat_seconds, ag.act_alone_after, ag.metrics_port) == (15, 1.5, 19102)


@pytest.mark.parametrize(("values", "replicas", "peering"), [
    (None, 1, "oomguard"), (HA, 3, "oomguard-ha"), (STANDALONE, 1, None)])
def test_replicas_peering_and_disruption_budget(values: Path | None, replicas: int,
                                                peering: str | None) -> None:
    """A PodDisruptionBudget only with more than one replica; the peering object the
    operator is told to use exists."""
    manifests = render(values)
    deployment = one(manifests, "Deployment", "operator")
    assert deployment["spec"]["replicas"] == replicas
    budgets = find(manifests, "PodDisruptionBudget")
    if replicas > 1:
        (budget,) = budgets
        assert budget["spec"]["selector"] == deployment["spec"]["selector"]
        assert budget["spec"]["maxUnavailable"] == 1
    else:
        assert not budgets
    args = _cli(container(manifests, "operator")["args"])
    assert args.peering == peering
    assert [p["metadata"]["name"] for p in find(manifests, "ClusterKopfPeering")] == \
        ([peering] if peering else [])


def test_replicas_without_peering_are_refused() -> None:
    result = helm("template", "x", str(CHART), "--set", "operator.replicas=2",
                  "--set", "operator.peering.enabled=false", check=False)
    assert result.returncode != 0
    assert "operator.replicas > 1 needs operator.peering.enabled" in result.stderr


@pytest.mark.parametrize("assignment", [
    "operator.replica=2", "agent.metricsPort=0", "image.digest=latest",
    "metrics.serviceMonitor.interval=often"])
def test_values_schema_refuses_mistakes(assignment: str) -> None:
    result = helm("template", "x", str(CHART), "--set", assignment, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr


@pytest.mark.parametrize("values", CONFIGS, ids=IDS)
def test_workloads_use_their_own_service_accounts(values: Path | None) -> None:
    manifests = render(values)
    accounts = {m["metadata"]["name"] for m in find(manifests, "ServiceAccount")}
    operator_sa = pod_spec(manifests, "operator")["serviceAccountName"]
    agent_sa = pod_spec(manifests, "agent")["serviceAccountName"]
    assert operator_sa != agent_sa and {operator_sa, agent_sa} == accounts
    for account in find(manifests, "ServiceAccount"):
        assert account["metadata"]["namespace"] == NAMESPACE


def test_service_monitors_select_the_metrics_services() -> None:
    manifests = render(EVERYTHING)
    assert not find(render(None), "ServiceMonitor")
    for component in ("operator", "agent"):
        monitor = one(manifests, "ServiceMonitor", component)
        service = one(manifests, "Service", component)
        labels = service["metadata"]["labels"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint == {"port": "metrics", "path": "/metrics", "interval": "15s"}
        assert [p["name"] for p in service["spec"]["ports"]] == ["metrics"]
        pod_labels = one(manifests, "Deployment" if component == "operator" else "DaemonSet",
                         component)["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert service["spec"]["ports"][0]["targetPort"] in \
            [p["name"] for p in container(manifests, component)["ports"]]


def test_extras_from_values_are_applied() -> None:
    """Labels and annotations on every object, pull secrets, image by digest, node
    selectors, affinities and tolerations."""
    manifests = render(EVERYTHING)
    for manifest in manifests:
        meta = manifest["metadata"]
        assert meta["labels"]["team"] == "platform", meta["name"]
        assert meta["annotations"]["example.com/owner"] == "platform-team", meta["name"]
    image = "registry.example.com/platform/oomguard@sha256:" + "0123456789abcdef" * 4
    for component in ("operator", "agent"):
        spec = pod_spec(manifests, component)
        assert spec["imagePullSecrets"] == [{"name": "regcred"}]
        assert container(manifests, component)["image"] == image
        assert container(manifests, component)["imagePullPolicy"] == "Always"
    operator = pod_spec(manifests, "operator")
    assert operator["nodeSelector"]["node-role.kubernetes.io/control-plane"] == ""
    assert operator["tolerations"][0]["key"] == "node-role.kubernetes.io/control-plane"
    assert "nodeAffinity" in pod_spec(manifests, "agent")["affinity"]
    deployment = one(manifests, "Deployment", "operator")
    assert deployment["spec"]["template"]["metadata"]["labels"]["example.com/scrape"] == "true"
    assert one(manifests, "ServiceAccount", "operator")["metadata"]["annotations"] == {
        "example.com/role": "oomguard-operator", "example.com/owner": "platform-team"}


def test_chart_versions_follow_the_project() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    import tomllib  # noqa: PLC0415 - only this test reads pyproject.toml

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert chart["appVersion"] == chart["version"] == version
    assert container(render(None), "agent")["image"] == f"oomguard:{version}"


def test_dry_run_first_is_one_value() -> None:
    """`--set dryRun=true`: the chart's policy exists, in DryRun, whatever defaultPolicy
    says."""
    for sets in (["dryRun=true"], ["dryRun=true", "defaultPolicy.enabled=true"]):
        policy = one(render(None, *sets), "OOMPolicy")
        assert not custom_errors(policy)
        assert OOMPolicy.model_validate(policy).spec.mode == "DryRun"
    enforced = one(render(None, "defaultPolicy.enabled=true"), "OOMPolicy")
    assert enforced["spec"]["mode"] == "Enforce"
