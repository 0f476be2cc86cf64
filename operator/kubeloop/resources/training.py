"""TrainingPipeline children: the run Job (Indexed + headless Service when distributed).

Run pods need no Kubernetes API access and mount no service-account token: the result leaves
by the termination message, progress by the pod's own endpoint (the container port named
`progress`, `kubeloop_sdk.progressendpoint`), which the operator reads."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from kubeloop.api.search import (
    SEARCH_ENV,
    TRIAL_ENV,
    TRIALS_ANNOTATION,
    TRIALS_ENV,
    SearchRecord,
    TrialAssignment,
    TrialBatch,
)
from kubeloop.api.training import TrainingPipelineSpec
from kubeloop.resources.common import (
    AWS_KEYS,
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
from kubeloop_sdk.progressendpoint import DEFAULT_PORT as PROGRESS_PORT
from kubeloop_sdk.progressendpoint import PORT_ENV as PROGRESS_PORT_ENV
from kubeloop_sdk.progressendpoint import PORT_NAME as PROGRESS_PORT_NAME

__all__ = [
    "KUBELOOP_DIR",
    "KUEUE_QUEUE_LABEL",
    "PROGRESS_PORT",
    "RUN_ID_LABEL",
    "TRIAL_LABEL",
    "USER_CONTAINER",
    "build_headless_service",
    "build_training_job",
    "job_name",
    "kubeloop_image",
    "storage_access_env",
    "storage_task_container",
    "storage_task_pod",
    "trainer_image",
    "trial_job_name",
]

KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
RUN_ID_LABEL = "kubeloop.io/run-id"
# On a search's trial Jobs (not the run's own Job): the trial number (a Job of several trials:
# its first; TRIALS_ANNOTATION lists them all).
TRIAL_LABEL = "kubeloop.io/trial"
RUNG_LABEL = "kubeloop.io/rung"
TRIGGER_ANNOTATION = "kubeloop.io/trigger"
GENERATION_ANNOTATION = "kubeloop.io/generation"
# Custom training (docs/byo.md): the emptyDir the three containers share, and the SDK in it.
KUBELOOP_VOLUME = "kubeloop"
KUBELOOP_DIR = "/kubeloop"
SDK_DIR = f"{KUBELOOP_DIR}/sdk"
USER_CONTAINER = "trainer"
_COMPONENT = "training"
_APP = "kubeloop-trainer"


def job_name(pipeline: str, run_id: int) -> str:
    """The deterministic name of a run's Job (and of its headless Service)."""
    return f"{pipeline}-run-{run_id}"


def trial_job_name(pipeline: str, run_id: int | str, trial: int, rung: int, halving: bool) -> str:
    """The deterministic name of a search trial's Job (and of its headless Service): a second
    create of it finds the first, so a trial started before a crash never runs twice."""
    suffix = f"-t{trial}-r{rung}" if halving else f"-t{trial}"
    return f"{job_name(pipeline, int(run_id))}{suffix}"


def trainer_image(spec: TrainingPipelineSpec, defaults: WorkloadDefaults) -> str:
    """The spec's image, else the CUDA trainer for GPU runs and the CPU trainer otherwise."""
    if spec.image:
        return spec.image
    return defaults.trainer_gpu_image if spec.resources.gpus > 0 else defaults.trainer_image


def kubeloop_image(spec: TrainingPipelineSpec, defaults: WorkloadDefaults) -> str:
    """The image of Kubeloop's own steps that need no GPU (a custom run's prepare and
    publish, registry Jobs): the spec's trainer image, else the CPU trainer."""
    return spec.image or defaults.trainer_image


def storage_access_env(
    owner: Owner, spec: TrainingPipelineSpec, defaults: WorkloadDefaults
) -> list[dict[str, Any]]:
    """The env every pod of a pipeline that touches its object store gets: the common env,
    the pipeline's identity and the storage Secret's keys (by secretKeyRef only)."""
    return [
        *base_env(owner.namespace, defaults),
        {"name": "KUBELOOP_PIPELINE", "value": owner.name},
        # Run ids restart when a pipeline is re-created: the uid keeps its runs apart.
        {"name": "KUBELOOP_PIPELINE_UID", "value": owner.uid},
        *storage_env(spec.storage_secret_ref),
    ]


