"""spec.schedule: the operator's timer starts a run at each cron tick (here every minute)."""

from __future__ import annotations

from tests.integration.harness import JOBS, TP, Cluster, Operator, example, wait_for

from kubeloop.controller import clock


def test_cron_tick_starts_one_scheduled_run(cluster: Cluster, operator: Operator) -> None:
    doc = example("churn-pipeline.yaml", name="cron")
    doc["spec"]["schedule"] = "* * * * *"
    cluster.create(doc)
    wait_for(lambda: cluster.get(JOBS, "ml", "cron-run-1"), what="run 1 (Create)")
    result = {
        "kind": "TrainingResult",
        "ok": True,
        "version": "1",
        "uri": "s3://models/churn/versions/1",
        "metrics": {"roc_auc": 0.9},
    }
    cluster.finish_job("ml", "cron-run-1", result)
    # The next minute boundary is at most 60 s away: move the operator's clock (it runs in this
    # process) past it rather than wait; the timer checks every resync (0.5 s).
    with clock.shifted(61):
        job = wait_for(lambda: cluster.get(JOBS, "ml", "cron-run-2"), what="cron tick")
    assert job["metadata"]["annotations"]["kubeloop.io/trigger"] == "Schedule"
    status = (cluster.get(TP, "ml", "cron") or {}).get("status") or {}
    assert status.get("lastScheduleTime", "").endswith(":00Z"), status.get("lastScheduleTime")
    names = [
        j["metadata"]["name"]
        for j in cluster.list(JOBS, "ml")
        if j["metadata"]["labels"].get("kubeloop.io/trainingpipeline") == "cron"
    ]
    assert sorted(names) == ["cron-run-1", "cron-run-2"]  # one run per tick
