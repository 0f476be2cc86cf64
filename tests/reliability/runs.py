"""Driving one TrainingPipeline through numbered runs, playing the Job controller (shared by
the operator-kill and API-fault experiments)."""

from __future__ import annotations

import time
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


def quiet(cluster: Cluster, plural: str, name: str, polls: int = 4) -> None:
    """Wait until object `name` and the namespace's Jobs have not changed over `polls`
    resync intervals in a row (the operator here is another process: its reconciles read its
    watch cache, and a pass that changes nothing leaves no trace on the API server to count)."""
    resource = f"kubeloop.io/v1alpha1/{plural}"

    def snapshot() -> tuple[Any, ...]:
        obj = cluster.get(resource, "ml", name) or {}
        jobs = sorted(
            (j["metadata"]["name"], j["metadata"].get("resourceVersion"))
            for j in cluster.list(JOBS, "ml")
        )
        return (obj.get("metadata") or {}).get("resourceVersion"), tuple(jobs)

    seen: list[tuple[Any, ...]] = []

    def still() -> bool:
        seen.append(snapshot())
        time.sleep(0.5)  # one resync interval of the operator under test (KUBELOOP_RESYNC_SECONDS)
        return len(seen) > polls and len(set(seen[-polls - 1 :])) == 1

    wait_for(still, timeout=120, what=f"{name} quiet for {polls} resyncs")
