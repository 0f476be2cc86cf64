"""A Job of several trials (spec.search.trialsPerJob > 1) that ended: every trial it carried is
recorded from the TrialBatchOutcome its pod left, each as a Job of its own would record it."""

from __future__ import annotations

from typing import Any

import pytest

from kubeloop.api.search import TrialStatus
from kubeloop.controller.search import batch_outcomes, trial_outcome


def _running(*trials: int, rung: int = 0) -> list[TrialStatus]:
    return [TrialStatus(trial=t, rung=rung, job="p-run-1-t0", state="Running") for t in trials]


SCORED = {"trial": 0, "state": "Succeeded", "score": 0.8, "seconds": 0.2, "cpuSeconds": 0.3}
FAILED = {"trial": 1, "state": "Failed", "message": "InvalidParameter: spec.model.params.C"}


@pytest.mark.parametrize(
    ("outcome", "result", "want"),
    [
        (
            "Complete",
            {"kind": "TrialBatchOutcome", "outcomes": [SCORED, FAILED, {**SCORED, "trial": 2}]},
            [("Succeeded", 0.8, ""), ("Failed", None, FAILED["message"]), ("Succeeded", 0.8, "")],
        ),
        # the pod's outcomes lack a trial (never written): that trial fails, not the others
        (
            "Complete",
            {"kind": "TrialBatchOutcome", "outcomes": [SCORED]},
            [
                ("Succeeded", 0.8, ""),
                ("Failed", None, "its Job's outcomes have none for trial 1"),
                ("Failed", None, "its Job's outcomes have none for trial 2"),
            ],
        ),
        # no result at all (the pod was killed): every trial fails as a lone trial would
        ("Failed", None, [("Failed", None, "its Job ended Failed without a trial outcome")] * 3),
    ],
)
def test_every_trial_of_an_ended_job_is_recorded_from_its_own_outcome(
    outcome: str, result: dict[str, Any] | None, want: list[tuple[str, float | None, str]]
) -> None:
    got = batch_outcomes(_running(0, 1, 2), outcome, result)
    assert [(e.state, e.score, e.message) for e in got] == want
    assert [e.trial for e in got] == [0, 1, 2] and {e.job for e in got} == {"p-run-1-t0"}


def test_a_batch_outcome_reads_as_a_lone_trial_outcome_and_matches_its_rung() -> None:
    entry = _running(0, rung=1)[0]
    alone = trial_outcome(entry, "Complete", {**SCORED, "rung": 1})
    batch = batch_outcomes([entry], "Complete", {"outcomes": [SCORED, {**SCORED, "rung": 1}]})
    assert batch == [alone] and alone.cpu_seconds == 0.3
