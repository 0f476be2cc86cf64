"""The TrainingPipeline controller's decisions, table-tested without kopf or a client."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from kubeloop.api.training import TrainingPipelineSpec
from kubeloop.controller.training import (
    data_check,
    gate,
    new_data,
    pipeline_phase,
    progress_update,
    recorded_up_to,
    run_state,
    runs_to_record,
    schedule_due,
    skip_schedule,
    spec_changed,
    stale_progress,
    waiting_for,
)

CURRENT = {"id": "3", "job": "churn-run-3"}


def _job(suspend: bool | None = None, queue: str | None = None) -> dict[str, Any]:
    labels = {"kueue.x-k8s.io/queue-name": queue} if queue else {}
    spec = {} if suspend is None else {"suspend": suspend}
    return {"metadata": {"name": "churn-run-3", "labels": labels}, "spec": spec}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({}, 0),  # nothing recorded: every finished Job is recorded once
        ({"runs": [{"id": "12"}, {"id": "11"}]}, 12),  # written before the watermark existed
        ({"lastRecordedRunId": 12, "runs": [{"id": "12"}]}, 12),
        ({"lastRecordedRunId": 12, "runs": []}, 12),  # history cut to nothing: still 12
        ({"lastRecordedRunId": 0}, 0),
    ],
)
def test_recorded_up_to(status: dict[str, Any], expected: int) -> None:
    assert recorded_up_to(status) == expected


@pytest.mark.parametrize(
    ("watermark", "last_run_id", "outcomes", "expected"),
    [
        (12, 12, {i: "Complete" for i in range(1, 13)}, []),  # all Jobs left: none again
        (0, 3, {1: "Complete", 2: "Failed", 3: "Complete"}, [1, 2, 3]),  # lost status: in order
        (3, 4, {4: None}, []),  # the current run is still going
        (3, 4, {4: "Complete"}, [4]),
        (0, 3, {1: "Complete", 2: None, 3: "Complete"}, [1]),  # 3 waits for 2: order kept
        (0, 2, {1: "Complete", 5: "Complete"}, [1]),  # beyond lastRunId: not ours to record
        (2, 5, {3: "Complete", 5: "Complete"}, [3, 5]),  # run 4's Job is gone: skipped
    ],
)
def test_runs_to_record(
    watermark: int, last_run_id: int, outcomes: dict[int, str | None], expected: list[int]
) -> None:
    assert runs_to_record(watermark, last_run_id, outcomes) == expected


RUN_3 = {"id": "3", "job": "churn-run-3", "progress": {"percent": 10, "runId": "3"}}
ALL_NONE = {k: None for k in ("epoch", "epochs", "loss", "etaSeconds", "updatedAt")}


@pytest.mark.parametrize(
    ("current", "served", "expected"),
    [
        (RUN_3, None, None),  # unreachable, or nothing reported yet: left as it is
        (RUN_3, {"percent": 40, "runId": "3"}, {**ALL_NONE, "percent": 40, "runId": "3"}),
        (  # every field, typed
            {"id": "3", "job": "churn-run-3"},
            {
                "epoch": 2,
                "epochs": 8,
                "percent": 25,
                "loss": 1,
                "etaSeconds": 30,
                "updatedAt": "2026-11-30T10:00:00Z",
                "runId": "3",
            },
            {
                "epoch": 2,
                "epochs": 8,
                "percent": 25,
                "loss": 1.0,
                "etaSeconds": 30,
                "updatedAt": "2026-11-30T10:00:00Z",
                "runId": "3",
            },
        ),
        (RUN_3, {"percent": 10, "runId": "3"}, None),  # unchanged: no write
        (RUN_3, {"percent": 90, "runId": "2"}, None),  # a finished run's pod still answering
        (RUN_3, {"percent": 90, "runId": 3}, None),  # mistyped: runId is a string
        (RUN_3, {"percent": 90}, None),  # untagged: whose progress is it?
        (RUN_3, {"percent": 130, "runId": "3"}, None),  # out of RunProgress's range
        (RUN_3, {"percent": "most", "runId": "3"}, None),
        (RUN_3, {"epoch": -1, "runId": "3"}, None),
        (  # a field RunProgress does not know is dropped, not the report
            RUN_3,
            {"percent": 50, "valLoss": 0.3, "runId": "3"},
            {**ALL_NONE, "percent": 50, "runId": "3"},
        ),
        (RUN_3, ["percent", 50], None),  # not an object
        (None, {"percent": 50, "runId": "3"}, None),  # no run in progress
    ],
)
def test_progress_update(
    current: dict[str, Any] | None, served: Any, expected: dict[str, Any] | None
) -> None:
    assert progress_update(current, served) == expected


@pytest.mark.parametrize(
    ("current", "stale"),
    [
        ({"id": "2", "progress": {"percent": 90, "runId": "1"}}, True),
        ({"id": "2", "progress": {"percent": 10, "runId": "2"}}, False),
        ({"id": "2", "progress": {"percent": 10}}, False),  # an untagged (older) trainer
        ({"id": "2"}, False),
    ],
)
def test_stale_progress(current: dict[str, Any], stale: bool) -> None:
    assert stale_progress(current) is stale


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        (None, None),
        ("SpecChange", "generation 4 waits for run 3 to finish"),
        ("Manual", "a manual run request waits for run 3 to finish"),
        ("Drift", "a retrain request waits for run 3 to finish"),
        ("Schedule", "a scheduled run waits for run 3 to finish"),
        ("NewData", "new training data waits for run 3 to finish"),
    ],
)
def test_waiting_for(trigger: str | None, expected: str | None) -> None:
    assert waiting_for(trigger, 4, "3") == expected


@pytest.mark.parametrize(
    ("current", "job", "waiting", "phase", "running"),
    [
        (None, None, None, None, (False, "Idle", "no run in progress")),
        (CURRENT, None, None, "Running", (True, "RunInProgress", "run 3 is training")),
        (CURRENT, _job(), None, "Running", (True, "RunInProgress", "run 3 is training")),
        (
            CURRENT,
            _job(False, "gpu"),
            None,
            "Running",
            (True, "RunInProgress", "run 3 is training"),
        ),
        (
            CURRENT,
            _job(True, "gpu"),
            None,
            "Queued",
            (
                True,
                "Queued",
                "run 3 is queued: Job churn-run-3 is suspended until it is admitted "
                "(Kueue queue gpu)",
            ),
        ),
        (
            CURRENT,
            _job(),
            "generation 4 waits for run 3 to finish",
            "Running",
            (True, "RunInProgress", "run 3 is training; generation 4 waits for run 3 to finish"),
        ),
    ],
)
def test_run_state(
    current: dict[str, Any] | None,
    job: dict[str, Any] | None,
    waiting: str | None,
    phase: str | None,
    running: tuple[bool, str, str],
) -> None:
    assert run_state(current, job, waiting) == (phase, running)


def _utc(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("schedule", "status", "current", "expected"),
    [
        (None, {}, "2026-01-01T10:05:00", None),  # no schedule: never due
        ("* * * * *", {}, "2026-01-01T10:00:30", None),  # created 10:00:10, first tick 10:01
        ("* * * * *", {}, "2026-01-01T10:01:00", "2026-01-01T10:01:00Z"),  # on the tick
        ("* * * * *", {}, "2026-01-01T10:07:42", "2026-01-01T10:07:00Z"),  # missed ticks: one run
        (
            "* * * * *",
            {"lastScheduleTime": "2026-01-01T10:07:00Z"},
            "2026-01-01T10:07:59",
            None,
        ),  # this minute's tick already acted on
        ("0 3 * * *", {}, "2026-01-02T02:59:59", None),
        ("0 3 * * *", {}, "2026-01-02T03:00:01", "2026-01-02T03:00:00Z"),
    ],
)
def test_schedule_due(
    schedule: str | None, status: dict[str, Any], current: str, expected: str | None
) -> None:
    assert schedule_due(schedule, status, "2026-01-01T10:00:10Z", _utc(current)) == expected


_BASE_SPEC: dict[str, Any] = {
    "data": {"train": "s3://datasets/churn/train/", "target": "churned"},
    "model": {
        "framework": "sklearn",
        "task": "classification",
        "estimator": "HistGradientBoostingClassifier",
        "params": {"max_iter": 200},
    },
    "resources": {"cpu": "2", "memory": "4Gi"},
    "artifacts": "s3://models/churn/",
    "promotion": {"metric": "roc_auc", "minimum": 0.75},
    "seed": 42,
}

# One edit of each spec field (camelCase, as users write it) -> whether it starts a run.
_EDITS: list[tuple[str, dict[str, Any], bool]] = [
    ("data", {"data": {"train": "s3://datasets/churn/train-v2/", "target": "churned"}}, True),
    ("data", {"data": {**_BASE_SPEC["data"], "validationFraction": 0.3}}, True),
    ("model", {"model": {**_BASE_SPEC["model"], "params": {"max_iter": 300}}}, True),
    (
        "model",
        {"model": {**_BASE_SPEC["model"], "estimator": "RandomForestClassifier", "params": {}}},
        True,
    ),
    (
        "trainer",
        {
            "model": {"framework": "custom", "task": "classification"},
            "trainer": {"image": "team/churn:2", "command": ["python", "train.py"]},
        },
        True,
    ),
    ("resources", {"resources": {"cpu": "4", "memory": "4Gi"}}, True),
    ("distributed", {"distributed": {"masterPort": 29501}}, True),
    ("seed", {"seed": 7}, True),
    ("image", {"image": "kubeloop/trainer:custom"}, True),
    ("artifacts", {"artifacts": "s3://models/churn-v2/"}, False),
    ("storageSecretRef", {"storageSecretRef": {"name": "other"}}, False),
    ("schedule", {"schedule": "0 3 * * 1"}, False),
    ("suspend", {"suspend": True}, False),
    ("promotion", {"promotion": {"metric": "roc_auc", "minimum": 0.8}}, False),
    ("runPolicy", {"runPolicy": {"historyLimit": 5}}, False),
    ("queueName", {"queueName": "team-a"}, False),
    ("dataTrigger", {"dataTrigger": {"schedule": "*/10 * * * *"}}, False),
    (
        "dataTrigger",
        {
            "schedule": "0 3 * * *",
            "dataTrigger": {"schedule": "0 * * * *", "skipUnchangedSchedule": True},
        },
        False,
    ),
]


@pytest.mark.parametrize(
    ("field", "edit", "starts"), _EDITS, ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(_EDITS)]
)
def test_which_spec_edit_starts_a_run(field: str, edit: dict[str, Any], starts: bool) -> None:
    before = TrainingPipelineSpec.model_validate(_BASE_SPEC)
    after = TrainingPipelineSpec.model_validate({**_BASE_SPEC, **edit})
    status = {"lastRunSpecHash": before.run_hash()}
    assert spec_changed(after, status) is starts
    assert spec_changed(before, status) is False  # the same spec again: never


def test_every_spec_field_has_a_row_in_the_table() -> None:
    """A new spec field needs a decision: does its edit start a run?"""
    aliases = {f.alias or name for name, f in TrainingPipelineSpec.model_fields.items()}
    assert aliases == {field for field, _, _ in _EDITS}


def test_skip_unchanged_schedule_needs_a_schedule() -> None:
    with pytest.raises(ValueError, match=r"spec\.dataTrigger\.skipUnchangedSchedule"):
        TrainingPipelineSpec.model_validate(
            {**_BASE_SPEC, "dataTrigger": {"schedule": "0 * * * *", "skipUnchangedSchedule": True}}
        )


def test_a_status_without_the_fingerprint_counts_any_edit() -> None:
    """Pipelines whose latest run an older operator started: an edit starts a run, as before."""
    spec = TrainingPipelineSpec.model_validate(_BASE_SPEC)
    assert spec_changed(spec, {}) is True
    assert spec_changed(spec, {"lastRunSpecHash": "0" * 16}) is True


def _gate_spec(**promotion: Any) -> TrainingPipelineSpec:
    task = "regression" if promotion.get("metric") in ("rmse", "mae", "r2") else "classification"
    model = {"framework": "sklearn", "task": task}
    return TrainingPipelineSpec.model_validate(
        {**_BASE_SPEC, "model": model, "promotion": {"metric": "roc_auc", **promotion}}
    )


V1 = {"version": "1", "uri": "s3://models/churn/versions/1", "score": 0.95, "metrics": {}}
V1_RMSE = {"version": "1", "uri": "s3://models/churn/versions/1", "score": 4.0, "metrics": {}}


def _scored(
    value: float, champion: float, metric: str = "roc_auc", version: str = "1"
) -> dict[str, Any]:
    return {
        "metrics": {metric: value},
        "championVersion": version,
        "championMetrics": {metric: champion},
    }


# (promotion, result, champion, passed, the message says): V1 recorded 0.95 on its own, older
# validation rows; the same-data scores below are what decides.
GATE_CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any] | None, bool, str]] = [
    (
        "same data, challenger better",
        {},
        _scored(0.91, 0.87),
        V1,
        True,
        "roc_auc 0.91 beats champion v1's 0.87 on this run's validation data",
    ),
    (
        "same data, challenger worse",
        {},
        _scored(0.85, 0.87),
        V1,
        False,
        "roc_auc 0.85 does not beat champion v1's 0.87 on this run's validation data",
    ),
    (
        "same data, a tie does not beat",
        {},
        _scored(0.87, 0.87),
        V1,
        False,
        "does not beat champion v1's 0.87",
    ),
    (
        "lower is better: lower wins",
        {"metric": "rmse"},
        _scored(3.0, 3.5, "rmse"),
        V1_RMSE,
        True,
        "rmse 3 beats champion v1's 3.5 on this run's validation data",
    ),
    (
        "lower is better: higher loses",
        {"metric": "rmse"},
        _scored(3.6, 3.5, "rmse"),
        V1_RMSE,
        False,
        "rmse 3.6 does not beat champion v1's 3.5",
    ),
    (
        "minImprovement met exactly",
        {"minImprovement": 0.02},
        _scored(0.89, 0.87),
        V1,
        True,
        "roc_auc 0.89 beats champion v1's 0.87 by at least 0.02 on this run's validation data",
    ),
    (
        "minImprovement missed",
        {"minImprovement": 0.02},
        _scored(0.885, 0.87),
        V1,
        False,
        "roc_auc 0.885 does not beat champion v1's 0.87 by at least 0.02",
    ),
    (
        "minImprovement, lower is better, met exactly",
        {"metric": "rmse", "minImprovement": 0.5},
        _scored(3.0, 3.5, "rmse"),
        V1_RMSE,
        True,
        "by at least 0.5",
    ),
    (
        "minImprovement, lower is better, missed",
        {"metric": "rmse", "minImprovement": 0.5},
        _scored(3.1, 3.5, "rmse"),
        V1_RMSE,
        False,
        "rmse 3.1 does not beat champion v1's 3.5 by at least 0.5",
    ),
    (
        "the champion could not be scored: fail closed",
        {},
        {
            "metrics": {"roc_auc": 0.99},
            "championVersion": "1",
            "championError": "champion v1 (s3://m/versions/1) could not be scored: it failed "
            "checksum verification: model.joblib: sha256 differs from the manifest",
        },
        V1,
        False,
        "the champion could not be scored on this run's validation data, so it cannot be "
        "compared: champion v1 (s3://m/versions/1) could not be scored: it failed checksum",
    ),
    (
        "an older trainer's result: the recorded score stands in, and the message says so",
        {},
        {"metrics": {"roc_auc": 0.96}},
        V1,
        True,
        "roc_auc 0.96 beats champion v1's 0.95 as recorded when it was trained, on older "
        "validation data",
    ),
    (
        "an older trainer's result, worse than the recorded score",
        {},
        {"metrics": {"roc_auc": 0.94}},
        V1,
        False,
        "does not beat champion v1's 0.95 as recorded when it was trained",
    ),
    (
        "no champion yet",
        {},
        {"metrics": {"roc_auc": 0.8}},
        None,
        True,
        "roc_auc 0.8 passed the gate",
    ),
    (
        "mustBeatChampion false: the champion's scores are not compared",
        {"mustBeatChampion": False},
        _scored(0.8, 0.9),
        V1,
        True,
        "roc_auc 0.8 passed the gate",
    ),
    (
        "scored an earlier champion than the current one",
        {},
        _scored(0.91, 0.87, version="1"),
        {**V1, "version": "2"},
        False,
        "this run scored champion v1, but the champion is now v2",
    ),
    (
        "the minimum still applies first",
        {"minimum": 0.9},
        _scored(0.89, 0.5),
        V1,
        False,
        "roc_auc 0.89 is below the minimum 0.9",
    ),
    (
        "passed, but not promoted automatically",
        {"autoPromote": False},
        _scored(0.91, 0.87),
        V1,
        False,
        "the gate passed (roc_auc 0.91 beats champion v1's 0.87 on this run's validation data) "
        "but spec.promotion.autoPromote is false",
    ),
]


@pytest.mark.parametrize(
    ("promotion", "result", "champion", "passed", "says"),
    [c[1:] for c in GATE_CASES],
    ids=[c[0] for c in GATE_CASES],
)
def test_gate(
    promotion: dict[str, Any],
    result: dict[str, Any],
    champion: dict[str, Any] | None,
    passed: bool,
    says: str,
) -> None:
    verdict, message = gate(_gate_spec(**promotion), result, champion)
    assert (verdict, says in message) == (passed, True), message


OLD, NEW = "sha256:" + "a" * 64, "sha256:" + "b" * 64
_RUN = {"id": "4", "startedAt": "2026-01-01T10:00:00Z"}


def _check(fingerprint: str | None, at: str = "2026-01-01T10:30:00Z") -> dict[str, Any]:
    return {"job": "churn-datawatch-1", "checkedAt": at, "fingerprint": fingerprint}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({}, False),  # no check yet
        ({"dataCheck": {"cronJob": "churn-datawatch"}}, False),  # none finished
        ({"dataCheck": _check(None), "lastRunDataFingerprint": OLD}, False),  # a failed check
        ({"dataCheck": _check(NEW), "lastRunDataFingerprint": OLD}, True),  # new data
        ({"dataCheck": _check(OLD), "lastRunDataFingerprint": OLD}, False),  # the same data
        # a run was started for it already (it may still be going, or have failed)
        (
            {
                "dataCheck": _check(NEW),
                "lastRunDataFingerprint": OLD,
                "handledDataFingerprint": NEW,
            },
            False,
        ),
        ({"dataCheck": _check(NEW)}, True),  # no run recorded its data: found data starts one
    ],
)
def test_new_data(status: dict[str, Any], expected: bool) -> None:
    assert new_data(status) is expected


@pytest.mark.parametrize(
    ("status", "skipped"),
    [
        # the latest check, made since run 4 started, found what run 4 trained on: skip
        ({"dataCheck": _check(OLD), "lastRunDataFingerprint": OLD, "runs": [_RUN]}, True),
        ({"dataCheck": _check(NEW), "lastRunDataFingerprint": OLD, "runs": [_RUN]}, False),
        # a check older than the latest run cannot tell what that run found
        (
            {
                "dataCheck": _check(OLD, "2026-01-01T09:59:00Z"),
                "lastRunDataFingerprint": OLD,
                "runs": [_RUN],
            },
            False,
        ),
        ({"dataCheck": _check(None), "lastRunDataFingerprint": OLD, "runs": [_RUN]}, False),
        ({"dataCheck": _check(OLD), "runs": [_RUN]}, False),  # nothing trained yet: run
        ({"runs": [_RUN], "lastRunDataFingerprint": OLD}, False),  # never checked
    ],
)
def test_skip_schedule(status: dict[str, Any], skipped: bool) -> None:
    why = skip_schedule(status)
    assert (why is not None) is skipped
    if why:
        assert why.startswith("the data is unchanged since run 4 (check churn-datawatch-1")
        assert "skipUnchangedSchedule" in why


def _finished(name: str = "churn-datawatch-7") -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"completionTime": "2026-01-01T10:30:00Z"}}


@pytest.mark.parametrize(
    ("outcome", "result", "expected"),
    [
        (
            "Complete",
            {"kind": "DataFingerprint", "ok": True, "fingerprint": NEW, "files": 3, "bytes": 900},
            {"fingerprint": NEW, "files": 3, "bytes": 900},
        ),
        (
            "Failed",
            {"kind": "DataFingerprint", "ok": False, "message": "spec.data.train: no Parquet"},
            {"message": "spec.data.train: no Parquet"},
        ),
        ("Failed", None, {"message": "the Job ended Failed without a data fingerprint"}),
        (
            "Complete",
            {"kind": "DataFingerprint", "ok": True, "fingerprint": NEW, "files": -1},
            {"fingerprint": NEW, "files": None, "bytes": None},
        ),
    ],
)
def test_data_check(outcome: str, result: dict[str, Any] | None, expected: dict[str, Any]) -> None:
    base = {"job": "churn-datawatch-7", "checkedAt": "2026-01-01T10:30:00Z"}
    base |= dict.fromkeys(("fingerprint", "files", "bytes", "message"))
    assert data_check(_finished(), outcome, result) == {**base, **expected}


@pytest.mark.parametrize(
    ("status", "job", "phase"),
    [
        ({}, None, "Pending"),
        ({"currentRun": {"id": "1", "job": "tp-run-1"}}, None, "Running"),
        (
            {"currentRun": {"id": "1", "job": "tp-run-1"}},
            {"metadata": {"labels": {}}, "spec": {"suspend": True}},
            "Queued",
        ),
        ({"runs": [{"id": "1", "result": "Promoted"}]}, None, "Succeeded"),
        ({"runs": [{"id": "2", "result": "Rejected"}]}, None, "Succeeded"),
        ({"runs": [{"id": "2", "result": "Failed"}]}, None, "Failed"),
        ({"runs": [{"id": "2", "result": "AwaitingApproval", "modelVersion": "2"}]}, None,
         "AwaitingApproval"),
        (  # approved since: the champion is that version
            {"runs": [{"id": "2", "result": "AwaitingApproval", "modelVersion": "2"}],
             "champion": {"version": "2"}},
            None,
            "Succeeded",
        ),
        (  # a run recorded, the next one allocated: the run in progress wins
            {"runs": [{"id": "1", "result": "Promoted"}], "currentRun": {"id": "2", "job": "j"}},
            None,
            "Running",
        ),
    ],
)  # fmt: skip
def test_pipeline_phase(status: dict[str, Any], job: dict[str, Any] | None, phase: str) -> None:
    assert pipeline_phase(status, job) == phase
