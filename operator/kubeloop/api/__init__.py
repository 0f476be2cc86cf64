"""The three custom resources of kubeloop.io/v1alpha1: the single source of truth of the API."""

from kubeloop.api.common import Condition, KubeModel
from kubeloop.api.deployment import ModelDeployment, ModelDeploymentSpec, ModelDeploymentStatus
from kubeloop.api.monitor import DriftMonitor, DriftMonitorSpec, DriftMonitorStatus
from kubeloop.api.training import TrainingPipeline, TrainingPipelineSpec, TrainingPipelineStatus

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
