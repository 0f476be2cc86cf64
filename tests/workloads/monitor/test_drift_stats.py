"""Each statistic against its reference implementation on the same inputs.

scipy is the reference for KS, Wasserstein, Jensen-Shannon, chi² and Cramér's V, on the full
data: 1e-9 where the profile's sketch holds every reference value, within the stated bound
(KS statistic) or 1e-4 (Wasserstein) where it does not; PSI is compared with
Evidently 0.7's own code path, reproduced below from evidently/legacy/calculations/stattests
(psi.py `_psi` and utils.py `get_binned_data`, categorical branch, `feel_zeroes=True`) on the
same bins (1e-6). `test_psi_matches_live_evidently` runs the real Evidently where its separate
venv exists (`make bench-venvs`; it needs pandas < 3, so it cannot share this environment).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon
from scipy.stats.contingency import association

from kubeloop.profile import POINTS, build_profile, build_profile_streaming, load_profile
from kubeloop.workloads.monitor.accumulate import CategoricalAccumulator, NumericAccumulator
from kubeloop.workloads.monitor.binning import TRIM, bin_counts, edge_indices
from kubeloop.workloads.monitor.stats import (
    KSResult,
    chi2_homogeneity,
    cramers_v,
    jensen_shannon,
    psi,
    wasserstein_from_counts,
)
from kubeloop.workloads.monitor.verdict import numeric_ks, numeric_scores

ROOT = Path(__file__).resolve().parents[3]
EVIDENTLY_PYTHON = ROOT / ".venv-bench-evidently" / "bin" / "python"


def evidently_psi_on_labels(reference: np.ndarray, current: np.ndarray) -> float:
    """Evidently 0.7's `_psi` for a categorical column, step by step in numpy."""
    keys = sorted(set(reference.tolist()) | set(current.tolist()))
    ref_counts = dict(zip(*np.unique(reference, return_counts=True), strict=True))
    cur_counts = dict(zip(*np.unique(current, return_counts=True), strict=True))
    ref_p = np.array([ref_counts.get(k, 0) / len(reference) for k in keys])
    cur_p = np.array([cur_counts.get(k, 0) / len(current) for k in keys])
    for p in (ref_p, cur_p):
        smallest = min(p[p != 0])
        np.place(p, p == 0, smallest / 10**6 if smallest <= 0.0001 else 0.0001)
    return float(np.sum((ref_p - cur_p) * np.log(ref_p / cur_p)))


def _counts(labels: np.ndarray, size: int) -> np.ndarray:
    return np.bincount(labels, minlength=size).astype(float)


