"""The version's validation outputs as the trainer derives them (validation-outputs.json) give
the monitor exactly what it derives itself from validation-predictions.parquet: the same
outputs' profile and the same calibrator, so every verdict is the same either way."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kubeloop.payload_schema import VALIDATION_OUTPUTS, VALIDATION_PREDICTIONS
from kubeloop.profile import Profile
from kubeloop.workloads.monitor.validation import (
    derive,
    fit_calibrator,
    open_validation,
    prediction_profile,
)


def _binary(rows: int) -> pa.Table:
    rng = np.random.default_rng(3)
    score = rng.random(rows) ** 1.5
    truth = rng.random(rows) < score
    return pa.table(
        {
            "_prediction": [str(int(s >= 0.5)) for s in score],
            "_proba_0": 1 - score,
            "_proba_1": score,
            "_label": [str(int(t)) for t in truth],
        }
    )


def _multiclass(rows: int) -> pa.Table:
    rng = np.random.default_rng(4)
    proba = rng.dirichlet([1, 1, 1], rows)
    classes = np.array(["a", "b", "c"])
    return pa.table(
        {
            "_prediction": classes[proba.argmax(axis=1)].tolist(),
            **{f"_proba_{c}": proba[:, k] for k, c in enumerate(classes)},
            "_label": classes[rng.integers(0, 3, rows)].tolist(),
        }
    )


def _regression(rows: int) -> pa.Table:
    rng = np.random.default_rng(5)
    return pa.table({"_prediction": rng.normal(0, 1, rows), "_label": rng.normal(0, 1, rows)})


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return bool(np.array_equal(a, b, equal_nan=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if dataclasses.is_dataclass(a):
        return all(_same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return bool(a == b)


def _profiles_equal(a: Profile, b: Profile) -> bool:
    assert dataclasses.is_dataclass(a)
    return _same(a, b)


@pytest.mark.parametrize(
    ("table", "positive"),
    [(_binary(5000), "1"), (_multiclass(3000), None), (_regression(3000), None)],
    ids=["binary", "multiclass", "regression"],
)
def test_the_derived_file_equals_what_the_monitor_derives(
    tmp_path: Path, table: pa.Table, positive: str | None
) -> None:
    derived, computed = tmp_path / "derived", tmp_path / "computed"
    for folder in (derived, computed):
        folder.mkdir()
        pq.write_table(table, folder / VALIDATION_PREDICTIONS)
    (derived / VALIDATION_OUTPUTS).write_text(json.dumps(derive(table), sort_keys=True))

    read = open_validation(derived.as_uri())
    built = open_validation(computed.as_uri())
    assert read is not None and built is not None
    assert read.columns == built.columns == table.column_names
    assert read.categorical_prediction == built.categorical_prediction
    assert _profiles_equal(read.profile(), built.profile())
    assert _profiles_equal(read.profile(), prediction_profile(table))
    if positive is not None:
        stored, fitted = read.calibrator(positive), built.calibrator(positive)
        assert stored is not None and fitted is not None
        assert np.array_equal(stored.x, fitted.x) and np.array_equal(stored.y, fitted.y)
        assert read._table is None  # the Parquet was never read
    else:
        assert "calibrators" not in derive(table)


def test_a_calibrator_the_file_lacks_is_fitted_from_the_predictions(tmp_path: Path) -> None:
    """Another positive class than the one derived (a window whose probabilities come in
    another order) falls back to the Parquet; no file at all is no validation outputs."""
    table = _binary(2000)
    pq.write_table(table, tmp_path / VALIDATION_PREDICTIONS)
    (tmp_path / VALIDATION_OUTPUTS).write_text(json.dumps(derive(table)))
    read = open_validation(tmp_path.as_uri())
    assert read is not None
    other, expected = read.calibrator("0"), fit_calibrator(table, "0")
    assert other is not None and expected is not None
    assert np.array_equal(other.y, expected.y)
    assert open_validation((tmp_path / "none").as_uri()) is None


def test_a_derivation_that_fails_is_a_warning_not_a_failed_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The derived file is optional (checks derive it from the Parquet): the trainer writes the
    version without it and says why."""
    from kubeloop.workloads.trainer import run

    def broken(predictions: pa.Table) -> dict[str, Any]:
        raise ValueError("no outputs to profile")

    monkeypatch.setattr(run, "derive_validation", broken)
    with caplog.at_level("WARNING", logger="kubeloop.train"):
        run._write_validation_outputs(_binary(100), tmp_path)
    assert not (tmp_path / VALIDATION_OUTPUTS).exists()
    assert f"{VALIDATION_OUTPUTS} not written" in caplog.text and "no outputs" in caplog.text
    monkeypatch.undo()
    run._write_validation_outputs(_binary(100), tmp_path)  # and written when it can be
    assert json.loads((tmp_path / VALIDATION_OUTPUTS).read_text()) == derive(_binary(100))
