"""From accumulated counts to per-feature scores, per-feature drift and the dataset verdict.

Every applicable test is computed for every feature (they share the same counts, so this costs
next to nothing) and pushed as metrics; the test named in the spec decides drift.

Missing values: the binned tests (PSI, Jensen-Shannon, chi²) carry an explicit "missing" bin,
so a change in the missing rate is drift like any other shift. KS and Wasserstein compare the
non-missing values only; a numeric feature that has no value at all in the window is judged by
PSI on (present, missing), which flags it. Unseen categories (not among the profile's
categories) share the "other" bin with the reference's long tail, so a new value is drift in
proportion to its share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from kubeloop.api.monitor import DriftThresholds
from kubeloop.workloads.monitor.accumulate import CategoricalAccumulator, NumericAccumulator
from kubeloop.workloads.monitor.binning import Binning, bin_counts, edge_indices
from kubeloop.workloads.monitor.exact_reference import KSReference
from kubeloop.workloads.monitor.stats import (
    KSResult,
    chi2_homogeneity,
    cramers_v,
    jensen_shannon,
    ks_from_counts,
    psi,
    wasserstein_from_counts,
)

__all__ = [
    "DatasetVerdict",
    "FeatureVerdict",
    "categorical_scores",
    "dataset_verdict",
    "is_drift",
    "judge",
    "numeric_ks",
    "numeric_scores",
    "numeric_wasserstein",
]

# Tests whose score is a p-value: small is drift. The others are distances: large is drift.
P_VALUE_TESTS = frozenset({"ks", "chi2"})
# p-value test -> (its effect-size score, the DriftThresholds field with that score's floor).
EFFECT_SIZES = {"ks": ("ks_statistic", "ks_statistic"), "chi2": ("cramers_v", "cramers_v")}


@dataclass(frozen=True)
class FeatureVerdict:
    """One feature's outcome: the deciding test, its score and threshold, every score."""

    name: str
    kind: Literal["numeric", "categorical"]
    test: str
    score: float
    threshold: float
    drifted: bool
    scores: dict[str, float]
    rows: int
    missing: int
    unseen: int = 0
    # KS deciding: whether its p-value was computed from the full reference data (scipy's);
    # None for the other tests.
    p_value_exact: bool | None = None

    def as_result(self) -> dict[str, Any]:
        """The per-feature entry of the result JSON (see docs/contracts.md); `pValueExact`
        appears only when it is false (the termination message has little room)."""
        out: dict[str, Any] = {
            "test": self.test,
            "score": round(self.score, 6),
            "threshold": self.threshold,
            "drifted": self.drifted,
        }
        if self.p_value_exact is False:
            out["pValueExact"] = False
        return out


@dataclass(frozen=True)
class DatasetVerdict:
    """The verdict over all features."""

    verdict: Literal["Drift", "NoDrift", "NoData"]
    drift_share: float
    rows: int
    features: list[FeatureVerdict] = field(default_factory=list)
    # What the deciding KS test was computed against (tests.numeric: ks), for the result.
    ks_reference: KSReference | None = None


def _with_missing(counts: np.ndarray[Any, Any], missing: int) -> np.ndarray[Any, Any]:
    return np.append(np.asarray(counts, dtype=float), float(missing))


def numeric_scores(
    acc: NumericAccumulator, binning: Binning = "quantile", bins: int = 20
) -> dict[str, float]:
    """PSI and Jensen-Shannon on `bins` bins chosen by `binning` (+ missing); KS (p-value and
    statistic) and normalised Wasserstein on the non-missing values."""
    ref = acc.ref
    edges = edge_indices(ref, binning, bins)
    ref_bins = _with_missing(bin_counts(ref.le, ref.count, edges), ref.missing)
    cur_bins = _with_missing(bin_counts(acc.le, acc.count, edges), acc.missing)
    scores = {"psi": psi(ref_bins, cur_bins), "jensenshannon": jensen_shannon(ref_bins, cur_bins)}
    if acc.count and ref.count and ref.points.size:
        ks = numeric_ks(acc)
        scores["ks"] = ks.p_value
        scores["ks_statistic"] = ks.statistic
        scale = ref.std if math.isfinite(ref.std) and ref.std > 0 else 1.0
        scores["wasserstein"] = numeric_wasserstein(acc, scale)
    return scores


