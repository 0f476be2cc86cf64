"""What every child shares: labels, owner references, the restricted pod shape, credentials."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubeloop.api.common import NetworkPolicyPeer, Placement, SecretReference, WorkloadSecurity

__all__ = [
    "AWS_KEYS",
    "MANAGED_BY",
    "SCRATCH",
    "TERMINATION_LOG",
    "Owner",
    "WorkloadDefaults",
    "base_env",
    "child_labels",
    "owner_reference",
    "pod_defaults",
    "pod_labels",
    "pod_metadata",
    "pod_security_context",
    "restricted_container_security_context",
    "scratch_volumes",
    "storage_env",
]

MANAGED_BY = "kubeloop"
SCRATCH = "/scratch"
TERMINATION_LOG = "/dev/termination-log"
# Credentials a workload may need; the first two are required keys of the storage Secret.
AWS_KEYS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
)
_REQUIRED_AWS_KEYS = frozenset(AWS_KEYS[:2])


@dataclass(frozen=True)
class Owner:
    """The custom resource that owns a child: enough for an ownerReference and labels."""

    api_version: str
    kind: str
    name: str
    namespace: str
    uid: str

    @classmethod
    def of(cls, body: Any) -> Owner:
        """The owner described by a custom resource body (a dict or kopf Body)."""
        meta = body["metadata"]
        return cls(
            api_version=body["apiVersion"],
            kind=body["kind"],
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
        )


@dataclass(frozen=True)
class WorkloadDefaults:
    """Operator-wide settings the builders need (images, pull secrets, optional Pushgateway)."""

    trainer_image: str = "ghcr.io/kubeloop/trainer:0.1.0"
    trainer_gpu_image: str = "ghcr.io/kubeloop/trainer-cuda:0.1.0"
    server_image: str = "ghcr.io/kubeloop/server:0.1.0"
    server_gpu_image: str = "ghcr.io/kubeloop/server-cuda:0.1.0"
    monitor_image: str = "ghcr.io/kubeloop/monitor:0.1.0"
    pushgateway_url: str = ""
    log_format: str = "text"  # KUBELOOP_LOG_FORMAT of every workload container (logsetup)
    image_pull_secrets: tuple[str, ...] = ()  # Secret names, in each workload's namespace
    # Placement of every workload pod unless its resource says otherwise (pod_defaults).
    placement: Placement = field(default_factory=Placement)
    pod_labels: Mapping[str, str] = field(default_factory=dict)  # under Kubeloop's own labels
    pod_annotations: Mapping[str, str] = field(default_factory=dict)  # under the operator's own
    # The ids the pods run as. A fixed non-root uid by default, so `runAsNonRoot` holds even for
    # a bring-your-own image whose USER is a name; unset where the platform assigns one.
    security: WorkloadSecurity = field(default_factory=WorkloadSecurity)
    # Admitted by every ModelDeployment's NetworkPolicy: the operator's pod (canary analysis)
    # and the metrics scrapers.
    serving_peers: tuple[NetworkPolicyPeer, ...] = ()


def pod_defaults(defaults: WorkloadDefaults, own: Placement | None = None) -> dict[str, Any]:
    """The pod-spec fields a workload pod gets from the operator's settings and its resource's
    placement (`own`): the resource's nodeSelector keys win over the defaults' (the rest of
    them stay), its tolerations, priorityClassName and affinity replace the defaults' when it
    has any (an affinity as a whole: merging node and pod terms would change their meaning).

    Pull secrets go on each pod, not on a ServiceAccount: server and monitor pods use the
    namespace's `default` account, which the operator does not own.
    """
    base, own = defaults.placement, own or Placement()
    out: dict[str, Any] = {}
    if defaults.image_pull_secrets:
        out["imagePullSecrets"] = [{"name": name} for name in defaults.image_pull_secrets]
    node_selector = {**base.node_selector, **own.node_selector}
    if node_selector:
        out["nodeSelector"] = node_selector
    tolerations = own.tolerations or base.tolerations
    if tolerations:
        out["tolerations"] = [t.to_wire() for t in tolerations]
    priority = own.priority_class_name or base.priority_class_name
    if priority:
        out["priorityClassName"] = priority
    affinity = own.affinity or base.affinity
    if affinity is not None:
        # As written: without the empty `values: []` and `matchLabels: {}` the models default
        # to (the same meaning), so a pod's affinity reads as the resource or chart gave it.
        out["affinity"] = affinity.model_dump(by_alias=True, exclude_defaults=True, mode="json")
    return out


def pod_labels(defaults: WorkloadDefaults, labels: Mapping[str, str]) -> dict[str, str]:
    """A workload pod's labels: the operator's extra pod labels, under Kubeloop's own (which
    select and own the pods: an extra label never replaces one of them)."""
    return {**defaults.pod_labels, **labels}


def pod_metadata(
    defaults: WorkloadDefaults,
    labels: Mapping[str, str],
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A workload pod template's metadata: `pod_labels`, and the operator's extra pod
    annotations under the builder's own `annotations` (which win), when there are any."""
    meta: dict[str, Any] = {"labels": pod_labels(defaults, labels)}
    merged = {**defaults.pod_annotations, **(annotations or {})}
    if merged:
        meta["annotations"] = merged
    return meta


