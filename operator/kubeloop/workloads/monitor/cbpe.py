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

from kubeloop.workloads.monitor.placement import count_at_or_below, point_grid

__all__ = ["Calibrator", "Estimate", "SegmentCounts", "estimate", "fit_isotonic"]

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
    order reaches the same (unique) fit, and so does pooling equal neighbours (their fitted
    values are equal): first whole runs of non-increasing blocks are pooled at once,
    vectorised, a few passes; what still violates is pooled one block at a time.
    """
    x, inverse, weight = np.unique(scores, return_inverse=True, return_counts=True)
    positives: Floats = np.asarray(
        np.bincount(inverse, weights=truth.astype(np.float64), minlength=x.size), np.float64
    )
    rows: Floats = weight.astype(np.float64)
    sizes = np.ones(x.size, np.int64)
    for _ in range(VECTOR_PASSES):
        rate = positives / rows
        falls = rate[:-1] >= rate[1:]  # block i+1 is not above block i: pooled with it
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
    streamed = Estimate(calibrator)
    streamed.add(score, predicted_positive)
    return streamed.result()


class Estimate:
    """CBPE over a window that comes batch by batch (NaN scores skipped).

    Up to SORTED_ROWS rows are kept and the ROC AUC is NannyML's sorted curve with its
    rounding. Past that, with a calibrator, the rows are only counted per calibrator segment
    (`SegmentCounts`): memory no longer grows with the window, and nothing is sorted but the
    rows of sloping segments. Without a calibrator p is the score itself: every row is kept.
    """

    def __init__(self, calibrator: Calibrator | None) -> None:
        self.calibrator = calibrator
        self._score: list[Floats] = []
        self._positive: list[npt.NDArray[np.bool_]] = []
        self._kept = 0
        self._counts: SegmentCounts | None = None

    def add(self, score: Floats, predicted_positive: npt.NDArray[np.bool_]) -> None:
        """Fold one batch of scores and predictions."""
        known = ~np.isnan(score)
        if not known.all():
            score, predicted_positive = score[known], predicted_positive[known]
        if self._counts is not None:
            self._counts.add(score, predicted_positive)
            return
        self._score.append(score)
        self._positive.append(predicted_positive)
        self._kept += score.size
        if self.calibrator is not None and self._kept >= SORTED_ROWS:
            self._counts = SegmentCounts(self.calibrator)
            for kept, positive in zip(self._score, self._positive, strict=True):
                self._counts.add(kept, positive)
            self._score, self._positive = [], []

    def result(self) -> dict[str, float]:
        """Expected accuracy, F1 and ROC AUC; empty when no row came."""
        if self._counts is not None:
            n = self._counts.rows
            tp, fp, fn, tn, auc = self._counts.totals()
        else:
            score = np.concatenate(self._score) if self._score else np.empty(0)
            positive = np.concatenate(self._positive) if self._positive else np.empty(0, bool)
            n = score.size
            if n == 0:
                return {}
            p = self.calibrator(score) if self.calibrator is not None else score
            chosen, rest = p[positive], p[~positive]
            tp = float(chosen.sum())
            fp = float((1 - chosen).sum())
            fn = float(rest.sum())
            tn = float((1 - rest).sum())
            auc = _expected_roc_auc(score, self.calibrator)
        out = {"accuracy": (tp + tn) / n}
        denominator = tp + 0.5 * (fp + fn)
        out["f1"] = tp / denominator if denominator else 0.0
        if auc is not None:
            out["roc_auc"] = auc
        return out


class SegmentCounts:
    """The expected confusion matrix and ROC AUC from counts per calibrator segment.

    A row's segment is the number of knots at or below its score (0 and len(x): the clipped
    ends). On a flat segment every row has the segment's p, so rows are only counted there;
    the rows of sloping segments (the narrow gaps between two of the reference's scores where
    the isotonic fit steps) are kept, their p computed with np.interp's arithmetic.

    NannyML's ROC AUC sums the trapezoids sum_i (1 - p_i) (T_i + p_i / 2) / (TP FP) over the
    rows by descending score, T_i the p of the rows before row i, TP and FP the sums of p and
    1 - p. Between segments only their sums matter; a flat segment's m rows (p = c) give
    c (1 - c) m^2 / 2 in any order; only rows on sloping segments are sorted. Equal to NannyML's
    but for its rounding of the curve to 5 decimals (1e-11 at a million rows).
    """

    def __init__(self, calibrator: Calibrator) -> None:
        x, y = calibrator.x, calibrator.y
        self.x, self.y = x, y
        self.base = np.concatenate([[y[0]], y])  # p at a segment's left knot (or clipped end)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.slope = np.concatenate([[0.0], np.diff(y) / np.diff(x), [0.0]])
        self.sloped = self.slope != 0
        self._grid = point_grid(x)
        self.rows = 0
        self.m = np.zeros(self.base.size)  # rows per segment
        self.chosen = np.zeros(self.base.size)  # rows predicted positive per segment
        self._score: list[Floats] = []  # the rows of sloping segments
        self._segment: list[npt.NDArray[np.int64]] = []
        self._positive: list[npt.NDArray[np.bool_]] = []

    def add(self, score: Floats, predicted_positive: npt.NDArray[np.bool_]) -> None:
        """Count one batch of (non-NaN) scores."""
        segment = count_at_or_below(self.x, score, self._grid)
        size = self.base.size
        self.rows += score.size
        self.m += np.bincount(segment, minlength=size)
        self.chosen += np.bincount(segment, weights=predicted_positive, minlength=size)
        rows = np.flatnonzero(self.sloped[segment])
        if rows.size:
            self._score.append(score[rows])
            self._segment.append(segment[rows])
            self._positive.append(predicted_positive[rows])

    def totals(self) -> tuple[float, float, float, float, float | None]:
        """(tp, fp, fn, tn, roc_auc) expected over every row counted."""
        flat = ~self.sloped
        score = np.concatenate(self._score) if self._score else np.empty(0)
        on = np.concatenate(self._segment) if self._segment else np.empty(0, np.int64)
        chosen = np.concatenate(self._positive) if self._positive else np.empty(0, bool)
        p = self.slope[on] * (score - self.x[on - 1]) + self.y[on - 1]
        positive = np.where(flat, self.base * self.m, 0.0)
        positive += np.bincount(on, weights=p, minlength=self.base.size)
        negative = self.m - positive
        tp = float((self.base * self.chosen)[flat].sum()) + float(p[chosen].sum())
        expected = float(positive.sum())
        fp = float(self.chosen.sum()) - tp
        fn = expected - tp
        tn = self.rows - expected - fp
        if not (expected > 0 and self.rows - expected > 0):
            return tp, fp, fn, tn, None
        above = np.cumsum(positive[::-1])[::-1] - positive  # p of the segments scored higher
        area = float((negative * above).sum()) + float((positive * negative)[flat].sum() / 2)
        if score.size:
            order = np.argsort(score)[::-1]
            q, group = p[order], on[order]
            before = np.cumsum(q) - q
            start = np.flatnonzero(np.concatenate([[True], group[1:] != group[:-1]]))
            before -= np.repeat(before[start], np.diff(np.append(start, q.size)))
            area += float(np.sum((1 - q) * (before + q / 2)))
        return tp, fp, fn, tn, area / (expected * (self.rows - expected))


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
