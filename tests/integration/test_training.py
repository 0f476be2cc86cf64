"""TrainingPipeline end to end against the emulator: runs, results, gate, champion, triggers."""

from __future__ import annotations

import copy
import logging
from typing import Any

import pytest
from tests.integration.harness import (
    JOBS,
    TP,
    Cluster,
    Operator,
    events,
    example,
    pipeline_status,
    resync_requests,
    settled,
    training_result,
    wait_for,
)

from kubeloop_sdk.progress import progress_value
from kubeloop_sdk.progressendpoint import ProgressEndpoint

pytestmark = pytest.mark.slow  # minutes: `make test` starts it first


_result = training_result
_status = pipeline_status


def _jobs(cluster: Cluster, name: str) -> list[str]:
    return sorted(
        j["metadata"]["name"]
        for j in cluster.list(JOBS, "ml")
        if j["metadata"]["labels"].get("kubeloop.io/trainingpipeline") == name
    )


def test_create_runs_job_then_gate_and_champion(cluster: Cluster, operator: Operator) -> None:
    doc = example("churn-pipeline.yaml", name="tp1")
    cluster.create(doc)
    job = wait_for(lambda: cluster.get(JOBS, "ml", "tp1-run-1"), what="Job tp1-run-1")
    pod = job["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["KUBELOOP_RUN_ID"]["value"] == "1" and env["KUBELOOP_PIPELINE"]["value"] == "tp1"
    assert job["metadata"]["ownerReferences"][0]["name"] == "tp1"
    assert job["metadata"]["annotations"]["kubeloop.io/trigger"] == "Create"
    # The run is allocated in status (currentRun) before its Job exists; the summary (phase)
    # comes with the write after.
    status = wait_for(
        lambda: (s := _status(cluster, "tp1")).get("phase") == "Running" and s, what="Running"
    )
    assert status["currentRun"]["id"] == "1" and status["lastRunId"] == 1
    # No Kubernetes API access from the run's pod (progress is read from it: see below).
    assert pod["automountServiceAccountToken"] is False and "serviceAccountName" not in pod

    cluster.finish_job("ml", "tp1-run-1", _result("1", 0.91))
    status = wait_for(lambda: (s := _status(cluster, "tp1")).get("champion") and s, what="champion")
    assert status["champion"]["version"] == "1" and status["champion"]["score"] == 0.91
    assert status["runs"][0]["result"] == "Promoted" and status["runs"][0]["id"] == "1"
    assert status["phase"] == "Succeeded"
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert ready["status"] == "True" and ready["reason"] == "ChampionAvailable"
    assert ready["observedGeneration"] == 1 and ready["lastTransitionTime"]

    # A manual trigger starts run 2; a worse model does not move the champion.
    cluster.patch(
        TP, "ml", "tp1", {"metadata": {"annotations": {"kubeloop.io/run-requested-at": "t1"}}}
    )
    job2 = wait_for(lambda: cluster.get(JOBS, "ml", "tp1-run-2"), what="run 2")
    assert job2["metadata"]["annotations"]["kubeloop.io/trigger"] == "Manual"
    cluster.finish_job("ml", "tp1-run-2", _result("2", 0.80))
    status = wait_for(
        lambda: len((s := _status(cluster, "tp1")).get("runs") or []) == 2 and s,
        what="run 2 recorded",
    )
    assert status["runs"][0]["result"] == "Rejected"
    assert "does not beat" in status["runs"][0]["message"]
    assert status["champion"]["version"] == "1"

    # Below the minimum is rejected even without a champion to beat; a failed run is Failed.
    cluster.patch(TP, "ml", "tp1", {"spec": {"seed": 7}})  # spec change -> run 3
    wait_for(lambda: cluster.get(JOBS, "ml", "tp1-run-3"), what="run 3")
    cluster.finish_job(
        "ml",
        "tp1-run-3",
        {
            "kind": "TrainingResult",
            "ok": False,
            "reason": "DataValidationFailed",
            "message": "the training data fails validation ... in columns tenure (...)",
        },
        ok=False,
    )
    status = wait_for(
        lambda: len((s := _status(cluster, "tp1")).get("runs") or []) == 3 and s,
        what="run 3 recorded",
    )
    assert status["runs"][0]["result"] == "Failed"
    assert status["runs"][0]["reason"] == "DataValidationFailed"
    assert "in columns tenure" in status["runs"][0]["message"]
    succeeded = {c["type"]: c for c in status["conditions"]}["Succeeded"]
    assert (succeeded["status"], succeeded["reason"]) == ("False", "DataValidationFailed")
    assert status["runs"][0]["trigger"] == "SpecChange"
    assert status["phase"] == "Failed" and status["champion"]["version"] == "1"
    assert _jobs(cluster, "tp1") == ["tp1-run-1", "tp1-run-2", "tp1-run-3"]


def test_only_edits_of_what_is_trained_start_a_run(cluster: Cluster, operator: Operator) -> None:
    cluster.create(example("churn-pipeline.yaml", name="tp-edits"))
    wait_for(lambda: cluster.get(JOBS, "ml", "tp-edits-run-1"), what="run 1")
    cluster.finish_job("ml", "tp-edits-run-1", _result("1", 0.91))
    wait_for(lambda: _status(cluster, "tp-edits").get("champion"), what="champion")

    # The gate, the schedule and the history limit: reconciled (observedGeneration), no run.
    cluster.patch(
        TP,
        "ml",
        "tp-edits",
        {"spec": {"promotion": {"minimum": 0.8}, "schedule": "0 4 * * 0",
                  "runPolicy": {"historyLimit": 5}}},
    )  # fmt: skip
    generation = cluster.get(TP, "ml", "tp-edits")["metadata"]["generation"]
    status = wait_for(
        lambda: (s := _status(cluster, "tp-edits")).get("observedGeneration") == generation and s,
        what=f"generation {generation} reconciled",
    )
    assert status["lastRunId"] == 1 and not status.get("currentRun")
    assert _jobs(cluster, "tp-edits") == ["tp-edits-run-1"]

    # What is trained: the seed. One run, for that generation.
    cluster.patch(TP, "ml", "tp-edits", {"spec": {"seed": 7}})
    job = wait_for(lambda: cluster.get(JOBS, "ml", "tp-edits-run-2"), what="run 2")
    assert job["metadata"]["annotations"]["kubeloop.io/trigger"] == "SpecChange"
    assert _status(cluster, "tp-edits")["lastRunGeneration"] == generation + 1


def test_retrain_request_starts_exactly_one_run(cluster: Cluster, operator: Operator) -> None:
    cluster.create(example("churn-pipeline.yaml", name="tp2"))
    wait_for(lambda: cluster.get(JOBS, "ml", "tp2-run-1"))
    cluster.finish_job("ml", "tp2-run-1", _result("1", 0.9))
    wait_for(lambda: _status(cluster, "tp2").get("champion"))
    for _ in range(3):  # the same request seen repeatedly is still one request
        cluster.patch(
            TP,
            "ml",
            "tp2",
            {
                "metadata": {
                    "annotations": {"kubeloop.io/retrain-requested-at": "2026-01-01T00:00:00Z"}
                }
            },
        )
    job = wait_for(lambda: cluster.get(JOBS, "ml", "tp2-run-2"))
    assert job["metadata"]["annotations"]["kubeloop.io/trigger"] == "Drift"

    settled(cluster, "trainingpipelines", "tp2")
    assert _jobs(cluster, "tp2") == ["tp2-run-1", "tp2-run-2"]
    assert _status(cluster, "tp2")["handledRetrainRequest"] == "2026-01-01T00:00:00Z"


def test_suspend_holds_triggers(cluster: Cluster, operator: Operator) -> None:
    doc = example("churn-pipeline.yaml", name="tp3")
    doc["spec"]["suspend"] = True
    cluster.create(doc)
    status = wait_for(lambda: _status(cluster, "tp3").get("conditions") and _status(cluster, "tp3"))
    assert {c["type"]: c for c in status["conditions"]}["Ready"]["reason"] == "Suspended"
    assert _jobs(cluster, "tp3") == []
    cluster.patch(TP, "ml", "tp3", {"spec": {"suspend": False}})
    wait_for(lambda: cluster.get(JOBS, "ml", "tp3-run-1"))


def test_invalid_spec_is_reported_without_retry_storm(cluster: Cluster, operator: Operator) -> None:
    # The API server refuses what the schema and CEL catch; what only pydantic catches (here a
    # Toleration with an unknown field slipped in with admission off) must surface as InvalidSpec.
    cluster.em.admission = False
    try:
        doc = example("churn-pipeline.yaml", name="tp-bad")
        doc["spec"]["model"]["estimator"] = "NotAnEstimator"
        cluster.create(doc)
    finally:
        cluster.em.admission = True
    status = wait_for(
        lambda: _status(cluster, "tp-bad").get("conditions") and _status(cluster, "tp-bad")
    )
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "InvalidSpec"
    assert "spec.model.estimator" in ready["message"]
    assert status["phase"] == "Invalid"
    assert _jobs(cluster, "tp-bad") == []
    assert events(cluster, "tp-bad", "InvalidSpec")[0]["type"] == "Warning"

    # The status write above is the last one: kopf keeps no bookkeeping on pipelines (no
    # change handlers, no timer), and the reconciles that follow change nothing.
    settled(cluster, "trainingpipelines", "tp-bad")
    rv = cluster.get(TP, "ml", "tp-bad")["metadata"]["resourceVersion"]  # type: ignore[index]
    settled(cluster, "trainingpipelines", "tp-bad")
    assert cluster.get(TP, "ml", "tp-bad")["metadata"]["resourceVersion"] == rv  # type: ignore[index]


def _serving_pod(cluster: Cluster, job: str, port: int) -> None:
    """Play the Job controller and kubelet: the Job's pod, Running at 127.0.0.1, its progress
    port (the container port named `progress`) where `port` really serves."""
    # A run is allocated in status before its Job is created: wait for the Job.
    found = wait_for(lambda: cluster.get(JOBS, "ml", job), what=f"Job {job}")
    template = copy.deepcopy(found["spec"]["template"])
    labels = {**template["metadata"]["labels"], "job-name": job}
    labels["batch.kubernetes.io/job-name"] = job
    for container in template["spec"]["containers"]:
        for declared in container.get("ports") or []:
            declared["containerPort"] = port
    cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{job}-r8x2m", "namespace": "ml", "labels": labels},
            "spec": template["spec"],
            "status": {"phase": "Running", "podIP": "127.0.0.1"},
        }
    )


