"""Driving one TrainingPipeline through numbered runs, playing the Job controller (shared by
the operator-kill and API-fault experiments)."""

from __future__ import annotations

from typing import Any

from tests.integration.harness import JOBS, TP, Cluster, example, wait_for


def pipeline(name: str) -> dict[str, Any]:
    """The churn example, unscheduled, keeping up to 100 runs in status."""
    doc = example("churn-pipeline.yaml", name=name)
    doc["spec"].pop("schedule")
    doc["spec"]["runPolicy"] = {"historyLimit": 100}
    return doc


def status(cluster: Cluster, name: str) -> dict[str, Any]:
    return ((cluster.get(TP, "ml", name) or {}).get("status")) or {}


def start_run(cluster: Cluster, name: str, run: int, timeout: float) -> str:
    """Request run `run` (run 1 starts on create) and wait for its Job; returns the Job name."""
    if run > 1:
        annotations = {"kubeloop.io/run-requested-at": f"t{run}"}
        cluster.patch(TP, "ml", name, {"metadata": {"annotations": annotations}})
    job = f"{name}-run-{run}"
    wait_for(lambda: cluster.get(JOBS, "ml", job), timeout=timeout, what=job)
    return job


def finish_run(cluster: Cluster, name: str, run: int, auc: float, timeout: float) -> None:
    """Complete run `run`'s Job with a result and wait until the pipeline recorded it."""
    result = {
        "kind": "TrainingResult",
        "ok": True,
        "version": str(run),
        "uri": f"s3://models/churn/versions/{run}",
        "metrics": {"roc_auc": auc},
    }
    cluster.finish_job("ml", f"{name}-run-{run}", result)
    wait_for(
        lambda: (
            len(status(cluster, name).get("runs") or []) >= run
            and not status(cluster, name).get("currentRun")
        ),
        timeout=timeout,
        what=f"run {run} recorded",
    )


def jobs_of(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    return [
        j
        for j in cluster.list(JOBS, "ml")
        if j["metadata"].get("labels", {}).get("kubeloop.io/trainingpipeline") == name
    ]
