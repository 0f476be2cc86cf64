"""The monitor's own chi² and Kolmogorov-Smirnov p-values against scipy's, across every regime.

kubeloop.workloads.monitor.pvalues replaces `scipy.stats.chi2.sf` and `scipy.stats.kstwo.sf`
(scipy.stats costs a second to import). The grids below cross each method's boundary (the KS
distribution switches formula on n, n*d and n*d²), so a wrong branch or a wrong coefficient
shows up as a disagreement larger than 1e-9.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as sps

from kubeloop.workloads.monitor.pvalues import chi2_sf, kolmogorov_smirnov_sf

TOLERANCE = 1e-9


@pytest.mark.parametrize("dof", [1, 2, 3, 4, 7, 19, 50, 200, 1000, 20_000])
def test_chi2_sf_matches_scipy(dof: int) -> None:
    for share in [0, 1e-6, 1e-3, 0.1, 0.5, 0.9, 1.0, 1.05, 1.2, 1.5, 2, 3, 5, 10, 40]:
        x = dof * share
        assert chi2_sf(x, dof) == pytest.approx(float(sps.chi2.sf(x, dof)), abs=TOLERANCE), x


def test_chi2_sf_edges() -> None:
    assert chi2_sf(float("nan"), 3) == 1.0
    assert chi2_sf(float("inf"), 3) == 0.0
    with pytest.raises(ValueError, match="degrees of freedom"):
        chi2_sf(1.0, 0)


def _grid(n: int) -> np.ndarray:
    """d values across the regimes for sample size n, boundaries on both sides."""
    nd2 = np.array([0.1, 0.7, 0.75469, 0.7547, 1, 2, 2.19, 2.21, 3.9, 4.1, 10, 17, 18.5, 369, 371])
    ds = np.concatenate(
        [
            np.linspace(0.001, 0.999, 40),
            np.sqrt(nd2 / n),
            (1.4 / n) ** (2 / 3) * np.array([0.99, 1.01]),
            np.array([0.4, 0.5, 0.7, 1.0, 1.5]) / n,
            1 - np.array([1.0, 1.5]) / n,
        ]
    )
    return np.unique(ds[(ds > 0) & (ds < 1)])


@pytest.mark.parametrize(
    "n", [1, 2, 3, 5, 10, 60, 140, 141, 1_000, 3_000, 10_000, 100_000, 100_001, 250_000]
)
def test_kolmogorov_smirnov_sf_matches_scipy_kstwo(n: int) -> None:
    for d in _grid(n):
        ours = kolmogorov_smirnov_sf(float(d), n)
        assert ours == pytest.approx(float(sps.kstwo.sf(d, n)), abs=TOLERANCE), (n, d)


def test_kolmogorov_smirnov_sf_edges() -> None:
    assert kolmogorov_smirnov_sf(0.0, 10) == 1.0
    assert kolmogorov_smirnov_sf(1.0, 10) == 0.0
    with pytest.raises(ValueError, match="sample size"):
        kolmogorov_smirnov_sf(0.1, 0)


def test_the_monitor_does_not_import_scipy() -> None:
    # The point of the module: a drift check pays no scipy import.
    code = (
        "import sys, kubeloop.workloads.monitor.main, kubeloop.workloads.monitor.verdict;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
