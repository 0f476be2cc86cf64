"""Drift statistics on fixed-size summaries (bin counts, ECDF counts), never on raw rows.

Every function here takes what the streaming accumulators keep, so the monitor's memory does
not grow with the window. Definitions, and where they match a reference implementation:

- PSI: `sum((r - c) * ln(r / c))` over bin shares, zero shares replaced exactly as Evidently 0.7
  does (`legacy/calculations/stattests/utils.py:get_binned_data`, `feel_zeroes`): by
  `min(non-zero share) / 1e6` when that minimum is <= 1e-4, else by 1e-4.
- Jensen-Shannon: the distance (square root of the divergence), natural log, as
  `scipy.spatial.distance.jensenshannon` and Evidently's `jensenshannon` test.
- chi²: the two-sample test of homogeneity on the 2 x k table (reference, current), as
  `scipy.stats.chi2_contingency` (Yates' correction when dof == 1, like scipy's default).
- Kolmogorov-Smirnov: the two-sample statistic between the reference sample and *every* current
  row, computed from counts of current values at the sample points; p-value as
  `scipy.stats.ks_2samp(method="asymp")`.
- The p-values come from kubeloop.workloads.monitor.pvalues (numpy only): importing
  scipy.stats would cost a third of a 1M-row check.
- Wasserstein-1 between the same two ECDFs, divided by the reference standard deviation (as
  Evidently's `wasserstein` test normalises).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from kubeloop.workloads.monitor.pvalues import chi2_sf, kolmogorov_smirnov_sf

__all__ = [
    "chi2_homogeneity",
    "evidently_fill_zeroes",
    "jensen_shannon",
    "ks_from_counts",
    "psi",
    "wasserstein_from_counts",
]

FloatArray = npt.NDArray[np.float64]


def evidently_fill_zeroes(shares: FloatArray) -> FloatArray:
    """Replace zero shares the way Evidently 0.7 does before PSI (see module docstring)."""
    out = np.array(shares, dtype=np.float64)
    nonzero = out[out != 0]
    if nonzero.size == 0:
        return out
    smallest = float(nonzero.min())
    out[out == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return out


def _shares(counts: FloatArray) -> FloatArray:
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    return counts / total if total > 0 else counts


def psi(reference: FloatArray, current: FloatArray) -> float:
    """Population Stability Index of two count vectors over the same bins."""
    ref = evidently_fill_zeroes(_shares(reference))
    cur = evidently_fill_zeroes(_shares(current))
    return float(np.sum((ref - cur) * np.log(ref / cur)))


def jensen_shannon(reference: FloatArray, current: FloatArray) -> float:
    """Jensen-Shannon distance (natural log, in [0, sqrt(ln 2)]) of two count vectors."""
    p = _shares(reference)
    q = _shares(current)
    m = (p + q) / 2.0
    # x * ln(x / m) with 0 * ln 0 = 0; m > 0 wherever p > 0 or q > 0.
    left = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0) / np.where(m > 0, m, 1.0)), 0.0)
    right = np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0) / np.where(m > 0, m, 1.0)), 0.0)
    divergence = max(float(left.sum() + right.sum()) / 2.0, 0.0)
    return math.sqrt(divergence)


def chi2_homogeneity(reference: FloatArray, current: FloatArray) -> tuple[float, float]:
    """(statistic, p-value) of the chi² test that both count vectors share one distribution."""
    table = np.vstack([np.asarray(reference, float), np.asarray(current, float)])
    table = table[:, table.sum(axis=0) > 0]  # a category seen nowhere carries no information
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    dof = table.shape[1] - 1
    observed = table
    if dof == 1:
        # Yates' continuity correction, as scipy.stats.chi2_contingency(correction=True).
        diff = expected - observed
        observed = observed + np.sign(diff) * np.minimum(0.5, np.abs(diff))
    statistic = float(((observed - expected) ** 2 / expected).sum())
    return statistic, chi2_sf(statistic, dof)


def ks_from_counts(
    points: FloatArray,
    *,
    ref_le: FloatArray,
    cur_lt: FloatArray,
    cur_le: FloatArray,
    n_ref: int,
    n_cur: int,
) -> tuple[float, float]:
    """(statistic, p-value) of the two-sample KS test from ECDF counts at reference points.

    `points` are the distinct sorted reference sample values; `ref_le[j]` counts reference
    sample values <= points[j] (`n_ref` in all); `cur_lt[j]` / `cur_le[j]` count current values
    < / <= points[j] (`n_cur` in all). Both ECDFs are step functions: between two reference
    points the reference one is flat and the current one rises, so the largest gap is at a
    point or just before one, which is exactly what the two counts give. The p-value uses the
    effective size n*m/(n+m) as scipy does, so it is governed by the reference sample size.
    """
    if n_ref == 0 or n_cur == 0 or points.size == 0:
        return 0.0, 1.0
    f_ref = ref_le / n_ref
    f_ref_before = np.concatenate([[0.0], f_ref[:-1]])
    gap_at = np.abs(f_ref - cur_le / n_cur)
    gap_before = np.abs(f_ref_before - cur_lt / n_cur)
    statistic = float(max(gap_at.max(), gap_before.max()))
    m, n = sorted([float(n_ref), float(n_cur)], reverse=True)
    effective = m * n / (m + n)
    return statistic, kolmogorov_smirnov_sf(statistic, int(np.round(effective)))


def wasserstein_from_counts(
    points: FloatArray,
    *,
    ref_le: FloatArray,
    cur_lt: FloatArray,
    cur_le: FloatArray,
    n_ref: int,
    n_cur: int,
    below_sum: float,
    above_sum: float,
    above_count: int,
    scale: float,
) -> float:
    """Wasserstein-1 between the reference sample ECDF and the current ECDF, over `scale`.

    W1 is the area between the two ECDFs. Below the first reference point the reference ECDF is
    0 and the area is exactly `sum(points[0] - v)` over current values below it
    (`cur_lt[0] * points[0] - below_sum`); above the last point likewise from `above_sum` and
    `above_count`. Between two points the reference ECDF is flat and the current ECDF rises
    from cur_le[j] to cur_lt[j+1]; the area is exact when no current value lies strictly
    between them (then scipy.stats.wasserstein_distance gives the same number) and otherwise
    assumes those values spread evenly, which with thousands of points errs by far less than
    the thresholds care about.
    """
    if n_ref == 0 or n_cur == 0 or points.size == 0:
        return 0.0
    area = cur_lt[0] * points[0] - below_sum
    area += above_sum - above_count * points[-1]
    area /= n_cur
    if points.size > 1:
        r = ref_le[:-1] / n_ref
        a = cur_le[:-1] / n_cur
        b = cur_lt[1:] / n_cur
        width = np.diff(points)
        spread = b - a
        outside = np.abs(r - (a + b) / 2.0)
        inside = np.where(
            spread > 0, ((r - a) ** 2 + (b - r) ** 2) / (2.0 * np.where(spread > 0, spread, 1.0)), 0
        )
        crossing = (r > a) & (r < b)
        area += float(np.sum(np.where(crossing, inside, outside) * width))
    return float(area) / (scale if scale > 0 else 1.0)
