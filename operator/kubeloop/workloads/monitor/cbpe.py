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

from kubeloop.workloads.monitor.placement import count_at_or_below

__all__ = ["Calibrator", "estimate", "fit_isotonic"]

Floats = npt.NDArray[np.float64]

# Vectorised pooling passes before the sequential pool takes the blocks left (fit_isotonic).
VECTOR_PASSES = 8
# Up to this many rows the expected ROC AUC sorts them all, with NannyML's rounding; above, the
# rounding weighs less than 1e-9 and the rows are summed per calibrator segment instead.
SORTED_ROWS = 1 << 17


@dataclass(frozen=True)
class Calibrator:
    """A fitted isotonic map: scores at `x` become `y`, linearly in between, clipped outside."""

    x: Floats
    y: Floats

    def __call__(self, scores: Floats) -> Floats:
        return np.interp(scores, self.x, self.y)


def fit_isotonic(scores: Floats, truth: npt.NDArray[np.bool_]) -> Calibrator:
    """Pool-adjacent-violators on the label rates of each distinct score (non-decreasing).

    Blocks are kept as (positives, rows): integer counts, exact in float64, so a block's rate
    is one division whatever order its rows were pooled in. Pooling adjacent violators in any
    order reaches the same (unique) fit: first whole runs of decreasing blocks are pooled at
    once, vectorised, a few passes; what still violates is pooled one block at a time.
    """
    x, inverse, weight = np.unique(scores, return_inverse=True, return_counts=True)
    positives: Floats = np.asarray(
        np.bincount(inverse, weights=truth.astype(np.float64), minlength=x.size), np.float64
    )
    rows: Floats = weight.astype(np.float64)
    sizes = np.ones(x.size, np.int64)
    for _ in range(VECTOR_PASSES):
        rate = positives / rows
        falls = rate[:-1] > rate[1:]  # block i+1 is below block i: pooled with it
        if not falls.any():
            break
        group = np.cumsum(np.concatenate([[0], ~falls])).astype(np.int64)
        positives = np.asarray(np.bincount(group, weights=positives), np.float64)
        rows = np.asarray(np.bincount(group, weights=rows), np.float64)
        sizes = np.bincount(group, weights=sizes).astype(np.int64)
    positives, rows, sizes = _pool(positives, rows, sizes)
    y = np.repeat(positives / rows, sizes)
    # Only the first and last score of each constant block matter to the interpolation (as
    # sklearn keeps them): calibrating a million scores then searches a few hundred points.
    change = np.flatnonzero(np.diff(y)) if y.size > 1 else np.empty(0, np.int64)
    keep = np.unique(np.concatenate([[0, y.size - 1], change, change + 1]))
    return Calibrator(x[keep].astype(np.float64), y[keep])


def _pool(
    positives: Floats, rows: Floats, sizes: npt.NDArray[np.int64]
) -> tuple[Floats, Floats, npt.NDArray[np.int64]]:
    """The sequential pool-adjacent-violators on blocks (positives, rows, sizes)."""
    s: list[float] = []
    w: list[float] = []
    n: list[int] = []
    for block in zip(positives.tolist(), rows.tolist(), sizes.tolist(), strict=True):
        s.append(block[0])
        w.append(block[1])
        n.append(block[2])
        while len(s) > 1 and s[-2] * w[-1] > s[-1] * w[-2]:  # rate before > rate after
            last = s.pop(), w.pop(), n.pop()
            s[-1] += last[0]
            w[-1] += last[1]
            n[-1] += last[2]
    return np.asarray(s, np.float64), np.asarray(w, np.float64), np.asarray(n, np.int64)


def estimate(
    score: Floats, predicted_positive: npt.NDArray[np.bool_], calibrator: Calibrator | None
) -> dict[str, float]:
    """Expected accuracy, F1 and ROC AUC of the rows with the model's positive-class `score`
    and prediction; empty when there are no rows."""
    n = score.size
    if n == 0:
        return {}
    if calibrator is None or n < SORTED_ROWS:
        p = calibrator(score) if calibrator is not None else score
        chosen, rest = p[predicted_positive], p[~predicted_positive]
        tp = float(chosen.sum())
        fp = float((1 - chosen).sum())
        fn = float(rest.sum())
        tn = float((1 - rest).sum())
        auc = _expected_roc_auc(score, calibrator)
    else:
        tp, fp, fn, tn, auc = _per_segment(score, predicted_positive, calibrator)
    out = {"accuracy": (tp + tn) / n}
    denominator = tp + 0.5 * (fp + fn)
    out["f1"] = tp / denominator if denominator else 0.0
    if auc is not None:
        out["roc_auc"] = auc
    return out


