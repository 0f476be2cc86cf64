"""Which trigger starts a TrainingPipeline run, table-tested without kopf or a client."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest
from tests.decide.tables import BASE_SPEC, NEW, OLD, check

from kubeloop.api.training import TrainingPipelineSpec
from kubeloop.decide.triggers import (
    RETRAIN_ANNOTATION,
    RETRAIN_REASON_ANNOTATION,
    RUN_ANNOTATION,
    RunInputs,
    allocation,
    decide_run,
    new_data,
    spec_changed,
)

# One edit of each spec field (camelCase, as users write it) -> whether it starts a run.
_EDITS: list[tuple[str, dict[str, Any], bool]] = [
    ("data", {"data": {"train": "s3://datasets/churn/train-v2/", "target": "churned"}}, True),
    ("data", {"data": {**BASE_SPEC["data"], "validationFraction": 0.3}}, True),
    ("model", {"model": {**BASE_SPEC["model"], "params": {"max_iter": 300}}}, True),
    (
        "model",
        {"model": {**BASE_SPEC["model"], "estimator": "RandomForestClassifier", "params": {}}},
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
    ("search", {"search": {"trials": 4, "space": [{"estimator": "LogisticRegression"}]}}, True),
    ("artifacts", {"artifacts": "s3://models/churn-v2/"}, False),
    ("storageSecretRef", {"storageSecretRef": {"name": "other"}}, False),
    ("schedule", {"schedule": "0 3 * * 1"}, False),
    ("suspend", {"suspend": True}, False),
    ("promotion", {"promotion": {"metric": "roc_auc", "minimum": 0.8}}, False),
    ("runPolicy", {"runPolicy": {"historyLimit": 5}}, False),
    ("queueName", {"queueName": "team-a"}, False),
    ("dataValidation", {"dataValidation": {"nullShare": 0.5}}, False),
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
    before = TrainingPipelineSpec.model_validate(BASE_SPEC)
    after = TrainingPipelineSpec.model_validate({**BASE_SPEC, **edit})
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
            {**BASE_SPEC, "dataTrigger": {"schedule": "0 * * * *", "skipUnchangedSchedule": True}}
        )


def test_a_status_without_the_fingerprint_counts_any_edit() -> None:
    """Pipelines whose latest run an older operator started: an edit starts a run, as before."""
    spec = TrainingPipelineSpec.model_validate(BASE_SPEC)
    assert spec_changed(spec, {}) is True
    assert spec_changed(spec, {"lastRunSpecHash": "0" * 16}) is True


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({}, False),  # no check yet
        ({"dataCheck": {"cronJob": "churn-datawatch"}}, False),  # none finished
        ({"dataCheck": check(None), "lastRunDataFingerprint": OLD}, False),  # a failed check
        ({"dataCheck": check(NEW), "lastRunDataFingerprint": OLD}, True),  # new data
        ({"dataCheck": check(OLD), "lastRunDataFingerprint": OLD}, False),  # the same data
        # a run was started for it already (it may still be going, or have failed)
        (
            {
                "dataCheck": check(NEW),
                "lastRunDataFingerprint": OLD,
                "handledDataFingerprint": NEW,
            },
            False,
        ),
        ({"dataCheck": check(NEW)}, True),  # no run recorded its data: found data starts one
    ],
)
def test_new_data(status: dict[str, Any], expected: bool) -> None:
    assert new_data(status) is expected


_SPEC = TrainingPipelineSpec.model_validate(BASE_SPEC)
# Run 1 trained generation 1 of _SPEC; the pipeline was created at 10:00:10.
_SETTLED: dict[str, Any] = {
    "lastRunId": 1,
    "lastRunGeneration": 1,
    "lastRunSpecHash": _SPEC.run_hash(),
    "runs": [{"id": "1", "result": "Promoted", "startedAt": "2026-01-01T10:00:10Z"}],
}
_DAILY = {"schedule": "0 3 * * *"}
_SKIP = {
    "schedule": "0 3 * * *",
    "dataTrigger": {"schedule": "0 * * * *", "skipUnchangedSchedule": True},
}
_WATCHED = {"dataTrigger": {"schedule": "0 * * * *"}}
_MANUAL = {RUN_ANNOTATION: "2026-01-01T11:00:00Z"}
_RETRAIN = {RETRAIN_ANNOTATION: "2026-01-01T11:00:00Z churn-monitor/check-7"}
_TRAINED_OLD = {"lastRunDataFingerprint": OLD, "dataCheck": check(OLD)}
_FOUND_NEW = {**_TRAINED_OLD, "dataCheck": check(NEW)}
_AFTER_3, _TICK_3 = "2026-01-02T03:00:20", "2026-01-02T03:00:00Z"  # a daily tick, 20 s late


@dataclasses.dataclass(frozen=True)
class _Row:
    """One observed situation and the run decision it must give."""

    spec: dict[str, Any] = dataclasses.field(default_factory=dict)  # edits of BASE_SPEC
    status: dict[str, Any] = dataclasses.field(default_factory=dict)  # over _SETTLED
    annotations: dict[str, str] = dataclasses.field(default_factory=dict)
    generation: int = 1
    now: str = "2026-01-01T12:00:00"
    first_run: bool = False
    idle: bool = True
    # expected
    start: str | None = None
    waiting: str | None = None
    tick: str | None = None
    events: tuple[str, ...] = ()


_RUNS: dict[str, _Row] = {
    "the first run starts at once": _Row(first_run=True, start="Create"),
    "the first run waits for the registry read": _Row(first_run=True, idle=False, waiting="Create"),
    "nothing pending": _Row(),
    "an edit of what a run trains": _Row(spec={"seed": 7}, generation=2, start="SpecChange"),
    "an edit of the gate only starts no run": _Row(
        spec={"promotion": {"metric": "roc_auc", "minimum": 0.9}}, generation=2
    ),
    "an edit waits for the run in progress": _Row(
        spec={"seed": 7}, generation=2, idle=False, waiting="SpecChange"
    ),
    "a run requested": _Row(annotations=_MANUAL, start="Manual"),
    "a run request already handled": _Row(
        annotations=_MANUAL, status={"handledRunRequest": _MANUAL[RUN_ANNOTATION]}
    ),
    "a retrain requested by a monitor": _Row(annotations=_RETRAIN, start="Drift"),
    "a retrain requested for input drift": _Row(
        annotations={**_RETRAIN, RETRAIN_REASON_ANNOTATION: "Drift"}, start="Drift"
    ),
    "a retrain requested for degraded performance": _Row(
        annotations={**_RETRAIN, RETRAIN_REASON_ANNOTATION: "Degraded"}, start="Degraded"
    ),
    "a degradation retrain already handled": _Row(
        annotations={**_RETRAIN, RETRAIN_REASON_ANNOTATION: "Degraded"},
        status={"handledRetrainRequest": _RETRAIN[RETRAIN_ANNOTATION]},
    ),
    "a retrain request already handled": _Row(
        annotations=_RETRAIN, status={"handledRetrainRequest": _RETRAIN[RETRAIN_ANNOTATION]}
    ),
    "a manual request outranks a retrain": _Row(
        annotations={**_MANUAL, **_RETRAIN}, start="Manual"
    ),
    "a spec edit outranks a manual request": _Row(
        spec={"seed": 7}, generation=2, annotations=_MANUAL, start="SpecChange"
    ),
    "new data": _Row(spec=_WATCHED, status=_FOUND_NEW, start="NewData"),
    "new data, no data trigger": _Row(status=_FOUND_NEW),
    "the same data": _Row(spec=_WATCHED, status=_TRAINED_OLD),
    "a cron tick": _Row(spec=_DAILY, now=_AFTER_3, start="Schedule", tick=_TICK_3),
    "before the tick": _Row(spec=_DAILY, now="2026-01-02T02:59:59"),
    "a tick while a run is in progress is kept for later": _Row(
        spec=_DAILY, now=_AFTER_3, idle=False, waiting="Schedule"
    ),
    "a manual run on a tick acts on the tick too": _Row(
        spec=_DAILY, now=_AFTER_3, annotations=_MANUAL, start="Manual",
        tick=_TICK_3,
    ),
    "suspended: a request waits": _Row(
        spec={"suspend": True}, annotations=_MANUAL, waiting="Manual"
    ),
    "suspended: a tick waits": _Row(
        spec={**_DAILY, "suspend": True}, now=_AFTER_3, waiting="Schedule"
    ),
    "unchanged data: the tick is skipped, once, with an Event": _Row(
        spec=_SKIP, status=_TRAINED_OLD, now=_AFTER_3,
        tick=_TICK_3, events=("ScheduleSkipped",),
    ),
    "unchanged data, but a run in progress: the tick waits": _Row(
        spec=_SKIP, status=_TRAINED_OLD, now=_AFTER_3, idle=False, waiting="Schedule"
    ),
    "changed data on a skipping schedule: a NewData run": _Row(
        spec=_SKIP, status=_FOUND_NEW, now=_AFTER_3,
        start="NewData", tick=_TICK_3,
    ),
    "skipping, but never checked: the tick runs": _Row(
        spec=_SKIP, status={"lastRunDataFingerprint": OLD}, now=_AFTER_3,
        start="Schedule", tick=_TICK_3,
    ),
}  # fmt: skip


@pytest.mark.parametrize("row", list(_RUNS.values()), ids=list(_RUNS))
def test_decide_run(row: _Row) -> None:
    spec = TrainingPipelineSpec.model_validate({**BASE_SPEC, **row.spec})
    inputs = RunInputs(
        spec=spec,
        status={**_SETTLED, **row.status},
        annotations=row.annotations,
        generation=row.generation,
        created="2026-01-01T10:00:10Z",
        now=datetime.datetime.fromisoformat(row.now).replace(tzinfo=datetime.UTC),
        first_run=row.first_run,
        idle=row.idle,
    )
    decision = decide_run(inputs)
    got = (decision.start, decision.waiting, decision.tick)
    assert got == (row.start, row.waiting, row.tick), decision.reason
    assert tuple(e.reason for e in decision.events) == row.events
    if decision.events:
        assert decision.events[0].message.startswith(f"the tick at {row.tick} starts no run")


@pytest.mark.parametrize(
    ("status", "annotations", "handled"),
    [
        # every request seen is handled by the run, and so is the data found so far
        (
            {"dataCheck": check(NEW), "handledDataFingerprint": OLD},
            {**_MANUAL, **_RETRAIN},
            (_MANUAL[RUN_ANNOTATION], _RETRAIN[RETRAIN_ANNOTATION], NEW),
        ),
        # a failed check found nothing: the data handled before stays handled
        ({"dataCheck": check(None), "handledDataFingerprint": OLD}, {}, (None, None, OLD)),
        ({}, _MANUAL, (_MANUAL[RUN_ANNOTATION], None, None)),
    ],
)
def test_allocation(
    status: dict[str, Any], annotations: dict[str, str], handled: tuple[str | None, ...]
) -> None:
    fields = allocation(_SPEC, status, annotations, 3)
    assert fields["lastRunGeneration"] == 3
    assert fields["lastRunSpecHash"] == _SPEC.run_hash()
    keys = ("handledRunRequest", "handledRetrainRequest", "handledDataFingerprint")
    assert tuple(fields[k] for k in keys) == handled


def test_a_run_without_search_clears_the_last_search_summary() -> None:
    """status.search (the Trials column) is the latest run's search: once spec.search is
    removed, the next run's allocation clears it; a search run keeps it for its own write."""
    last = {"search": {"runId": "4", "progress": "24/24", "finished": True}}
    assert allocation(_SPEC, last, {}, 5)["search"] is None
    assert "search" not in allocation(_SPEC, {}, {}, 5)
    space = [{"estimator": "LogisticRegression", "params": {"C": {"uniform": [0.1, 10]}}}]
    searching = TrainingPipelineSpec.model_validate(
        {
            **_SPEC.model_dump(by_alias=True, exclude_none=True),
            "search": {"trials": 4, "space": space},
        }
    )
    assert "search" not in allocation(searching, last, {}, 5)
