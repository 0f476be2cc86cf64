"""The compiled HistGradientBoosting path agrees with sklearn, and is used only when it may be."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from tests.workloads.server.conftest import churn_version, numeric_version, single_thread

from kubeloop.modelformat import load_predictor
from kubeloop.workloads.server.tree_ensemble import (
    SMALL_BATCH_ROWS,
    AcceleratedPredictor,
    accelerate,
    compile_hgb,
)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with single_thread(1):
        yield


def _data(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(500, 6))
    x[rng.random(x.shape) < 0.1] = np.nan  # missing values take the learned side
    return x


@pytest.mark.parametrize("classes", [2, 3])
def test_classifier_probabilities_equal_sklearn(classes: int) -> None:
    x = _data(classes)
    y = (np.nan_to_num(x[:, 0]) * classes).astype(int) % classes
    model = HistGradientBoostingClassifier(max_iter=40, random_state=0).fit(x, y)
    compiled = compile_hgb(model)
    assert compiled is not None
    test = _data(99)
    np.testing.assert_allclose(compiled.predict_proba(test), model.predict_proba(test), atol=1e-12)
    np.testing.assert_array_equal(
        compiled.predict_proba(test).argmax(axis=1), model.predict_proba(test).argmax(axis=1)
    )


def test_regressor_equals_sklearn() -> None:
    x = _data(5)
    y = np.nan_to_num(x[:, 1]) * 4 - np.nan_to_num(x[:, 2])
    model = HistGradientBoostingRegressor(max_iter=40, random_state=0).fit(x, y)
    compiled = compile_hgb(model)
    assert compiled is not None
    test = _data(6)
    np.testing.assert_allclose(compiled.predict(test), model.predict(test), rtol=1e-12, atol=1e-12)


def test_categorical_splits_are_not_compiled() -> None:
    rng = np.random.default_rng(1)
    x = np.column_stack([rng.integers(0, 4, 300), rng.normal(size=300)])
    model = HistGradientBoostingClassifier(max_iter=5, categorical_features=[0]).fit(
        x, (x[:, 0] == 2).astype(int)
    )
    assert compile_hgb(model) is None


def test_accelerate_uses_the_compiled_path_for_a_plain_model(tmp_path: Path) -> None:
    predictor = load_predictor(numeric_version(tmp_path / "v", task="regression", n_features=5))
    fast = accelerate(predictor)
    assert isinstance(fast, AcceleratedPredictor)
    rng = np.random.default_rng(3)
    for rows in (1, SMALL_BATCH_ROWS, SMALL_BATCH_ROWS + 1, 200):
        columns = {f"f{i}": rng.normal(size=rows) for i in range(5)}
        np.testing.assert_allclose(
            fast.predict(columns).values, predictor.predict(columns).values, rtol=1e-12
        )


def test_accelerate_keeps_sklearn_for_a_pipeline_with_preprocessing(tmp_path: Path) -> None:
    predictor = load_predictor(churn_version(tmp_path / "v"))
    assert accelerate(predictor) is predictor
