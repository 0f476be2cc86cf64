"""Churn features: your own feature engineering, shared by training (train.py) and serving.

`ChurnPredictor` is the model's `custom` predictor: Kubeloop's server creates it, calls
`load(folder)` once, then `predict(columns)` with one numpy array per input column (raw values
as the clients send them). The server image must ship this module and list
`churn_features:ChurnPredictor` in KUBELOOP_CUSTOM_PREDICTORS (README.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CATEGORICAL", "INPUTS", "NUMERIC", "ChurnPredictor", "engineer", "vocabulary"]

NUMERIC = ("tenure", "monthly_charges", "total_charges", "support_calls")
CATEGORICAL = ("contract", "payment_method")
INPUTS = NUMERIC + CATEGORICAL
BOOSTER_FILE = "booster.ubj"
VOCABULARY_FILE = "vocabulary.json"


def vocabulary(columns: Mapping[str, Any]) -> dict[str, list[str]]:
    """The categories seen in training, per categorical column (one-hot columns follow it)."""
    return {
        name: sorted(set(np.asarray(columns[name]).astype(str).tolist())) for name in CATEGORICAL
    }


def engineer(columns: Mapping[str, Any], vocab: Mapping[str, Sequence[str]]) -> np.ndarray:
    """Raw columns -> the float32 matrix the booster takes: the four numbers, what they say
    together (average and recent charge, support calls per year), and one-hot categories
    (a category unseen in training is all zeros)."""
    tenure = np.asarray(columns["tenure"], dtype=np.float64)
    monthly = np.asarray(columns["monthly_charges"], dtype=np.float64)
    total = np.asarray(columns["total_charges"], dtype=np.float64)
    calls = np.asarray(columns["support_calls"], dtype=np.float64)
    average = total / np.maximum(tenure, 1.0)
    parts = [
        tenure,
        monthly,
        total,
        calls,
        np.log1p(tenure),
        average,
        monthly - average,  # charged more now than on average: a recent price rise
        calls / (tenure / 12.0 + 1.0),
    ]
    for name in CATEGORICAL:
        values = np.asarray(columns[name]).astype(str)
        parts.extend((values == category).astype(np.float64) for category in vocab[name])
    return np.column_stack(parts).astype(np.float32)


class ChurnPredictor:
    """An XGBoost booster behind the feature engineering above."""

    def __init__(self, booster: Any = None, vocab: dict[str, list[str]] | None = None) -> None:
        self.booster = booster
        self.vocab = vocab or {}

    @classmethod
    def train(
        cls,
        columns: Mapping[str, Any],
        labels: np.ndarray,
        params: Mapping[str, Any],
        *,
        rounds: int,
        evals: Sequence[tuple[Mapping[str, Any], np.ndarray, str]] = (),
        callbacks: Sequence[Any] = (),
    ) -> ChurnPredictor:
        """Fit on raw columns and 0/1 labels; `evals`: (columns, labels, name) to watch."""
        import xgboost

        vocab = vocabulary(columns)
        train = xgboost.DMatrix(engineer(columns, vocab), label=labels)
        watched = [(xgboost.DMatrix(engineer(c, vocab), label=y), name) for c, y, name in evals]
        booster = xgboost.train(
            {"objective": "binary:logistic", "eval_metric": "logloss", **params},
            train,
            num_boost_round=rounds,
            evals=watched,
            callbacks=list(callbacks),
            verbose_eval=False,
        )
        return cls(booster, vocab)

    def save(self, folder: Path) -> None:
        self.booster.save_model(str(folder / BOOSTER_FILE))
        (folder / VOCABULARY_FILE).write_text(json.dumps(self.vocab, indent=2))

    def load(self, folder: Path) -> None:
        import xgboost

        self.booster = xgboost.Booster(model_file=str(folder / BOOSTER_FILE))
        self.vocab = json.loads((folder / VOCABULARY_FILE).read_text())

    def predict(self, columns: Mapping[str, Any]) -> np.ndarray:
        """[n, 2]: P(not churned), P(churned) (the pipeline's classes 0 and 1)."""
        churn = np.asarray(self.booster.inplace_predict(engineer(columns, self.vocab)))
        return np.column_stack([1.0 - churn, churn])
