"""A TrainingPipeline's registry Job: one alias write (`kubeloop registry promote`) or one read
of what the registry holds (`kubeloop registry inspect`), in the trainer image with the storage
env a training Job gets. The operator holds no object-store credentials, so this is how an
approval, a rollback or a gate's promotion reaches the registry, and how a pipeline created
again finds its champion there.

A new pipeline's first run reads the registry in its own Job instead (`with_registry_read`):
the same container, first of the run pod's init containers, with `--require-empty`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubeloop.api.training import TrainingPipelineSpec
from kubeloop.resources.common import (
    Owner,
    WorkloadDefaults,
    child_labels,
    owner_reference,
    pod_metadata,
)
from kubeloop.resources.training import (
    storage_access_env,
    storage_task_container,
    storage_task_pod,
)

__all__ = [
    "FIRST_RUN_READ_EXIT_CODES",
    "REGISTRY_CONTAINER",
    "REGISTRY_LABEL",
    "REGISTRY_OP_LABEL",
    "REGISTRY_REFUSAL_EXIT_CODES",
    "build_registry_job",
    "registry_args",
    "registry_job_name",
    "with_registry_read",
]

# Not the `kubeloop.io/trainingpipeline` label of the other children: that one selects a
# pipeline's run Jobs (the run bookkeeping, the operator's Job watch, `kubectl get jobs -l`),
# and a registry Job is no run.
REGISTRY_LABEL = "kubeloop.io/registry-for"
REGISTRY_OP_LABEL = "kubeloop.io/registry-op"
# `kubeloop registry`'s refusals (kubeloop.workloads.registryjob): final, never retried.
REGISTRY_REFUSAL_EXIT_CODES = (50, 51, 52, 53)
# `kubeloop registry inspect --require-empty`: the registry holds more than this run (60), the
# read failed (61). The operator decides what follows (adopt, or back off): never retried.
FIRST_RUN_READ_EXIT_CODES = (60, 61)
REGISTRY_CONTAINER = "registry"
_COMPONENT = "registry"
_APP = "kubeloop-registry"


def registry_job_name(pipeline: str, op_id: int | str) -> str:
    """The deterministic name of a registry operation's Job."""
    return f"{pipeline}-registry-{op_id}"


def registry_args(owner: Owner, spec: TrainingPipelineSpec, op: Mapping[str, Any]) -> list[str]:
    """`kubeloop registry` arguments of an operation: `inspect` reads, the others write an
    alias. An op with `runId` (a first run's own read) requires the registry to hold nothing
    but that run."""
    pipeline = f"{owner.namespace}/{owner.name}"
    if op["action"] == "Inspect":
        inspect = ["registry", "inspect", "--artifacts", spec.artifacts, "--pipeline", pipeline]
        if op.get("runId") is not None:
            inspect += ["--require-empty", "--run-id", str(op["runId"])]
        return inspect
    return [
        "registry", "promote",
        "--artifacts", spec.artifacts,
        "--version", str(op["version"]),
        "--alias", str(op["alias"]),
        "--by", str(op["by"]),
        "--reason", str(op.get("reason") or ""),
        "--pipeline", pipeline,
    ]  # fmt: skip


def build_registry_job(
    owner: Owner,
    spec: TrainingPipelineSpec,
    op: Mapping[str, Any],
    *,
    defaults: WorkloadDefaults,
) -> dict[str, Any]:
    """The batch/v1 Job of one registry operation: it verifies `op["version"]` and points
    `op["alias"]` at it, or (action Inspect) reads the registry's aliases and run numbering.

    No service-account token (it needs no Kubernetes API), the restricted pod shape, the
    operator's workload defaults (placement, pull secrets, pod labels), and a podFailurePolicy
    that ends the Job at the first refusal: a missing or corrupt version stays so.
    """
    name = registry_job_name(owner.name, op["id"])
    labels = {
        **child_labels(owner, _COMPONENT, _APP, owner_label=REGISTRY_LABEL),
        REGISTRY_OP_LABEL: str(op["id"]),
    }
    pod_spec = storage_task_pod(spec, defaults, _container(owner, spec, op, defaults))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "backoffLimit": 2,
            "ttlSecondsAfterFinished": spec.run_policy.ttl_seconds_after_finished,
            "podFailurePolicy": {"rules": [_fail_job_on(REGISTRY_REFUSAL_EXIT_CODES)]},
            "template": {"metadata": pod_metadata(defaults, labels), "spec": pod_spec},
        },
    }


def with_registry_read(
    job: Mapping[str, Any],
    owner: Owner,
    spec: TrainingPipelineSpec,
    *,
    run_id: int,
    defaults: WorkloadDefaults,
) -> dict[str, Any]:
    """A new pipeline's first run Job (`job`, as resources/training.py builds it) that reads
    the registry first: the registry Job's inspect container, with `--require-empty`, becomes
    the pod's first init container (before a custom run's prepare), and the Job fails at once
    when it exits 60 (the registry holds more: the operator adopts it) or 61 (the read failed).
    """
    op = {"action": "Inspect", "runId": run_id}
    read = storage_task_container(spec, defaults, _container(owner, spec, op, defaults))
    # `job` is left as it is: only the mappings on the path to what changes are copied (a
    # deep copy of the whole Job was a twentieth of the operator's CPU creating 1000 runs).
    job_spec = dict(job["spec"])
    template = dict(job_spec["template"])
    pod = dict(template["spec"])
    pod["initContainers"] = [read, *(pod.get("initContainers") or [])]
    template["spec"] = pod
    policy = dict(job_spec.get("podFailurePolicy") or {})
    policy["rules"] = [_fail_job_on(FIRST_RUN_READ_EXIT_CODES), *(policy.get("rules") or [])]
    job_spec.update(template=template, podFailurePolicy=policy)
    return {**job, "spec": job_spec}


def _container(
    owner: Owner, spec: TrainingPipelineSpec, op: Mapping[str, Any], defaults: WorkloadDefaults
) -> dict[str, Any]:
    return {
        "name": REGISTRY_CONTAINER,
        "command": ["kubeloop"],
        "args": registry_args(owner, spec, op),
        "env": storage_access_env(owner, spec, defaults),
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"memory": "2Gi"},  # a version's files are read whole to checksum them
        },
    }


def _fail_job_on(codes: tuple[int, ...]) -> dict[str, Any]:
    return {
        "action": "FailJob",
        "onExitCodes": {
            "containerName": REGISTRY_CONTAINER,
            "operator": "In",
            "values": list(codes),
        },
    }