def storage_task_pod(
    spec: TrainingPipelineSpec, defaults: WorkloadDefaults, container: Mapping[str, Any]
) -> dict[str, Any]:
    """The pod spec of a pipeline's short storage task (a data check, a registry write): its
    one `container` (name, command, args, env, resources) in the trainer image, restricted,
    on scratch volumes, with no service-account token (it needs no Kubernetes API), the
    workload defaults and the pipeline's placement, as for its runs (where its pods may go, a
    node pool that reaches the object store, say, holds for these too; they request no GPU)."""
    volumes, _ = scratch_volumes()
    return {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(defaults),
        "containers": [storage_task_container(spec, defaults, container)],
        "volumes": volumes,
        **pod_defaults(defaults, spec.resources),
    }


def storage_task_container(
    spec: TrainingPipelineSpec, defaults: WorkloadDefaults, container: Mapping[str, Any]
) -> dict[str, Any]:
    """A short storage task's container (name, command, args, env, resources) in Kubeloop's
    image, restricted, on the scratch volumes (which every pod of a pipeline has): a storage
    task pod's one container, or a first run's registry read (an init container)."""
    _, mounts = scratch_volumes()
    return {
        "name": container["name"],
        "image": kubeloop_image(spec, defaults),
        **{k: v for k, v in container.items() if k != "name"},
        "volumeMounts": mounts,
        "securityContext": restricted_container_security_context(),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def _labels(owner: Owner, run_id: int) -> dict[str, str]:
    return {**child_labels(owner, _COMPONENT, _APP), RUN_ID_LABEL: str(run_id)}


def _distributed_env(spec: TrainingPipelineSpec, name: str, namespace: str) -> list[dict[str, Any]]:
    # Pod 0 of an Indexed Job has the stable hostname <job>-0 under the Service's subdomain.
    workers = spec.distributed.workers
    return [
        {"name": "MASTER_ADDR", "value": f"{name}-0.{name}.{namespace}.svc"},
        {"name": "MASTER_PORT", "value": str(spec.distributed.master_port)},
        {"name": "WORLD_SIZE", "value": str(workers)},
        {
            "name": "NODE_RANK",
            "valueFrom": {
                "fieldRef": {
                    "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"
                }
            },
        },
        {"name": "NPROC_PER_NODE", "value": str(max(spec.resources.gpus, 1))},
    ]


def build_training_job(
    owner: Owner,
    spec: TrainingPipelineSpec,
    *,
    run_id: int,
    trigger: str,
    generation: int | None,
    defaults: WorkloadDefaults,
    champion: Mapping[str, Any] | None = None,
    trial: TrialAssignment | None = None,
    trial_name: str | None = None,
    search: SearchRecord | None = None,
    batch: Sequence[TrialAssignment] = (),
) -> dict[str, Any]:
    """The batch/v1 Job of one training run, or of one trial of its search.

    `trial` (with its Job's `trial_name`): the Job trains and scores only that configuration
    (env KUBELOOP_TRIAL) and writes no version; it is built like the run's own Job, so the
    pipeline's resources, GPUs, placement, Kueue queue, security context and storage Secret
    hold for trials too. `batch` instead of `trial` (spec.search.trialsPerJob > 1): the Job
    trains those trials in order in one process (env KUBELOOP_TRIALS; their numbers in the
    annotation kubeloop.io/trials). `search`: the finished search, whose winner the run's Job
    trains (env KUBELOOP_SEARCH).

    `champion` (status.champion) is the version the run scores beside its own, on the same
    validation rows, for the gate: passed to Kubeloop's scoring step (the built-in trainer, or
    the publish step after custom code) only when the gate compares with it.

    One pod runs `kubeloop train`; with `distributed.workers > 1` an Indexed Job runs one pod
    per worker under `torchrun`, which reads the rendezvous env (MASTER_ADDR is pod 0's stable
    DNS name through the headless Service of the same name; NODE_RANK is the completion index).
    With `queueName` the Job is created suspended and labelled for Kueue, which un-suspends it on
    admission (and may inject nodeSelector/tolerations: the operator never patches a Job back).
    """
    if batch:
        assert trial is None and spec.trainer is None  # admission: custom code, one a pod
    lead = batch[0] if batch else trial  # the Job's (first) trial: its name and labels
    name = trial_name if lead is not None and trial_name else job_name(owner.name, run_id)
    # The image recorded as the one that trained: the user's, for custom code.
    image = spec.trainer.image if spec.trainer is not None else trainer_image(spec, defaults)
    labels = _labels(owner, run_id)
    if lead is not None:
        labels.update({TRIAL_LABEL: str(lead.trial), RUNG_LABEL: str(lead.rung)})
    env = [
        *storage_access_env(owner, spec, defaults),
        {"name": "KUBELOOP_RUN_ID", "value": str(run_id)},
        {"name": "KUBELOOP_TRIGGER", "value": trigger},
        {"name": "KUBELOOP_IMAGE", "value": image},
        {"name": "KUBELOOP_SPEC", "value": json.dumps(spec.to_wire(), sort_keys=True)},
        *_search_env(trial, batch, search),
    ]
    # A trial is scored alone: the champion is compared with the winner, by the run's Job.
    scoring = _champion_env(spec, champion) if lead is None else []
    # Nobody reads a trial's progress (status shows its rung): it gets no progress port.
    progress = _progress_env() if lead is None else []
    volumes, mounts = scratch_volumes()
    distributed = spec.distributed.workers > 1
    rendezvous = _distributed_env(spec, name, owner.namespace) if distributed else []
    if distributed:
        # NCCL needs more shared memory than the container runtime's 64 MiB default.
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory"}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    init_containers: list[dict[str, Any]] = []
    if spec.trainer is None:
        command = ["torchrun", *_torchrun_args(), "kubeloop", "train"] if distributed else []
        container = _container(
            USER_CONTAINER,
            image,
            ["kubeloop", "train"],
            env=env + rendezvous + scoring + progress,
            spec=spec,
            mounts=mounts,
            gpus=True,
        )
        if progress:
            container["ports"] = _progress_ports()
        if command:
            container["command"], container["args"] = command[:1], command[1:]
    else:
        volumes.append({"name": KUBELOOP_VOLUME, "emptyDir": {}})
        mounts.append({"name": KUBELOOP_VOLUME, "mountPath": KUBELOOP_DIR})
        init_containers, container = _custom_containers(
            spec,
            kubeloop_image(spec, defaults),
            env,
            rendezvous,
            mounts,
            params=_user_params(spec, trial, search),
            progress=progress,
        )
        container["env"] += scoring  # the publish step scores the champion, not the user's code
    res = spec.resources
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # No Kubernetes API access: no token, whichever ServiceAccount the namespace gives it.
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(defaults),
        **({"initContainers": init_containers} if init_containers else {}),
        "containers": [container],
        "volumes": volumes,
        **pod_defaults(defaults, res),
    }
    if res.runtime_class_name:
        pod_spec["runtimeClassName"] = res.runtime_class_name
    if distributed:
        pod_spec["subdomain"] = name
    job_labels = dict(labels)
    if spec.queue_name:
        job_labels[KUEUE_QUEUE_LABEL] = spec.queue_name
    annotations = {TRIGGER_ANNOTATION: trigger}
    if batch:
        annotations[TRIALS_ANNOTATION] = ",".join(str(a.trial) for a in batch)
    if generation is not None:
        annotations[GENERATION_ANNOTATION] = str(generation)
    job_spec: dict[str, Any] = {
        "backoffLimit": spec.run_policy.backoff_limit,
        "ttlSecondsAfterFinished": spec.run_policy.ttl_seconds_after_finished,
        "template": {"metadata": pod_metadata(defaults, labels), "spec": pod_spec},
    }
    if spec.run_policy.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.run_policy.active_deadline_seconds
    if distributed:
        workers = spec.distributed.workers
        job_spec.update(completionMode="Indexed", completions=workers, parallelism=workers)
    if spec.queue_name:
        job_spec["suspend"] = True
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": job_labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": job_spec,
    }


