"""The promotion gate, table-tested: spec.promotion x the run's result x the champion."""

from __future__ import annotations

from typing import Any

import pytest
from tests.decide.tables import BASE_SPEC

from kubeloop.api.training import TrainingPipelineSpec
from kubeloop.decide.gate import gate


def _gate_spec(**promotion: Any) -> TrainingPipelineSpec:
    task = "regression" if promotion.get("metric") in ("rmse", "mae", "r2") else "classification"
    model = {"framework": "sklearn", "task": task}
    return TrainingPipelineSpec.model_validate(
        {**BASE_SPEC, "model": model, "promotion": {"metric": "roc_auc", **promotion}}
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
        "a NaN metric does not pass a minimum",
        {"minimum": 0.7},
        {"metrics": {"roc_auc": float("nan")}},
        None,
        False,
        "the run reported roc_auc nan, not a finite number",
    ),
    (
        "an infinite error does not pass without a champion",
        {"metric": "rmse"},
        {"metrics": {"rmse": float("inf")}},
        None,
        False,
        "the run reported rmse inf, not a finite number",
    ),
    (
        "a NaN champion score cannot be compared",
        {},
        _scored(0.91, float("nan")),
        V1,
        False,
        "champion v1's roc_auc is nan, not a finite number",
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
