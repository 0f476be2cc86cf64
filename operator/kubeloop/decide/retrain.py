"""DriftMonitor: one retrain request per drift episode.

A run of Drift verdicts is one episode. Its first Drift check (with spec.onDrift.retrain) asks
the pipeline behind the deployment to retrain, by its `kubeloop.io/retrain-requested-at`
annotation; status.retrainRequestedAt remembers that the episode asked. A NoDrift verdict ends
the episode (re-armed: the next Drift asks again); NoData says nothing about drift and keeps
it. The annotation's value is a function of the check's Job, so a restart between the two
writes repeats the same value, and the pipeline (which acts once per value) starts one run.

Data quality never asks for a retrain: a QualityIssue verdict is not drift. A Drift found in
the same check as a broken feed (kubeloop.decide.quality.holds_retrain: a column gone,
mistyped or turned to nulls, which also reads as drift) is held (Event RetrainHeld, the
episode stays armed): retraining on it would teach the next model the breakage. The next check
with clean data asks, if the drift remains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from kubeloop.api.training import Trigger
from kubeloop.decide.events import EventIntent

__all__ = ["DRIFT_CAUSE", "RetrainCause", "RetrainDecision", "retrain_episode"]


class RetrainCause(NamedTuple):
    """What asks for the retrain, in words and by the field that lets it (for the Events), and
    the trigger its run records on the pipeline (status.runs[].trigger)."""

    what: str
    field: str
    trigger: Trigger


DRIFT_CAUSE = RetrainCause("drift detected", "spec.onDrift.retrain", "Drift")


@dataclass(frozen=True)
class RetrainDecision:
    """`pipeline`: the TrainingPipeline to annotate with `request` (None: none), then record
    `stamp` in status.retrainRequestedAt. `clear`: the episode is over, clear that field.
    `events`: what to post now. `trigger`: the run's trigger, written beside `request` (the
    pipeline's `kubeloop.io/retrain-reason` annotation)."""

    pipeline: str | None = None
    request: str | None = None
    trigger: Trigger | None = None
    stamp: str | None = None
    clear: bool = False
    events: tuple[EventIntent, ...] = ()


def retrain_episode(
    verdict: str,
    *,
    retrain: bool,
    requested_at: str | None,
    pipeline: str | None,
    monitor: str,
    job: str,
    job_created: str | None,
    now: str,
    broken_feed: bool = False,
    cause: RetrainCause = DRIFT_CAUSE,
) -> RetrainDecision:
    """What one recorded check's `verdict` does to the episode. `retrain`: spec.onDrift.retrain;
    `requested_at`: status.retrainRequestedAt; `pipeline`: the TrainingPipeline the watched
    deployment serves (None: it serves a URI); `job`, `job_created`: the check's Job;
    `broken_feed`: the same check found the feed broken (holds_retrain of its status.quality);
    `cause`: what asked, the field that let it (for the Events) and the run's trigger."""
    what, field, trigger = cause
    if verdict == "NoDrift":
        return RetrainDecision(clear=True)
    if verdict != "Drift" or not retrain or requested_at:
        return RetrainDecision()
    if broken_feed:
        return RetrainDecision(
            events=(
                EventIntent(
                    "RetrainHeld",
                    f"{what}, but the same window looks like a broken feed (a column "
                    "missing, mistyped or turned to nulls: status.quality): no retrain on it; "
                    "the next check with clean data asks again",
                    warning=True,
                ),
            )
        )
    if pipeline is None:
        return RetrainDecision(
            events=(
                EventIntent(
                    "RetrainUnavailable",
                    f"{what} and {field} is true, but the deployment does not serve a "
                    "TrainingPipeline (spec.model.pipelineRef): nothing to retrain",
                    warning=True,
                ),
            )
        )
    stamp = job_created or now
    return RetrainDecision(
        pipeline=pipeline, request=f"{stamp} {monitor}/{job}", trigger=trigger, stamp=stamp
    )
