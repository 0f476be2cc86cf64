"""Which trigger starts a TrainingPipeline run now, and what its allocation marks handled.

Triggers, highest priority first (one run satisfies every pending one): the pipeline's first
run (Create), a spec edit that changes what a run trains (SpecChange), the run annotation
(Manual), the retrain annotation a DriftMonitor sets (Drift, or Degraded when measured
performance asked: its `kubeloop.io/retrain-reason` annotation), new data found by the data watch
(NewData), a due cron tick (Schedule). A trigger waits while a run is in progress, while the
registry is read before the first run, and while spec.suspend is true; it is not lost.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubeloop.api.training import TrainingPipelineSpec, Trigger
from kubeloop.decide.events import EventIntent
from kubeloop.decide.schedule import schedule_due, skip_schedule

__all__ = [
    "RETRAIN_ANNOTATION",
    "RETRAIN_REASON_ANNOTATION",
    "RUN_ANNOTATION",
    "RunDecision",
    "RunInputs",
    "Trigger",
    "allocation",
    "decide_run",
    "new_data",
    "pending",
    "spec_changed",
]

RUN_ANNOTATION = "kubeloop.io/run-requested-at"
RETRAIN_ANNOTATION = "kubeloop.io/retrain-requested-at"
RETRAIN_REASON_ANNOTATION = "kubeloop.io/retrain-reason"  # Degraded; absent or else: Drift


@dataclass(frozen=True)
class RunInputs:
    """What the run decision reads: the spec, the status so far, the pipeline's metadata, the
    time, and two facts the controller observed (`first_run`: the next run is the Create run,
    from controller/adoption.py; `idle`: no run is in progress and the registry read is done)."""

    spec: TrainingPipelineSpec
    status: Mapping[str, Any]
    annotations: Mapping[str, str]
    generation: int | None
    created: str
    now: datetime.datetime
    first_run: bool
    idle: bool


@dataclass(frozen=True)
class RunDecision:
    """`start`: the trigger of the run to start now (None: none starts). `waiting`: a pending
    trigger that starts no run yet (the run in progress, the registry read or spec.suspend hold
    it). `tick`: the cron tick acted on, for status.lastScheduleTime (None: leave it).
    `reason`: why, in a sentence. `events`: what to post."""

    start: Trigger | None
    waiting: Trigger | None
    tick: str | None
    reason: str
    events: tuple[EventIntent, ...] = ()


def spec_changed(spec: TrainingPipelineSpec, status: Mapping[str, Any]) -> bool:
    """Whether the spec trains something else than the latest run did: an edit of promotion,
    schedule, suspend, runPolicy, ... starts no run. A status written before the fingerprint
    was recorded has none: any edit counts then, as it did."""
    recorded = status.get("lastRunSpecHash")
    return recorded is None or recorded != spec.run_hash()


def new_data(status: Mapping[str, Any]) -> bool:
    """Whether the latest data check found data that no run trained on or was started for."""
    found = (status.get("dataCheck") or {}).get("fingerprint")
    return bool(found) and found not in (
        status.get("lastRunDataFingerprint"),
        status.get("handledDataFingerprint"),
    )


def pending(inputs: RunInputs) -> tuple[Trigger | None, str | None]:
    """The highest-priority pending trigger, and the cron tick due now (even when a trigger of
    higher priority wins: its run acts on the tick too)."""
    spec, status, annotations = inputs.spec, inputs.status, inputs.annotations
    tick = schedule_due(spec.schedule, status, inputs.created, inputs.now)
    if inputs.first_run:
        return "Create", tick
    if status.get("lastRunGeneration") != inputs.generation and spec_changed(spec, status):
        return "SpecChange", tick
    manual = annotations.get(RUN_ANNOTATION)
    if manual and manual != status.get("handledRunRequest"):
        return "Manual", tick
    retrain = annotations.get(RETRAIN_ANNOTATION)
    if retrain and retrain != status.get("handledRetrainRequest"):
        degraded = annotations.get(RETRAIN_REASON_ANNOTATION) == "Degraded"
        return ("Degraded" if degraded else "Drift"), tick
    if spec.data_trigger is not None and new_data(status):
        return "NewData", tick
    return ("Schedule" if tick else None), tick


def decide_run(inputs: RunInputs) -> RunDecision:
    """Whether a run starts now, for which trigger, and which cron tick that acts on."""
    trigger, tick = pending(inputs)
    spec = inputs.spec
    if trigger is None:
        return RunDecision(None, None, None, "no trigger is pending")
    if not inputs.idle:
        return RunDecision(None, trigger, None, f"{trigger} waits for the run in progress")
    if spec.suspend:
        return RunDecision(None, trigger, None, f"{trigger} waits: spec.suspend is true")
    skip = (
        skip_schedule(inputs.status)
        if trigger == "Schedule"
        and spec.data_trigger is not None
        and spec.data_trigger.skip_unchanged_schedule
        else None
    )
    if skip and tick:
        message = f"the tick at {tick} starts no run: {skip}"
        return RunDecision(None, None, tick, message, (EventIntent("ScheduleSkipped", message),))
    return RunDecision(trigger, None, tick, f"{trigger} starts a run")


def allocation(
    spec: TrainingPipelineSpec,
    status: Mapping[str, Any],
    annotations: Mapping[str, str],
    generation: int | None,
) -> dict[str, Any]:
    """The status fields a run's allocation writes besides the run: every trigger it satisfies
    is handled, so none of them starts a second run. status.search is the latest run's search:
    a run that searches nothing (spec.search removed) clears the one before it (a search run
    writes its own at once)."""
    fields: dict[str, Any] = {
        "lastRunGeneration": generation,
        "lastRunSpecHash": spec.run_hash(),
        "handledRunRequest": annotations.get(RUN_ANNOTATION),
        "handledRetrainRequest": annotations.get(RETRAIN_ANNOTATION),
        # Whatever started it, the run trains on the data found so far: that data is handled,
        # so it never starts a second run.
        "handledDataFingerprint": (status.get("dataCheck") or {}).get("fingerprint")
        or status.get("handledDataFingerprint"),
    }
    if spec.search is None and status.get("search") is not None:
        fields["search"] = None
    return fields
