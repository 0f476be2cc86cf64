"""ModelDeployment children: the server Deployment(s), the Service, the optional HPA and
the optional NetworkPolicy.

A canary is a second Deployment (`<name>-canary`) whose pods carry the same serving labels, so
the one Service spreads requests over stable and canary pods: the canary's traffic share is its
share of ready pods. The controller sizes the canary for each step (kubeloop.api.canary_split).
"""

from __future__ import annotations

from typing import Any, Literal

from kubeloop.api.common import NetworkPolicyPeer
from kubeloop.api.deployment import ModelDeploymentSpec
from kubeloop.resources.common import (
    TERMINATION_LOG,
    Owner,
    WorkloadDefaults,
    base_env,
    child_labels,
    owner_reference,
    pod_defaults,
    pod_metadata,
    pod_security_context,
    restricted_container_security_context,
    scratch_volumes,
    storage_env,
)

__all__ = [
    "GRPC_PORT",
    "PORT",
    "TLS_DIR",
    "TRACK_LABEL",
    "VERSION_LABEL",
    "build_hpa",
    "build_network_policy",
    "build_server_deployment",
    "build_service",
    "deployment_name",
    "service_url",
    "serving_selector",
]

PORT = 8080
TLS_DIR = "/etc/kubeloop/tls"  # the spec.tls Secret, mounted read-only
GRPC_PORT = 8081  # the V2 gRPC endpoint (inference.GRPCInferenceService)
TRACK_LABEL = "kubeloop.io/track"
VERSION_LABEL = "kubeloop.io/model-version"
_COMPONENT = "serving"
_APP = "kubeloop-server"
Track = Literal["stable", "canary"]


def deployment_name(owner: Owner, track: Track) -> str:
    """`<name>` for the stable track, `<name>-canary` for the canary."""
    return owner.name if track == "stable" else f"{owner.name}-canary"


def serving_selector(owner: Owner) -> dict[str, str]:
    """Labels of every serving pod of a ModelDeployment (both tracks): the Service selector."""
    return {"kubeloop.io/modeldeployment": owner.name, "app.kubernetes.io/component": _COMPONENT}


def service_url(owner: Owner, spec: ModelDeploymentSpec) -> str:
    """The in-cluster base URL of the V2 endpoint (https with spec.tls)."""
    scheme = "https" if spec.tls else "http"
    return f"{scheme}://{owner.name}.{owner.namespace}.svc:{PORT}"


