"""Operator configuration from env, with defaults that work in a cluster."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from kubeloop.resources.common import WorkloadDefaults

__all__ = ["OperatorConfig"]


_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def _float(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    return float(value) if value else default


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


@dataclass(frozen=True)
class OperatorConfig:
    """Everything the operator reads from env (see the table in controller/main.py)."""

    workloads: WorkloadDefaults = field(default_factory=WorkloadDefaults)
    resync_seconds: float = 30.0
    metrics_port: int = 9090
    server: str = ""  # plain API URL (emulator / `kubeloop local`); empty = in-cluster/kubeconfig
    log_level: str = "INFO"  # DEBUG | INFO | WARNING | ERROR; `--log-level` overrides it

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
                image_pull_secrets=_names("KUBELOOP_IMAGE_PULL_SECRETS"),
            ),
            resync_seconds=_float("KUBELOOP_RESYNC_SECONDS", 30.0),
            metrics_port=int(env("KUBELOOP_METRICS_PORT", "9090")),
            server=env("KUBELOOP_KUBE_SERVER", ""),
            log_level=env("KUBELOOP_LOG_LEVEL", "") or "INFO",
        )
