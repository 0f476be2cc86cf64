"""The Helm chart: lint, render with five value sets, validate every object against the
Kubernetes 1.33 schemas, refuse bad values, keep crds/ in sync, least-privilege RBAC, PSS."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from .helmlib import CHART, ROOT, RenderError, is_user_role, operator_roles, render

HERE = Path(__file__).parent
K8S_VERSION = "1.33"
VALUE_SETS = {
    "default": [],
    "watch-namespaces": ["-f", str(HERE / "values-watch-namespaces.yaml")],
    "custom": ["-f", str(HERE / "values-custom.yaml")],
    "openshift": ["-f", str(HERE / "values-openshift.yaml")],
    "hardened": ["-f", str(HERE / "values-hardened.yaml")],
}
# Not in kubernetes-validate's schemas. CRDs are checked against the apiextensions schema and
# against crds/ (tests/api/test_crds.py and test_chart_crds_identical_to_generated below); the
# Prometheus Operator objects are checked for their own content in the tests below.
NOT_IN_K8S_SCHEMAS = {
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): "CRD: checked against crds/",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "Prometheus Operator CRD",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "Prometheus Operator CRD",
    ("monitoring.coreos.com/v1", "PodMonitor"): "Prometheus Operator CRD",
}


@pytest.fixture(scope="module", params=list(VALUE_SETS))
def rendered(request: pytest.FixtureRequest, helm: str) -> tuple[str, list[dict[str, Any]]]:
    name = request.param
    return name, render(helm, "--include-crds", *VALUE_SETS[name])


def _by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_helm_lint_strict(helm: str, value_set: str) -> None:
    proc = subprocess.run(
        [helm, "lint", "--strict", str(CHART), *VALUE_SETS[value_set]],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def test_every_rendered_object_passes_kubernetes_validate(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    name, objs = rendered
    skipped: dict[str, str] = {}
    validated = 0
    for obj in objs:
        key = (obj["apiVersion"], obj["kind"])
        if key in NOT_IN_K8S_SCHEMAS:
            skipped[f"{obj['kind']}/{obj['metadata']['name']}"] = NOT_IN_K8S_SCHEMAS[key]
            continue
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {obj['kind']}/{obj['metadata']['name']}: {exc.message}")
        validated += 1
    assert validated >= 8, f"{name}: only {validated} objects validated"
    # Exactly the three CRDs are always skipped; the monitoring objects only when switched on.
    assert sum(1 for k in skipped if k.startswith("CustomResourceDefinition/")) == 3


def test_value_sets_render_what_they_switch_on(helm: str) -> None:
    default = {o["kind"] for o in render(helm)}
    assert default == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",  # leader election: the Lease in the release namespace
        "RoleBinding",
        "Deployment",
        "Service",
        "ConfigMap",
        "NetworkPolicy",
        "Pod",
    }
    full = render(helm, *VALUE_SETS["watch-namespaces"])
    kinds = {o["kind"] for o in full}
    assert {"Role", "RoleBinding", "ServiceMonitor", "PodMonitor", "PrometheusRule"} <= kinds
    custom = render(helm, *VALUE_SETS["custom"])
    assert "ConfigMap" not in {o["kind"] for o in custom}
    (deploy,) = _by_kind(custom, "Deployment")
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].endswith("@sha256:" + "0123456789abcdef" * 4)
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "1Gi"}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KUBELOOP_TRAINER_IMAGE"] == "registry.example.com:5000/ml/trainer:1.2.3"
    assert env["KUBELOOP_RESYNC_SECONDS"] == "15"
    assert env["HTTPS_PROXY"] == "http://proxy.example.com:3128"


def test_app_kubernetes_io_labels_everywhere(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objs = rendered
    for obj in objs:
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "kubeloop", obj["metadata"]["name"]
        assert "app.kubernetes.io/name" in labels
        if obj["kind"] != "CustomResourceDefinition":  # crds/ are not templated
            assert labels["app.kubernetes.io/instance"] == "kubeloop"
            assert labels["app.kubernetes.io/managed-by"] == "Helm"
            assert "app.kubernetes.io/version" in labels


_NODE_TERM = (
    "workloadPods.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
    ".nodeSelectorTerms[0].matchExpressions[0]"
)
_POD_PREFERRED = (
    "workloadPods.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0]"
)
BAD_VALUES = {
    "unknown top-level key": (["--set", "replicas=2"], "replicas"),
    "pull policy": (["--set", "image.pullPolicy=Sometimes"], "/image/pullPolicy"),
    "namespace not DNS-1123": (["--set", "watchNamespaces={Team_B}"], "/watchNamespaces/0"),
    "memory not a quantity": (["--set", "resources.limits.memory=lots"], "/resources/limits"),
    "pushgateway not http": (["--set", "pushgateway.url=ftp://pg:9091"], "/pushgateway/url"),
    "port out of range": (["--set", "metrics.service.port=70000"], "/metrics/service/port"),
    "digest malformed": (["--set", "image.digest=sha256:xyz"], "/image/digest"),
    "resync not positive": (["--set", "operator.resyncSeconds=0"], "/operator/resyncSeconds"),
    "removed key": (["--set", "storage.endpoint=http://s3:9000"], "storage"),
    "typo in a section": (["--set", "networkPolicy.enable=true"], "enable"),
    "monitor image empty": (["--set", "workloadImages.monitor="], "/workloadImages/monitor"),
    "pull secret not a name": (
        ["--set", "workloadPods.imagePullSecrets={Reg_Cred}"],
        "/workloadPods/imagePullSecrets/0",
    ),
    # Without a name the chart would bind the operator's permissions to `default`.
    "existing account unnamed": (["--set", "serviceAccount.create=false"], "/serviceAccount/name"),
    # Every flag of `kubeloop operator` is set from a value; any other one stops it.
    "unknown operator flag": (["--set", "operator.extraArgs={--verbose}"], "/operator/extraArgs"),
    "peering flag": (["--set", "operator.extraArgs={--peering=kubeloop}"], "/operator/extraArgs"),
    "second liveness flag": (
        ["--set", "operator.extraArgs={--liveness=http://0.0.0.0:1/healthz}"],
        "/operator/extraArgs",
    ),
    "log format": (["--set", "operator.logFormat=yaml"], "/operator/logFormat"),
    "runbook URL not a URL": (
        ["--set", "prometheusRule.runbookUrl=docs/runbooks.md"],
        "/prometheusRule/runbookUrl",
    ),
    "toleration operator": (
        ["--set", "workloadPods.tolerations[0].key=gpu,workloadPods.tolerations[0].operator=Is"],
        "/workloadPods/tolerations/0/operator",
    ),
    "toleration field typo": (
        ["--set", "workloadPods.tolerations[0].efect=NoSchedule"],
        "efect",
    ),
    "priority class not a name": (
        ["--set", "workloadPods.priorityClassName=ML_Batch"],
        "/workloadPods/priorityClassName",
    ),
    "pod label value with a space": (
        ["--set-string", "workloadPods.podLabels.team=ml platform"],
        "/workloadPods/podLabels/team",
    ),
    "node selector value a list": (
        ["--set", "workloadPods.nodeSelector.pool={a,b}"],
        "/workloadPods/nodeSelector/pool",
    ),
    # The operator pod's security contexts: only what Pod Security Standard "restricted" allows.
    "privileged container": (
        ["--set", "securityContext.privileged=true"],
        "/securityContext/privileged",
    ),
    "privilege escalation": (
        ["--set", "securityContext.allowPrivilegeEscalation=true"],
        "/securityContext/allowPrivilegeEscalation",
    ),
    "root allowed": (
        ["--set", "podSecurityContext.runAsNonRoot=false"],
        "/podSecurityContext/runAsNonRoot",
    ),
    "root UID": (["--set", "securityContext.runAsUser=0"], "/securityContext/runAsUser"),
    "capability added": (
        ["--set", "securityContext.capabilities.add={SYS_ADMIN}"],
        "/securityContext/capabilities/add/0",
    ),
    "ALL not dropped": (
        ["--set", "securityContext.capabilities.drop={NET_RAW}"],
        "/securityContext/capabilities/drop",
    ),
    "seccomp unconfined": (
        ["--set", "podSecurityContext.seccompProfile.type=Unconfined"],
        "/podSecurityContext/seccompProfile/type",
    ),
    # null drops a key; a key "restricted" needs may not be dropped.
    "escalation setting nulled": (
        ["--set", "securityContext.allowPrivilegeEscalation=null"],
        "missing property 'allowPrivilegeEscalation'",
    ),
    "security context typo": (["--set", "podSecurityContext.runAsUsr=1000"], "runAsUsr"),
    "spread whenUnsatisfiable": (
        [
            "--set",
            "topologySpreadConstraints[0].maxSkew=1,"
            "topologySpreadConstraints[0].topologyKey=kubernetes.io/hostname,"
            "topologySpreadConstraints[0].whenUnsatisfiable=Never",
        ],
        "/topologySpreadConstraints/0/whenUnsatisfiable",
    ),
    "spread without topologyKey": (
        [
            "--set",
            "topologySpreadConstraints[0].maxSkew=1,"
            "topologySpreadConstraints[0].whenUnsatisfiable=DoNotSchedule",
        ],
        "missing property 'topologyKey'",
    ),
    "spread selector typo": (
        ["--set", "topologySpreadConstraints[0].labelSelector.matchLabel.app=x"],
        "matchLabel",
    ),
    "spread minDomains with ScheduleAnyway": (
        [
            "--set",
            "topologySpreadConstraints[0].maxSkew=1,"
            "topologySpreadConstraints[0].topologyKey=kubernetes.io/hostname,"
            "topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway,"
            "topologySpreadConstraints[0].minDomains=2",
        ],
        "/topologySpreadConstraints/0/minDomains",
    ),
    # maxUnavailable: 1 is the default: minAvailable alone needs maxUnavailable="".
    "disruption budget with both bounds": (
        ["--set", "podDisruptionBudget.enabled=true,podDisruptionBudget.minAvailable=1"],
        "/podDisruptionBudget/maxUnavailable",
    ),
    "disruption budget with no bound": (
        ["--set", "podDisruptionBudget.enabled=true,podDisruptionBudget.maxUnavailable="],
        "/podDisruptionBudget/maxUnavailable",
    ),
    "disruption budget bound not a count": (
        ["--set", "podDisruptionBudget.maxUnavailable=half"],
        "/podDisruptionBudget/maxUnavailable",
    ),
    "rbac.create not a boolean": (["--set-string", "rbac.create=no"], "/rbac/create"),
    "relabel action": (
        ["--set", "metrics.serviceMonitor.relabelings[0].action=delete"],
        "/metrics/serviceMonitor/relabelings/0/action",
    ),
    "relabel field typo": (
        ["--set", "servers.podMonitor.metricRelabelings[0].source_labels={job}"],
        "source_labels",
    ),
    "hashmod without modulus": (
        [
            "--set",
            "pushgateway.serviceMonitor.relabelings[0].action=hashmod,"
            "pushgateway.serviceMonitor.relabelings[0].targetLabel=__tmp_hash",
        ],
        "missing property 'modulus'",
    ),
    "monitor namespace not a name": (
        ["--set", "metrics.serviceMonitor.namespace=Monitoring"],
        "/metrics/serviceMonitor/namespace",
    ),
    "scrape timeout without unit": (
        ["--set", "servers.podMonitor.scrapeTimeout=10"],
        "/servers/podMonitor/scrapeTimeout",
    ),
    "node affinity operator": (
        ["--set", f"{_NODE_TERM}.key=gpu,{_NODE_TERM}.operator=Equal"],
        f"/{_NODE_TERM.replace('.', '/').replace('[', '/').replace(']', '')}/operator",
    ),
    "affinity weight out of range": (
        ["--set", f"{_POD_PREFERRED}.weight=101,{_POD_PREFERRED}.podAffinityTerm.topologyKey=zone"],
        "/workloadPods/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/0"
        "/weight",
    ),
    "pod affinity term without topologyKey": (
        [
            "--set",
            "workloadPods.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution"
            "[0].namespaces={ml}",
        ],
        "topologyKey",
    ),
    "affinity field typo": (["--set", "workloadPods.affinity.nodeAfinity.x=1"], "nodeAfinity"),
    # Only the ids can change; nothing may weaken the restricted securityContext.
    "workload securityContext unknown key": (
        ["--set", "workloadPods.securityContext.privileged=true"],
        "privileged",
    ),
    "workload runs as root": (
        ["--set", "workloadPods.securityContext.runAsUser=0"],
        "/workloadPods/securityContext/runAsUser",
    ),
    "pod annotation key with a space": (
        ["--set-string", "workloadPods.podAnnotations.team owner=ml"],
        "invalid propertyName 'team owner'",  # Helm's location for a bad key is not the key's
    ),
    # The operator pod's tolerations, affinity and extra env are typed like the workloads'.
    "operator toleration typo": (
        ["--set", "tolerations[0].key=a,tolerations[0].efect=NoSchedule"],
        "efect",
    ),
    "operator affinity typo": (["--set", "affinity.nodeAfinity.x=1"], "nodeAfinity"),
    "extra env with value and valueFrom": (
        [
            "--set",
            "operator.extraEnv[0].name=A,operator.extraEnv[0].value=b,"
            "operator.extraEnv[0].valueFrom.fieldRef.fieldPath=metadata.name",
        ],
        "/operator/extraEnv/0",
    ),
    "metrics peer typo": (
        ["--set", "networkPolicy.metricsFrom[0].namespaceSelecter.matchLabels.a=b"],
        "namespaceSelecter",
    ),
    "extra env secret without key": (
        [
            "--set",
            "operator.extraEnv[0].name=A,operator.extraEnv[0].valueFrom.secretKeyRef.name=s",
        ],
        "missing property 'key'",
    ),
    "no replica": (["--set", "replicaCount=0"], "/replicaCount"),
    "replicas as words": (["--set-string", "replicaCount=two"], "/replicaCount"),
    "lease in fractions": (
        ["--set", "leaderElection.leaseDurationSeconds=7.5"],
        "/leaderElection/leaseDurationSeconds",
    ),
    "lease knob typo": (["--set", "leaderElection.renewSecond=2"], "renewSecond"),
}
# Rules across two values, which JSON Schema cannot state: the chart refuses them as it renders.
BAD_VALUE_PAIRS = {
    "renewing slower than half the lease": (
        ["--set", "leaderElection.leaseDurationSeconds=10,leaderElection.renewSeconds=6"],
        "leaderElection.renewSeconds (6) is more than half of leaderElection.leaseDurationSeconds",
    ),
    "probe port is the metrics port": (
        ["--set", "operator.probePort=9090"],
        "operator.probePort and operator.metricsPort are both 9090",
    ),
    "metrics port is the probe port": (
        ["--set", "operator.metricsPort=8080"],
        "operator.probePort and operator.metricsPort are both 8080",
    ),
    "disabled alert that is not one": (
        ["--set", "prometheusRule.enabled=true,prometheusRule.disabledAlerts={KubeloopNope}"],
        "prometheusRule.disabledAlerts: 'KubeloopNope' is not an alert of the chart",
    ),
}
# The nearest good values of the cases above still render.
GOOD_VALUES = {
    "existing account, named": ["--set", "serviceAccount.create=false,serviceAccount.name=ops"],
    "ports moved apart": ["--set", "operator.probePort=9091,operator.metricsPort=9092"],
    "no extra args": ["--set", "operator.extraArgs=null"],
    "workload pull secrets": ["--set", "workloadPods.imagePullSecrets={regcred,ml.registry}"],
    "runbooks elsewhere": ["--set", "prometheusRule.runbookUrl=https://wiki.example.com/rb"],
    "workload placement": [
        "--set",
        "workloadPods.tolerations[0].key=gpu,workloadPods.tolerations[0].operator=Exists,"
        "workloadPods.priorityClassName=ml-batch,workloadPods.nodeSelector.pool=ml",
    ],
    "two replicas with a faster lease": [
        "--set",
        "replicaCount=2,leaderElection.leaseDurationSeconds=10,leaderElection.renewSeconds=2",
    ],
    "disruption budget by minAvailable": [
        "--set",
        "podDisruptionBudget.enabled=true,podDisruptionBudget.minAvailable=0,"
        "podDisruptionBudget.maxUnavailable=",
    ],
    "disruption budget as a percentage": [
        "--set",
        "podDisruptionBudget.enabled=true,podDisruptionBudget.maxUnavailable=100%",
    ],
    "seccomp profile from the node": [
        "--set",
        "podSecurityContext.seccompProfile.type=Localhost,"
        "podSecurityContext.seccompProfile.localhostProfile=profiles/kubeloop.json",
    ],
    "low port allowed": ["--set", "securityContext.capabilities.add={NET_BIND_SERVICE}"],
    "spread best effort": [
        "--set",
        "topologySpreadConstraints[0].maxSkew=2,"
        "topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone,"
        "topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
    ],
    "hashmod with modulus": [
        "--set",
        "pushgateway.serviceMonitor.relabelings[0].action=HashMod,"
        "pushgateway.serviceMonitor.relabelings[0].modulus=2,"
        "pushgateway.serviceMonitor.relabelings[0].targetLabel=__tmp_hash",
    ],
    "workload node affinity": ["--set", f"{_NODE_TERM}.key=gpu,{_NODE_TERM}.operator=Exists"],
    "workload ids left to the platform (OpenShift)": ["--set", "workloadPods.securityContext=null"],
    "extra env from a Secret": [
        "--set",
        "operator.extraEnv[0].name=A,operator.extraEnv[0].valueFrom.secretKeyRef.name=s,"
        "operator.extraEnv[0].valueFrom.secretKeyRef.key=k",
    ],
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_bad_values_are_refused_by_the_schema(helm: str, case: str) -> None:
    args, where = BAD_VALUES[case]
    with pytest.raises(RenderError) as exc:
        render(helm, *args)
    message = str(exc.value)
    assert "values don't meet the specifications of the schema" in message
    assert where in message, message


def _lint(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm, "lint", "--strict", str(CHART), *args], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_bad_values_fail_helm_lint(helm: str, case: str) -> None:
    args, where = BAD_VALUES[case]
    proc = _lint(helm, *args)
    assert proc.returncode != 0, proc.stdout
    assert where in proc.stdout + proc.stderr


@pytest.mark.parametrize("case", list(BAD_VALUE_PAIRS))
def test_conflicting_values_are_refused_by_template_and_lint(helm: str, case: str) -> None:
    args, message = BAD_VALUE_PAIRS[case]
    with pytest.raises(RenderError) as exc:
        render(helm, *args)
    assert message in str(exc.value)
    # `helm lint` turns a template's `fail` into a log line; the chart still stops it.
    proc = _lint(helm, *args)
    assert proc.returncode != 0, proc.stdout
    assert message in proc.stdout + proc.stderr


@pytest.mark.parametrize("case", list(GOOD_VALUES))
def test_good_values_next_to_the_refused_ones_render_and_lint(helm: str, case: str) -> None:
    args = GOOD_VALUES[case]
    assert render(helm, *args)
    proc = _lint(helm, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_existing_service_account_is_the_one_bound(helm: str) -> None:
    objs = render(helm, "--set", "serviceAccount.create=false,serviceAccount.name=ops")
    assert not _by_kind(objs, "ServiceAccount")
    (deploy,) = _by_kind(objs, "Deployment")
    assert deploy["spec"]["template"]["spec"]["serviceAccountName"] == "ops"
    for binding in _by_kind(objs, "ClusterRoleBinding"):
        assert binding["subjects"][0]["name"] == "ops"


def test_chart_crds_identical_to_generated() -> None:
    generated = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    in_chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert generated, "crds/ is empty"
    assert in_chart.keys() == generated.keys(), "run `make crds` (it copies into the chart)"
    for name, text in generated.items():
        assert in_chart[name] == text, f"charts/kubeloop/crds/{name} is stale: run `make crds`"


def test_crds_apply_before_custom_resources_in_argocd() -> None:
    for path in (CHART / "crds").glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        assert crd["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "-10"


# (apiGroup, resource, verb) the operator uses: exactly these, no more, no less.
NAMESPACED_PERMISSIONS = {
    *(
        ("kubeloop.io", r, v)
        for r in ("trainingpipelines", "modeldeployments", "driftmonitors")
        for v in ("get", "list", "watch", "patch")
    ),
    *(
        ("kubeloop.io", f"{r}/status", v)
        for r in ("trainingpipelines", "modeldeployments", "driftmonitors")
        for v in ("get", "patch")
    ),
    *(
        (g, r, v)
        for g, r in (
            ("batch", "jobs"),
            ("batch", "cronjobs"),
            ("apps", "deployments"),
            ("", "services"),
            ("autoscaling", "horizontalpodautoscalers"),
        )
        for v in ("get", "list", "watch", "create", "patch", "delete")
    ),
    *(("", "pods", v) for v in ("get", "list", "watch")),
    *(("networking.k8s.io", "networkpolicies", v) for v in ("get", "create", "patch", "delete")),
    *((g, "events", v) for g in ("", "events.k8s.io") for v in ("create", "patch")),
}
CLUSTER_PERMISSIONS = {
    ("", "namespaces", "list"),
    ("", "namespaces", "watch"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
}


# The replicas' leader election: its Lease, in the release namespace only (a Role, never in the
# ClusterRole). `create` cannot be limited to a name; reading and renewing are.
LEADER_RULES = [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "resourceNames": ["kubeloop-leader"],
        "verbs": ["get", "update"],
    },
]


def _leader_role(role: dict[str, Any]) -> bool:
    return role["kind"] == "Role" and role["metadata"]["name"].endswith("-leader")


def _permissions(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    out = set()
    for rule in role["rules"]:
        assert "nonResourceURLs" not in rule
        assert "resourceNames" not in rule or _leader_role(role), rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), rule
                    out.add((group, resource, verb))
    return out


def _bound_to_operator(
    objs: list[dict[str, Any]], kind: str, name: str, namespace: str | None
) -> bool:
    binding_kind = "RoleBinding" if kind == "Role" else "ClusterRoleBinding"
    for binding in _by_kind(objs, binding_kind):
        if binding["roleRef"]["name"] != name or binding["roleRef"]["kind"] != kind:
            continue
        if namespace and binding["metadata"]["namespace"] != namespace:
            continue
        return binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "kubeloop", "namespace": "kubeloop-system"}
        ]
    return False


def test_rbac_cluster_wide_is_exactly_the_operators_verbs(helm: str) -> None:
    objs = render(helm)
    granted: set[tuple[str, str, str]] = set()
    for role in _by_kind(operator_roles(objs), "ClusterRole"):
        assert _bound_to_operator(objs, "ClusterRole", role["metadata"]["name"], None)
        granted |= _permissions(role)
    (leader,) = _by_kind(objs, "Role")
    assert leader["metadata"]["namespace"] == "kubeloop-system" and _leader_role(leader)
    assert leader["rules"] == LEADER_RULES
    assert _bound_to_operator(objs, "Role", leader["metadata"]["name"], "kubeloop-system")
    assert granted == NAMESPACED_PERMISSIONS | CLUSTER_PERMISSIONS


def test_the_lease_role_names_the_lease_the_operator_is_told_to_use(helm: str) -> None:
    objs = render(helm, "--set", "fullnameOverride=ml-ops", namespace="ops")
    (leader,) = _by_kind(objs, "Role")
    (deploy,) = _by_kind(objs, "Deployment")
    env = {e["name"]: e for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KUBELOOP_LEASE_NAME"]["value"] == "ml-ops-leader"
    assert leader["rules"][1]["resourceNames"] == ["ml-ops-leader"]
    assert leader["metadata"]["namespace"] == "ops"
    # Identity and namespace from the pod itself (downward API).
    assert env["KUBELOOP_POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    namespace = {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["KUBELOOP_OPERATOR_NAMESPACE"]["valueFrom"] == namespace


def test_the_operator_holds_no_rbac_to_give_workload_pods(helm: str) -> None:
    """Workload pods need no Kubernetes API access (they mount no token): the operator makes
    no ServiceAccount, Role or RoleBinding for them, so it holds no verb over those."""
    rbac = {"serviceaccounts", "serviceaccounts/token", "roles", "rolebindings"}
    rbac |= {"clusterroles", "clusterrolebindings"}
    for args in ([], ["--set", "watchNamespaces={ml}"]):
        for role in operator_roles(render(helm, *args)):
            held = {resource for _, resource, _ in _permissions(role)}
            assert not held & rbac, (args, sorted(held & rbac))


def test_rbac_watch_namespaces_uses_namespaced_roles(helm: str) -> None:
    objs = render(helm, "--set", "watchNamespaces={ml,team-b}")
    (cluster_role,) = _by_kind(operator_roles(objs), "ClusterRole")
    assert _permissions(cluster_role) == CLUSTER_PERMISSIONS
    roles = [r for r in _by_kind(objs, "Role") if not _leader_role(r)]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["ml", "team-b"]
    for role in roles:
        assert _permissions(role) == NAMESPACED_PERMISSIONS
        assert _bound_to_operator(
            objs, "Role", role["metadata"]["name"], role["metadata"]["namespace"]
        )
    (deploy,) = _by_kind(objs, "Deployment")
    args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=ml" in args and "--namespace=team-b" in args
    assert "--all-namespaces" not in args


def _pods(objs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    pods = []
    for obj in objs:
        if obj["kind"] == "Pod":
            pods.append((obj["metadata"]["name"], obj["spec"]))
        elif obj["kind"] in ("Deployment", "Job", "DaemonSet", "StatefulSet"):
            pods.append((obj["metadata"]["name"], obj["spec"]["template"]["spec"]))
    return pods


def test_pods_meet_pod_security_standard_restricted(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    name, objs = rendered
    pods = _pods(objs)
    assert len(pods) == 2, "the operator Deployment and the helm test Pod"
    for pod_name, spec in pods:
        where = f"{name}: {pod_name}"
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(host), where
        assert all("hostPath" not in v for v in spec.get("volumes", [])), where
        pod_sc = spec.get("securityContext", {})
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        for container in spec["containers"] + spec.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["runAsNonRoot"] is True, where
            # Unset on OpenShift, where the SCC assigns one; never root.
            assert sc.get("runAsUser", pod_sc.get("runAsUser")) != 0, where
            assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"], where
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert not sc.get("privileged"), where
            assert "limits" in container["resources"], where
            assert not any(p.get("hostPort") for p in container.get("ports", [])), where


def test_operator_deployment_rolls_out_a_follower_first_with_probes_on_every_replica(
    helm: str,
) -> None:
    (deploy,) = _by_kind(render(helm), "Deployment")
    spec = deploy["spec"]
    assert spec["replicas"] == 1
    # The new pod is ready as a follower before an old one stops (and releases the Lease).
    rolling = {"maxSurge": 1, "maxUnavailable": 0}
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": rolling}
    container = spec["template"]["spec"]["containers"][0]
    assert container["args"][0] == "operator"
    assert "--liveness=http://0.0.0.0:8080/healthz" in container["args"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"probes": 8080, "metrics": 9090}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "probes"}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KUBELOOP_PUSHGATEWAY_URL"].startswith("http://")
    for image in ("TRAINER", "TRAINER_GPU", "SERVER", "MONITOR"):
        assert env[f"KUBELOOP_{image}_IMAGE"].startswith("ghcr.io/kubeloop/")


def test_prometheus_rule_renders_the_one_rules_file(helm: str) -> None:
    objs = render(helm, "--set", "prometheusRule.enabled=true")
    (rule,) = _by_kind(objs, "PrometheusRule")
    source = CHART / "files" / "kubeloop-rules.yaml"
    assert rule["spec"] == yaml.safe_load(source.read_text())
    assert (ROOT / "deploy/prometheus/kubeloop-rules.yaml").resolve() == source.resolve()


def test_prometheus_rule_runbooks_point_where_the_values_say(helm: str) -> None:
    mirror = "https://wiki.example.com/ml/kubeloop-runbooks"
    objs = render(
        helm, "--set", "prometheusRule.enabled=true", "--set", f"prometheusRule.runbookUrl={mirror}"
    )
    (rule,) = _by_kind(objs, "PrometheusRule")
    alerts = [r for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r]
    assert len(alerts) == 9
    for alert in alerts:
        assert alert["annotations"]["runbook_url"] == f"{mirror}#{alert['alert'].lower()}"


def test_prometheus_rule_leaves_out_the_disabled_alerts_only(helm: str) -> None:
    disabled = [
        "KubeloopInferenceLatencyHigh",
        "KubeloopDriftDetected",
        "KubeloopDataQualityIssue",
        "KubeloopModelPerformanceDegraded",
        "KubeloopDriftMonitorNotRun",
    ]
    objs = render(
        helm,
        "--set",
        f"prometheusRule.enabled=true,prometheusRule.disabledAlerts={{{','.join(disabled)}}}",
    )
    (rule,) = _by_kind(objs, "PrometheusRule")
    source = yaml.safe_load((CHART / "files" / "kubeloop-rules.yaml").read_text())
    wanted = [
        {"name": g["name"], "rules": [r for r in g["rules"] if r["alert"] not in disabled]}
        for g in source["groups"]
    ]
    wanted = [g for g in wanted if g["rules"]]  # kubeloop.drift had only disabled ones
    assert rule["spec"]["groups"] == wanted
    assert [g["name"] for g in wanted] == ["kubeloop.operator", "kubeloop.serving"]


def test_operator_pod_labels_and_dashboard_annotations(helm: str) -> None:
    objs = render(
        helm,
        "--set",
        "podLabels.team=ml-platform,podLabels.app\\.kubernetes\\.io/component=other,"
        "dashboard.annotations.grafana_folder=ML",
    )
    (deployment,) = _by_kind(objs, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["team"] == "ml-platform"
    assert labels["app.kubernetes.io/component"] == "operator"  # the chart's own label wins
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    (configmap,) = _by_kind(objs, "ConfigMap")
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "ML"}


def test_service_monitors(helm: str) -> None:
    objs = render(helm, *VALUE_SETS["watch-namespaces"])
    monitors = {m["metadata"]["name"]: m["spec"] for m in _by_kind(objs, "ServiceMonitor")}
    operator = monitors["kubeloop"]
    assert operator["jobLabel"] == "kubeloop.io/scrape-job"
    assert operator["endpoints"][0]["port"] == "metrics"
    # The `namespace` of kubeloop_training_runs_total is the pipeline's, not the operator's.
    assert operator["endpoints"][0]["honorLabels"] is True
    (service,) = _by_kind(objs, "Service")
    assert service["metadata"]["labels"]["kubeloop.io/scrape-job"] == "kubeloop-operator"
    assert operator["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    # Pushed drift metrics keep their namespace/monitor labels.
    assert monitors["kubeloop-pushgateway"]["endpoints"][0]["honorLabels"] is True
    # Model servers, as the operator labels them, in the watched namespaces.
    (pods,) = _by_kind(objs, "PodMonitor")
    assert pods["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/managed-by": "kubeloop",
        "app.kubernetes.io/component": "serving",
    }
    assert pods["spec"]["namespaceSelector"] == {"matchNames": ["ml", "team-b"]}
    assert pods["spec"]["podMetricsEndpoints"][0]["port"] == "http"


def test_network_policies_allow_only_what_is_needed(helm: str) -> None:
    objs = render(helm)
    policies = {p["metadata"]["name"]: p["spec"] for p in _by_kind(objs, "NetworkPolicy")}
    operator = policies["kubeloop"]
    assert operator["policyTypes"] == ["Ingress", "Egress"]
    assert [p["port"] for p in operator["ingress"][0]["ports"]] == ["metrics"]
    out_ports = sorted(str(p["port"]) for rule in operator["egress"] for p in rule["ports"])
    # DNS, the API server, the model servers' `http` port (canary analysis), the training
    # pods' `progress` port (live progress) and the Pushgateway (groups of deleted or
    # suspended monitors).
    assert out_ports == ["443", "53", "53", "6443", "9091", "http", "progress"]
    for url, port in (("https://push.example", 443), ("http://push.example", 80), ("", None)):
        rendered = render(helm, "--set", f"pushgateway.url={url}")
        (policy,) = (
            p for p in _by_kind(rendered, "NetworkPolicy") if p["metadata"]["name"] == "kubeloop"
        )
        ports = [p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]]
        assert (port in ports) if port else (9091 not in ports), (url, ports)
    test = policies["kubeloop-test"]
    assert test["ingress"] == []
    assert test["egress"][1]["ports"] == [{"port": 9090, "protocol": "TCP"}]
    # Every pod of the chart is selected by a policy.
    for _, spec_labels in (
        (d["metadata"]["name"], d["spec"]["template"]["metadata"]["labels"])
        for d in _by_kind(objs, "Deployment")
    ):
        assert operator["podSelector"]["matchLabels"].items() <= spec_labels.items()
    (pod,) = _by_kind(objs, "Pod")
    assert test["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert not _by_kind(render(helm, "--set", "networkPolicy.enabled=false"), "NetworkPolicy")


METRICS_ON_DASHBOARD = [
    "kubeloop_training_runs_total",
    "kubeloop_training_metric",
    "kubeloop_reconcile_duration_seconds",
    "kubeloop_inference_requests_total",
    "kubeloop_inference_request_duration_seconds",
    "kubeloop_drift_score",
    "kubeloop_drift_share",
    "kubeloop_drift_detected",
    "kubeloop_drift_last_success_timestamp_seconds",
]


def test_grafana_dashboard_configmap(helm: str) -> None:
    (configmap,) = _by_kind(render(helm), "ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(configmap["data"]["kubeloop.json"])
    assert dashboard["uid"] == "kubeloop"
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    for metric in METRICS_ON_DASHBOARD:
        assert metric in exprs, metric
    for by in ("by (namespace, model, version)", "by (namespace, pipeline, result)"):
        assert by in exprs
    assert "{{feature}}" in json.dumps(dashboard)


def test_helm_test_hook(helm: str) -> None:
    pods = _by_kind(render(helm), "Pod")
    (test_pod,) = pods
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert "kubeloop-metrics:9090/metrics" in test_pod["spec"]["containers"][0]["args"][0]
    assert "imagePullSecrets" not in test_pod["spec"]
    # From a private registry it pulls with the operator's secrets (its image by default).
    (custom_pod,) = _by_kind(render(helm, *VALUE_SETS["custom"]), "Pod")
    assert custom_pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]


def test_notes_render(helm: str) -> None:
    proc = subprocess.run(
        [helm, "install", "kubeloop", str(CHART), "--dry-run=client", "-n", "kubeloop-system"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "kubectl apply --server-side" in proc.stdout
    assert "helm test kubeloop" in proc.stdout


def _aggregated_to(role: dict[str, Any]) -> set[str]:
    labels = role["metadata"]["labels"]
    prefix = "rbac.authorization.k8s.io/aggregate-to-"
    return {
        k.removeprefix(prefix) for k, v in labels.items() if k.startswith(prefix) and v == "true"
    }


def test_user_roles_aggregate_into_view_edit_and_admin(helm: str) -> None:
    """Namespace viewers read the three kinds; editors and admins also manage them; no one but
    the operator writes their status."""
    objs = render(helm)
    roles = {r["metadata"]["name"]: r for r in _by_kind(objs, "ClusterRole") if is_user_role(r)}
    assert set(roles) == {"kubeloop-view", "kubeloop-edit"}
    view, edit = roles["kubeloop-view"], roles["kubeloop-edit"]
    assert _aggregated_to(view) == {"view", "edit", "admin"}
    assert _aggregated_to(edit) == {"edit", "admin"}
    kinds = {"trainingpipelines", "modeldeployments", "driftmonitors"}
    read = {(g, r, v) for g, r, v in _permissions(view)}
    assert {("kubeloop.io", k, v) for k in kinds for v in ("get", "list", "watch")} <= read
    assert {v for _, _, v in read} == {"get", "list", "watch"}  # view writes nothing
    written = _permissions(edit)
    assert {("kubeloop.io", k, "create") for k in kinds} <= written
    assert ("kubeloop.io", "modeldeployments/scale", "patch") in written  # kubectl scale md
    assert not any(r.endswith("/status") for _, r, _ in written)
    assert {g for g, _, _ in read | written} == {"kubeloop.io"}  # nothing beyond the kinds
    for role in roles.values():  # never bound: Kubernetes aggregates them into its roles
        assert not _bound_to_operator(objs, "ClusterRole", role["metadata"]["name"], None)


def test_user_roles_can_be_switched_off(helm: str) -> None:
    objs = render(helm, "--set", "rbac.aggregateClusterRoles=false")
    assert not any(is_user_role(o) for o in objs)
    assert _by_kind(operator_roles(objs), "ClusterRole")


def _hardened() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((HERE / "values-hardened.yaml").read_text())
    return values


def test_rbac_create_false_leaves_the_operators_roles_to_the_platform(helm: str) -> None:
    for args in (VALUE_SETS["hardened"], ["--set", "rbac.create=false,watchNamespaces={ml}"]):
        objs = render(helm, *args)
        assert not operator_roles(objs), args
        assert not _by_kind(objs, "ClusterRoleBinding") and not _by_kind(objs, "RoleBinding")
        # The user roles follow rbac.aggregateClusterRoles alone.
        assert {r["metadata"]["name"] for r in objs if is_user_role(r)} == {
            "kubeloop-view",
            "kubeloop-edit",
        }
    (deploy,) = _by_kind(render(helm, *VALUE_SETS["hardened"]), "Deployment")
    assert deploy["spec"]["template"]["spec"]["serviceAccountName"] == "kubeloop-operator"


RESTRICTED_POD = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _security_contexts(objs: list[dict[str, Any]]) -> list[tuple[Any, Any]]:
    """(pod, container) security contexts of the operator pod and the helm test pod."""
    return [
        (spec["securityContext"], c["securityContext"])
        for _, spec in _pods(objs)
        for c in spec["containers"]
    ]


def test_security_contexts_default_override_key_by_key_and_null_drops_a_key(helm: str) -> None:
    assert _security_contexts(render(helm)) == [(RESTRICTED_POD, RESTRICTED_CONTAINER)] * 2
    objs = render(
        helm,
        "--set",
        "podSecurityContext.runAsUser=20000,podSecurityContext.fsGroupChangePolicy=OnRootMismatch,"
        "securityContext.capabilities.add={NET_BIND_SERVICE}",
    )
    pod = {**RESTRICTED_POD, "runAsUser": 20000, "fsGroupChangePolicy": "OnRootMismatch"}
    capabilities = {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    container = {**RESTRICTED_CONTAINER, "capabilities": capabilities}
    assert _security_contexts(objs) == [(pod, container)] * 2
    # OpenShift: restricted-v2 assigns UID, GID and fsGroup; the rest stays as it was.
    ids = ("runAsUser", "runAsGroup", "fsGroup")
    pod = {k: v for k, v in RESTRICTED_POD.items() if k not in ids}
    container = {k: v for k, v in RESTRICTED_CONTAINER.items() if k not in ids}
    assert _security_contexts(render(helm, *VALUE_SETS["openshift"])) == [(pod, container)] * 2


def test_topology_spread_selects_the_operator_pod_unless_told_otherwise(helm: str) -> None:
    (deploy,) = _by_kind(render(helm), "Deployment")
    assert "topologySpreadConstraints" not in deploy["spec"]["template"]["spec"]
    (deploy,) = _by_kind(render(helm, *VALUE_SETS["hardened"]), "Deployment")
    zone, host = deploy["spec"]["template"]["spec"]["topologySpreadConstraints"]
    wanted_zone, wanted_host = _hardened()["topologySpreadConstraints"]
    selector = deploy["spec"]["selector"]["matchLabels"]
    assert zone == {**wanted_zone, "labelSelector": {"matchLabels": selector}}
    assert selector.items() <= deploy["spec"]["template"]["metadata"]["labels"].items()
    assert host == wanted_host  # its own labelSelector is kept as written


def test_two_replicas_get_a_budget_of_one_and_prefer_different_nodes(helm: str) -> None:
    objs = render(helm, "--set", "replicaCount=2")
    (deploy,) = _by_kind(objs, "Deployment")
    (pdb,) = _by_kind(objs, "PodDisruptionBudget")
    selector = deploy["spec"]["selector"]["matchLabels"]
    assert deploy["spec"]["replicas"] == 2
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": selector}}
    (term,) = deploy["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["podAffinityTerm"] == {
        "topologyKey": "kubernetes.io/hostname",
        "labelSelector": {"matchLabels": selector},
    }
    # The user's own affinity replaces it as a whole (the hardened set: system nodes).
    (deploy,) = _by_kind(render(helm, *VALUE_SETS["hardened"]), "Deployment")
    assert deploy["spec"]["template"]["spec"]["affinity"] == _hardened()["affinity"]


def test_pod_disruption_budget_selects_the_operator_pod_with_one_bound(helm: str) -> None:
    assert not _by_kind(render(helm), "PodDisruptionBudget")
    objs = render(helm, *VALUE_SETS["hardened"])
    (pdb,) = _by_kind(objs, "PodDisruptionBudget")
    (deploy,) = _by_kind(objs, "Deployment")
    selector = deploy["spec"]["selector"]["matchLabels"]
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}
    # minAvailable instead (maxUnavailable ""), 0 included: it is a bound, not "unset".
    for bound in ("0", "50%"):
        objs = render(
            helm,
            "--set",
            "podDisruptionBudget.enabled=true,podDisruptionBudget.maxUnavailable=,"
            f"podDisruptionBudget.minAvailable={bound}",
        )
        (pdb,) = _by_kind(objs, "PodDisruptionBudget")
        assert pdb["spec"] == {
            "minAvailable": int(bound) if bound.isdigit() else bound,
            "selector": {"matchLabels": selector},
        }


def test_monitors_in_their_own_namespace_with_relabelings(helm: str) -> None:
    values = _hardened()
    objs = render(helm, *VALUE_SETS["hardened"])
    monitors = {
        (m["kind"], m["metadata"]["name"]): m
        for m in objs
        if m["kind"] in ("ServiceMonitor", "PodMonitor")
    }
    cases = {
        ("ServiceMonitor", "kubeloop"): (values["metrics"]["serviceMonitor"], "endpoints"),
        ("PodMonitor", "kubeloop-servers"): (
            values["servers"]["podMonitor"],
            "podMetricsEndpoints",
        ),
        ("ServiceMonitor", "kubeloop-pushgateway"): (
            values["pushgateway"]["serviceMonitor"],
            "endpoints",
        ),
    }
    assert monitors.keys() == cases.keys()
    for key, (wanted, endpoints) in cases.items():
        monitor = monitors[key]
        assert monitor["metadata"]["namespace"] == wanted.get("namespace", "kubeloop-system")
        (endpoint,) = monitor["spec"][endpoints]
        for field in ("relabelings", "metricRelabelings", "scrapeTimeout"):
            assert endpoint[field] == wanted[field], (key, field)
    # Moved to `monitoring`, they still find what they scrape where it runs.
    operator = monitors[("ServiceMonitor", "kubeloop")]["spec"]
    assert operator["namespaceSelector"] == {"matchNames": ["kubeloop-system"]}
    assert monitors[("PodMonitor", "kubeloop-servers")]["spec"]["namespaceSelector"] == {
        "any": True
    }
    pushgateway = monitors[("ServiceMonitor", "kubeloop-pushgateway")]["spec"]
    assert pushgateway["namespaceSelector"] == {"matchNames": ["monitoring"]}
    # Unset, no relabelings key at all.
    for monitor in render(helm, *VALUE_SETS["watch-namespaces"]):
        for endpoint in monitor.get("spec", {}).get("endpoints", []) + monitor.get("spec", {}).get(
            "podMetricsEndpoints", []
        ):
            assert "relabelings" not in endpoint and "metricRelabelings" not in endpoint


# The operator-side knobs of issue 20, each set by at least one value set (so linted,
# validated and scanned by checkov). podDisruptionBudget.minAvailable, the alternative to
# maxUnavailable, is rendered by test_pod_disruption_budget_selects_the_operator_pod_with_one_bound.
OPERATOR_KNOBS = [
    "podSecurityContext",
    "securityContext",
    "topologySpreadConstraints",
    "podDisruptionBudget.enabled",
    "podDisruptionBudget.maxUnavailable",
    "replicaCount",
    "leaderElection.leaseDurationSeconds",
    "leaderElection.renewSeconds",
    "rbac.create",
    *(
        f"{monitor}.{knob}"
        for monitor in (
            "metrics.serviceMonitor",
            "servers.podMonitor",
            "pushgateway.serviceMonitor",
        )
        for knob in ("relabelings", "metricRelabelings", "scrapeTimeout")
    ),
    "metrics.serviceMonitor.namespace",
    "servers.podMonitor.namespace",
]


def test_every_operator_knob_is_in_a_value_set() -> None:
    value_sets = [yaml.safe_load(Path(args[1]).read_text()) for args in VALUE_SETS.values() if args]

    def sets(values: dict[str, Any], path: str) -> bool:
        for key in path.split("."):
            if not isinstance(values, dict) or key not in values:
                return False
            values = values[key]
        return True

    missing = [knob for knob in OPERATOR_KNOBS if not any(sets(v, knob) for v in value_sets)]
    assert not missing
