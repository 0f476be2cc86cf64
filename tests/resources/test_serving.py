"""Serving children: rollout without downtime, one Service over both tracks, HPA, monitor env."""

from __future__ import annotations

from tests.resources.cases import DEFAULTS, UID

from kubeloop.api.deployment import ModelDeploymentSpec
from kubeloop.api.monitor import DriftMonitorSpec
from kubeloop.resources.common import Owner
from kubeloop.resources.monitoring import build_monitor_cronjob, reference_uri
from kubeloop.resources.serving import (
    build_hpa,
    build_server_deployment,
    build_service,
)

OWNER = Owner("kubeloop.io/v1alpha1", "ModelDeployment", "churn", "ml", UID)


def test_deployment_rolls_without_downtime_and_service_selects_both_tracks() -> None:
    spec = ModelDeploymentSpec.model_validate(
        {
            "model": {"uri": "s3://models/versions/1"},
            "replicas": 3,
            "payloadLogging": {"enabled": True, "destination": "s3://logs/x/"},
        }
    )
    dep = build_server_deployment(
        OWNER, spec, model_uri="s3://models/versions/1", model_version="1", defaults=DEFAULTS
    )
    canary = build_server_deployment(
        OWNER,
        spec,
        model_uri="s3://models/versions/2",
        model_version="2",
        defaults=DEFAULTS,
        track="canary",
        replicas=1,
    )
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert dep["spec"]["replicas"] == 3 and canary["spec"]["replicas"] == 1
    assert canary["metadata"]["name"] == "churn-canary"
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 8080, "grpc": 8081}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert (env["KUBELOOP_PORT"], env["KUBELOOP_GRPC_PORT"]) == ("8080", "8081")
    assert env["KUBELOOP_MODEL_URI"] == "s3://models/versions/1"
    assert env["KUBELOOP_PAYLOAD_LOG_URI"] == "s3://logs/x/"
    svc = build_service(OWNER)
    assert [
        (p["name"], p["port"], p["targetPort"], p.get("appProtocol")) for p in svc["spec"]["ports"]
    ] == [
        ("http", 8080, "http", None),
        ("grpc", 8081, "grpc", "grpc"),
    ]
    for d in (dep, canary):
        assert set(svc["spec"]["selector"].items()) <= set(
            d["spec"]["template"]["metadata"]["labels"].items()
        )
    assert dep["spec"]["selector"] != canary["spec"]["selector"]  # each owns only its pods
    assert build_hpa(OWNER, spec) is None


def test_hpa_targets_stable_deployment() -> None:
    spec = ModelDeploymentSpec.model_validate(
        {
            "model": {"uri": "s3://models/versions/1"},
            "autoscaling": {"minReplicas": 2, "maxReplicas": 5},
        }
    )
    hpa = build_hpa(OWNER, spec)
    assert hpa is not None
    assert hpa["spec"]["scaleTargetRef"]["name"] == "churn"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    dep = build_server_deployment(OWNER, spec, model_uri="u", model_version="1", defaults=DEFAULTS)
    assert dep["spec"]["replicas"] == 2


def test_monitor_cronjob_env_follows_contract() -> None:
    spec = DriftMonitorSpec.model_validate({"deploymentRef": {"name": "churn"}, "suspend": True})
    owner = Owner("kubeloop.io/v1alpha1", "DriftMonitor", "churn", "ml", UID)
    ref = reference_uri(spec, "s3://models/versions/3")
    assert ref == "s3://models/versions/3"
    assert (
        reference_uri(
            DriftMonitorSpec.model_validate(
                {"deploymentRef": {"name": "c"}, "reference": "s3://data/ref.parquet"}
            ),
            None,
        )
        == "s3://data/ref.parquet"
    )
    cj = build_monitor_cronjob(
        owner,
        spec,
        payload_log_uri="s3://logs/",
        reference=ref,
        model_version="3",
        defaults=DEFAULTS,
    )
    assert cj["spec"]["suspend"] is True and cj["spec"]["concurrencyPolicy"] == "Forbid"
    (c,) = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert c["command"] == ["kubeloop", "monitor"]
    assert env["KUBELOOP_MONITOR"] == "churn"
    assert env["KUBELOOP_PAYLOAD_LOG_URI"] == "s3://logs/"
    assert env["KUBELOOP_REFERENCE_URI"] == "s3://models/versions/3"
    assert env["KUBELOOP_MODEL_VERSION"] == "3"
    assert env["KUBELOOP_PUSHGATEWAY_URL"] == DEFAULTS.pushgateway_url


def test_pickles_reach_the_server_only_when_the_deployment_allows_them() -> None:
    def env_of(model: dict[str, object]) -> dict[str, str | None]:
        spec = ModelDeploymentSpec.model_validate({"model": model})
        dep = build_server_deployment(
            OWNER, spec, model_uri="s3://models/versions/1", model_version="1", defaults=DEFAULTS
        )
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        return {e["name"]: e.get("value") for e in c["env"]}

    assert "KUBELOOP_ALLOW_PICKLE" not in env_of({"uri": "s3://models/versions/1"})
    allowed = env_of({"uri": "s3://models/versions/1", "allowPickle": True})
    assert allowed["KUBELOOP_ALLOW_PICKLE"] == "true"
