"""DriftMonitor child: the CronJob that runs `kubeloop monitor` on the monitor's schedule."""

from __future__ import annotations

import json
from typing import Any

from kubeloop.api.common import SecretReference
from kubeloop.api.monitor import DriftMonitorSpec
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

__all__ = ["CHAMPION_TRAINING_DATA", "build_monitor_cronjob", "reference_uri", "report_folder"]

CHAMPION_TRAINING_DATA = "champion-training-data"
_APP = "kubeloop-monitor"


def reference_uri(spec: DriftMonitorSpec, served_uri: str | None) -> str | None:
    """What the monitor compares against: the served version folder or the spec's URI."""
    if spec.reference == CHAMPION_TRAINING_DATA:
        return served_uri
    return spec.reference


def report_folder(spec: DriftMonitorSpec, payload_log_uri: str, monitor: str) -> str | None:
    """Where the checks write their HTML reports (None: spec.report is off): the spec's
    destination, else `_reports/<monitor>/` under the payload logs (an underscore folder, which
    readers of the logs skip)."""
    if not spec.report.enabled:
        return None
    if spec.report.destination:
        return spec.report.destination
    return f"{payload_log_uri.rstrip('/')}/_reports/{monitor}/"


def build_monitor_cronjob(
    owner: Owner,
    spec: DriftMonitorSpec,
    *,
    payload_log_uri: str,
    reference: str,
    model_version: str,
    defaults: WorkloadDefaults,
    storage_secret: SecretReference | None = None,
) -> dict[str, Any]:
    """The batch/v1 CronJob of a DriftMonitor (UTC schedule, never two checks at once).

    Its env follows docs/contracts.md ("Monitor"); the verdict comes back in the termination
    message of the Job's pod. Credentials come from `spec.storageSecretRef`, else from
    `storage_secret` (the deployment's or the pipeline's, resolved by the operator).
    """
    labels = child_labels(owner, "monitoring", _APP)
    volumes, mounts = scratch_volumes()
    report = report_folder(spec, payload_log_uri, owner.name)
    env = [
        *base_env(owner.namespace, defaults),
        {"name": "KUBELOOP_MONITOR", "value": owner.name},
        {"name": "KUBELOOP_MONITOR_SPEC", "value": json.dumps(spec.to_wire(), sort_keys=True)},
        {"name": "KUBELOOP_PAYLOAD_LOG_URI", "value": payload_log_uri},
        {"name": "KUBELOOP_REFERENCE_URI", "value": reference},
        {"name": "KUBELOOP_MODEL_VERSION", "value": model_version},
        *([{"name": "KUBELOOP_REPORT_URI", "value": report}] if report else []),
        *storage_env(spec.storage_secret_ref or storage_secret),
    ]
    container = {
        "name": "monitor",
        "image": spec.image or defaults.monitor_image,
        "command": ["kubeloop", "monitor"],
        "env": env,
        "resources": {
            "requests": {"cpu": spec.resources.cpu, "memory": spec.resources.memory},
            "limits": {"cpu": spec.resources.cpu, "memory": spec.resources.memory},
        },
        "volumeMounts": mounts,
        "securityContext": restricted_container_security_context(),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": owner.name,
            "namespace": owner.namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "schedule": spec.schedule,
            "timeZone": "Etc/UTC",
            "suspend": spec.suspend,
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": {
                    "backoffLimit": 1,
                    "ttlSecondsAfterFinished": 86400,
                    "template": {
                        "metadata": pod_metadata(defaults, labels),
                        "spec": {
                            "restartPolicy": "Never",
                            "automountServiceAccountToken": False,
                            "securityContext": pod_security_context(defaults),
                            "containers": [container],
                            "volumes": volumes,
                            **pod_defaults(defaults, spec.resources),
                        },
                    },
                },
            },
        },
    }
