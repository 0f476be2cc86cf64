"""The exact KS test against a raw reference, scipy's two-sample p-value, and the profile cache.

scipy.stats.ks_2samp on the full data is the reference: the statistic must be the same float and
the p-value within 1e-9, in both of scipy's regimes (exact up to 10,000 values a side, the
asymptotic distribution above), with ties, and with the reference streamed in several chunks.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from scipy import stats as sps
from tests.workloads.monitor.conftest import NOW, write_logs

from kubeloop.api.monitor import DriftMonitorSpec
from kubeloop.workloads.monitor import exact_ks as exact_ks_module
from kubeloop.workloads.monitor.exact_ks import ExactKS
from kubeloop.workloads.monitor.main import run_check
from kubeloop.workloads.monitor.pvalues import ks_2samp_test
from kubeloop.workloads.monitor.reference import CACHE_NAME, load_reference

TOLERANCE = 1e-9


def _exact(reference: np.ndarray, window: np.ndarray, chunks: int) -> tuple[float, float]:
    test = ExactKS(np.sort(window))
    for part in np.array_split(reference, chunks):
        test.add_reference(part)
    result = test.result()
    assert result.bound == 0.0
    return result.statistic, result.p_value


@pytest.mark.parametrize(
    ("n_ref", "n_cur", "shift", "discrete"),
    [
        (200_000, 200_000, 0.006, False),  # asymptotic regime, mid-range p-value
        (150_000, 60_000, 0.01, True),  # asymptotic, ties on both sides
        (3_000, 3_000, 0.05, False),  # exact regime, equal sizes
        (7_000, 2_500, 0.06, True),  # exact regime, unequal sizes, ties
    ],
)
def test_exact_ks_is_scipys_on_the_full_data(
    n_ref: int, n_cur: int, shift: float, discrete: bool
) -> None:
    rng = np.random.default_rng(n_ref + n_cur)
    reference = rng.normal(0.0, 1.0, n_ref)
    window = rng.normal(shift, 1.0, n_cur)
    if discrete:
        reference, window = np.floor(reference * 20), np.floor(window * 20)
    expected = sps.ks_2samp(reference, window)
    assert 1e-6 < expected.pvalue < 1.0
    statistic, p_value = _exact(reference, window, chunks=3)
    assert statistic == float(expected.statistic)
    assert p_value == pytest.approx(float(expected.pvalue), abs=TOLERANCE)


@pytest.mark.parametrize(("n1", "n2"), [(1, 1), (40, 40), (40, 9), (10_000, 10_000), (10_001, 9)])
def test_ks_2samp_test_follows_scipys_method_choice(n1: int, n2: int) -> None:
    rng = np.random.default_rng(n1 * n2)
    a, b = rng.normal(0, 1, n1), rng.normal(0.2, 1, n2)
    expected = sps.ks_2samp(a, b)
    statistic, p_value = ks_2samp_test(float(expected.statistic), n1, n2)
    assert statistic == pytest.approx(float(expected.statistic), abs=1e-15)
    assert p_value == pytest.approx(float(expected.pvalue), abs=TOLERANCE)


def test_run_check_uses_the_exact_ks_against_a_raw_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KS deciding, raw Parquet reference: the check's KS is scipy's on the full data; the
    reference is streamed in chunks (made small here), the window's column held sorted."""
    monkeypatch.setattr(exact_ks_module, "MIN_CHUNK", 5_000)
    rng = np.random.default_rng(3)
    reference = tmp_path / "reference"
    reference.mkdir()
    parts = [rng.normal(0.0, 1.0, 15_000) for _ in range(2)]
    for i, part in enumerate(parts):
        pq.write_table(pa.table({"x": part}), reference / f"part-{i}.parquet")
    window = rng.normal(0.02, 1.0, 12_000)
    logs = tmp_path / "logs"
    write_logs(logs, pa.table({"x": window[:6_000]}), NOW - timedelta(hours=2), "a")
    write_logs(logs, pa.table({"x": window[6_000:]}), NOW - timedelta(minutes=5), "b")
    spec = DriftMonitorSpec.model_validate(
        {"deploymentRef": {"name": "m"}, "window": "24h", "tests": {"numeric": "ks"}}
    )
    verdict, _ = run_check(spec, f"file://{logs}", f"file://{reference}", NOW)
    expected = sps.ks_2samp(np.concatenate(parts), window)
    (feature,) = verdict.features
    assert feature.test == "ks"
    assert feature.scores["ks_statistic"] == float(expected.statistic)
    assert feature.score == pytest.approx(float(expected.pvalue), abs=TOLERANCE)


def test_the_profile_of_a_raw_reference_is_cached_beside_it_until_the_data_changes(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "reference"
    folder.mkdir()
    pq.write_table(pa.table({"x": np.arange(100.0)}), folder / "part-0.parquet")
    assert load_reference(f"file://{folder}", None).numeric["x"].count == 100
    cache = folder / CACHE_NAME
    cached = json.loads(cache.read_text())
    cached["profile"]["numeric"]["x"]["count"] = 7  # marks what the next load reads
    cache.write_text(json.dumps(cached))
    assert load_reference(f"file://{folder}", None).numeric["x"].count == 7
    assert ds.dataset(folder, format="parquet").count_rows() == 100  # the cache is not data
    pq.write_table(pa.table({"x": np.arange(50.0)}), folder / "part-1.parquet")
    assert load_reference(f"file://{folder}", None).numeric["x"].count == 150
