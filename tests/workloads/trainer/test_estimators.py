"""Every allow-listed estimator trains end to end; params are checked against the signature;
the metrics are the task's and equal an independent computation on the validation rows."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kubeloop.api.training import CLASSIFIERS, REGRESSORS, TrainingPipelineSpec
from kubeloop.modelformat import load_predictor
from kubeloop.workloads.trainer.data import feature_columns, load_training_data
from kubeloop.workloads.trainer.errors import TrainingError
from kubeloop.workloads.trainer.estimators import MODULES, build_estimator
from kubeloop.workloads.trainer.mlp import parse_params

from .conftest import Runner, Spec, with_changes

# Small settings so 13 estimators train in seconds; each is still a real fit.
FAST: dict[str, dict[str, Any]] = {
    "LogisticRegression": {"max_iter": 200},
    "RandomForestClassifier": {"n_estimators": 10},
    "ExtraTreesClassifier": {"n_estimators": 10},
    "GradientBoostingClassifier": {"n_estimators": 10},
    "HistGradientBoostingClassifier": {"max_iter": 10},
    "RandomForestRegressor": {"n_estimators": 10},
    "ExtraTreesRegressor": {"n_estimators": 10},
    "GradientBoostingRegressor": {"n_estimators": 10},
    "HistGradientBoostingRegressor": {"max_iter": 10},
    "XGBClassifier": {"n_estimators": 10},
    "XGBRegressor": {"n_estimators": 10},
    "LGBMClassifier": {"n_estimators": 10},
    "LGBMRegressor": {"n_estimators": 10},
}
CLASSIFICATION = {"accuracy", "f1", "log_loss", "roc_auc"}
REGRESSION = {"rmse", "mae", "r2"}


def test_the_allow_list_matches_the_api() -> None:
    assert set(MODULES) == set(CLASSIFIERS) | set(REGRESSORS)


@pytest.mark.parametrize("estimator", CLASSIFIERS)
def test_each_classifier_trains_and_reports_classification_metrics(
    estimator: str, spec_for: Callable[..., Spec], train: Runner
) -> None:
    code, result = train(spec_for(estimator=estimator, params=FAST.get(estimator, {})))
    assert code == 0, result
    assert set(result["metrics"]) == CLASSIFICATION
    assert result["metrics"]["roc_auc"] > 0.7  # the churn label is learnable


@pytest.mark.parametrize("estimator", REGRESSORS)
def test_each_regressor_trains_and_reports_regression_metrics(
    estimator: str, spec_for: Callable[..., Spec], train: Runner
) -> None:
    spec = with_changes(
        spec_for(task="regression", estimator=estimator, params=FAST.get(estimator, {})),
        data={"target": "total_charges"},
    )
    code, result = train(spec)
    assert code == 0, result
    assert set(result["metrics"]) == REGRESSION
    assert result["metrics"]["r2"] > 0.5  # total_charges ~ tenure * monthly_charges


def _validation(spec: Spec) -> tuple[dict[str, Any], np.ndarray[Any, Any]]:
    data = load_training_data(TrainingPipelineSpec.model_validate(spec))
    columns = feature_columns(data.validation, data.features)
    return columns, data.validation.column(data.target).to_numpy(zero_copy_only=False)


def test_classification_metrics_equal_an_independent_computation(
    spec_for: Callable[..., Spec], train: Runner
) -> None:
    spec = spec_for(estimator="LogisticRegression")
    code, result = train(spec)
    assert code == 0
    predictor = load_predictor(Path(result["uri"].removeprefix("file://")))
    columns, y = _validation(spec)
    prediction = predictor.predict(columns)
    assert prediction.probabilities is not None
    p1 = np.clip(prediction.probabilities[:, 1], 1e-15, 1 - 1e-15)
    accuracy = float(np.mean(prediction.values == y))
    tp = np.sum((prediction.values == 1) & (y == 1))
    f1 = 2 * tp / (np.sum(prediction.values == 1) + np.sum(y == 1))
    log_loss = float(-np.mean(y * np.log(p1) + (1 - y) * np.log(1 - p1)))
    # ROC AUC as the probability that a positive outranks a negative (ties count half).
    pos, neg = p1[y == 1], p1[y == 0]
    auc = float(np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])))
    metrics = result["metrics"]
    assert metrics["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert metrics["f1"] == pytest.approx(f1, abs=1e-12)
    assert metrics["log_loss"] == pytest.approx(log_loss, rel=1e-9)
    assert metrics["roc_auc"] == pytest.approx(auc, abs=1e-12)


def test_regression_metrics_equal_an_independent_computation(
    spec_for: Callable[..., Spec], train: Runner
) -> None:
    spec = with_changes(
        spec_for(task="regression", estimator="Ridge"), data={"target": "total_charges"}
    )
    code, result = train(spec)
    assert code == 0
    predictor = load_predictor(Path(result["uri"].removeprefix("file://")))
    columns, y = _validation(spec)
    error = predictor.predict(columns).values - y
    metrics = result["metrics"]
    assert metrics["rmse"] == pytest.approx(math.sqrt(np.mean(error**2)), rel=1e-9)
    assert metrics["mae"] == pytest.approx(np.mean(np.abs(error)), rel=1e-9)
    assert metrics["r2"] == pytest.approx(1 - np.sum(error**2) / np.sum((y - y.mean()) ** 2))


@pytest.mark.parametrize(
    ("estimator", "params"),
    [
        ("HistGradientBoostingClassifier", {"max_iter": 20}),
        # XGBoost itself takes only 0..k-1: the trainer teaches it class indexes.
        ("XGBClassifier", {"n_estimators": 20}),
        ("LGBMClassifier", {"n_estimators": 20}),
    ],
)
def test_multiclass_string_labels_get_macro_f1_and_one_vs_rest_auc(
    estimator: str, params: dict[str, Any], spec_for: Callable[..., Spec], train: Runner
) -> None:
    spec = with_changes(spec_for(estimator=estimator, params=params), data={"target": "contract"})
    code, result = train(spec)
    assert code == 0, result
    assert set(result["metrics"]) == CLASSIFICATION
    predictor = load_predictor(Path(result["uri"].removeprefix("file://")))
    assert predictor.classes == ("month-to-month", "one-year", "two-year")
    columns, labels = _validation(spec)
    served = predictor.predict(columns)
    assert set(served.values) <= set(predictor.classes)
    assert result["metrics"]["accuracy"] == pytest.approx(float(np.mean(served.values == labels)))


@pytest.mark.parametrize(
    ("estimator", "params", "field"),
    [
        ("LogisticRegression", {"C": -1.0}, "spec.model.params.C"),
        ("LogisticRegression", {"n_estimators": 5}, "spec.model.params.n_estimators"),
        ("RandomForestClassifier", {"max_depth": "deep"}, "spec.model.params.max_depth"),
        ("HistGradientBoostingRegressor", {"learning_rate": 0}, "spec.model.params.learning_rate"),
        ("XGBClassifier", {"n_trees": 10}, "spec.model.params.n_trees"),
        ("LGBMRegressor", {"max_iter": 10}, "spec.model.params.max_iter"),
    ],
)
def test_params_are_checked_against_the_estimator_signature(
    estimator: str, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(TrainingError) as info:
        build_estimator(estimator, params, seed=1)
    assert info.value.reason == "InvalidParameter"
    assert info.value.message.startswith(field)


def test_an_unknown_param_lists_what_the_estimator_accepts() -> None:
    with pytest.raises(TrainingError) as info:
        build_estimator("Ridge", {"alpah": 1.0}, seed=1)
    assert "spec.model.params.alpah" in info.value.message
    assert "alpha" in info.value.message.split("accepts:")[1]


def test_the_seed_becomes_random_state_unless_the_params_set_it() -> None:
    assert build_estimator("RandomForestClassifier", {}, seed=5).random_state == 5
    assert build_estimator("RandomForestClassifier", {"random_state": 9}, seed=5).random_state == 9


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"hiddenSizes": [0]}, "hiddenSizes"),
        ({"hiddenSizes": 64}, "hiddenSizes"),
        ({"dropout": 1.0}, "dropout"),
        ({"epochs": 0}, "epochs"),
        ({"batchSize": True}, "batchSize"),
        ({"lr": 0}, "lr"),
        ({"learning_rate": 0.1}, "learning_rate"),
    ],
)
def test_mlp_params_are_checked_with_the_field_named(params: dict[str, Any], field: str) -> None:
    with pytest.raises(TrainingError) as info:
        parse_params(params)
    assert info.value.reason == "InvalidParameter"
    assert info.value.message.startswith(f"spec.model.params.{field} ")
