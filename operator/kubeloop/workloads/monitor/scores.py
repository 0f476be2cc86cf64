"""Performance metrics with scikit-learn's definitions, in numpy (the monitor image carries no
scikit-learn); tests/workloads/monitor/test_performance.py checks each against sklearn itself.

Classification takes integer class codes; `positive` is the code of the positive class of a
binary model (the second of the model's classes, as sklearn's `classes_[1]`).

- accuracy: `accuracy_score`.
- f1: binary: `f1_score(pos_label=positive)`; more classes: `f1_score(average="macro")` over the
  classes present in the labels or the predictions. 0 where it is undefined (zero_division).
- roc_auc: binary: `roc_auc_score(y == positive, p_positive)`; more classes: one-vs-rest macro
  (`multi_class="ovr"`). None (undefined) when the labels hold a single class, or, for more
  classes, when a class has no label.
- rmse, mae: `root_mean_squared_error`, `mean_absolute_error`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["accuracy", "binary_roc_auc", "f1", "mae", "rmse", "roc_auc"]

Codes = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


def accuracy(y_true: Codes, y_pred: Codes) -> float:
    """Share of rows predicted right."""
    return float(np.mean(y_true == y_pred))


def _f1_of(y_true: Codes, y_pred: Codes, label: int) -> float:
    tp = int(np.count_nonzero((y_pred == label) & (y_true == label)))
    fp = int(np.count_nonzero((y_pred == label) & (y_true != label)))
    fn = int(np.count_nonzero((y_pred != label) & (y_true == label)))
    denominator = 2 * tp + fp + fn
    return 2 * tp / denominator if denominator else 0.0


def f1(y_true: Codes, y_pred: Codes, positive: int | None) -> float:
    """F1 of the positive class (binary, `positive` given) or the macro average."""
    if positive is not None:
        return _f1_of(y_true, y_pred, positive)
    labels = np.union1d(y_true, y_pred)
    return float(np.mean([_f1_of(y_true, y_pred, int(k)) for k in labels]))


def binary_roc_auc(truth: npt.NDArray[np.bool_], score: Floats) -> float | None:
    """Area under the ROC curve: the Mann-Whitney statistic with tied scores counted half,
    which is the trapezoids sklearn sums over its ROC curve."""
    positives = int(np.count_nonzero(truth))
    negatives = truth.size - positives
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(score)  # ties get their run's mean rank below: any order of them will do
    ordered = score[order]
    # average rank of each run of equal scores
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], ordered.size]
    mean_rank = (starts + ends + 1) / 2.0  # ranks are 1-based
    ranks = np.empty(ordered.size)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    u = float(ranks[truth].sum()) - positives * (positives + 1) / 2.0
    return u / (positives * negatives)


def roc_auc(y_true: Codes, proba: Floats, positive: int | None) -> float | None:
    """Binary (`positive`: the column of the positive class) or one-vs-rest macro AUC."""
    if positive is not None:
        return binary_roc_auc(y_true == positive, proba[:, positive])
    areas = [binary_roc_auc(y_true == k, proba[:, k]) for k in range(proba.shape[1])]
    if any(area is None for area in areas):
        return None
    return float(np.mean([a for a in areas if a is not None]))


def rmse(y_true: Floats, y_pred: Floats) -> float:
    """Root mean squared error."""
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)))


def mae(y_true: Floats, y_pred: Floats) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(y_true - y_pred)))
