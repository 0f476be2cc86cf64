"""TrainingPipeline end to end against the emulator: runs, results, gate, champion, triggers."""

from __future__ import annotations

import time
from typing import Any

from tests.integration.harness import JOBS, TP, Cluster, Operator, events, example, wait_for


def _result(version: str, auc: float) -> dict[str, Any]:
    return {
        "kind": "TrainingResult",
        "ok": True,
        "version": version,
        "uri": f"s3://models/churn/versions/{version}",
        "metrics": {"roc_auc": auc, "accuracy": 0.8},
    }


def _status(cluster: Cluster, name: str) -> dict[str, Any]:
    obj = cluster.get(TP, "ml", name)
    assert obj is not None
    return obj.get("status") or {}


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
    assert cluster.get("rbac.authorization.k8s.io/v1/roles", "ml", "kubeloop-trainer-tp1")

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
            "reason": "MissingTargetColumn",
            "message": "no column churned",
        },
        ok=False,
    )
    status = wait_for(
        lambda: len((s := _status(cluster, "tp1")).get("runs") or []) == 3 and s,
        what="run 3 recorded",
    )
    assert (
        status["runs"][0]["result"] == "Failed"
        and status["runs"][0]["message"] == "no column churned"
    )
    assert status["runs"][0]["trigger"] == "SpecChange"
    assert status["phase"] == "Failed" and status["champion"]["version"] == "1"
    assert _jobs(cluster, "tp1") == ["tp1-run-1", "tp1-run-2", "tp1-run-3"]


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

    time.sleep(2)  # several resync periods
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

    # kopf's own bookkeeping (its diff-base annotation) is the last write it makes.
    obj = wait_for(
        lambda: (
            "kubeloop.io/last-handled-configuration"
            in ((o := cluster.get(TP, "ml", "tp-bad")) or {})["metadata"].get("annotations", {})
            and o
        )
    )
    rv = obj["metadata"]["resourceVersion"]
    time.sleep(2)
    assert cluster.get(TP, "ml", "tp-bad")["metadata"]["resourceVersion"] == rv  # type: ignore[index]


def test_live_progress_survives_reconciles(cluster: Cluster, operator: Operator) -> None:
    """The trainer's status patches (currentRun.progress) are not overwritten by the operator's
    own status writes, and go away with the run."""
    cluster.create(example("churn-pipeline.yaml", name="tp-prog"))
    wait_for(lambda: _status(cluster, "tp-prog").get("currentRun"), what="run 1 allocated")
    progress = {"percent": 40, "epoch": 4, "epochs": 10, "loss": 0.41, "etaSeconds": 90}
    cluster.patch(TP, "ml", "tp-prog", {"status": {"currentRun": {"progress": progress}}}, "status")
    # A spec-neutral change makes the operator reconcile and write status several times.
    cluster.patch(TP, "ml", "tp-prog", {"metadata": {"annotations": {"touch": "1"}}})

    time.sleep(1.5)
    current = _status(cluster, "tp-prog")["currentRun"]
    assert current["progress"] == progress and current["id"] == "1"
    cluster.finish_job("ml", "tp-prog-run-1", _result("1", 0.9))
    status = wait_for(lambda: (s := _status(cluster, "tp-prog")).get("runs") and s)
    assert not status.get("currentRun")


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

    time.sleep(1.5)
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
