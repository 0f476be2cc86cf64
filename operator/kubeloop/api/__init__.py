"""The three custom resources of kubeloop.io/v1alpha1: the single source of truth of the API.

The names below are imported on first use (PEP 562): a workload that needs one resource's
models (the drift monitor's CronJob: kubeloop.api.monitor) does not build the others'
pydantic classes at every start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubeloop.api.common import Condition, KubeModel
    from kubeloop.api.deployment import (
        ModelDeployment,
        ModelDeploymentSpec,
        ModelDeploymentStatus,
    )
    from kubeloop.api.monitor import DriftMonitor, DriftMonitorSpec, DriftMonitorStatus
    from kubeloop.api.training import (
        TrainingPipeline,
        TrainingPipelineSpec,
        TrainingPipelineStatus,
    )

__all__ = [
    "Condition",
    "DriftMonitor",
    "DriftMonitorSpec",
    "DriftMonitorStatus",
    "KubeModel",
    "ModelDeployment",
    "ModelDeploymentSpec",
    "ModelDeploymentStatus",
    "TrainingPipeline",
    "TrainingPipelineSpec",
    "TrainingPipelineStatus",
]

_HOME = {
    "Condition": "common",
    "KubeModel": "common",
    "ModelDeployment": "deployment",
    "ModelDeploymentSpec": "deployment",
    "ModelDeploymentStatus": "deployment",
    "DriftMonitor": "monitor",
    "DriftMonitorSpec": "monitor",
    "DriftMonitorStatus": "monitor",
    "TrainingPipeline": "training",
    "TrainingPipelineSpec": "training",
    "TrainingPipelineStatus": "training",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'kubeloop.api' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"kubeloop.api.{home}"), name)
    globals()[name] = value
    return value