@pytest.mark.parametrize("seed", range(5))
def test_psi_matches_evidently_formula_on_the_same_bins(seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = 12
    reference = rng.integers(0, size - 2, 5_000)  # the last two bins empty in the reference
    current = rng.integers(2, size, 3_000)  # the first two empty in the current window
    ours = psi(_counts(reference, size), _counts(current, size))
    assert ours == pytest.approx(evidently_psi_on_labels(reference, current), abs=1e-6)
    assert ours > 0.5  # the bins really differ: the comparison is not between zeros


def test_psi_of_identical_counts_is_zero_and_grows_with_shift() -> None:
    base = np.array([100.0, 200, 300, 400])
    assert psi(base, base * 3) == pytest.approx(0.0, abs=1e-12)
    assert psi(base, base[::-1]) > psi(base, np.array([120.0, 200, 300, 380])) > 0


def _evidently_live(reference: np.ndarray, current: np.ndarray) -> float:
    code = (
        "import json,sys,pandas as pd\n"
        "from evidently.legacy.calculations.stattests.psi import _psi\n"
        "from evidently.legacy.core import ColumnType\n"
        "d=json.load(sys.stdin)\n"
        "v,_=_psi(pd.Series(d['r']),pd.Series(d['c']),ColumnType.Categorical,0.1)\n"
        "print(float(v))\n"
    )
    payload = json.dumps({"r": reference.tolist(), "c": current.tolist()})
    out = subprocess.run(
        [str(EVIDENTLY_PYTHON), "-c", code],
        input=payload,
        capture_output=True,
        text=True,
        check=True,
        timeout=280,  # a bound, not a wait: `make venv-evidently` wrote the bytecode already
    )
    return float(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(
    not EVIDENTLY_PYTHON.exists(),
    reason="Evidently 0.7 needs pandas<3 and lives in .venv-bench-evidently: `make bench-venvs`",
)
def test_psi_matches_live_evidently() -> None:
    rng = np.random.default_rng(3)
    size = 10
    reference = rng.integers(0, size - 1, 4_000)
    current = np.concatenate([rng.integers(0, size, 2_000), np.full(300, size - 1)])
    ours = psi(_counts(reference, size), _counts(current, size))
    assert ours == pytest.approx(_evidently_live(reference, current), abs=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_jensen_shannon_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = rng.integers(0, 50, 15).astype(float)
    q = rng.integers(0, 50, 15).astype(float)
    p[3] = 0.0  # zeros on one side only: the 0 * ln 0 terms
    q[5] = 0.0
    assert jensen_shannon(p, q) == pytest.approx(float(jensenshannon(p, q)), abs=1e-9)


@pytest.mark.parametrize("columns", [2, 3, 8])
def test_chi2_matches_scipy_contingency(columns: int) -> None:
    rng = np.random.default_rng(columns)
    reference = rng.integers(20, 400, columns).astype(float)
    current = rng.integers(20, 400, columns).astype(float)
    statistic, p_value = chi2_homogeneity(reference, current)
    expected = sps.chi2_contingency(np.vstack([reference, current]))
    assert statistic == pytest.approx(expected.statistic, abs=1e-9)
    assert p_value == pytest.approx(expected.pvalue, abs=1e-9)


def test_chi2_drops_categories_seen_nowhere() -> None:
    reference = np.array([50.0, 0.0, 30.0, 20.0])
    current = np.array([40.0, 0.0, 35.0, 5.0])
    expected = sps.chi2_contingency(np.array([[50.0, 30, 20], [40, 35, 5]]))
    assert chi2_homogeneity(reference, current) == pytest.approx(
        (expected.statistic, expected.pvalue), abs=1e-9
    )


def _numeric_acc(reference: np.ndarray, current: np.ndarray) -> NumericAccumulator:
    profile = load_profile(build_profile(pa.table({"x": reference}), ["x"], []))
    acc = NumericAccumulator(profile.numeric["x"])
    for chunk in np.array_split(current, 7):  # streamed in batches, as the monitor does
        acc.add(pa.array(chunk))
    return acc


def _ks(acc: NumericAccumulator) -> KSResult:
    return numeric_ks(acc)


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: (rng.normal(0, 1, 3_000), rng.normal(0.1, 1.2, 2_500)),
        lambda rng: (rng.integers(0, 20, 3_000) * 1.0, rng.integers(2, 25, 4_000) * 1.0),
        lambda rng: (rng.integers(0, 500, 60_000) * 1.0, rng.integers(0, 510, 9_000) * 1.0),
    ],
    ids=["continuous", "ties", "discrete-large"],
)
def test_ks_is_exact_when_every_reference_value_is_a_point(make: object) -> None:
    # At most POINTS distinct reference values: all are points, the sketch is the ECDF.
    reference, current = make(np.random.default_rng(11))  # type: ignore[operator]
    result = _ks(_numeric_acc(reference, current))
    expected = sps.ks_2samp(reference, current, method="asymp")
    assert result.bound == 0.0
    assert result.statistic == pytest.approx(expected.statistic, abs=1e-9)
    assert result.p_value == pytest.approx(expected.pvalue, abs=1e-9)


# (reference rows, current rows, current mean, current scale): larger references than POINTS,
# so points sit ~reference/POINTS values apart; a table of shifts and sizes.
FULL_DATA_CASES = [
    (50_000, 30_000, 0.0, 1.0),
    (50_000, 30_000, 0.05, 1.0),
    (200_000, 100_000, 0.0, 1.1),
    (200_000, 50_000, 0.0, 1.0),
]


@pytest.mark.parametrize(("n_ref", "n_cur", "mean", "scale"), FULL_DATA_CASES)
def test_ks_and_wasserstein_match_scipy_on_the_full_reference(
    n_ref: int, n_cur: int, mean: float, scale: float
) -> None:
    rng = np.random.default_rng(n_ref + n_cur)
    reference = rng.normal(0, 2, n_ref)
    current = rng.normal(mean, 2 * scale, n_cur)
    acc = _numeric_acc(reference, current)
    result = _ks(acc)
    expected = sps.ks_2samp(reference, current, method="asymp")
    # The statistic is a gap the ECDFs really have, the exact one at most `bound` above it.
    assert result.statistic <= expected.statistic + 1e-12
    assert expected.statistic <= result.statistic + result.bound + 1e-12
    assert result.bound < 1e-3
    assert result.statistic == pytest.approx(expected.statistic, abs=1e-3)
    scores = numeric_scores(acc)
    wasserstein = sps.wasserstein_distance(reference, current) / np.std(reference)
    assert scores["wasserstein"] == pytest.approx(wasserstein, abs=1e-4)


def test_unshifted_feature_reads_scipys_wasserstein_on_the_full_reference() -> None:
    # Issue 19: against a 10,000-value sample an unshifted feature read 0.009-0.025 where
    # scipy on the full data gives ~0.002 (a false alarm waiting for a lower threshold).
    rng = np.random.default_rng(21)
    reference, current = rng.normal(0, 1, 200_000), rng.normal(0, 1, 100_000)
    scores = numeric_scores(_numeric_acc(reference, current))
    expected = sps.wasserstein_distance(reference, current) / np.std(reference)
    assert scores["wasserstein"] == pytest.approx(expected, abs=1e-4)


def test_wasserstein_matches_scipy_normalised_by_reference_std() -> None:
    rng = np.random.default_rng(5)
    # Current values on reference values (and beyond both ends): the exact case.
    reference = rng.integers(0, 30, 3_000) * 0.5
    current = np.concatenate([rng.integers(0, 30, 2_000) * 0.5, [-4.0, -1.5, 20.0, 33.0]])
    acc = _numeric_acc(reference, current)
    expected = sps.wasserstein_distance(reference, current) / np.std(reference)
    assert numeric_scores(acc)["wasserstein"] == pytest.approx(expected, abs=1e-9)


def test_wasserstein_continuous_is_close_to_scipy() -> None:
    rng = np.random.default_rng(6)
    reference = rng.normal(0, 2, 5_000)
    current = rng.normal(0.4, 2.5, 50_000)  # values between reference points: interpolated
    acc = _numeric_acc(reference, current)
    expected = sps.wasserstein_distance(reference, current) / np.std(reference)
    got = wasserstein_from_counts(
        acc.points,
        ref_le=acc.ref.le,
        ref_lt=acc.ref.lt,
        cur_le=acc.le,
        cur_lt=acc.lt,
        n_ref=acc.ref.count,
        n_cur=acc.count,
        below_sum=acc.below_sum,
        above_sum=acc.above_sum,
        above_count=acc.above_count,
        scale=float(np.std(reference)),
    )
    assert got == pytest.approx(expected, abs=1e-4)


def test_streamed_profile_counts_every_row_exactly_at_its_points() -> None:
    rng = np.random.default_rng(9)
    values = rng.lognormal(0, 0.5, 250_000)
    table = pa.table({"x": values})
    streamed = build_profile_streaming(lambda: table.to_batches(max_chunksize=40_000), ["x"], [])
    ref = load_profile(streamed).numeric["x"]
    ordered = np.sort(values)
    assert (ref.points[0], ref.points[-1]) == (ordered[0], ordered[-1])
    assert ref.le.tolist() == np.searchsorted(ordered, ref.points, side="right").tolist()
    assert ref.lt.tolist() == np.searchsorted(ordered, ref.points, side="left").tolist()
    prefix = np.concatenate([[0.0], np.cumsum(ordered)])
    inside = prefix[ref.lt[1:].astype(int)] - prefix[ref.le[:-1].astype(int)]
    np.testing.assert_allclose(ref.inside_sum, inside, rtol=1e-9, atol=1e-9)
    # Half the points at ranks of a 20x sample: no gap much wider than 2 count / POINTS.
    assert (ref.lt[1:] - ref.le[:-1]).max() <= 3 * values.size / POINTS


def test_quantile_bins_have_equal_reference_counts_and_match_numpy() -> None:
    rng = np.random.default_rng(8)
    reference, current = rng.normal(0, 1, 10_000), rng.normal(0.3, 1, 7_000)
    acc = _numeric_acc(reference, current)
    edges = edge_indices(acc.ref, "quantile", 20)
    assert bin_counts(acc.ref.le, acc.ref.count, edges).tolist() == [500.0] * 20
    bounds = np.concatenate([[-np.inf], acc.points[edges], [np.inf]])
    # numpy's right-open bins differ from ours only on exact edge hits (none here).
    expected = np.histogram(current, bounds)[0]
    assert bin_counts(acc.le, acc.count, edges).tolist() == expected.tolist()


def test_equal_width_bins_sit_on_the_nearest_points_to_evenly_spaced_edges() -> None:
    rng = np.random.default_rng(10)
    reference = rng.normal(0, 1, 100_000)
    acc = _numeric_acc(reference, rng.normal(0, 1, 1_000))
    edges = acc.points[edge_indices(acc.ref, "equalWidth", 20)]
    ordered = np.sort(reference)
    # 20 equal widths over the reference's [0.5%, 99.5%] quantiles, two open bins outside.
    low, high = np.quantile(ordered, [TRIM, 1 - TRIM], method="inverted_cdf")
    wanted = np.linspace(low, high, 21)
    assert edges.size == 21
    # Snapped to a neighbouring point: by at most the mass between two, ~2/POINTS.
    moved = np.searchsorted(ordered, edges) - np.searchsorted(ordered, wanted)
    assert np.abs(moved).max() <= 3 * reference.size / POINTS
    counts = bin_counts(acc.ref.le, acc.ref.count, edge_indices(acc.ref, "equalWidth", 20))
    # Right-closed bins on edges that are reference values themselves.
    at_most = np.searchsorted(ordered, edges, side="right")
    assert counts.tolist() == np.diff(np.r_[0, at_most, reference.size]).tolist()
    assert counts[0] / reference.size == pytest.approx(TRIM, abs=1e-4)
    assert counts[-1] / reference.size == pytest.approx(TRIM, abs=1e-4)


@pytest.mark.parametrize(
    ("shift", "caught"),
    [("none", False), ("scale", True), ("mean", True)],
)
def test_equal_width_psi_sees_a_scale_shift_of_a_long_tailed_feature(
    shift: str, caught: bool
) -> None:
    """A lognormal reference's maximum grows with its size; over [min, max] equal widths put
    most of the mass in the first bins and a 1.5x scale shift read PSI < 0.2 at 10M rows (the
    tail is made as long here with a few far values); over the central range it is seen."""
    rng = np.random.default_rng(12)
    reference = np.concatenate([rng.lognormal(0, 0.5, 200_000), [40.0, 60.0, 80.0]])
    mean, std = np.exp(0.125), np.exp(0.125) * np.sqrt(np.exp(0.25) - 1)
    current = rng.lognormal(0, 0.5, 100_000)
    if shift == "scale":
        current = mean + (current - mean) * 1.5
    elif shift == "mean":
        current = current + 0.5 * std
    acc = _numeric_acc(reference, current)
    assert (numeric_scores(acc, "equalWidth", 20)["psi"] > 0.2) is caught


def test_cramers_v_matches_scipy() -> None:
    reference = np.array([500.0, 300, 200, 7])
    current = np.array([450.0, 340, 190, 12])
    table = np.vstack([reference, current])
    expected = association(table.astype(int), method="cramer", correction=False)
    assert cramers_v(reference, current) == pytest.approx(expected, abs=1e-12)


def test_categorical_counts_unseen_and_missing() -> None:
    reference = pa.table({"c": ["a"] * 60 + ["b"] * 40})
    profile = load_profile(build_profile(reference, [], ["c"]))
    acc = CategoricalAccumulator(profile.categorical["c"])
    acc.add(pa.array(["a", "b", "new", None, "a", "newer"]))
    assert acc.counts.tolist() == [2.0, 1.0, 2.0]
    assert (acc.unseen, acc.missing, acc.count) == (2, 1, 5)


def test_a_v1_profile_still_loads_with_its_sample_as_the_reference() -> None:
    # Versions trained before profile v2 keep working: their sample stands for the reference.
    rng = np.random.default_rng(14)
    sample = np.sort(rng.normal(0, 1, 2_000))
    v1 = {
        "format": "kubeloop.profile/v1",
        "rows": 8_000,
        "numeric": {
            "x": {
                "count": 8_000,
                "missing": 0,
                "mean": 0.0,
                "std": 1.0,
                "min": float(sample[0]),
                "max": float(sample[-1]),
                "edges": [],
                "counts": [],
                "fineEdges": [],
                "fineCounts": [],
                "sample": sample.tolist(),
            }
        },
        "categorical": {},
    }
    acc = NumericAccumulator(load_profile(v1).numeric["x"])
    current = rng.normal(0.2, 1, 3_000)
    acc.add(pa.array(current))
    expected = sps.ks_2samp(sample, current, method="asymp").statistic
    assert _ks(acc).statistic == pytest.approx(expected, abs=1e-12)
    assert acc.ref.count == 8_000 and acc.ref.le[-1] == pytest.approx(8_000)


@pytest.mark.parametrize("shape", ["normal", "discrete", "outlier"])
def test_placing_values_among_points_counts_as_sorting_the_batch(shape: str) -> None:
    """The accumulator's placement table (no sort) against its sorting fallback: the same
    counts at every point and fine bin, values on points, outside the range and far away."""
    rng = np.random.default_rng(14)
    reference = rng.normal(0, 1, 50_000)
    if shape == "discrete":
        reference = np.floor(reference * 10)
    elif shape == "outlier":  # one extreme value crowds the points into a few cells: fallback
        reference = np.append(reference, 1e12)
    ref = load_profile(build_profile(pa.table({"x": reference}), ["x"], [])).numeric["x"]
    current = np.concatenate(
        [rng.normal(0.3, 1.5, 20_000), ref.points[::7], ref.fine_edges, [-1e300, 1e300]]
    )
    placed, ordered = NumericAccumulator(ref), NumericAccumulator(ref)
    ordered._grid = None
    for acc in (placed, ordered):
        for part in np.array_split(current, 3):
            acc.add(pa.array(part))
    assert (placed._grid is None) == (shape == "outlier")
    for name in ("le", "lt", "fine"):
        assert getattr(placed, name).tolist() == getattr(ordered, name).tolist(), name
    assert placed.above_count == ordered.above_count
    scale = np.abs(current).sum()
    np.testing.assert_allclose(placed.inside_sum, ordered.inside_sum, atol=1e-12 * scale)
    assert placed.below_sum == pytest.approx(ordered.below_sum, rel=1e-12)
    assert placed.above_sum == pytest.approx(ordered.above_sum, rel=1e-12)