def _search_env(
    trial: TrialAssignment | None, batch: Sequence[TrialAssignment], search: SearchRecord | None
) -> list[dict[str, Any]]:
    if batch:
        return [{"name": TRIALS_ENV, "value": TrialBatch(trials=list(batch)).to_env()}]
    if trial is not None:
        return [{"name": TRIAL_ENV, "value": trial.to_env()}]
    if search is not None:
        return [{"name": SEARCH_ENV, "value": search.to_env()}]
    return []


def _champion_env(
    spec: TrainingPipelineSpec, champion: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """KUBELOOP_CHAMPION_VERSION/URI: the champion the run scores on its own validation rows
    (spec.promotion.mustBeatChampion) and whose profile its data is validated against
    (spec.dataValidation), when there is one and either asks for it (the trainer scores it only
    for the gate: that costs a download, a load and a prediction)."""
    promo = spec.promotion
    scores = promo is not None and promo.must_beat_champion
    if not champion or not champion.get("uri") or not (scores or spec.data_validation.enabled):
        return []
    return [
        {"name": "KUBELOOP_CHAMPION_VERSION", "value": str(champion.get("version"))},
        {"name": "KUBELOOP_CHAMPION_URI", "value": str(champion["uri"])},
    ]


# Only the container whose process reports (rank 0 of it) serves progress, on this port.
def _progress_env() -> list[dict[str, Any]]:
    return [{"name": PROGRESS_PORT_ENV, "value": str(PROGRESS_PORT)}]


def _progress_ports() -> list[dict[str, Any]]:
    return [{"name": PROGRESS_PORT_NAME, "containerPort": PROGRESS_PORT, "protocol": "TCP"}]


def _torchrun_args() -> list[str]:
    return [
        "--nnodes=$(WORLD_SIZE)",
        "--nproc-per-node=$(NPROC_PER_NODE)",
        "--node-rank=$(NODE_RANK)",
        "--master-addr=$(MASTER_ADDR)",
        "--master-port=$(MASTER_PORT)",
        "--no-python",
    ]


def _container(
    name: str,
    image: str,
    argv: list[str],
    *,
    env: list[dict[str, Any]],
    spec: TrainingPipelineSpec,
    mounts: list[dict[str, Any]],
    gpus: bool,
) -> dict[str, Any]:
    res = spec.resources
    limits: dict[str, str] = {"cpu": res.cpu, "memory": res.memory}
    if gpus and res.gpus > 0:
        limits[res.gpu_resource_name] = str(res.gpus)
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "command": argv[:2],
        "env": env,
        "resources": {"requests": dict(limits), "limits": limits},
        "volumeMounts": [dict(m) for m in mounts],
        "securityContext": restricted_container_security_context(),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if argv[2:]:
        container["args"] = argv[2:]
    return container


def _user_params(
    spec: TrainingPipelineSpec, trial: TrialAssignment | None, search: SearchRecord | None
) -> dict[str, Any]:
    """The params the user's code trains (KUBELOOP_PARAMS), as the SDK's ctx.params has them:
    a trial's over spec.model.params, or the search winner's with its refit budget."""
    if trial is not None:
        return trial.params_over(dict(spec.model.params))
    if search is not None:
        return search.final().params_over(dict(spec.model.params))
    return dict(spec.model.params)


def _user_env(
    spec: TrainingPipelineSpec,
    run_env: list[dict[str, Any]],
    params: dict[str, Any],
    progress: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """The user container's env: the run's identity and context, the storage credentials, the
    user's own variables, and the SDK on PYTHONPATH (after the user's own PYTHONPATH)."""
    assert spec.trainer is not None
    keep = {
        "KUBELOOP_NAMESPACE",
        "KUBELOOP_PIPELINE",
        "KUBELOOP_PIPELINE_UID",
        "KUBELOOP_RUN_ID",
        "KUBELOOP_WORK_DIR",
        TRIAL_ENV,  # the SDK reads a trial's params from it (ctx.params)
        SEARCH_ENV,
    }
    kept = [e for e in run_env if e["name"] in keep or e["name"] in AWS_KEYS]
    context = [
        {"name": "KUBELOOP_CONTEXT", "value": f"{KUBELOOP_DIR}/context.json"},
        {"name": "KUBELOOP_DATA_DIR", "value": f"{KUBELOOP_DIR}/data"},
        {"name": "KUBELOOP_MODEL_DIR", "value": f"{KUBELOOP_DIR}/output/model"},
        {"name": "KUBELOOP_CHECKPOINT_DIR", "value": f"{KUBELOOP_DIR}/checkpoints"},
        {"name": "KUBELOOP_CHECKPOINT_URI", "value": spec.checkpoint_uri(_run_id(run_env))},
        {"name": "KUBELOOP_SEED", "value": str(spec.seed)},
        {"name": "KUBELOOP_PARAMS", "value": json.dumps(params, sort_keys=True)},
        *progress,
    ]
    user = [e.to_wire() for e in spec.trainer.env if e.name != "PYTHONPATH"]
    own_path = [e.value for e in spec.trainer.env if e.name == "PYTHONPATH" and e.value]
    python_path = ":".join([*own_path, SDK_DIR])
    return [*kept, *context, *user, {"name": "PYTHONPATH", "value": python_path}]


def _run_id(env: list[dict[str, Any]]) -> str:
    return str(next(e["value"] for e in env if e["name"] == "KUBELOOP_RUN_ID"))


def _custom_containers(
    spec: TrainingPipelineSpec,
    kubeloop_image: str,
    run_env: list[dict[str, Any]],
    rendezvous: list[dict[str, Any]],
    mounts: list[dict[str, Any]],
    *,
    params: dict[str, Any],
    progress: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """prepare (Kubeloop) -> the user's code (their image) -> publish (Kubeloop): docs/byo.md.

    Only the user's container gets GPUs and the torchrun rendezvous; Kubeloop's steps need
    neither, and the publish step of worker pods other than 0 only says so and exits.
    """
    trainer = spec.trainer
    assert trainer is not None
    rank = [e for e in rendezvous if e["name"] == "NODE_RANK"]
    run_env = [*run_env, {"name": "KUBELOOP_DIR", "value": KUBELOOP_DIR}]
    prepare = _container(
        "prepare",
        kubeloop_image,
        ["kubeloop", "train", "--prepare"],
        env=run_env,
        spec=spec,
        mounts=mounts,
        gpus=False,
    )
    publish = _container(
        "publish",
        kubeloop_image,
        ["kubeloop", "train", "--publish"],
        env=run_env + rank,
        spec=spec,
        mounts=mounts,
        gpus=False,
    )
    user = _container(
        USER_CONTAINER,
        trainer.image,
        [],
        env=_user_env(spec, run_env, params, progress) + rendezvous,
        spec=spec,
        mounts=mounts,
        gpus=True,
    )
    del user["command"]
    if progress:
        user["ports"] = _progress_ports()
    if spec.distributed.workers > 1:
        assert trainer.command is not None  # admission: distributed custom runs name a command
        user["command"] = ["torchrun"]
        user["args"] = [*_torchrun_args(), *trainer.command, *trainer.args]
    else:
        if trainer.command is not None:
            user["command"] = list(trainer.command)
        if trainer.args:
            user["args"] = list(trainer.args)
    if trainer.working_dir:
        user["workingDir"] = trainer.working_dir
    # Still "restricted" (no root, no privilege, no capabilities), but the user's own image
    # keeps a writable root filesystem: training libraries write caches under $HOME and the
    # working directory, and a read-only root would fail code that runs anywhere else.
    user["securityContext"]["readOnlyRootFilesystem"] = False
    return [prepare, user], publish


def build_headless_service(
    owner: Owner, spec: TrainingPipelineSpec, run_id: int, name: str | None = None
) -> dict[str, Any]:
    """The headless Service that gives each pod of a distributed run (or trial: `name`, its
    Job's) a stable DNS name.

    `publishNotReadyAddresses` lets workers resolve pod 0 before any readiness exists (training
    pods have no probes), which the rendezvous needs.
    """
    name = name or job_name(owner.name, run_id)
    labels = _labels(owner, run_id)
    port = spec.distributed.master_port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": labels,
            "ports": [{"name": "rendezvous", "port": port, "targetPort": port}],
        },
    }