def numeric_ks(acc: NumericAccumulator) -> KSResult:
    """Two-sample KS of the window against the whole reference: the exact one when it was
    computed from a raw reference, else from the counts at the sketch's points (with a bound)."""
    if acc.exact_ks is not None:
        return acc.exact_ks
    return ks_from_counts(
        ref_le=acc.ref.le,
        ref_lt=acc.ref.lt,
        cur_le=acc.le,
        cur_lt=acc.lt,
        n_ref=acc.ref.count,
        n_cur=acc.count,
    )


def numeric_wasserstein(acc: NumericAccumulator, scale: float = 1.0) -> float:
    """Wasserstein-1 of the window against the whole reference, divided by `scale`."""
    ref = acc.ref
    return wasserstein_from_counts(
        ref.points,
        ref_le=ref.le,
        ref_lt=ref.lt,
        cur_le=acc.le,
        cur_lt=acc.lt,
        n_ref=ref.count,
        n_cur=acc.count,
        below_sum=acc.below_sum,
        above_sum=acc.above_sum,
        above_count=acc.above_count,
        scale=scale,
        ref_inside_sum=ref.inside_sum,
        cur_inside_sum=acc.inside_sum,
    )


def categorical_scores(acc: CategoricalAccumulator) -> dict[str, float]:
    """chi² p-value with Cramér's V, Jensen-Shannon and PSI over (categories, other/unseen,
    missing)."""
    ref = acc.ref
    ref_counts = np.array([*ref.categories.values(), ref.other, ref.missing], dtype=float)
    cur_counts = np.append(acc.counts, float(acc.missing))
    _, p_value = chi2_homogeneity(ref_counts, cur_counts)
    return {
        "chi2": p_value,
        "cramers_v": cramers_v(ref_counts, cur_counts),
        "jensenshannon": jensen_shannon(ref_counts, cur_counts),
        "psi": psi(ref_counts, cur_counts),
    }


def _threshold(test: str, thresholds: DriftThresholds) -> float:
    if test in P_VALUE_TESTS:
        return thresholds.p_value
    value: float = getattr(thresholds, test)
    return value


def is_drift(test: str, scores: dict[str, float], thresholds: DriftThresholds) -> bool:
    """Whether `test` calls drift on these scores.

    A p-value test needs its effect size too: with millions of rows a p-value falls below any
    threshold for differences nobody would act on, so KS also needs its statistic (the largest
    ECDF gap) >= `ksStatistic` and chi² needs Cramér's V >= `cramersV`. The defaults, 0.02,
    are far above what sampling noise gives at 1M rows (~0.002) and below a 0.1-sigma mean
    shift (KS D 0.04).
    """
    score = scores[test]
    if test not in P_VALUE_TESTS:
        return score > _threshold(test, thresholds)
    effect, floor = EFFECT_SIZES[test]
    return score < thresholds.p_value and scores[effect] >= getattr(thresholds, floor)


def judge(
    name: str,
    acc: NumericAccumulator | CategoricalAccumulator,
    test: str,
    thresholds: DriftThresholds,
    *,
    binning: Binning = "quantile",
    bins: int = 20,
) -> FeatureVerdict:
    """Score one feature with every test and decide drift with `test`."""
    if isinstance(acc, NumericAccumulator):
        kind: Literal["numeric", "categorical"] = "numeric"
        scores = numeric_scores(acc, binning, bins)
        unseen = 0
        if test not in scores:  # nothing but missing values in the window
            test = "psi"
        exact = (acc.exact_ks is not None) if test == "ks" else None
    else:
        kind = "categorical"
        scores = categorical_scores(acc)
        unseen = acc.unseen
        exact = None
    return FeatureVerdict(
        name=name,
        kind=kind,
        test=test,
        score=scores[test],
        threshold=_threshold(test, thresholds),
        drifted=is_drift(test, scores, thresholds),
        scores=scores,
        rows=acc.count + acc.missing,
        missing=acc.missing,
        unseen=unseen,
        p_value_exact=exact,
    )


def dataset_verdict(
    features: list[FeatureVerdict], rows: int, min_rows: int, drift_share: float
) -> DatasetVerdict:
    """Drift when at least `drift_share` of the features drifted; NoData below `min_rows`."""
    if rows < min_rows or not features:
        return DatasetVerdict("NoData", 0.0, rows, [])
    share = sum(f.drifted for f in features) / len(features)
    verdict: Literal["Drift", "NoDrift"] = "Drift" if share >= drift_share else "NoDrift"
    return DatasetVerdict(verdict, share, rows, features)
