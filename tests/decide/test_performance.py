"""The performance verdict from measured metrics, coverage and thresholds; its episode."""

from __future__ import annotations

from typing import Any

import pytest

from kubeloop.decide.performance import DEGRADED_CAUSE, as_episode, performance_verdict
from kubeloop.decide.retrain import RetrainDecision, retrain_episode

_ENOUGH = {"labelled_rows": 500, "coverage": 0.5, "min_labelled_rows": 100, "min_coverage": 0.1}


@pytest.mark.parametrize(
    ("measured", "given", "thresholds", "expected"),
    [
        ({"accuracy": 0.91}, {}, {"accuracy": 0.8}, ("OK", ())),
        ({"accuracy": 0.71}, {}, {"accuracy": 0.8}, ("Degraded", ("accuracy",))),
        ({"accuracy": 0.8}, {}, {"accuracy": 0.8}, ("OK", ())),  # at the floor is not below
        ({"rmse": 3.5, "mae": 1.0}, {}, {"rmse": 3.0, "mae": 2.0}, ("Degraded", ("rmse",))),
        ({"mae": 2.0}, {}, {"mae": 2.0}, ("OK", ())),  # at the ceiling is not above
        (
            {"accuracy": 0.5, "roc_auc": 0.6, "f1": 0.9},
            {},
            {"accuracy": 0.8, "roc_auc": 0.7, "f1": 0.5},
            ("Degraded", ("accuracy", "roc_auc")),
        ),
        ({"roc_auc": None}, {}, {"roc_auc": 0.9}, ("OK", ())),  # undefined: not judged
        ({"accuracy": 0.5}, {}, {}, ("OK", ())),  # no threshold: reported only
        ({"accuracy": 0.1}, {"labelled_rows": 99}, {"accuracy": 0.8}, ("InsufficientLabels", ())),
        ({"accuracy": 0.1}, {"coverage": 0.05}, {"accuracy": 0.8}, ("InsufficientLabels", ())),
        # 5 % coverage is enough when the spec asks for no more
        ({"accuracy": 0.9}, {"coverage": 0.05, "min_coverage": 0.0}, {"accuracy": 0.8}, ("OK", ())),
    ],
)
def test_performance_verdict(
    measured: dict[str, float | None],
    given: dict[str, Any],
    thresholds: dict[str, float],
    expected: tuple[str, tuple[str, ...]],
) -> None:
    got = performance_verdict(measured, thresholds=thresholds, **{**_ENOUGH, **given})
    assert (got.verdict, got.breached) == expected


_CREATED = "2026-01-01T10:30:00Z"


def _episode(verdict: str, **given: Any) -> RetrainDecision:
    return retrain_episode(as_episode(verdict), **given, cause=DEGRADED_CAUSE)


@pytest.mark.parametrize(
    ("verdict", "given", "expected"),
    [
        ("Degraded", {}, ("churn", _CREATED, False, ())),  # the episode's first asks
        ("Degraded", {"requested_at": _CREATED}, (None, None, False, ())),  # asked already
        ("Degraded", {"retrain": False}, (None, None, False, ())),
        ("Degraded", {"pipeline": None}, (None, None, False, ("RetrainUnavailable",))),
        ("OK", {"requested_at": _CREATED}, (None, None, True, ())),  # the episode ends
        ("InsufficientLabels", {"requested_at": _CREATED}, (None, None, False, ())),  # kept
    ],
)
def test_performance_episode(
    verdict: str, given: dict[str, Any], expected: tuple[Any, ...]
) -> None:
    inputs: dict[str, Any] = {
        "retrain": True,
        "requested_at": None,
        "pipeline": "churn",
        "monitor": "churn-drift",
        "job": "churn-drift-1",
        "job_created": _CREATED,
        "now": "2026-01-01T10:31:00Z",
    }
    decision = _episode(verdict, **{**inputs, **given})
    events = tuple(e.reason for e in decision.events)
    assert (decision.pipeline, decision.stamp, decision.clear, events) == expected
    if decision.events:
        assert "spec.performance.onDegraded.retrain" in decision.events[0].message


def test_drift_and_degradation_in_one_check_ask_for_the_same_run() -> None:
    """Both episodes annotate the pipeline with a value fixed by the Job: one run, not two."""
    common: dict[str, Any] = {
        "retrain": True,
        "requested_at": None,
        "pipeline": "churn",
        "monitor": "m",
        "job": "m-1",
        "job_created": _CREATED,
        "now": _CREATED,
    }
    drift, degraded = retrain_episode("Drift", **common), _episode("Degraded", **common)
    assert drift.request == degraded.request
    # ... and each names its own trigger for the run it starts (status.runs[].trigger)
    assert (drift.trigger, degraded.trigger) == ("Drift", "Degraded")


def test_a_broken_feed_holds_the_degradation_retrain() -> None:
    """Nulls in a column degrade the model as they break the feed: no retrain on that data."""
    decision = _episode(
        "Degraded",
        retrain=True,
        requested_at=None,
        pipeline="churn",
        monitor="m",
        job="m-1",
        job_created=_CREATED,
        now=_CREATED,
        broken_feed=True,
    )
    assert decision.pipeline is None and decision.stamp is None
    assert [e.reason for e in decision.events] == ["RetrainHeld"]
    assert decision.events[0].message.startswith("performance degraded, but")
