"""Confidence-based performance estimation (CBPE, NannyML's method) for binary classifiers.

Without labels, a calibrated probability p of the positive class says how likely each row is
positive: a row predicted positive is a true positive with chance p and a false positive with
chance 1 - p. Summing those chances gives the expected confusion matrix, and from it the
expected accuracy and F1; the expected ROC AUC sorts the rows by the model's own score and
accumulates the expected true/false positives along that order (NannyML's `estimate_roc_auc`,
rounding included).

Calibration: isotonic regression of the true label on the model's score, fitted on a labelled
reference (as NannyML's IsotonicCalibrator, which is scikit-learn's IsotonicRegression with
out-of-bounds scores clipped). The reference is the served version's validation predictions
when the trainer left them, else the labelled rows of the window; with neither, the model's
probabilities are taken as calibrated. NannyML fits its calibrator only when cross-validation
shows it lowers the calibration error; this one always fits (on a calibrated model isotonic
regression changes little). The estimate assumes what CBPE assumes: no concept drift between
the reference and the window — exactly what the measured metrics catch when labels come.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Calibrator", "estimate", "fit_isotonic"]

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Calibrator:
    """A fitted isotonic map: scores at `x` become `y`, linearly in between, clipped outside."""

    x: Floats
    y: Floats

    def __call__(self, scores: Floats) -> Floats:
        return np.interp(scores, self.x, self.y)


def fit_isotonic(scores: Floats, truth: npt.NDArray[np.bool_]) -> Calibrator:
    """Pool-adjacent-violators on the label rates of each distinct score (non-decreasing)."""
    x, inverse, weight = np.unique(scores, return_inverse=True, return_counts=True)
    mean = np.bincount(inverse, weights=truth.astype(np.float64)) / weight
    # blocks of (value, weight, size) merged while a block is below the one before it
    values: list[float] = []
    weights: list[float] = []
    sizes: list[int] = []
    for v, w in zip(mean.tolist(), weight.tolist(), strict=True):
        values.append(v)
        weights.append(float(w))
        sizes.append(1)
        while len(values) > 1 and values[-2] > values[-1]:
            w2 = weights[-2] + weights[-1]
            v2 = (values[-2] * weights[-2] + values[-1] * weights[-1]) / w2
            s2 = sizes[-2] + sizes[-1]
            del values[-1], weights[-1], sizes[-1]
            values[-1], weights[-1], sizes[-1] = v2, w2, s2
    y = np.repeat(np.asarray(values), sizes)
    # Only the first and last score of each constant block matter to the interpolation (as
    # sklearn keeps them): calibrating a million scores then searches a few hundred points.
    change = np.flatnonzero(np.diff(y)) if y.size > 1 else np.empty(0, np.int64)
    keep = np.unique(np.concatenate([[0, y.size - 1], change, change + 1]))
    return Calibrator(x[keep].astype(np.float64), y[keep])


def estimate(
    score: Floats, predicted_positive: npt.NDArray[np.bool_], calibrator: Calibrator | None
) -> dict[str, float]:
    """Expected accuracy, F1 and ROC AUC of the rows with the model's positive-class `score`
    and prediction; empty when there are no rows."""
    if score.size == 0:
        return {}
    p = calibrator(score) if calibrator is not None else score
    tp = float(p[predicted_positive].sum())
    fp = float((1 - p[predicted_positive]).sum())
    fn = float(p[~predicted_positive].sum())
    tn = float((1 - p[~predicted_positive]).sum())
    out = {"accuracy": (tp + tn) / score.size}
    denominator = tp + 0.5 * (fp + fn)
    out["f1"] = tp / denominator if denominator else 0.0
    order = np.argsort(score)[::-1]  # as NannyML sorts
    expected = np.cumsum(p[order])
    tps: Floats = np.round(np.concatenate([[0.0], expected]), 5)
    fps: Floats = np.round(np.concatenate([[0.0], 1 + np.arange(score.size) - expected]), 5)
    if tps[-1] > 0 and fps[-1] > 0:
        tpr, fpr = tps / tps[-1], fps / fps[-1]
        out["roc_auc"] = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    return out
