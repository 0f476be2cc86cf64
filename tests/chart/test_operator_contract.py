"""The chart's operator Deployment says only what `kubeloop operator` reads today.

The rendered args go through the operator's real entry point (kubeloop.controller.main) with
`kopf.run` captured instead of started; the rendered env goes through the real
`OperatorConfig.from_env`. A flag the CLI does not parse, or an env name nothing reads, fails
here instead of in a crash-looping pod.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from kubeloop.controller import main as operator_main
from kubeloop.controller.config import OperatorConfig
from kubeloop.controller.runtime import runtime

from .helmlib import CHART, operator_roles, render

HERE = Path(__file__).parent
VALUE_FILES = {
    "default": None,
    "watch-namespaces": HERE / "values-watch-namespaces.yaml",
    "custom": HERE / "values-custom.yaml",
    "openshift": HERE / "values-openshift.yaml",
    "hardened": HERE / "values-hardened.yaml",
}
# Read by the Python runtime itself, not by kubeloop (tempfile).
RUNTIME_ENV = {"TMPDIR"}


def _values(name: str) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    path = VALUE_FILES[name]
    if path is not None:
        for key, value in yaml.safe_load(path.read_text()).items():
            if isinstance(value, dict) and isinstance(values.get(key), dict):
                values[key] = {**values[key], **value}
            else:
                values[key] = value
    return values


def _operator(helm: str, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    path = VALUE_FILES[name]
    objs = render(helm, *(["-f", str(path)] if path else []))
    (deploy,) = [o for o in objs if o["kind"] == "Deployment"]
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    return deploy, container


# What the kubelet fills in for the downward API.
POD = {"metadata.name": "kubeloop-5d8f7c9b4-x2x7q", "metadata.namespace": "kubeloop-system"}


def _value(env: dict[str, Any], pod: dict[str, str]) -> str:
    """An env entry's value, a fieldRef read from the pod as the kubelet would."""
    if "value" in env:
        return str(env["value"])
    return pod[env["valueFrom"]["fieldRef"]["fieldPath"]]


def _args(name: str) -> list[str]:
    path = VALUE_FILES[name]
    return ["-f", str(path)] if path else []


class _Recording(dict[str, str]):
    """An os.environ stand-in that remembers every name looked up."""

    def __init__(self, data: dict[str, str]) -> None:
        super().__init__(data)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)


