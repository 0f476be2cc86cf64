"""One retrain request per drift episode, re-armed by a NoDrift verdict."""

from __future__ import annotations

from typing import Any

import pytest

from kubeloop.decide.retrain import RetrainDecision, retrain_episode

_CREATED, _NOW = "2026-01-01T10:30:00Z", "2026-01-01T10:31:07Z"


def _decide(verdict: str, **given: Any) -> RetrainDecision:
    inputs: dict[str, Any] = {
        "retrain": True,
        "requested_at": None,
        "pipeline": "churn",
        "monitor": "churn-drift",
        "job": "churn-drift-29000",
        "job_created": _CREATED,
        "now": _NOW,
    }
    return retrain_episode(verdict, **{**inputs, **given})


_REQUEST = f"{_CREATED} churn-drift/churn-drift-29000"


@pytest.mark.parametrize(
    ("verdict", "given", "expected"),
    [
        # the episode's first Drift asks, with a value the Job fixes (a restart repeats it)
        ("Drift", {}, ("churn", _REQUEST, _CREATED, False, ())),
        # a Job without a creation time (not yet stored): the check's time stands in
        (
            "Drift",
            {"job_created": None},
            ("churn", f"{_NOW} churn-drift/churn-drift-29000", _NOW, False, ()),
        ),
        ("Drift", {"requested_at": _CREATED}, (None, None, None, False, ())),  # asked already
        ("Drift", {"retrain": False}, (None, None, None, False, ())),  # onDrift.retrain off
        ("Drift", {"pipeline": None}, (None, None, None, False, ("RetrainUnavailable",))),
        ("NoDrift", {"requested_at": _CREATED}, (None, None, None, True, ())),  # episode over
        ("NoDrift", {}, (None, None, None, True, ())),
        ("NoData", {"requested_at": _CREATED}, (None, None, None, False, ())),  # says nothing
        ("NoData", {}, (None, None, None, False, ())),
        ("Failed", {}, (None, None, None, False, ())),  # a check without a verdict
        # Data quality never asks for a retrain, and a broken feed (which reads as drift too)
        # holds the drift one of the same window; the episode stays armed for clean data.
        ("QualityIssue", {}, (None, None, None, False, ())),
        ("Drift", {"broken_feed": True}, (None, None, None, False, ("RetrainHeld",))),
        ("Drift", {"broken_feed": True, "retrain": False}, (None, None, None, False, ())),
        ("NoDrift", {"broken_feed": True}, (None, None, None, True, ())),
    ],
)
def test_retrain_episode(verdict: str, given: dict[str, Any], expected: tuple[Any, ...]) -> None:
    """`expected`: the pipeline to annotate, the annotation, the stamp to record, whether the
    episode ends, the Events."""
    decision = _decide(verdict, **given)
    events = tuple(e.reason for e in decision.events)
    got = (decision.pipeline, decision.request, decision.stamp, decision.clear, events)
    assert got == expected
    assert all(e.warning for e in decision.events)


@pytest.mark.parametrize(
    ("verdicts", "requests"),
    [
        (["Drift", "Drift", "Drift"], [0]),  # one episode: one retrain
        (["Drift", "NoDrift", "Drift"], [0, 2]),  # NoDrift re-arms
        (["Drift", "NoData", "Drift"], [0]),  # NoData does not end the episode
        (["NoDrift", "NoData", "Drift", "Drift", "NoDrift", "NoDrift", "Drift"], [2, 6]),
        (["NoDrift", "NoDrift"], []),
    ],
)
def test_one_retrain_per_episode(verdicts: list[str], requests: list[int]) -> None:
    """Checks in sequence, status.retrainRequestedAt carried from one to the next as the
    controller writes it."""
    requested_at: str | None = None
    asked = []
    for index, verdict in enumerate(verdicts):
        decision = _decide(verdict, requested_at=requested_at, job=f"check-{index}")
        if decision.clear:
            requested_at = None
        if decision.request is not None:
            asked.append(index)
            requested_at = decision.stamp
    assert asked == requests
