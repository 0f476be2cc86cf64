"""spec.dataTrigger: the data-watch CronJob's checks start one NewData run per new fingerprint,
wait for a run in progress, and let spec.schedule skip ticks over unchanged data."""

from __future__ import annotations

from typing import Any

from tests.integration.harness import (
    CRONJOBS,
    JOBS,
    TP,
    Cluster,
    Operator,
    events,
    example,
    finish_data_check,
    settled,
    wait_for,
)

from kubeloop.controller import clock

OLD, NEW, NEWER = ("sha256:" + c * 64 for c in "abc")


def _trained(version: int, fingerprint: str) -> dict[str, Any]:
    return {
        "kind": "TrainingResult",
        "ok": True,
        "version": str(version),
        "uri": f"s3://models/churn/versions/{version}",
        "metrics": {"roc_auc": 0.8 + version / 100},
        "dataFingerprint": fingerprint,
    }


def _status(cluster: Cluster, name: str) -> dict[str, Any]:
    return (cluster.get(TP, "ml", name) or {}).get("status") or {}


def _checked(cluster: Cluster, name: str, job: str) -> dict[str, Any] | None:
    check = _status(cluster, name).get("dataCheck") or {}
    return check if check.get("job") == job else None


def _runs(cluster: Cluster, name: str) -> list[str]:
    return sorted(
        j["metadata"]["name"]
        for j in cluster.list(JOBS, "ml")
        if j["metadata"]["labels"].get("kubeloop.io/trainingpipeline") == name
    )


def _pipeline(name: str, **spec: Any) -> dict[str, Any]:
    doc = example("churn-pipeline.yaml", name=name)
    doc["spec"].pop("schedule")
    # Checks run only when the test plays a tick (once a year otherwise).
    doc["spec"]["dataTrigger"] = {"schedule": "0 0 1 1 *"}
    doc["spec"].update(spec)
    return doc


def test_new_data_starts_one_run_and_waits_for_a_run_in_progress(
    cluster: Cluster, operator: Operator
) -> None:
    cluster.create(_pipeline("fresh"))
    wait_for(lambda: cluster.get(JOBS, "ml", "fresh-run-1"), what="run 1 (Create)")
    cron = wait_for(lambda: cluster.get(CRONJOBS, "ml", "fresh-datawatch"), what="the CronJob")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["command"] == ["kubeloop", "fingerprint"]
    cluster.finish_job("ml", "fresh-run-1", _trained(1, OLD))
    wait_for(lambda: _status(cluster, "fresh").get("lastRunDataFingerprint") == OLD)
    assert _status(cluster, "fresh")["runs"][0]["dataFingerprint"] == OLD

    # The data the latest run trained on, then a failed check: no run.
    job = finish_data_check(cluster, "ml", "fresh", 1, OLD)
    wait_for(lambda: _checked(cluster, "fresh", job), what="check 1 recorded")
    job = finish_data_check(cluster, "ml", "fresh", 2, None)
    check = wait_for(lambda: _checked(cluster, "fresh", job), what="check 2 recorded")
    assert check.get("fingerprint") is None and "no Parquet file" in check["message"]
    events(cluster, "fresh", "DataCheckFailed")
    settled(cluster, "trainingpipelines", "fresh")
    assert _runs(cluster, "fresh") == ["fresh-run-1"]

    # New data: one NewData run, and the same data checked again starts none.
    finish_data_check(cluster, "ml", "fresh", 3, NEW)
    run = wait_for(lambda: cluster.get(JOBS, "ml", "fresh-run-2"), what="run 2 (NewData)")
    assert run["metadata"]["annotations"]["kubeloop.io/trigger"] == "NewData"
    assert _status(cluster, "fresh")["handledDataFingerprint"] == NEW
    job = finish_data_check(cluster, "ml", "fresh", 4, NEW)
    wait_for(lambda: _checked(cluster, "fresh", job), what="check 4 recorded")
    settled(cluster, "trainingpipelines", "fresh")
    assert _runs(cluster, "fresh") == ["fresh-run-1", "fresh-run-2"]

    # Newer data while run 2 trains: it waits, and says so.
    finish_data_check(cluster, "ml", "fresh", 5, NEWER)

    def waiting() -> bool:
        conditions = {c["type"]: c for c in _status(cluster, "fresh").get("conditions") or []}
        message = conditions.get("Running", {}).get("message", "")
        return "new training data waits for run 2 to finish" in message

    wait_for(waiting, what="Running to say that new data waits")
    assert _runs(cluster, "fresh") == ["fresh-run-1", "fresh-run-2"]
    cluster.finish_job("ml", "fresh-run-2", _trained(2, NEW))
    run = wait_for(lambda: cluster.get(JOBS, "ml", "fresh-run-3"), what="run 3 (NewData)")
    assert run["metadata"]["annotations"]["kubeloop.io/trigger"] == "NewData"
    assert _status(cluster, "fresh")["handledDataFingerprint"] == NEWER


def test_a_schedule_tick_over_unchanged_data_is_skipped(
    cluster: Cluster, operator: Operator
) -> None:
    doc = _pipeline("skip", schedule="* * * * *")
    doc["spec"]["dataTrigger"]["skipUnchangedSchedule"] = True
    cluster.create(doc)
    wait_for(lambda: cluster.get(JOBS, "ml", "skip-run-1"), what="run 1 (Create)")
    cluster.finish_job("ml", "skip-run-1", _trained(1, OLD))
    job = finish_data_check(cluster, "ml", "skip", 1, OLD)
    wait_for(lambda: _checked(cluster, "skip", job), what="the check recorded")
    before = _status(cluster, "skip").get("lastScheduleTime")
    with clock.shifted(61):
        skipped = events(cluster, "skip", "ScheduleSkipped")
        wait_for(lambda: _status(cluster, "skip").get("lastScheduleTime") != before)
    assert "the data is unchanged since run 1" in skipped[0]["message"]
    settled(cluster, "trainingpipelines", "skip")
    assert _runs(cluster, "skip") == ["skip-run-1"]

    # Changed data: the next tick runs (the new data starts it first, as NewData).
    finish_data_check(cluster, "ml", "skip", 2, NEW)
    run = wait_for(lambda: cluster.get(JOBS, "ml", "skip-run-2"), what="run 2")
    assert run["metadata"]["annotations"]["kubeloop.io/trigger"] == "NewData"


def test_removing_the_trigger_removes_its_cronjob(cluster: Cluster, operator: Operator) -> None:
    cluster.create(_pipeline("gone"))
    wait_for(lambda: cluster.get(CRONJOBS, "ml", "gone-datawatch"), what="the CronJob")
    cluster.patch(TP, "ml", "gone", {"spec": {"dataTrigger": None}})
    wait_for(lambda: cluster.get(CRONJOBS, "ml", "gone-datawatch") is None, what="its removal")
    # The CronJob goes before the pass that removed it writes status: wait for that write.
    wait_for(lambda: _status(cluster, "gone").get("dataCheck") is None, what="dataCheck cleared")