@pytest.mark.parametrize("value_set", list(VALUE_FILES))
def test_rendered_args_are_what_the_operator_cli_parses(
    helm: str, value_set: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy, container = _operator(helm, value_set)
    values = _values(value_set)
    args = container["args"]
    assert args[0] == "operator"
    captured: dict[str, Any] = {}
    monkeypatch.setattr(kopf, "run", lambda **kwargs: captured.update(kwargs))
    monkeypatch.setattr(runtime, "namespaces", ())  # restored after: main sets it
    probes: list[str] = []  # the probe URL served while kopf starts: recorded, not bound
    monkeypatch.setattr(operator_main, "FollowerProbe", lambda url, _describe: probes.append(url))
    # argparse exits (SystemExit 2) on any flag the operator does not know.
    assert operator_main.main(args[1:]) == 0
    namespaces = values["watchNamespaces"]
    assert captured["clusterwide"] is (not namespaces)
    assert captured["namespaces"] == namespaces
    # The informers list and watch in the same namespaces (controller/observe.py).
    assert runtime.namespaces == tuple(namespaces)
    # Standalone kopf (no peering): the Lease decides which replica runs it (the env test).
    assert captured["standalone"] is True and captured["peering_name"] is None
    assert deploy["spec"]["replicas"] == values["replicaCount"]
    assert deploy["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    # Liveness and readiness hit kopf's own probe endpoint, on the port the flag opens.
    probe_port = values["operator"]["probePort"]
    assert captured["liveness_endpoint"] == f"http://0.0.0.0:{probe_port}/healthz"
    assert probes == [captured["liveness_endpoint"]]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["probes"] == probe_port
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "probes"}


@pytest.mark.parametrize("value_set", list(VALUE_FILES))
def test_rendered_env_is_what_the_operator_config_reads(
    helm: str, value_set: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy, container = _operator(helm, value_set)
    values = _values(value_set)
    extra = {e["name"] for e in values["operator"]["extraEnv"]}
    env = {e["name"]: _value(e, POD) for e in container["env"] if e["name"] not in extra}
    recording = _Recording(env)
    monkeypatch.setattr(os, "environ", recording)
    config = OperatorConfig.from_env()
    unread = set(env) - recording.read - RUNTIME_ENV
    assert not unread, f"the chart sets env the operator never reads: {sorted(unread)}"
    # ... and what it reads has the values the chart was given.
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert config.metrics_port == ports["metrics"] == values["operator"]["metricsPort"]
    assert config.resync_seconds == float(values["operator"]["resyncSeconds"])
    assert config.log_level == values["operator"]["logLevel"]
    assert config.log_format == values["operator"]["logFormat"]
    images = values["workloadImages"]
    assert config.workloads.trainer_image == images["trainer"]
    assert config.workloads.trainer_gpu_image == images["trainerGpu"]
    assert config.workloads.server_image == images["server"]
    assert config.workloads.monitor_image == images["monitor"]
    assert config.workloads.pushgateway_url == values["pushgateway"]["url"]
    pull_secrets = tuple(values.get("workloadPods", {}).get("imagePullSecrets", []))
    assert config.workloads.image_pull_secrets == pull_secrets
    pods = values.get("workloadPods", {})
    placement = config.workloads.placement.to_wire()
    assert placement.get("nodeSelector", {}) == pods.get("nodeSelector", {})
    assert placement.get("tolerations", []) == pods.get("tolerations", [])
    assert placement.get("priorityClassName", "") == pods.get("priorityClassName", "")
    affinity = config.workloads.placement.affinity
    assert (affinity.model_dump(by_alias=True, exclude_defaults=True) if affinity else {}) == (
        pods.get("affinity", {})
    )
    assert config.workloads.pod_labels == pods.get("podLabels", {})
    assert config.workloads.pod_annotations == pods.get("podAnnotations", {})
    # An id the values leave out (null) is left out of the pods, not put back to its default.
    ids = pods["securityContext"]
    assert config.workloads.security.to_wire() == {k: v for k, v in ids.items() if v is not None}
    # Every ModelDeployment's NetworkPolicy admits the operator's own pod and the scrapers.
    peers = [p.to_wire() for p in config.workloads.serving_peers]
    assert peers[0]["podSelector"]["matchLabels"].items() <= (
        deploy["spec"]["template"]["metadata"]["labels"].items()
    )
    assert peers[0]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": deploy["metadata"]["namespace"]}
    }
    assert peers[1:] == (values.get("networkPolicy", {}).get("metricsFrom") or [])
    assert config.server == ""  # in-cluster: the ServiceAccount, never a plain URL
    # Leader election on the Lease the chart's Role names, as this very pod.
    election = config.leader_election
    assert election.lease == "kubeloop-leader" and election.identity == POD["metadata.name"]
    assert election.namespace == deploy["metadata"]["namespace"] == POD["metadata.namespace"]
    roles = [r for r in operator_roles(render(helm, *_args(value_set))) if r["kind"] == "Role"]
    for role in roles if values["rbac"]["create"] else []:  # else the platform grants it
        if role["metadata"]["namespace"] == election.namespace:
            assert election.lease in role["rules"][1]["resourceNames"]
    wanted = values["leaderElection"]
    assert election.timing.duration == wanted["leaseDurationSeconds"]
    assert election.timing.renew == wanted["renewSeconds"]


def test_network_policy_lets_canary_analysis_reach_the_server_pods(helm: str) -> None:
    """The operator reads canary pods' /metrics (kubeloop.controller.canary_analysis): its
    NetworkPolicy must select the pods the real server builder makes, on their `http` port."""
    from kubeloop.api.deployment import ModelDeploymentSpec
    from kubeloop.controller.canary_analysis import pod_metrics_url
    from kubeloop.resources.common import Owner, WorkloadDefaults
    from kubeloop.resources.serving import build_server_deployment

    owner = Owner("kubeloop.io/v1alpha1", "ModelDeployment", "churn", "ml", "uid-1")
    spec = ModelDeploymentSpec.model_validate({"model": {"uri": "s3://models/versions/1"}})
    server = build_server_deployment(
        owner, spec, model_uri="s3://m/versions/1", model_version="1",
        defaults=WorkloadDefaults(), track="canary",
    )  # fmt: skip
    pod = server["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    (container,) = [c for c in pod["spec"]["containers"] if c.get("ports")]
    port = next(p["containerPort"] for p in container["ports"] if p["name"] == "http")
    url = pod_metrics_url({"status": {"podIP": "10.0.0.7"}, "spec": pod["spec"]})
    assert url == f"http://10.0.0.7:{port}/metrics"

    assert _egress_allowed(helm, pod_labels, "http", port), (
        "the operator's NetworkPolicy blocks canary analysis"
    )


def _egress_allowed(helm: str, pod_labels: dict[str, str], name: str, port: int) -> bool:
    """Whether the operator's NetworkPolicy lets it reach pods with these labels, in any
    namespace, on the port of this name or number."""
    (policy,) = [
        o
        for o in render(helm)
        if o["kind"] == "NetworkPolicy" and not o["metadata"]["name"].endswith("-test")
    ]
    allowed = False
    for rule in policy["spec"]["egress"]:
        for peer in rule.get("to", []):
            selector = peer.get("podSelector", {}).get("matchLabels", {})
            in_any_namespace = peer.get("namespaceSelector") == {}
            if in_any_namespace and selector and selector.items() <= pod_labels.items():
                allowed |= any(p["port"] in (name, port) for p in rule["ports"])
    return allowed


def test_network_policy_lets_the_operator_read_training_progress(helm: str) -> None:
    """The operator reads a run pod's progress (kubeloop.controller.run_progress): its
    NetworkPolicy must select the pods the real Job builder makes, on their `progress` port."""
    from kubeloop.api.training import TrainingPipelineSpec
    from kubeloop.controller.run_progress import pod_progress_url
    from kubeloop.resources.common import Owner, WorkloadDefaults
    from kubeloop.resources.training import build_training_job

    owner = Owner("kubeloop.io/v1alpha1", "TrainingPipeline", "churn", "ml", "uid-1")
    spec = TrainingPipelineSpec.model_validate(
        {
            "data": {"train": "s3://data/churn/", "target": "churned"},
            "model": {"framework": "sklearn", "task": "classification"},
            "artifacts": "s3://models/churn/",
        }
    )
    job = build_training_job(
        owner, spec, run_id=1, trigger="Create", generation=1, defaults=WorkloadDefaults()
    )
    pod = job["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    port = next(p["containerPort"] for p in container["ports"] if p["name"] == "progress")
    live = {"status": {"podIP": "10.0.0.7", "phase": "Running"}, "spec": pod["spec"]}
    assert pod_progress_url(live) == f"http://10.0.0.7:{port}/progress"
    assert _egress_allowed(helm, pod["metadata"]["labels"], "progress", port), (
        "the operator's NetworkPolicy blocks reading training progress"
    )


_VERBS = {
    "get": "get",
    "list": "list",
    "create": "create",
    "patch": "patch",
    "delete": "delete",
    "replace": "update",
}


def _built_kinds() -> set[str]:
    """Every kind a builder in kubeloop/resources/*.py builds (`"kind": "Job"` literals)."""
    import ast

    from kubeloop import resources
    from kubeloop.controller import kube

    return {
        value.value
        for path in Path(resources.__file__).parent.glob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Dict)
        for key, value in zip(node.keys, node.values, strict=True)
        if isinstance(key, ast.Constant) and key.value == "kind"
        if isinstance(value, ast.Constant) and value.value in kube.PLURALS
    }


def _calls_in_controller() -> set[tuple[str, str, str]]:
    """(group, resource, verb) of every `api.<verb>("Kind", ...)` in kubeloop/controller/*.py,
    kinds given as literals or as a module constant (KIND = "ModelDeployment"); the two write
    paths that take the kind from their argument: `api.apply(manifest)` (create and patch,
    server-side apply, of every kind a builder builds) and the status writer's
    `api.patch_status(kind, ...)` (the status of every kind with a status model)."""
    import ast

    from kubeloop.controller import kube
    from kubeloop.controller.status_write import STATUS_MODELS

    def add(kind: str, verb: str, sub: str = "") -> None:
        prefix, plural = kube.PLURALS[kind]
        group = "" if prefix == "/api/v1" else prefix.split("/")[2]
        needed.add((group, plural + sub, verb))

    needed: set[tuple[str, str, str]] = set()
    folder = Path(kube.__file__).parent
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text())
        constants = {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            for target in node.targets
            if isinstance(target, ast.Name) and isinstance(node.value.value, str)
        }
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            method, owner = node.func.attr, node.func.value
            owner_name = (
                owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            )
            if owner_name != "api" or not node.args:
                continue
            first = node.args[0]
            kind = first.value if isinstance(first, ast.Constant) else None
            if isinstance(first, ast.Name):
                kind = constants.get(first.id)
            if method == "apply":
                for built in _built_kinds():
                    add(built, "create")
                    add(built, "patch")
            elif method == "patch_status" and kind is None:
                for modelled in STATUS_MODELS:
                    add(modelled, "patch", "/status")
            if kind not in kube.PLURALS:
                continue
            if method == "patch_status":
                add(kind, "patch", "/status")
            elif method in _VERBS:
                add(kind, _VERBS[method])
    return needed


def test_rbac_grants_every_call_the_controller_makes(helm: str) -> None:
    needed = _calls_in_controller()
    assert ("kubeloop.io", "trainingpipelines/status", "patch") in needed  # the scan works
    assert ("batch", "cronjobs", "patch") in needed  # the apply path too
    for args in ([], ["--set", "watchNamespaces={ml}"]):
        granted: set[tuple[str, str, str]] = set()
        for role in operator_roles(render(helm, *args)):
            for rule in role["rules"]:
                granted |= {
                    (g, r, v)
                    for g in rule["apiGroups"]
                    for r in rule["resources"]
                    for v in rule["verbs"]
                }
        missing = needed - granted
        assert not missing, f"the chart's RBAC lacks what the controller calls: {sorted(missing)}"


def test_workload_pod_defaults_reach_every_pod_the_operator_builds(
    helm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chart's workloadPods (pull secrets, nodeSelector, tolerations, priorityClassName,
    affinity, podLabels, podAnnotations, securityContext ids) -> the rendered env -> the
    operator's config -> every pod template of the Job, Deployment and CronJob builders (what
    the handlers pass); a resource's own placement in spec.resources wins."""
    from tests.resources.cases import build_all, inputs, pod_templates

    from kubeloop.resources import common

    _, container = _operator(helm, "custom")
    for item in container["env"]:
        monkeypatch.setenv(item["name"], _value(item, POD))
    defaults = OperatorConfig.from_env().workloads
    wanted = _values("custom")["workloadPods"]
    assert defaults.image_pull_secrets == ("regcred", "ml-registry")
    kinds = set()
    for case, doc in inputs().items():
        own = doc["spec"].get("resources", {})
        for manifest in build_all(doc, defaults):
            for template in pod_templates(manifest):
                kinds.add(manifest["kind"])
                pod, labels = template["spec"], template["metadata"]["labels"]
                assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "ml-registry"}]
                assert pod["nodeSelector"] == {
                    **wanted["nodeSelector"],
                    **own.get("nodeSelector", {}),
                }
                assert pod["tolerations"] == (own.get("tolerations") or wanted["tolerations"]), case
                assert pod["priorityClassName"] == wanted["priorityClassName"]
                assert pod["affinity"] == wanted["affinity"]
                assert labels.items() >= wanted["podLabels"].items()
                assert labels["app.kubernetes.io/managed-by"] == "kubeloop"  # ours are kept
                assert template["metadata"]["annotations"] == wanted["podAnnotations"]
                # runAsUser and runAsGroup null: left to the platform; the rest restricted.
                assert pod["securityContext"] == {
                    "runAsNonRoot": True,
                    "fsGroup": 1000,
                    "seccompProfile": {"type": "RuntimeDefault"},
                }
    assert kinds == {"Job", "Deployment", "CronJob"}
    assert common.pod_defaults(common.WorkloadDefaults()) == {}  # none given: no field at all

    # Each resource's own placement wins over the defaults.
    own_placement = {
        "nodeSelector": {"node.example.com/pool": "gpu-a100"},
        "tolerations": [{"key": "team-b", "operator": "Exists"}],
        "priorityClassName": "critical-serving",
        "affinity": {
            "podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "labelSelector": {"matchLabels": {"app": "feature-store"}},
                        "topologyKey": "topology.kubernetes.io/zone",
                    }
                ]
            }
        },
    }
    for case, doc in inputs().items():
        doc["spec"].setdefault("resources", {}).update(own_placement)
        pods = [t["spec"] for m in build_all(doc, defaults) for t in pod_templates(m)]
        assert pods, case
        for pod in pods:
            assert pod["nodeSelector"] == {
                "node.example.com/pool": "gpu-a100",
                "kubernetes.io/os": "linux",
            }
            assert pod["tolerations"] == [{"key": "team-b", "operator": "Exists"}]
            assert pod["priorityClassName"] == "critical-serving"
            # The resource's affinity replaces the default one as a whole.
            assert pod["affinity"] == own_placement["affinity"]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("KUBELOOP_WORKLOAD_PLACEMENT", "{nodeSelector: x}", "not JSON"),
        ("KUBELOOP_WORKLOAD_PLACEMENT", '{"nodeSelectr": {}}', "nodeSelectr: Extra inputs"),
        (
            "KUBELOOP_WORKLOAD_PLACEMENT",
            '{"tolerations": [{"operator": "Sometimes"}]}',
            "tolerations.0.operator",
        ),
        ("KUBELOOP_WORKLOAD_PLACEMENT", '{"priorityClassName": "Ml_Batch"}', "priorityClassName"),
        ("KUBELOOP_WORKLOAD_POD_LABELS", '{"team": "ml platform"}', "team: Value error"),
        (
            "KUBELOOP_WORKLOAD_PLACEMENT",
            '{"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": '
            '[{"weight": 0, "preference": {}}]}}}',
            "affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution.0.weight",
        ),
        (
            "KUBELOOP_WORKLOAD_PLACEMENT",
            '{"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": '
            '[{"labelSelector": {"matchExpressions": [{"key": "app", "operator": "In"}]}, '
            '"topologyKey": "kubernetes.io/hostname"}]}}}',
            "matchExpressions.0: Value error, In and NotIn need at least one value",
        ),
        ("KUBELOOP_WORKLOAD_POD_ANNOTATIONS", '{"team owner": "ml"}', "every key must be"),
        ("KUBELOOP_WORKLOAD_SECURITY", '{"privileged": true}', "privileged: Extra inputs"),
        ("KUBELOOP_WORKLOAD_SECURITY", '{"runAsUser": 0}', "runAsUser: Input should be"),
    ],
)
def test_malformed_workload_defaults_stop_the_operator_at_start_naming_the_field(
    name: str, value: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=re.escape(name) + ".*" + re.escape(message)):
        OperatorConfig.from_env()


@pytest.mark.parametrize("value", ["Regcred", "a,,b_c", "-x"])
def test_malformed_pull_secret_names_stop_the_operator_at_start(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBELOOP_IMAGE_PULL_SECRETS", value)
    with pytest.raises(ValueError, match=r"KUBELOOP_IMAGE_PULL_SECRETS: .* is not a Secret name"):
        OperatorConfig.from_env()
