"""The TrainingPipeline controller's decisions, table-tested without kopf or a client."""

from __future__ import annotations

from typing import Any

import pytest

from kubeloop.controller.training import (
    data_check,
    pipeline_phase,
    progress_update,
    recorded_up_to,
    run_state,
    runs_to_record,
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
        (
            {**CURRENT, "search": {"finished": False, "progress": "5/12"}},
            None,
            None,
            "Running",
            (True, "Searching", "run 3 is searching: trials 5/12"),
        ),
        (
            {**CURRENT, "search": {"finished": True, "progress": "12/12"}},
            _job(),
            None,
            "Running",
            (True, "RunInProgress", "run 3 is training"),
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


OLD, NEW = "sha256:" + "a" * 64, "sha256:" + "b" * 64


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