def test_live_progress_is_read_from_the_runs_pod(cluster: Cluster, operator: Operator) -> None:
    """The run's pod has no API access: the operator reads the progress it serves (the SDK's
    real endpoint) into status.currentRun.progress, keeps it through its own status writes,
    never shows it as the next run's, and never takes another run's report for the current."""
    name = "tp-prog"
    cluster.create(example("churn-pipeline.yaml", name=name))
    wait_for(lambda: cluster.get(JOBS, "ml", f"{name}-run-1"), what="run 1's Job")
    endpoint = ProgressEndpoint("127.0.0.1", 0)
    try:
        _serving_pod(cluster, f"{name}-run-1", endpoint.port)
        progress = {"percent": 40, "epoch": 4, "epochs": 10, "loss": 0.41, "etaSeconds": 90}
        endpoint.publish(progress_value(progress, "1"))
        current = wait_for(
            lambda: (c := _status(cluster, name)["currentRun"]).get("progress") and c,
            what="run 1's progress in status",
        )
        assert current["progress"] == {**current["progress"], **progress, "runId": "1"}
        assert current["id"] == "1"
        # A spec-neutral change makes the operator reconcile and write status several times.
        cluster.patch(TP, "ml", name, {"metadata": {"annotations": {"touch": "1"}}})
        settled(cluster, "trainingpipelines", name)
        assert _status(cluster, name)["currentRun"]["progress"] == current["progress"]

        # The next request is pending when run 1 ends: one reconcile records run 1 and starts
        # run 2, writing run 2's entry over run 1's (with a merge patch).
        cluster.patch(TP, "ml", name, {"metadata": {"annotations": {RUN_REQUEST: "again"}}})

        def request_waits() -> bool:
            conditions = {c["type"]: c for c in _status(cluster, name).get("conditions") or []}
            message = conditions.get("Running", {}).get("message", "")
            return "a manual run request waits for run 1 to finish" in message

        wait_for(request_waits, what="the run request waiting for run 1")
        cluster.finish_job("ml", f"{name}-run-1", _result("1", 0.9))
        status = wait_for(
            lambda: (s := _status(cluster, name)).get("currentRun", {}).get("id") == "2" and s,
            what="run 2 current",
        )
        assert "progress" not in status["currentRun"], status["currentRun"]
        # run 2's pod answers with run 1's report (as a late one would be): not run 2's
        _serving_pod(cluster, f"{name}-run-2", endpoint.port)
        settled(cluster, "trainingpipelines", name)
        assert "progress" not in _status(cluster, name)["currentRun"]
        endpoint.publish(progress_value({"percent": 10}, "2"))
        progress2 = wait_for(
            lambda: _status(cluster, name)["currentRun"].get("progress"),
            what="run 2's progress in status",
        )
        assert progress2["percent"] == 10 and progress2["runId"] == "2"
        assert "loss" not in progress2  # nothing of run 1's report is left in it
    finally:
        endpoint.close()


