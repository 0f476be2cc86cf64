"""A TrainingPipeline's data-watch CronJob (spec.dataTrigger): `kubeloop fingerprint` in the
trainer image on the trigger's cron, with the storage env a training Job gets. It lists the
data and leaves a DataFingerprint result in its pod's termination message; the operator,
which holds no object-store credentials, compares that with what the latest run trained on.
"""

from __future__ import annotations

import json
from typing import Any

from kubeloop.api.training import TrainingPipelineSpec
from kubeloop.resources.common import (
    Owner,
    WorkloadDefaults,
    child_labels,
    owner_reference,
    pod_metadata,
)
from kubeloop.resources.training import storage_access_env, storage_task_pod

__all__ = ["DATAWATCH_LABEL", "build_data_watch_cronjob", "data_watch_name"]

# Not the `kubeloop.io/trainingpipeline` label of the run Jobs: that one selects a pipeline's
# runs (their bookkeeping, the operator's Job watch), and a data check is no run.
DATAWATCH_LABEL = "kubeloop.io/datawatch-for"
_COMPONENT = "datawatch"
_APP = "kubeloop-datawatch"


def data_watch_name(pipeline: str) -> str:
    """The name of a pipeline's data-watch CronJob."""
    return f"{pipeline}-datawatch"


def build_data_watch_cronjob(
    owner: Owner, spec: TrainingPipelineSpec, *, defaults: WorkloadDefaults
) -> dict[str, Any]:
    """The batch/v1 CronJob that fingerprints the pipeline's data on spec.dataTrigger.schedule.

    No service-account token (it needs no Kubernetes API), the restricted pod shape, the
    operator's workload defaults and the pipeline's placement (like its runs: a node pool that
    reaches the object store), never two checks at once, a short history.
    """
    assert spec.data_trigger is not None
    labels = child_labels(owner, _COMPONENT, _APP, owner_label=DATAWATCH_LABEL)
    container = {
        "name": "datawatch",
        "command": ["kubeloop", "fingerprint"],
        "env": [
            *storage_access_env(owner, spec, defaults),
            {"name": "KUBELOOP_SPEC", "value": json.dumps(spec.to_wire(), sort_keys=True)},
        ],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "512Mi"},  # a listing; file:// files are hashed in blocks
        },
    }
    pod_spec = storage_task_pod(spec, defaults, container)
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": data_watch_name(owner.name),
            "namespace": owner.namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "schedule": spec.data_trigger.schedule,
            "timeZone": "Etc/UTC",
            "suspend": spec.suspend,
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 2,
            "failedJobsHistoryLimit": 2,
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": {
                    "backoffLimit": 1,
                    "ttlSecondsAfterFinished": 3600,
                    "template": {"metadata": pod_metadata(defaults, labels), "spec": pod_spec},
                },
            },
        },
    }
