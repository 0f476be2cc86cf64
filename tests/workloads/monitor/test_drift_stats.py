"""Each statistic against its reference implementation on the same inputs.

scipy is the reference for KS, Wasserstein, Jensen-Shannon and chi² (1e-9); PSI is compared with
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

from kubeloop.profile import build_profile, load_profile, quantile_bin
from kubeloop.workloads.monitor.accumulate import CategoricalAccumulator, NumericAccumulator
from kubeloop.workloads.monitor.stats import (
    chi2_homogeneity,
    jensen_shannon,
    ks_from_counts,
    psi,
    wasserstein_from_counts,
)
from kubeloop.workloads.monitor.verdict import numeric_scores

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


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: (rng.normal(0, 1, 3_000), rng.normal(0.1, 1.2, 2_500)),
        lambda rng: (rng.integers(0, 20, 3_000) * 1.0, rng.integers(2, 25, 4_000) * 1.0),
    ],
    ids=["continuous", "ties"],
)
def test_ks_matches_scipy_when_the_sample_is_the_reference(make: object) -> None:
    # 3,000 reference rows fit in the profile's sample: the reference side is then exact.
    reference, current = make(np.random.default_rng(11))  # type: ignore[operator]
    acc = _numeric_acc(reference, current)
    statistic, p_value = ks_from_counts(
        acc.points,
        ref_le=acc.ref_le,
        cur_lt=acc.cur_lt(),
        cur_le=acc.cur_le(),
        n_ref=reference.size,
        n_cur=acc.count,
    )
    expected = sps.ks_2samp(reference, current, method="asymp")
    assert statistic == pytest.approx(expected.statistic, abs=1e-9)
    assert p_value == pytest.approx(expected.pvalue, abs=1e-9)


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
        ref_le=acc.ref_le,
        cur_lt=acc.cur_lt(),
        cur_le=acc.cur_le(),
        n_ref=reference.size,
        n_cur=acc.count,
        below_sum=acc.below_sum,
        above_sum=acc.above_sum,
        above_count=acc.above_count,
        scale=float(np.std(reference)),
    )
    assert got == pytest.approx(expected, rel=2e-3)


def test_quantile_bins_have_equal_reference_counts_and_psi_counts_match_numpy() -> None:
    rng = np.random.default_rng(8)
    reference, current = rng.normal(0, 1, 10_000), rng.normal(0.3, 1, 7_000)
    acc = _numeric_acc(reference, current)
    assert acc.ref.counts.tolist() == [1_000.0] * 10
    edges = np.concatenate([[-np.inf], acc.ref.edges, [np.inf]])
    # numpy's right-open bins differ from ours only on exact edge hits (none here).
    assert acc.bins.tolist() == np.histogram(current, edges)[0].tolist()
    assert np.bincount(quantile_bin(current, acc.ref.edges), minlength=10).sum() == 7_000


def test_categorical_counts_unseen_and_missing() -> None:
    reference = pa.table({"c": ["a"] * 60 + ["b"] * 40})
    profile = load_profile(build_profile(reference, [], ["c"]))
    acc = CategoricalAccumulator(profile.categorical["c"])
    acc.add(pa.array(["a", "b", "new", None, "a", "newer"]))
    assert acc.counts.tolist() == [2.0, 1.0, 2.0]
    assert (acc.unseen, acc.missing, acc.count) == (2, 1, 5)