def _security(spec: ModelDeploymentSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Env and the TLS Secret volume for spec.auth and spec.tls (nothing when both are off).

    The token travels only as a secretKeyRef: the pod spec names the Secret, never the value.
    """
    env: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    if spec.auth is not None:
        ref = spec.auth.token_secret_ref
        env.append(
            {
                "name": "KUBELOOP_AUTH_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
            }
        )
    if spec.tls is not None:
        env += [
            {"name": "KUBELOOP_TLS_CERT_FILE", "value": f"{TLS_DIR}/tls.crt"},
            {"name": "KUBELOOP_TLS_KEY_FILE", "value": f"{TLS_DIR}/tls.key"},
        ]
        # 0440: the server runs as a non-root uid whose group (fsGroup) owns the files.
        volumes.append(
            {
                "name": "tls",
                "secret": {
                    "secretName": spec.tls.secret_ref.name,
                    "defaultMode": 0o440,
                    "items": [
                        {"key": "tls.crt", "path": "tls.crt"},
                        {"key": "tls.key", "path": "tls.key"},
                    ],
                },
            }
        )
    return env, volumes


def build_server_deployment(
    owner: Owner,
    spec: ModelDeploymentSpec,
    *,
    model_uri: str,
    model_version: str,
    defaults: WorkloadDefaults,
    track: Track = "stable",
    replicas: int | None = None,
) -> dict[str, Any]:
    """The apps/v1 Deployment serving one model version over the V2 protocol.

    Rolling updates never take a ready pod away first (maxUnavailable 0) and new pods get
    traffic only once `/v2/health/ready` answers, so a version change has no downtime.
    `replicas` defaults to spec.replicas (autoscaling.minReplicas with an HPA).
    """
    name = deployment_name(owner, track)
    selector = {**serving_selector(owner), TRACK_LABEL: track}
    labels = {**child_labels(owner, _COMPONENT, _APP), TRACK_LABEL: track}
    selected = {**labels, VERSION_LABEL: model_version}
    if replicas is None:
        replicas = spec.autoscaling.min_replicas if spec.autoscaling else spec.replicas
    logging = spec.payload_logging
    env = [
        *base_env(owner.namespace, defaults),
        {"name": "KUBELOOP_MODEL_URI", "value": model_uri},
        {"name": "KUBELOOP_MODEL_NAME", "value": owner.name},
        {"name": "KUBELOOP_PORT", "value": str(PORT)},
        {"name": "KUBELOOP_GRPC_PORT", "value": str(GRPC_PORT)},
        {"name": "KUBELOOP_WORKERS", "value": str(spec.workers)},
        {"name": "KUBELOOP_MAX_BATCH_SIZE", "value": str(spec.batching.max_batch_size)},
        {"name": "KUBELOOP_MAX_LATENCY_MS", "value": f"{spec.batching.max_latency_ms:g}"},
        {
            "name": "KUBELOOP_PAYLOAD_LOG_URI",
            "value": (logging.destination or "") if logging.enabled else "",
        },
        {"name": "KUBELOOP_PAYLOAD_SAMPLE_RATE", "value": f"{logging.sample_rate:g}"},
        *storage_env(spec.storage_secret_ref),
    ]
    if spec.model.allow_pickle:  # only when set: existing Deployments keep their template
        env.append({"name": "KUBELOOP_ALLOW_PICKLE", "value": "true"})
    if spec.model.allow_custom_code:
        env.append({"name": "KUBELOOP_ALLOW_CUSTOM_CODE", "value": "true"})
    security_env, security_volumes = _security(spec)
    env += security_env
    volumes, mounts = scratch_volumes()
    volumes += security_volumes
    if security_volumes:
        mounts.append({"name": "tls", "mountPath": TLS_DIR, "readOnly": True})
    # HTTP is the API server's default: left out, so existing Deployments keep their template.
    scheme = {"scheme": "HTTPS"} if spec.tls else {}
    res = spec.resources
    limits = {"cpu": res.cpu, "memory": res.memory}
    if res.gpus > 0:
        limits[res.gpu_resource_name] = str(res.gpus)
        env.append({"name": "KUBELOOP_DEVICE", "value": "cuda"})
    container = {
        "name": "server",
        "image": spec.image or (defaults.server_gpu_image if res.gpus else defaults.server_image),
        "command": ["kubeloop", "serve"],
        "env": env,
        "ports": [
            {"name": "http", "containerPort": PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": "http", **scheme},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": "http", **scheme},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        "resources": {"requests": dict(limits), "limits": limits},
        "volumeMounts": mounts,
        "securityContext": restricted_container_security_context(),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": labels,
            "annotations": {VERSION_LABEL: model_version},
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "progressDeadlineSeconds": spec.rollout.progress_deadline_seconds,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": pod_metadata(defaults, selected),
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security_context(defaults),
                    "containers": [container],
                    "volumes": volumes,
                    **pod_defaults(defaults, res),
                },
            },
        },
    }


def _metadata(owner: Owner) -> dict[str, Any]:
    """The metadata of a ModelDeployment's one-per-owner children (Service, HPA,
    NetworkPolicy): the owner's name, the serving labels, owned by it."""
    return {
        "name": owner.name,
        "namespace": owner.namespace,
        "labels": child_labels(owner, _COMPONENT, _APP),
        "ownerReferences": [owner_reference(owner)],
    }


def build_service(owner: Owner) -> dict[str, Any]:
    """The ClusterIP Service in front of both tracks: V2 REST on port 8080 (`http`), V2 gRPC on
    8081 (`grpc`, appProtocol grpc, so meshes and gateways balance it per request)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner),
        "spec": {
            "type": "ClusterIP",
            "selector": serving_selector(owner),
            "ports": [
                {"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"},
                {
                    "name": "grpc",
                    "port": GRPC_PORT,
                    "targetPort": "grpc",
                    "protocol": "TCP",
                    "appProtocol": "grpc",
                },
            ],
        },
    }


def build_hpa(owner: Owner, spec: ModelDeploymentSpec) -> dict[str, Any] | None:
    """An autoscaling/v2 HPA on the stable Deployment by CPU, or None without autoscaling."""
    auto = spec.autoscaling
    if auto is None:
        return None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(owner),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": deployment_name(owner, "stable"),
            },
            "minReplicas": auto.min_replicas,
            "maxReplicas": auto.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": auto.target_cpu_utilization_percentage,
                        },
                    },
                }
            ],
        },
    }


def build_network_policy(
    owner: Owner, spec: ModelDeploymentSpec, peers: tuple[NetworkPolicyPeer, ...]
) -> dict[str, Any] | None:
    """A networking.k8s.io/v1 NetworkPolicy on the serving pods (both tracks), or None unless
    spec.networkPolicy.enabled: ingress on the server port only from spec's `allowFrom` and
    the operator-wide `peers` (the operator's own pod, the metrics scrapers).

    Kubelet probes are not subject to NetworkPolicy, so readiness keeps working.
    """
    policy = spec.network_policy
    if not policy.enabled:
        return None
    sources = [peer.to_wire() for peer in (*policy.allow_from, *peers)]
    # A rule with an empty `from` admits every source: no peer at all must mean no ingress.
    ports = [{"port": port, "protocol": "TCP"} for port in (PORT, GRPC_PORT)]
    ingress = [{"from": sources, "ports": ports}] if sources else []
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(owner),
        "spec": {
            "podSelector": {"matchLabels": serving_selector(owner)},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }
