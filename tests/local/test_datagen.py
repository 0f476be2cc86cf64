"""The demo's synthetic churn data: learnable, and the shifted variant really drifts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from kubeloop.local.demo.datagen import (
    CATEGORICAL,
    FEATURES,
    NUMERIC,
    TARGET,
    churn_table,
    write_churn,
)


def _psi(reference: np.ndarray, current: np.ndarray) -> float:
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, 11)))
    ref = np.histogram(np.clip(reference, edges[0], edges[-1]), edges)[0] / len(reference)
    cur = np.histogram(np.clip(current, edges[0], edges[-1]), edges)[0] / len(current)
    ref, cur = np.clip(ref, 1e-4, None), np.clip(cur, 1e-4, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def test_schema_deterministic_and_parquet(tmp_path: Path) -> None:
    path = write_churn(tmp_path / "train", 500, seed=3)
    table = pq.read_table(path)
    assert table.column_names == [*FEATURES, TARGET]
    assert table.num_rows == 500
    assert table.equals(churn_table(500, seed=3))
    assert not table.equals(churn_table(500, seed=4))
    for name in CATEGORICAL:
        assert str(table.schema.field(name).type) == "string"


def test_label_is_learnable_above_the_example_gate() -> None:
    train, valid = churn_table(4000, seed=1), churn_table(2000, seed=2)

    def matrix(t):  # type: ignore[no-untyped-def]
        cols = [t[c].to_numpy() for c in NUMERIC]
        cols += [np.unique(t[c].to_numpy(), return_inverse=True)[1] for c in CATEGORICAL]
        return np.column_stack(cols)

    model = HistGradientBoostingClassifier(max_iter=100).fit(
        matrix(train), train[TARGET].to_numpy()
    )
    auc = roc_auc_score(valid[TARGET].to_numpy(), model.predict_proba(matrix(valid))[:, 1])
    assert auc > 0.75


def test_shifted_population_drifts_on_most_features() -> None:
    base, shifted = churn_table(3000, seed=1), churn_table(3000, seed=2, shift=True)
    again = churn_table(3000, seed=5)
    drifted = [n for n in NUMERIC if _psi(base[n].to_numpy(), shifted[n].to_numpy()) > 0.2]
    stable = [n for n in NUMERIC if _psi(base[n].to_numpy(), again[n].to_numpy()) > 0.2]
    assert len(drifted) >= 3
    assert stable == []
