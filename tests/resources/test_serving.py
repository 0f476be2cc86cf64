"""Serving children: rollout without downtime, one Service over both tracks, HPA, monitor env."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from tests.resources.cases import DEFAULTS, UID

from kubeloop.api.common import LabelSelector, NetworkPolicyPeer
from kubeloop.api.deployment import ModelDeploymentSpec
from kubeloop.api.monitor import DriftMonitorSpec
from kubeloop.resources.common import Owner, base_env
from kubeloop.resources.monitoring import build_monitor_cronjob, reference_uri
from kubeloop.resources.serving import (
    build_hpa,
    build_network_policy,
    build_server_deployment,
    build_service,
    service_url,
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


def _server(spec: dict[str, Any]) -> dict[str, Any]:
    model = ModelDeploymentSpec.model_validate({"model": {"uri": "s3://models/versions/1"}, **spec})
    return build_server_deployment(
        OWNER, model, model_uri="s3://models/versions/1", model_version="1", defaults=DEFAULTS
    )


def test_auth_token_reaches_the_server_only_by_secret_key_ref() -> None:
    dep = _server({"auth": {"tokenSecretRef": {"name": "churn-token", "key": "token"}}})
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    (token,) = [e for e in c["env"] if e["name"] == "KUBELOOP_AUTH_TOKEN"]
    assert token == {
        "name": "KUBELOOP_AUTH_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "churn-token", "key": "token"}},
    }
    # Health stays open: the probes need no token.
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    plain = _server({})["spec"]["template"]["spec"]["containers"][0]
    assert not [e for e in plain["env"] if e["name"].startswith(("KUBELOOP_AUTH", "KUBELOOP_TLS"))]


def test_tls_mounts_the_secret_read_only_and_probes_https() -> None:
    dep = _server({"tls": {"secretRef": {"name": "churn-tls"}}})
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "tls"]
    assert volume["secret"]["secretName"] == "churn-tls"
    assert volume["secret"]["defaultMode"] == 0o440
    assert {i["key"] for i in volume["secret"]["items"]} == {"tls.crt", "tls.key"}
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == "tls"]
    assert mount["readOnly"] is True
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["KUBELOOP_TLS_CERT_FILE"] == mount["mountPath"] + "/tls.crt"
    assert env["KUBELOOP_TLS_KEY_FILE"] == mount["mountPath"] + "/tls.key"
    assert c["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert c["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    tls = ModelDeploymentSpec.model_validate(
        {"model": {"uri": "s3://models/versions/1"}, "tls": {"secretRef": {"name": "churn-tls"}}}
    )
    assert service_url(OWNER, tls) == "https://churn.ml.svc:8080"
    # The restricted pod shape is kept: read-only root, non-root.
    assert c["securityContext"]["readOnlyRootFilesystem"] is True


OPERATOR = NetworkPolicyPeer(
    namespace_selector=LabelSelector(match_labels={"kubernetes.io/metadata.name": "kubeloop"}),
    pod_selector=LabelSelector(match_labels={"app.kubernetes.io/component": "operator"}),
)
OPERATOR_WIRE = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubeloop"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/component": "operator"}},
}
GATEWAY = {"namespaceSelector": {"matchLabels": {"team": "web"}}}
SAME_NAMESPACE_APP = {"podSelector": {"matchLabels": {"app": "shop"}}}


@pytest.mark.parametrize(
    ("policy", "peers", "sources"),
    [
        (None, (OPERATOR,), None),
        ({"enabled": False, "allowFrom": [GATEWAY]}, (OPERATOR,), None),
        ({"enabled": True}, (OPERATOR,), [OPERATOR_WIRE]),
        ({"enabled": True, "allowFrom": [GATEWAY]}, (OPERATOR,), [GATEWAY, OPERATOR_WIRE]),
        (
            {"enabled": True, "allowFrom": [GATEWAY, SAME_NAMESPACE_APP]},
            (),
            [GATEWAY, SAME_NAMESPACE_APP],
        ),
        # No peer at all: no ingress rule (a rule with an empty `from` would admit everyone).
        ({"enabled": True}, (), []),
    ],
)
def test_network_policy(
    policy: dict[str, Any] | None,
    peers: tuple[NetworkPolicyPeer, ...],
    sources: list[dict[str, Any]] | None,
) -> None:
    spec = ModelDeploymentSpec.model_validate(
        {
            "model": {"uri": "s3://models/versions/1"},
            **({"networkPolicy": policy} if policy else {}),
        }
    )
    built = build_network_policy(OWNER, spec, peers)
    if sources is None:
        assert built is None
        return
    assert built is not None
    assert built["metadata"]["ownerReferences"][0]["uid"] == UID
    assert built["spec"]["policyTypes"] == ["Ingress"]
    rules = built["spec"]["ingress"]
    if not sources:
        assert rules == []
    else:
        (rule,) = rules
        assert rule["from"] == sources
        assert rule["ports"] == [
            {"port": 8080, "protocol": "TCP"},
            {"port": 8081, "protocol": "TCP"},
        ]
    # It selects the pods of both tracks.
    selector = built["spec"]["podSelector"]["matchLabels"]
    for track in ("stable", "canary"):
        pods = build_server_deployment(
            OWNER, spec, model_uri="s3://models/versions/1", model_version="1",
            defaults=DEFAULTS, track=track,
        )["spec"]["template"]["metadata"]["labels"]  # fmt: skip
        assert selector.items() <= pods.items()
    assert "Secret" not in json.dumps(built)


def test_workloads_log_in_the_operators_format() -> None:
    """KUBELOOP_LOG_FORMAT=json on the operator reaches every workload's env; text, the
    default, adds no line (the golden pod specs stay as they are)."""
    plain = {e["name"] for e in base_env("ml", DEFAULTS)}
    assert "KUBELOOP_LOG_FORMAT" not in plain
    json_env = base_env("ml", dataclasses.replace(DEFAULTS, log_format="json"))
    assert {"name": "KUBELOOP_LOG_FORMAT", "value": "json"} in json_env