def _per_segment(
    score: Floats, predicted_positive: npt.NDArray[np.bool_], calibrator: Calibrator
) -> tuple[float, float, float, float, float | None]:
    """The expected confusion matrix and ROC AUC from counts per calibrator segment.

    A row's segment is the number of knots at or below its score (0 and len(x): the clipped
    ends). On a flat segment every row has the segment's p, so rows are only counted there;
    p is computed (np.interp's arithmetic) for the rows of sloping segments alone: the narrow
    gaps between two of the reference's scores where the isotonic fit steps.

    NannyML's ROC AUC sums the trapezoids sum_i (1 - p_i) (T_i + p_i / 2) / (TP FP) over the
    rows by descending score, T_i the p of the rows before row i, TP and FP the sums of p and
    1 - p. Between segments only their sums matter; a flat segment's m rows (p = c) give
    c (1 - c) m^2 / 2 in any order; only rows on sloping segments are sorted. Equal to NannyML's
    but for its rounding of the curve to 5 decimals (1e-11 at a million rows).
    """
    x, y = calibrator.x, calibrator.y
    segment = count_at_or_below(x, score)
    base = np.concatenate([[y[0]], y])  # p at a segment's left knot (or the clipped end's)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.concatenate([[0.0], np.diff(y) / np.diff(x), [0.0]])
    sloped = slope != 0
    flat = ~sloped
    count = base.size
    rows = np.flatnonzero(sloped[segment])
    on = segment[rows]
    p = slope[on] * (score[rows] - x[on - 1]) + y[on - 1]
    m = np.bincount(segment, minlength=count).astype(np.float64)
    chosen = np.bincount(segment, weights=predicted_positive, minlength=count)
    positive = np.where(flat, base * m, 0.0) + np.bincount(on, weights=p, minlength=count)
    negative = m - positive
    tp = float(np.dot(base[flat], chosen[flat])) + float(p[predicted_positive[rows]].sum())
    expected = float(positive.sum())
    fp = float(chosen.sum()) - tp
    fn = expected - tp
    tn = score.size - expected - fp
    if not (expected > 0 and score.size - expected > 0):
        return tp, fp, fn, tn, None
    above = np.cumsum(positive[::-1])[::-1] - positive  # p of the segments scored higher
    area = float(np.dot(negative, above)) + float(np.sum((positive * negative)[flat]) / 2)
    if rows.size:
        order = np.argsort(score[rows])[::-1]
        q, group = p[order], on[order]
        before = np.cumsum(q) - q
        start = np.flatnonzero(np.concatenate([[True], group[1:] != group[:-1]]))
        before -= np.repeat(before[start], np.diff(np.append(start, q.size)))
        area += float(np.sum((1 - q) * (before + q / 2)))
    return tp, fp, fn, tn, area / (expected * (score.size - expected))


def _expected_roc_auc(score: Floats, calibrator: Calibrator | None) -> float | None:
    """NannyML's expected ROC AUC: rows by descending score, the calibrated p of each added to
    the expected true positives (1 - p to the false), both rounded to 5 decimals, trapezoids.

    The scores are sorted rather than argsorted: p is a function of the score, so tied scores
    have equal p and the curve is the same whichever order ties take; and a sort is cheaper.
    """
    n = score.size
    ordered = np.sort(score)[::-1]
    p = calibrator(ordered) if calibrator is not None else ordered
    tps = np.empty(n + 1)
    tps[0] = 0.0
    np.cumsum(p, out=tps[1:])
    fps = np.empty(n + 1)
    fps[0] = 0.0
    np.subtract(np.arange(1, n + 1, dtype=np.float64), tps[1:], out=fps[1:])
    np.round(tps, 5, out=tps)
    np.round(fps, 5, out=fps)
    if not (tps[-1] > 0 and fps[-1] > 0):
        return None
    tps /= tps[-1]  # the true positive rate
    fps /= fps[-1]  # the false positive rate
    height = tps[1:] + tps[:-1]
    height /= 2
    height *= np.diff(fps)
    return float(np.sum(height))
