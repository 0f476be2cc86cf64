"""Operator configuration from env, with defaults that work in a cluster."""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import TypeAdapter, ValidationError

from kubeloop.api.common import (
    LABEL_KEY_MESSAGE,
    LABEL_KEY_PATTERNS,
    LabelSelector,
    Matches,
    NetworkPolicyPeer,
    NodeSelector,
    Placement,
    WorkloadSecurity,
)
from kubeloop.decide.lease import LeaseTiming
from kubeloop.resources.common import WorkloadDefaults

__all__ = ["LeaderElection", "OperatorConfig"]


_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def _float(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    return float(value) if value else default


def _json(name: str, default: Any) -> Any:
    raw = os.environ.get(name, "")
    try:
        return json.loads(raw) if raw else default
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name}: not JSON ({exc}): {raw[:200]!r}") from exc


_ANNOTATIONS: TypeAdapter[dict[str, str]] = TypeAdapter(
    Annotated[
        dict[str, str], Matches(LABEL_KEY_PATTERNS, "every key " + LABEL_KEY_MESSAGE, keys=True)
    ]
)


def _placement(name: str) -> Placement:
    """The workload pods' default placement, as JSON in the CRDs' terms (`nodeSelector`,
    `tolerations`, `priorityClassName`, `affinity`), checked by the same model: a value the API
    server would refuse in every pod stops the operator at start, naming the field."""
    try:
        return Placement.model_validate(_json(name, {}))
    except ValidationError as exc:
        raise ValueError(f"{name}: {_problems(exc)}") from exc


def _security(name: str) -> WorkloadSecurity:
    """The ids workload pods run as (`runAsUser`, `runAsGroup`, `fsGroup`; null: left out);
    any other key stops the operator at start: the rest of the securityContext is fixed."""
    try:
        return WorkloadSecurity.model_validate(_json(name, {}))
    except ValidationError as exc:
        raise ValueError(f"{name}: {_problems(exc)}") from exc


def _annotations(name: str) -> dict[str, str]:
    """Extra annotations for workload pods (JSON object): keys as Kubernetes allows."""
    try:
        return _ANNOTATIONS.validate_python(_json(name, {}))
    except ValidationError as exc:
        raise ValueError(f"{name}: {_problems(exc)}") from exc


