"""The compiled random-forest path gives sklearn's answers bit for bit, and is used only then."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tests.workloads.server.conftest import single_thread, write_version

from kubeloop.modelformat import load_predictor
from kubeloop.workloads.server.forest import CompiledForest, compile_forest
from kubeloop.workloads.server.tree_ensemble import AcceleratedPredictor, accelerate


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with single_thread(1):
        yield


def _data(seed: int, rows: int = 400, missing: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 5)) * 3
    x[rng.random(x.shape) < missing] = np.nan  # missing values take the learned side
    return x


def _labels(x: np.ndarray, classes: int) -> np.ndarray:
    return (np.abs(np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1])) * classes).astype(int) % classes


@pytest.mark.parametrize("kind", [RandomForestClassifier, ExtraTreesClassifier])
@pytest.mark.parametrize("classes", [2, 3])
def test_classifier_probabilities_are_sklearns_bit_for_bit(kind: type, classes: int) -> None:
    x = _data(classes)
    model = kind(n_estimators=25, random_state=0).fit(x, _labels(x, classes))
    compiled = compile_forest(model)
    assert compiled is not None
    test = _data(99, rows=300)
    np.testing.assert_array_equal(compiled.predict_proba(test), model.predict_proba(test))


@pytest.mark.parametrize("kind", [RandomForestRegressor, ExtraTreesRegressor])
def test_regressor_is_sklearns_bit_for_bit(kind: type) -> None:
    x = _data(5)
    y = np.nan_to_num(x[:, 1]) * 4 - np.nan_to_num(x[:, 2])
    model = kind(n_estimators=25, random_state=0).fit(x, y)
    compiled = compile_forest(model)
    assert compiled is not None
    test = _data(6, rows=300)
    np.testing.assert_array_equal(compiled.predict(test), model.predict(test))


def test_rows_between_float32_neighbours_go_where_sklearn_sends_them() -> None:
    # sklearn casts rows to float32 before comparing them with float64 thresholds: a value
    # just above a threshold in float64 can round onto it in float32 and go left.
    x = _data(7, missing=0.0)
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(x, _labels(x, 2))
    compiled = compile_forest(model)
    assert compiled is not None
    inner = np.concatenate([e.tree_.threshold[e.tree_.children_left != -1] for e in model])
    edges = np.nextafter(inner, np.inf)[:300]
    test = np.tile(edges[:, None], (1, 5))
    np.testing.assert_array_equal(compiled.predict_proba(test), model.predict_proba(test))


@pytest.mark.parametrize(
    "model",
    [
        GradientBoostingClassifier(n_estimators=3),
        RandomForestRegressor(n_estimators=3),  # fitted on two outputs below
    ],
)
def test_what_it_does_not_know_is_not_compiled(model: Any) -> None:
    x = _data(8, missing=0.0)
    y = _labels(x, 2)
    model.fit(x, np.column_stack([y, y]) if isinstance(model, RandomForestRegressor) else y)
    assert compile_forest(model) is None


def _forest_version(folder: Path, model: Any) -> Path:
    rng = np.random.default_rng(11)
    x = rng.normal(size=(600, 6))
    model.fit(x, (x[:, 0] + x[:, 1] > 0).astype(np.int64))
    features = [
        {"name": f"f{i}", "dtype": "float64", "kind": "numeric", "categories": None}
        for i in range(6)
    ]
    target = {"name": "label", "classes": [0, 1]}
    manifest = {"version": "1", "task": "classification", "features": features, "target": target}
    return write_version(folder, model, manifest)


def test_accelerate_serves_small_batches_of_a_forest_compiled(tmp_path: Path) -> None:
    model = RandomForestClassifier(n_estimators=30, random_state=0)
    predictor = load_predictor(_forest_version(tmp_path / "v", model))
    fast = accelerate(predictor)
    assert isinstance(fast, AcceleratedPredictor)
    assert isinstance(fast.compiled, CompiledForest)
    rng = np.random.default_rng(3)
    for rows in (1, CompiledForest.max_rows, CompiledForest.max_rows + 1):
        columns = {f"f{i}": rng.normal(size=rows) for i in range(6)}
        want, got = predictor.predict(columns), fast.predict(columns)
        np.testing.assert_array_equal(got.values, want.values)
        np.testing.assert_array_equal(got.probabilities, want.probabilities)


def test_accelerate_keeps_sklearn_for_a_forest_behind_a_scaler(tmp_path: Path) -> None:
    model = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=5))
    predictor = load_predictor(_forest_version(tmp_path / "v", model))
    assert accelerate(predictor) is predictor
