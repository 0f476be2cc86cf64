"""The TrainingPipeline controller's decisions, table-tested without kopf or a client."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from kubeloop.api.training import TrainingPipelineSpec
from kubeloop.controller.training import (
    recorded_up_to,
    run_state,
    runs_to_record,
    schedule_due,
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


def test_a_status_without_the_fingerprint_counts_any_edit() -> None:
    """Pipelines whose latest run an older operator started: an edit starts a run, as before."""
    spec = TrainingPipelineSpec.model_validate(_BASE_SPEC)
    assert spec_changed(spec, {}) is True
    assert spec_changed(spec, {"lastRunSpecHash": "0" * 16}) is True