def test_distributed_gpu_run_under_kueue(cluster: Cluster, operator: Operator) -> None:
    """workers: 4, gpus: 2 -> Indexed Job + headless Service with the torchrun env; the Job is
    created suspended for Kueue, and what Kueue changes on admission is never reverted."""
    cluster.create(example("gpu-distributed-pipeline.yaml", name="tp-ddp"))
    job = wait_for(lambda: cluster.get(JOBS, "ml", "tp-ddp-run-1"), what="Indexed Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == 4
    assert spec["suspend"] is True and spec["backoffLimit"] == 3
    assert spec["activeDeadlineSeconds"] == 7200
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == "tp-ddp-run-1" and pod["runtimeClassName"] == "nvidia"
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    env = {e["name"]: e for e in container["env"]}
    assert env["MASTER_ADDR"]["value"] == "tp-ddp-run-1-0.tp-ddp-run-1.ml.svc"
    assert env["WORLD_SIZE"]["value"] == "4" and env["NPROC_PER_NODE"]["value"] == "2"
    assert "job-completion-index" in env["NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
    service = wait_for(lambda: cluster.get("v1/services", "ml", "tp-ddp-run-1"), what="Service")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["ports"][0]["port"] == int(env["MASTER_PORT"]["value"])
    # Held by Kueue: the run is queued, not training.
    status = wait_for(lambda: (s := _status(cluster, "tp-ddp")).get("phase") == "Queued" and s)
    running = {c["type"]: c for c in status["conditions"]}["Running"]
    assert running["status"] == "True" and running["reason"] == "Queued"
    assert (
        "waits" not in running["message"]
        and "admitted (Kueue queue gpu-queue)" in (running["message"])
    )

    # Kueue admits: unsuspends and injects node placement. The operator leaves it alone.
    admitted = {
        "suspend": False,
        "template": {
            "spec": {
                "nodeSelector": {"cloud.example.com/flavor": "h100"},
                "tolerations": [{"key": "flavor", "operator": "Exists"}],
            }
        },
    }
    cluster.patch(JOBS, "ml", "tp-ddp-run-1", {"spec": admitted})
    rv = cluster.get(JOBS, "ml", "tp-ddp-run-1")["metadata"]["resourceVersion"]  # type: ignore[index]
    status = wait_for(lambda: (s := _status(cluster, "tp-ddp")).get("phase") == "Running" and s)
    running = {c["type"]: c for c in status["conditions"]}["Running"]
    assert running["reason"] == "RunInProgress" and running["message"] == "run 1 is training"

    settled(cluster, "trainingpipelines", "tp-ddp")
    job = cluster.get(JOBS, "ml", "tp-ddp-run-1")
    assert job is not None and job["metadata"]["resourceVersion"] == rv
    assert job["spec"]["suspend"] is False
    selector = job["spec"]["template"]["spec"]["nodeSelector"]
    assert selector["cloud.example.com/flavor"] == "h100"  # Kueue's addition stays
    assert _jobs(cluster, "tp-ddp") == ["tp-ddp-run-1"]


def _cond(cluster: Cluster, name: str, type_: str) -> dict[str, Any]:
    return {c["type"]: c for c in _status(cluster, name).get("conditions") or []}.get(type_, {})


def test_first_run_rejected_by_the_gate_is_not_promoted(
    cluster: Cluster, operator: Operator
) -> None:
    """No champion after finished runs says why (Argo CD health: Degraded), not 'waiting'."""
    cluster.create(example("churn-pipeline.yaml", name="tp-rejected"))
    wait_for(lambda: cluster.get(JOBS, "ml", "tp-rejected-run-1"), what="run 1")
    cluster.finish_job("ml", "tp-rejected-run-1", _result("1", 0.62))
    ready = wait_for(
        lambda: (c := _cond(cluster, "tp-rejected", "Ready")).get("reason") == "NotPromoted" and c,
        what="Ready reason NotPromoted",
    )
    assert ready["status"] == "False"
    assert ready["message"] == (
        "no champion: run 1 was not promoted: roc_auc 0.62 is below the minimum 0.75"
    )
    assert "champion" not in _status(cluster, "tp-rejected")


def test_run_blocked_on_a_missing_secret_stalls_until_its_pod_starts(
    cluster: Cluster, operator: Operator
) -> None:
    cluster.create(example("churn-pipeline.yaml", name="tp-blocked"))
    wait_for(lambda: cluster.get(JOBS, "ml", "tp-blocked-run-1"), what="run 1")
    pod = cluster.block_job("ml", "tp-blocked-run-1")
    stalled = wait_for(
        lambda: (c := _cond(cluster, "tp-blocked", "Stalled")).get("status") == "True" and c,
        what="Stalled=True",
    )
    assert stalled["reason"] == "RunBlocked"
    assert stalled["message"] == (
        f'run 1: pod {pod} cannot start: CreateContainerConfigError: secret "s3-credentials" '
        "not found"
    )
    assert events(cluster, "tp-blocked", "RunBlocked")[0]["type"] == "Warning"
    assert _cond(cluster, "tp-blocked", "Running")["status"] == "True"  # the Job still waits

    # The Secret appears, the kubelet starts the container: the run is no longer blocked.
    running = {"name": "trainer", "ready": True, "state": {"running": {}}}
    cluster.patch(
        "v1/pods",
        "ml",
        pod,
        {"status": {"phase": "Running", "containerStatuses": [running]}},
        "status",
    )
    wait_for(
        lambda: _cond(cluster, "tp-blocked", "Stalled").get("reason") == "SpecValid",
        what="Stalled=False once the pod runs",
    )


# --- run history, refused children, queued runs, waiting generations, late progress ---------

RUN_REQUEST = "kubeloop.io/run-requested-at"


def _status_patches(requests: list[Any], name: str) -> list[Any]:
    return [
        r for r in requests if r.method == "PATCH" and r.name == name and r.subresource == "status"
    ]


def _runs_recorded(name: str) -> int:
    """`kubeloop_training_runs_total` of the pipeline, all results (the operator runs here)."""
    from prometheus_client import REGISTRY

    return int(
        sum(
            REGISTRY.get_sample_value(
                "kubeloop_training_runs_total",
                {"namespace": "ml", "pipeline": name, "result": result},
            )
            or 0
            for result in ("Promoted", "Rejected", "Failed")
        )
    )


def _event_count(cluster: Cluster, name: str, *reasons: str) -> int:
    return sum(
        1
        for e in cluster.list("v1/events", "ml")
        if e.get("reason") in reasons and e["involvedObject"]["name"] == name
    )


def test_history_limit_records_every_run_exactly_once(cluster: Cluster, operator: Operator) -> None:
    """historyLimit 3, and 12 runs whose Jobs all stay (ttlSecondsAfterFinished is a day): each
    run is recorded once -- 12 records, 12 gate Events, no null startedAt -- and an idle resync
    patches nothing. (Runs that fell out of status.runs used to be recorded again on every
    resync: the champion judged against itself, Events and status patches without end.)"""
    name = "tp-hist"
    doc = example("churn-pipeline.yaml", name=name)
    doc["spec"]["runPolicy"] = {"historyLimit": 3}
    cluster.create(doc)
    observed: list[dict[str, Any]] = []
    for i in range(1, 13):
        if i > 1:
            cluster.patch(TP, "ml", name, {"metadata": {"annotations": {RUN_REQUEST: f"r{i}"}}})
        job = f"{name}-run-{i}"
        wait_for(lambda job=job: cluster.get(JOBS, "ml", job), what=f"Job of run {i}")
        # Odd runs beat the champion (promoted), even ones do not (rejected).
        auc = 0.76 + i / 100 if i % 2 else 0.76
        cluster.finish_job("ml", job, _result(str(i), auc))
        status = wait_for(
            lambda i=i: (
                (s := _status(cluster, name)).get("lastRunId") == i
                and not s.get("currentRun")
                and s
            ),
            what=f"run {i} recorded",
        )
        observed += status.get("runs") or []
    wait_for(
        lambda: _event_count(cluster, name, "Promoted", "Rejected") >= 12, what="12 gate Events"
    )

    idle = resync_requests(cluster, "trainingpipelines", name)
    patches = len(_status_patches(idle, name))
    records = _runs_recorded(name)
    promoted = _event_count(cluster, name, "Promoted")
    rejected = _event_count(cluster, name, "Rejected")
    status = _status(cluster, name)
    observed += status["runs"]
    null_started = sum(1 for r in observed if r.get("startedAt") is None)
    print(
        f"12 runs, historyLimit 3: {records} run records, {promoted} Promoted + {rejected} "
        f"Rejected Events, {null_started} records with a null startedAt, {patches} status "
        f"patches in {len(idle)} requests of 4 idle resyncs"
    )
    assert records == 12
    assert (promoted, rejected) == (6, 6)
    assert null_started == 0
    assert patches == 0
    assert [r["id"] for r in status["runs"]] == ["12", "11", "10"]
    assert [r["result"] for r in status["runs"]] == ["Rejected", "Promoted", "Rejected"]
    assert status["champion"]["version"] == "11" and status["lastRecordedRunId"] == 12


def _job_refusal(job: str) -> Any:
    """An admission hook refusing Job `job` as the API server's Job validation does (422)."""
    import kmock

    field = "spec.template.spec.containers[0].resources.requests"
    posts: list[dict[str, Any]] = []

    def refuse(obj: dict[str, Any]) -> None:
        if obj.get("kind") == "Job" and obj["metadata"].get("name") == job:
            posts.append(obj)
            raise kmock.KubernetesError(
                status=422,
                reason="Invalid",
                message=f'Job.batch "{job}" is invalid: {field}: Invalid value: "4": must be '
                "less than or equal to cpu limit of 2",
                details={
                    "name": job,
                    "group": "batch",
                    "kind": "Job",
                    "causes": [{"reason": "FieldValueInvalid", "field": field}],
                },
            )

    refuse.posts = posts  # type: ignore[attr-defined]
    return refuse


def test_a_refused_job_stalls_the_pipeline_once_without_retries(
    cluster: Cluster, operator: Operator, caplog: pytest.LogCaptureFixture
) -> None:
    """The API server refuses run 1's Job (422): the pipeline says so -- Stalled=True naming the
    field, the run Failed with the reason, one Warning Event, a log line -- and the Job is not
    POSTed again on later resyncs; a fixed spec's run is accepted and clears Stalled."""
    name = "tp-refused"
    refuse = _job_refusal(f"{name}-run-1")
    cluster.em.admission_hooks.append(refuse)
    caplog.set_level(logging.WARNING)
    try:
        cluster.create(example("churn-pipeline.yaml", name=name))

        def stalled() -> dict[str, Any] | None:
            s = _status(cluster, name)
            cond = {c["type"]: c for c in s.get("conditions") or []}.get("Stalled") or {}
            return s if cond.get("status") == "True" else None

        status = wait_for(stalled, what="Stalled")
        cond = {c["type"]: c for c in status["conditions"]}["Stalled"]
        assert cond["reason"] == "ChildRefused"
        assert "spec.template.spec.containers[0].resources.requests" in cond["message"]
        assert "422" in cond["message"] and f"Job {name}-run-1" in cond["message"]
        run = status["runs"][0]
        assert run["id"] == "1" and run["result"] == "Failed" and "Invalid value" in run["message"]
        assert not status.get("currentRun") and status["phase"] == "Failed"

        resync_requests(cluster, "trainingpipelines", name)
        assert len(refuse.posts) == 1, "a refused Job was POSTed again"
        (event,) = events(cluster, name, "ChildRefused")
        assert event["type"] == "Warning" and "resources.requests" in event["message"]
        assert _event_count(cluster, name, "RunFailed") == 0  # one Warning Event, not two
        logged = [
            r.getMessage()
            for r in caplog.records
            if r.levelno == logging.WARNING and name in r.getMessage()
        ]
        assert any("ChildRefused" in m and "resources.requests" in m for m in logged), logged

        cluster.patch(TP, "ml", name, {"spec": {"resources": {"cpu": "4"}}})
        wait_for(lambda: cluster.get(JOBS, "ml", f"{name}-run-2"), what="run 2 accepted")
        status = wait_for(lambda: not stalled() and _status(cluster, name), what="not Stalled")
        assert {c["type"]: c for c in status["conditions"]}["Stalled"]["reason"] == "SpecValid"
    finally:
        cluster.em.admission_hooks.remove(refuse)


def test_a_spec_change_during_a_run_says_that_it_waits(
    cluster: Cluster, operator: Operator
) -> None:
    """A new generation while run 1 trains is not started in parallel, and status says so."""
    name = "tp-wait"
    cluster.create(example("churn-pipeline.yaml", name=name))
    wait_for(lambda: cluster.get(JOBS, "ml", f"{name}-run-1"), what="run 1")
    cluster.patch(TP, "ml", name, {"spec": {"seed": 7}})

    def waiting() -> dict[str, Any] | None:
        s = _status(cluster, name)
        cond = {c["type"]: c for c in s.get("conditions") or []}.get("Reconciling") or {}
        return s if "generation 2 waits for run 1 to finish" in cond.get("message", "") else None

    status = wait_for(waiting, what="the waiting generation in status")
    running = {c["type"]: c for c in status["conditions"]}["Running"]
    assert "generation 2 waits for run 1 to finish" in running["message"]
    assert status["observedGeneration"] == 2 and _jobs(cluster, name) == [f"{name}-run-1"]
    cluster.finish_job("ml", f"{name}-run-1", _result("1", 0.9))
    job = wait_for(lambda: cluster.get(JOBS, "ml", f"{name}-run-2"), what="run 2")
    assert job["metadata"]["annotations"]["kubeloop.io/trigger"] == "SpecChange"
    # currentRun is allocated in one status write and the conditions follow in a later one
    # (after the Job is created): wait for the condition itself.
    wait_for(
        lambda: _cond(cluster, name, "Running").get("message") == "run 2 is training",
        what="Running says run 2 is training",
    )
    assert _status(cluster, name)["currentRun"]["id"] == "2"


def test_the_gate_compares_both_versions_on_the_runs_validation_data(
    cluster: Cluster, operator: Operator
) -> None:
    cluster.create(example("churn-pipeline.yaml", name="fair"))
    job = wait_for(lambda: cluster.get(JOBS, "ml", "fair-run-1"), what="run 1")
    env = {e["name"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "KUBELOOP_CHAMPION_URI" not in env  # no champion yet: nothing to score
    cluster.finish_job("ml", "fair-run-1", _result("1", 0.80))
    wait_for(lambda: _status(cluster, "fair").get("champion"), what="champion 1")

    cluster.patch(
        TP, "ml", "fair", {"metadata": {"annotations": {"kubeloop.io/run-requested-at": "t1"}}}
    )
    job = wait_for(lambda: cluster.get(JOBS, "ml", "fair-run-2"), what="run 2")
    env = {
        e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["KUBELOOP_CHAMPION_VERSION"] == "1"
    assert env["KUBELOOP_CHAMPION_URI"] == "s3://models/churn/versions/1"
    # Better than the champion's recorded 0.80 (its own, older validation rows), worse than
    # the champion on this run's rows.
    cluster.finish_job(
        "ml",
        "fair-run-2",
        {
            **_result("2", 0.85),
            "championVersion": "1",
            "championMetrics": {"roc_auc": 0.88, "accuracy": 0.82},
        },
    )
    status = wait_for(
        lambda: len((s := _status(cluster, "fair")).get("runs") or []) == 2 and s,
        what="run 2 recorded",
    )
    run = status["runs"][0]
    assert run["result"] == "Rejected"
    assert run["metrics"] == {"roc_auc": 0.85, "accuracy": 0.8}
    assert run["championVersion"] == "1"
    assert run["championMetrics"] == {"roc_auc": 0.88, "accuracy": 0.82}
    assert run["message"] == (
        "roc_auc 0.85 does not beat champion v1's 0.88 on this run's validation data"
    )
    assert status["champion"]["version"] == "1"
    assert events(cluster, "fair", "Rejected")
