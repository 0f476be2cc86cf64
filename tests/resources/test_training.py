"""The training Job: distributed rendezvous env, GPU scheduling, Kueue, run policy."""

from __future__ import annotations

import json
from typing import Any

from tests.resources.cases import DEFAULTS, UID

from kubeloop.api.training import TrainingPipelineSpec
from kubeloop.resources.common import Owner
from kubeloop.resources.training import build_headless_service, build_training_job


def _spec(**extra: Any) -> TrainingPipelineSpec:
    return TrainingPipelineSpec.model_validate(
        {
            "data": {"train": "s3://data/train/", "target": "y"},
            "model": {"framework": "torch", "task": "classification"},
            "artifacts": "s3://models/m/",
            **extra,
        }
    )


OWNER = Owner("kubeloop.io/v1alpha1", "TrainingPipeline", "ddp", "ml", UID)


def test_distributed_4_workers_2_gpus_gives_torchrun_everything() -> None:
    spec = _spec(distributed={"workers": 4}, resources={"gpus": 2})
    job = build_training_job(
        OWNER, spec, run_id=3, trigger="Manual", generation=2, defaults=DEFAULTS
    )
    svc = build_headless_service(OWNER, spec, 3)
    assert job["metadata"]["name"] == "ddp-run-3"
    js = job["spec"]
    assert js["completionMode"] == "Indexed"
    assert js["completions"] == js["parallelism"] == 4
    pod = js["template"]["spec"]
    # Pod hostnames are <job>-<index> under subdomain = the headless Service's name.
    assert pod["subdomain"] == svc["metadata"]["name"] == "ddp-run-3"
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
    assert set(svc["spec"]["selector"].items()) <= set(js["template"]["metadata"]["labels"].items())
    assert svc["spec"]["ports"][0]["port"] == 29500
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MASTER_ADDR"]["value"] == "ddp-run-3-0.ddp-run-3.ml.svc"
    assert env["MASTER_PORT"]["value"] == "29500"
    assert env["WORLD_SIZE"]["value"] == "4"
    assert env["NPROC_PER_NODE"]["value"] == "2"
    assert env["NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    )
    assert container["command"] == ["torchrun"]
    args = container["args"]
    for flag in (
        "--nnodes=$(WORLD_SIZE)",
        "--nproc-per-node=$(NPROC_PER_NODE)",
        "--node-rank=$(NODE_RANK)",
        "--master-addr=$(MASTER_ADDR)",
        "--master-port=$(MASTER_PORT)",
    ):
        assert flag in args
    assert args[-3:] == ["--no-python", "kubeloop", "train"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert any(m["mountPath"] == "/dev/shm" for m in container["volumeMounts"])
    assert env["KUBELOOP_RUN_ID"]["value"] == "3" and env["KUBELOOP_PIPELINE"]["value"] == "ddp"


def test_single_pod_run_is_a_plain_job() -> None:
    job = build_training_job(
        OWNER, _spec(), run_id=1, trigger="Create", generation=1, defaults=DEFAULTS
    )
    assert (
        "completionMode" not in job["spec"] and "subdomain" not in job["spec"]["template"]["spec"]
    )
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["kubeloop", "train"]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]


def test_gpu_scheduling_and_kueue() -> None:
    spec = _spec(
        resources={
            "gpus": 1,
            "gpuResourceName": "amd.com/gpu",
            "nodeSelector": {"gpu": "mi300"},
            "tolerations": [{"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "runtimeClassName": "rocm",
        },
        queueName="gpu",
        runPolicy={"backoffLimit": 5, "activeDeadlineSeconds": 60, "ttlSecondsAfterFinished": 7},
    )
    job = build_training_job(
        OWNER, spec, run_id=1, trigger="Create", generation=1, defaults=DEFAULTS
    )
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["amd.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"gpu": "mi300"}
    assert pod["tolerations"] == [
        {"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert pod["runtimeClassName"] == "rocm"
    assert pod["containers"][0]["image"] == DEFAULTS.trainer_gpu_image
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu"
    assert job["spec"]["suspend"] is True  # Kueue admits by un-suspending
    assert job["spec"]["backoffLimit"] == 5
    assert job["spec"]["activeDeadlineSeconds"] == 60
    assert job["spec"]["ttlSecondsAfterFinished"] == 7


def test_spec_and_contract_env() -> None:
    import json

    spec = _spec(storageSecretRef={"name": "s3"})
    job = build_training_job(
        OWNER, spec, run_id=1, trigger="Create", generation=1, defaults=DEFAULTS
    )
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert json.loads(env["KUBELOOP_SPEC"]["value"]) == spec.to_wire()
    assert env["KUBELOOP_RESULT_PATH"]["value"] == "/dev/termination-log"
    assert env["KUBELOOP_PROGRESS_PORT"]["value"] == "8090"
    assert env["KUBELOOP_NAMESPACE"]["value"] == "ml"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {
        "name": "s3",
        "key": "AWS_ACCESS_KEY_ID",
        "optional": False,
    }
    assert env["AWS_ENDPOINT_URL"]["valueFrom"]["secretKeyRef"]["optional"] is True
    pod = job["spec"]["template"]["spec"]
    # No Kubernetes API access: no token, and no ServiceAccount of ours to grant anything to.
    assert pod["automountServiceAccountToken"] is False and "serviceAccountName" not in pod
    # Progress leaves by the pod's own endpoint, which the operator reads.
    assert pod["containers"][0]["ports"] == [
        {"name": "progress", "containerPort": 8090, "protocol": "TCP"}
    ]


CHAMPION = {"version": "4", "uri": "s3://models/m/versions/4", "score": 0.9}
CHAMPION_ENV = {
    "KUBELOOP_CHAMPION_VERSION": "4",
    "KUBELOOP_CHAMPION_URI": "s3://models/m/versions/4",
}


def _champion_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if e["name"] in CHAMPION_ENV}


def test_the_champion_is_passed_only_when_the_gate_or_data_validation_compares_with_it() -> None:
    gated = {"promotion": {"metric": "roc_auc"}}  # mustBeatChampion defaults to true
    unvalidated = {"dataValidation": {"enabled": False}}
    ungated = {"promotion": {"metric": "roc_auc", "mustBeatChampion": False}}
    cases = [
        (gated, CHAMPION, CHAMPION_ENV),
        (gated, None, {}),  # no champion yet: nothing to score
        ({**ungated, **unvalidated}, CHAMPION, {}),
        ({**unvalidated}, CHAMPION, {}),  # no gate: every run is promoted, no comparison
        ({**gated, **unvalidated}, CHAMPION, CHAMPION_ENV),
        # dataValidation (on by default) validates the data against the champion's profile
        (ungated, CHAMPION, CHAMPION_ENV),
        ({}, CHAMPION, CHAMPION_ENV),
    ]
    for extra, champion, expected in cases:
        job = build_training_job(
            OWNER,
            _spec(**extra),
            run_id=5,
            trigger="Manual",
            generation=1,
            defaults=DEFAULTS,
            champion=champion,
        )
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert _champion_env(container) == expected, (extra, champion)


def test_a_custom_run_scores_the_champion_in_the_publish_step_not_in_user_code() -> None:
    spec = _spec(
        model={"framework": "custom", "task": "classification"},
        trainer={"image": "team/train:1"},
        promotion={"metric": "roc_auc"},
    )
    job = build_training_job(
        OWNER, spec, run_id=5, trigger="Manual", generation=1, defaults=DEFAULTS, champion=CHAMPION
    )
    pod = job["spec"]["template"]["spec"]
    (publish,) = pod["containers"]
    prepare, user = pod["initContainers"]
    assert publish["name"] == "publish"
    assert _champion_env(publish) == CHAMPION_ENV
    assert _champion_env(prepare) == {}
    assert _champion_env(user) == {}


def test_a_custom_run_serves_progress_from_the_users_code_only() -> None:
    """kubeloop_sdk.report() in the user's code serves the progress: its container alone gets
    the port (prepare and publish report none, and two processes cannot share one port)."""
    spec = _spec(
        model={"framework": "custom", "task": "classification"},
        trainer={"image": "team/train:1"},
    )
    job = build_training_job(
        OWNER, spec, run_id=5, trigger="Manual", generation=1, defaults=DEFAULTS
    )
    pod = job["spec"]["template"]["spec"]
    prepare, user = pod["initContainers"]
    (publish,) = pod["containers"]
    port = {"name": "progress", "containerPort": 8090, "protocol": "TCP"}
    assert user["ports"] == [port]
    assert {"name": "KUBELOOP_PROGRESS_PORT", "value": "8090"} in user["env"]
    for step in (prepare, publish):
        assert "ports" not in step
        assert "KUBELOOP_PROGRESS_PORT" not in {e["name"] for e in step["env"]}
    assert pod["automountServiceAccountToken"] is False and "serviceAccountName" not in pod


def test_a_search_trial_is_built_like_the_run_with_its_assignment_and_no_champion() -> None:
    from kubeloop.api.search import SearchRecord, SearchTrial, TrialAssignment
    from kubeloop.resources.training import trial_job_name

    spec = _spec(resources={"gpus": 1}, queueName="team-a")
    trial = TrialAssignment(run_id="3", trial=4, rung=1, params={"lr": 0.01}, seed=42)
    name = trial_job_name("ddp", 3, 4, 1, halving=True)
    champion = {"version": "2", "uri": "s3://models/m/versions/2"}
    job = build_training_job(
        OWNER, spec, run_id=3, trigger="Manual", generation=2, defaults=DEFAULTS,
        champion=champion, trial=trial, trial_name=name,
    )  # fmt: skip
    run = build_training_job(
        OWNER, spec, run_id=3, trigger="Manual", generation=2, defaults=DEFAULTS,
        champion=champion,
    )  # fmt: skip
    assert name == "ddp-run-3-t4-r1" and job["metadata"]["name"] == name
    labels = job["metadata"]["labels"]
    assert labels["kubeloop.io/trial"] == "4" and labels["kubeloop.io/rung"] == "1"
    assert labels["kueue.x-k8s.io/queue-name"] == "team-a" and job["spec"]["suspend"] is True
    pod, run_pod = job["spec"]["template"]["spec"], run["spec"]["template"]["spec"]
    (container,), (run_container,) = pod["containers"], run_pod["containers"]
    assert container["resources"] == run_container["resources"]
    assert container["securityContext"] == run_container["securityContext"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert TrialAssignment.model_validate_json(env["KUBELOOP_TRIAL"]) == trial
    assert "KUBELOOP_CHAMPION_URI" not in env and "KUBELOOP_SEARCH" not in env
    # Nobody reads a trial's progress: no port, no progress endpoint.
    assert "ports" not in container and "KUBELOOP_PROGRESS_PORT" not in env
    assert run_container["ports"][0]["name"] == "progress"
    won = SearchRecord(
        strategy="random", seed=1, metric="roc_auc", winner=4, refit=False,
        trials=[SearchTrial(assignment=trial)],
    )  # fmt: skip
    final = build_training_job(
        OWNER, spec, run_id=3, trigger="Manual", generation=2, defaults=DEFAULTS, search=won
    )
    env = {
        e["name"]: e.get("value") for e in final["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert SearchRecord.model_validate_json(env["KUBELOOP_SEARCH"]) == won
    assert final["metadata"]["name"] == "ddp-run-3" and "KUBELOOP_TRIAL" not in env


def test_a_job_of_several_trials_lists_them_and_is_built_like_a_lone_trials_job() -> None:
    """spec.search.trialsPerJob > 1: named and labelled for its first trial, its trials in
    the annotation and in KUBELOOP_TRIALS (no KUBELOOP_TRIAL), otherwise a lone trial's Job."""
    from kubeloop.api.search import TrialAssignment, TrialBatch

    spec = _spec(resources={"gpus": 1})
    trials = [TrialAssignment(run_id="3", trial=t, rung=1, seed=42) for t in (5, 7, 8)]
    common: dict[str, Any] = {
        "run_id": 3, "trigger": "Manual", "generation": 2, "defaults": DEFAULTS,
        "trial_name": "ddp-run-3-t5-r1", "champion": {"version": "2", "uri": "s3://m/2"},
    }  # fmt: skip
    job = build_training_job(OWNER, spec, batch=trials, **common)
    lone = build_training_job(OWNER, spec, trial=trials[0], **common)
    assert job["metadata"]["name"] == "ddp-run-3-t5-r1"
    assert job["metadata"]["annotations"]["kubeloop.io/trials"] == "5,7,8"
    assert job["metadata"]["labels"] == lone["metadata"]["labels"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert TrialBatch.from_env(env["KUBELOOP_TRIALS"]).trials == trials
    lone_env = {e["name"] for e in lone["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert set(env) - {"KUBELOOP_TRIALS"} == lone_env - {"KUBELOOP_TRIAL"}


def test_a_custom_trial_and_the_winners_run_get_their_params_in_kubeloop_params() -> None:
    """KUBELOOP_PARAMS is what the SDK's ctx.params says: the trial's params (and its named
    budget) over spec.model.params; the winner's run: its params with the budget's max."""
    from kubeloop.api.search import (
        Budget,
        SearchBudget,
        SearchRecord,
        SearchTrial,
        TrialAssignment,
    )

    spec = _spec(
        model={"framework": "custom", "task": "classification", "params": {"lr": 0.1, "w": 1}},
        trainer={"image": "team/train:1"},
    )
    trial = TrialAssignment(
        run_id="3", trial=2, rung=0, params={"lr": 0.01},
        budget=Budget(parameter="epochs", value=2), seed=42,
    )  # fmt: skip

    def user_env(**kw: Any) -> dict[str, str]:
        job = build_training_job(
            OWNER, spec, run_id=3, trigger="Manual", generation=1, defaults=DEFAULTS, **kw
        )
        user = job["spec"]["template"]["spec"]["initContainers"][1]
        assert ("ports" in user) == ("trial" not in kw)
        return {e["name"]: e.get("value") for e in user["env"]}

    params = json.loads(user_env(trial=trial, trial_name="x-run-3-t2-r0")["KUBELOOP_PARAMS"])
    assert params == {"lr": 0.01, "w": 1, "epochs": 2}
    won = SearchRecord(
        strategy="halving", seed=1, metric="roc_auc", winner=2, refit=True,
        budget=SearchBudget(parameter="epochs", min=2, max=18),
        trials=[SearchTrial(assignment=trial)],
    )  # fmt: skip
    assert json.loads(user_env(search=won)["KUBELOOP_PARAMS"]) == {"lr": 0.01, "w": 1, "epochs": 18}
    assert json.loads(user_env()["KUBELOOP_PARAMS"]) == {"lr": 0.1, "w": 1}
