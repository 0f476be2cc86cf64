"""Validation metrics: accuracy, roc_auc, f1, log_loss or rmse, mae, r2.

Computed with NumPy alone, to scikit-learn's definitions (tests/workloads/trainer/test_metrics.py
holds them side by side on random cases): publishing a TorchScript, ONNX or custom model then
does not import scikit-learn and SciPy (seconds of CPU per run, and not in every image).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["evaluate", "roc_auc"]

log = logging.getLogger("kubeloop.train")

Array = np.ndarray[Any, Any]


def evaluate(
    task: str,
    y_true: Array,
    y_pred: Array,
    proba: Array | None = None,
    classes: Sequence[Any] | None = None,
) -> dict[str, float]:
    """The task's metrics on the validation set; a metric undefined on it is left out.

    `proba` has one column per entry of `classes`, in that order.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if task == "regression":
        truth, pred = y_true.astype(np.float64), y_pred.astype(np.float64)
        residual = truth - pred
        return {
            "rmse": float(math.sqrt(float(np.mean(residual**2)))),
            "mae": float(np.mean(np.abs(residual))),
            "r2": _r2(truth, residual),
        }
    labels = list(classes or [])
    binary = len(labels) == 2
    f1s = [_f1(y_true == label, y_pred == label) for label in labels]
    out = {
        "accuracy": float(np.mean(y_true == y_pred)),
        "f1": f1s[1] if binary else (float(np.mean(f1s)) if f1s else 0.0),
    }
    if proba is not None:
        # A float32 model's rows sum to 1 only within float32 rounding: in float64, each row
        # scaled to sum to 1.
        proba = np.asarray(proba, dtype=np.float64)
        proba = proba / proba.sum(axis=1, keepdims=True)
        truth = np.stack([y_true == label for label in labels], axis=1)
        out["log_loss"] = _log_loss(truth, proba)
        auc = roc_auc(truth[:, 1], proba[:, 1]) if binary else _macro_auc(truth, proba)
        if auc is None:
            log.warning("roc_auc left out: a class is missing from the validation rows")
        else:
            out["roc_auc"] = auc
    return dict(sorted(out.items()))


def _f1(truth: Array, predicted: Array) -> float:
    """F1 of one class (0.0 where it is undefined, scikit-learn's zero_division=0.0)."""
    tp = int(np.sum(truth & predicted))
    wrong = int(np.sum(truth != predicted))  # false positives + false negatives
    return 2 * tp / (2 * tp + wrong) if tp + wrong else 0.0


def _log_loss(truth: Array, proba: Array) -> float:
    """Mean negative log-likelihood of the true class, its probability clipped to [eps, 1-eps]
    (a row whose label is not among the classes counts as probability 0, not as no row)."""
    eps = np.finfo(np.float64).eps
    return float(-np.mean(np.log(np.clip((proba * truth).sum(axis=1), eps, 1 - eps))))


def roc_auc(positive: Array, score: Array) -> float | None:
    """Area under the ROC curve of `score` for the boolean `positive` (ties count one half),
    as the Mann-Whitney statistic over average ranks; None with only one class present."""
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(np.asarray(score, dtype=np.float64))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _macro_auc(truth: Array, proba: Array) -> float | None:
    """One-vs-rest AUC averaged over the classes (None when a class is absent)."""
    aucs = [roc_auc(truth[:, k], proba[:, k]) for k in range(truth.shape[1])]
    if any(a is None for a in aucs):
        return None
    return float(np.mean([a for a in aucs if a is not None]))


def _average_ranks(values: Array) -> Array:
    """1-based ranks, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    # Start index of each run of equal values, and each element's run.
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], ordered.size]
    mean_rank = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def _r2(truth: Array, residual: Array) -> float:
    """Coefficient of determination; a constant truth gives 1.0 when predicted exactly, else
    0.0 (scikit-learn's force_finite)."""
    total = float(np.sum((truth - truth.mean()) ** 2))
    explained = float(np.sum(residual**2))
    if total == 0.0:
        return 1.0 if explained == 0.0 else 0.0
    return 1.0 - explained / total