def _problems(exc: ValidationError) -> str:
    """Each error with where it is: `tolerations.0.operator: ...`."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}" for err in exc.errors()
    )


def _labels(name: str) -> dict[str, str]:
    """Extra labels for workload pods (JSON object), keys and values as Kubernetes allows."""
    try:
        labels: dict[str, str] = TypeAdapter(NodeSelector).validate_python(_json(name, {}))
    except ValidationError as exc:
        raise ValueError(f"{name}: {_problems(exc)}") from exc
    return labels


def _serving_peers() -> tuple[NetworkPolicyPeer, ...]:
    """Who every ModelDeployment's NetworkPolicy admits besides its own `allowFrom`: the
    operator's pod (KUBELOOP_OPERATOR_NAMESPACE + KUBELOOP_OPERATOR_POD_LABELS; canary analysis
    reads the server pods' /metrics) and the metrics scrapers (KUBELOOP_METRICS_SCRAPERS, a
    JSON list of NetworkPolicy peers)."""
    peers: list[NetworkPolicyPeer] = []
    namespace = os.environ.get("KUBELOOP_OPERATOR_NAMESPACE", "")
    if namespace:
        peers.append(
            NetworkPolicyPeer(
                namespace_selector=LabelSelector(
                    match_labels={"kubernetes.io/metadata.name": namespace}
                ),
                pod_selector=LabelSelector(match_labels=_labels("KUBELOOP_OPERATOR_POD_LABELS")),
            )
        )
    name = "KUBELOOP_METRICS_SCRAPERS"
    try:
        peers += TypeAdapter(list[NetworkPolicyPeer]).validate_python(_json(name, []))
    except ValidationError as exc:
        raise ValueError(f"{name}: {_problems(exc)}") from exc
    return tuple(peers)


def _names(name: str) -> tuple[str, ...]:
    """A comma-separated list of Secret names; a malformed one stops the operator at start
    (every pod it creates would otherwise be refused by the API server)."""
    names = tuple(n.strip() for n in os.environ.get(name, "").split(",") if n.strip())
    for secret in names:
        if len(secret) > 253 or not _SECRET_NAME.match(secret):
            raise ValueError(
                f"{name}: {secret!r} is not a Secret name (lowercase letters, digits, '-', '.')"
            )
    return names


def _lease_timing() -> LeaseTiming:
    """KUBELOOP_LEASE_DURATION_SECONDS (whole seconds) and KUBELOOP_LEASE_RENEW_SECONDS; timings
    that would let a follower take over while the leader may still act stop the operator."""
    names = ("KUBELOOP_LEASE_DURATION_SECONDS", "KUBELOOP_LEASE_RENEW_SECONDS")
    base = LeaseTiming()
    try:
        duration = int(os.environ.get(names[0], "") or base.duration)
        timing = LeaseTiming(duration, _float(names[1], base.renew))
    except ValueError as exc:
        raise ValueError(f"{' / '.join(names)}: {exc}") from exc
    problems = timing.problems()
    if problems:
        raise ValueError(f"{' / '.join(names)}: {'; '.join(problems)}")
    return timing


@dataclass(frozen=True)
class LeaderElection:
    """Leader election among replicas (controller/leader.py); off while `lease` is empty."""

    lease: str = ""  # the coordination.k8s.io/v1 Lease's name
    namespace: str = ""  # where it lives: the operator's own namespace
    identity: str = ""  # this replica's name in it: the pod name
    timing: LeaseTiming = field(default_factory=LeaseTiming)

    @classmethod
    def from_env(cls) -> LeaderElection:
        """KUBELOOP_LEASE_NAME, KUBELOOP_OPERATOR_NAMESPACE, KUBELOOP_POD_NAME (default: the
        host name and process id, unique on one machine) and the timings."""
        env = os.environ.get
        lease = env("KUBELOOP_LEASE_NAME", "").strip()
        namespace = env("KUBELOOP_OPERATOR_NAMESPACE", "").strip()
        if lease and not namespace:
            raise ValueError(
                "KUBELOOP_LEASE_NAME is set but KUBELOOP_OPERATOR_NAMESPACE is empty: the "
                "Lease lives in the operator's namespace; set it (the chart sets it from the pod)"
            )
        identity = env("KUBELOOP_POD_NAME", "").strip() or f"{socket.gethostname()}-{os.getpid()}"
        return cls(lease, namespace, identity, _lease_timing())


@dataclass(frozen=True)
class OperatorConfig:
    """Everything the operator reads from env (see the table in controller/main.py)."""

    workloads: WorkloadDefaults = field(default_factory=WorkloadDefaults)
    resync_seconds: float = 30.0
    # How often the watch cache is checked against a fresh list of each slice (objects deleted
    # while no watch was open: controller/cache.py prune); a list per slice and namespace.
    relist_seconds: float = 600.0
    metrics_port: int = 9090
    server: str = ""  # plain API URL (emulator / `kubeloop local`); empty = in-cluster/kubeconfig
    log_level: str = "INFO"  # DEBUG | INFO | WARNING | ERROR; `--log-level` overrides it
    log_format: str = "text"  # text | json; `--log-format` overrides it
    leader_election: LeaderElection = field(default_factory=LeaderElection)

    @classmethod
    def from_env(cls) -> OperatorConfig:
        """Read KUBELOOP_* env; unset values keep the defaults."""
        base = WorkloadDefaults()
        env = os.environ.get
        return cls(
            workloads=WorkloadDefaults(
                trainer_image=env("KUBELOOP_TRAINER_IMAGE", base.trainer_image),
                trainer_gpu_image=env("KUBELOOP_TRAINER_GPU_IMAGE", base.trainer_gpu_image),
                server_image=env("KUBELOOP_SERVER_IMAGE", base.server_image),
                server_gpu_image=env("KUBELOOP_SERVER_GPU_IMAGE", base.server_gpu_image),
                monitor_image=env("KUBELOOP_MONITOR_IMAGE", base.monitor_image),
                pushgateway_url=env("KUBELOOP_PUSHGATEWAY_URL", base.pushgateway_url),
                # Checked at start by main (parse_format); the workloads log as the operator does.
                log_format=(env("KUBELOOP_LOG_FORMAT", "") or "text").strip().lower(),
                image_pull_secrets=_names("KUBELOOP_IMAGE_PULL_SECRETS"),
                placement=_placement("KUBELOOP_WORKLOAD_PLACEMENT"),
                pod_labels=_labels("KUBELOOP_WORKLOAD_POD_LABELS"),
                pod_annotations=_annotations("KUBELOOP_WORKLOAD_POD_ANNOTATIONS"),
                security=_security("KUBELOOP_WORKLOAD_SECURITY"),
                serving_peers=_serving_peers(),
            ),
            resync_seconds=_float("KUBELOOP_RESYNC_SECONDS", 30.0),
            relist_seconds=_float("KUBELOOP_RELIST_SECONDS", 600.0),
            metrics_port=int(env("KUBELOOP_METRICS_PORT", "9090")),
            server=env("KUBELOOP_KUBE_SERVER", ""),
            log_level=env("KUBELOOP_LOG_LEVEL", "") or "INFO",
            log_format=env("KUBELOOP_LOG_FORMAT", "") or "text",
            leader_election=LeaderElection.from_env(),
        )