def owner_reference(owner: Owner) -> dict[str, Any]:
    """An ownerReference that lets the garbage collector delete the child with its owner.

    `blockOwnerDeletion` is left out: it needs `update` on the owner's finalizers subresource,
    which the operator does not hold, and foreground deletion is not something we rely on.
    """
    return {
        "apiVersion": owner.api_version,
        "kind": owner.kind,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
    }


def child_labels(
    owner: Owner, component: str, name: str, owner_label: str | None = None
) -> dict[str, str]:
    """Our own labels for a child, never copied from the parent; `owner_label` (default
    `kubeloop.io/<kind>`) is the label that names the owner.

    `app.kubernetes.io/instance` is deliberately absent: Argo CD's default label tracking reads
    it, and a child carrying the owner's instance label would be claimed (and pruned) by the
    Application that manages the custom resource.
    """
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "kubeloop",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        owner_label or f"kubeloop.io/{owner.kind.lower()}": owner.name,
    }


def pod_security_context(defaults: WorkloadDefaults) -> dict[str, Any]:
    """Pod-level settings of the Pod Security Standard "restricted", with the ids the operator
    is configured with; an unset id is left out (the platform assigns it)."""
    ids = defaults.security.to_wire()  # runAsUser, runAsGroup, fsGroup: those set
    return {"runAsNonRoot": True, **ids, "seccompProfile": {"type": "RuntimeDefault"}}


def restricted_container_security_context() -> dict[str, Any]:
    """Container-level settings of "restricted", plus a read-only root filesystem."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def scratch_volumes() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """emptyDirs for /scratch (KUBELOOP_WORK_DIR) and /tmp, since the root fs is read-only."""
    volumes = [{"name": "scratch", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]
    mounts = [
        {"name": "scratch", "mountPath": SCRATCH},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    return volumes, mounts


def storage_env(secret: SecretReference | None) -> list[dict[str, Any]]:
    """AWS_* from the storage Secret by secretKeyRef only; optional keys may be absent."""
    if secret is None:
        return []
    return [
        {
            "name": key,
            "valueFrom": {
                "secretKeyRef": {
                    "name": secret.name,
                    "key": key,
                    "optional": key not in _REQUIRED_AWS_KEYS,
                }
            },
        }
        for key in AWS_KEYS
    ]


def base_env(namespace: str, defaults: WorkloadDefaults) -> list[dict[str, Any]]:
    """The env every workload gets (docs/contracts.md, "Common env")."""
    env = [
        {"name": "KUBELOOP_NAMESPACE", "value": namespace},
        {"name": "KUBELOOP_RESULT_PATH", "value": TERMINATION_LOG},
        {"name": "KUBELOOP_WORK_DIR", "value": SCRATCH},
    ]
    if defaults.pushgateway_url:
        env.append({"name": "KUBELOOP_PUSHGATEWAY_URL", "value": defaults.pushgateway_url})
    if defaults.log_format != "text":  # the default needs no line in every pod spec
        env.append({"name": "KUBELOOP_LOG_FORMAT", "value": defaults.log_format})
    return env
