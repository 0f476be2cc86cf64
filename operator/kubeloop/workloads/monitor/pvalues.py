"""p-values of the chi² and two-sided Kolmogorov-Smirnov tests, with numpy and `math` only.

`scipy.stats` takes about a second of CPU to import, a third of a whole 1M-row drift check; the
monitor needs two of its survival functions, so they are computed here. Both agree with scipy
(`chi2.sf`, `kstwo.sf`) to well within 1e-9 (tests/workloads/monitor/test_pvalues.py).

- chi²: the regularised upper incomplete gamma function Q(dof/2, x/2), by its power series
  below the mean and its continued fraction above it (Abramowitz & Stegun 6.5.29 and 6.5.31).
- Kolmogorov-Smirnov: the distribution of the one-sample two-sided statistic D_n, computed the
  way Simard & L'Ecuyer recommend ("Computing the Two-Sided Kolmogorov-Smirnov Distribution",
  J. Stat. Software 39(11), 2011), which is also how scipy chooses: exact formulas in the two
  tails (Ruben & Gambino), twice the exact one-sided probability (Birnbaum & Tingey; Miller)
  where the two one-sided events cannot both happen or hardly can, the Durbin matrix
  (Marsaglia, Tsang & Wang 2003) in the body for small n or small d, and the Pelz-Good
  asymptotic series for large n.
- The two-sample KS test (`ks_2samp_test`) follows `scipy.stats.ks_2samp(method="auto")`
  step by step: when both samples hold at most MAX_EXACT_N values, the exact distribution of
  the two-sample statistic (Hodges' lattice-path counts, as scipy's `_compute_prob_outside_square`
  for equal sizes and `_compute_outer_prob_inside_method` otherwise), falling back as scipy does
  when that fails; above it the one-sample distribution at the effective size n*m/(n+m) above.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["MAX_EXACT_N", "chi2_sf", "kolmogorov_smirnov_sf", "ks_2samp_test"]

_EPS = 1e-16
_TINY = 1e-300
_MAX_TERMS = 100_000


def _gamma_prefactor(a: float, x: float) -> float:
    """x^a e^-x / Gamma(a), computed in logs."""
    return math.exp(a * math.log(x) - x - math.lgamma(a))


def _lower_gamma_series(a: float, x: float) -> float:
    """P(a, x) by its power series; converges fast for x < a + 1."""
    term = total = 1.0 / a
    for n in range(1, _MAX_TERMS):
        term *= x / (a + n)
        total += term
        if abs(term) < abs(total) * _EPS:
            break
    return total * _gamma_prefactor(a, x)


def _upper_gamma_fraction(a: float, x: float) -> float:
    """Q(a, x) by its continued fraction (modified Lentz); converges fast for x >= a + 1."""
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_TERMS):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = _TINY if abs(d) < _TINY else d
        c = b + an / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return h * _gamma_prefactor(a, x)


def chi2_sf(x: float, dof: float) -> float:
    """P(X >= x) for X ~ chi²(dof): what `scipy.stats.chi2.sf(x, dof)` returns."""
    if dof <= 0:
        raise ValueError(f"chi2 degrees of freedom must be positive, got {dof}")
    if not x > 0:  # 0, negative or NaN statistic: no evidence at all
        return 1.0
    if math.isinf(x):
        return 0.0
    a, half = dof / 2.0, x / 2.0
    if half < a + 1.0:
        return min(max(1.0 - _lower_gamma_series(a, half), 0.0), 1.0)
    return min(max(_upper_gamma_fraction(a, half), 0.0), 1.0)


def _log_factorial_over_power(n: int) -> float:
    """log(n! / n^n)."""
    return math.lgamma(n + 1.0) - n * math.log(n)


def _smirnov_sf(n: int, d: float) -> float:
    """P(D+_n >= d), the one-sided statistic, by Birnbaum & Tingey's sum (exact)."""
    if d <= 0.0:
        return 1.0
    if d >= 1.0:
        return 0.0
    last = math.floor(n * (1.0 - d) + 1e-9)
    j = np.arange(0, last + 1, dtype=np.float64)
    p = d + j / n
    rest = 1.0 - p
    # log C(n, j), accumulated: exact to a few ulps per term over the whole range of j.
    log_choose = np.concatenate([[0.0], np.cumsum(np.log((n - j[1:] + 1.0) / j[1:]))])
    with np.errstate(divide="ignore"):
        log_rest = np.where(rest > 0, (n - j) * np.log(np.where(rest > 0, rest, 1.0)), 0.0)
    log_terms = log_choose + (j - 1.0) * np.log(p) + log_rest
    # 0^0 = 1 (j == n with rest == 0); a zero base with a positive power contributes nothing.
    alive = (rest > 0) | (n - j == 0)
    total = float(np.sum(np.exp(log_terms[alive])))
    return min(max(d * total, 0.0), 1.0)


def _durbin_cdf(n: int, d: float) -> float:
    """P(D_n < d) by the Durbin matrix: n!/n^n times one entry of H^n (exact)."""
    k = int(n * d) + 1
    m = 2 * k - 1
    h = k - n * d
    i = np.arange(m)
    diff = i[:, None] - i[None, :] + 1  # H[i, j] is nonzero where i - j + 1 >= 0
    matrix = (diff >= 0).astype(np.float64)
    powers = h ** np.arange(1, m + 1, dtype=np.float64)
    matrix[:, 0] -= powers
    matrix[m - 1, :] -= powers[::-1]
    if 2.0 * h - 1.0 > 0.0:
        matrix[m - 1, 0] += (2.0 * h - 1.0) ** m
    factorial = np.array([math.lgamma(v + 1.0) for v in range(m + 1)])
    matrix = np.where(diff > 0, matrix / np.exp(factorial[np.clip(diff, 0, m)]), matrix)
    # H^n by squaring, kept in range by pulling powers of two out into `exponent`.
    result = np.eye(m)
    exponent = 0
    base, base_exponent = matrix, 0
    power = n
    while power:
        if power & 1:
            result = result @ base
            exponent += base_exponent
            result, exponent = _rescale(result, exponent)
        power >>= 1
        if power:
            base = base @ base
            base_exponent *= 2
            base, base_exponent = _rescale(base, base_exponent)
    entry = float(result[k - 1, k - 1])
    if entry <= 0.0:
        return 0.0
    log_p = math.log(entry) + exponent * math.log(2.0) + _log_factorial_over_power(n)
    return min(max(math.exp(log_p), 0.0), 1.0)


def _rescale(matrix: npt.NDArray[np.float64], exponent: int) -> tuple[npt.NDArray[np.float64], int]:
    """(matrix / 2^s, exponent + s) with the largest entry brought near 1 when far from it."""
    largest = float(np.abs(matrix).max())
    if largest == 0.0 or 1e-100 < largest < 1e100:
        return matrix, exponent
    shift = math.frexp(largest)[1]
    return np.ldexp(matrix, -shift), exponent + shift


def _pelz_good_cdf(n: int, d: float) -> float:
    """P(D_n <= d) by the Pelz-Good series K0 + K1/sqrt(n) + K2/n + K3/n^(3/2) in z = d sqrt(n)."""
    z = d * math.sqrt(n)
    pi2 = math.pi**2
    if pi2 / (8.0 * z * z) > 708.0:  # every term underflows: the CDF is 0 to double precision
        return 0.0
    terms = math.ceil(16.0 * z / math.pi) + 1
    k = np.arange(1, terms + 1, dtype=np.float64)
    half = (k - 0.5) ** 2 * pi2  # pi² (k - 1/2)²
    odd = np.exp(-half / (2.0 * z * z))
    z2, z4, z6 = z * z, z**4, z**6
    root = math.sqrt(math.pi / 2.0)
    k0 = math.sqrt(2.0 * math.pi) / z * float(odd.sum())
    k1 = root / (3.0 * z4) * float(np.sum((half - z2) * odd))
    k2_odd = (6.0 * z6 + 2.0 * z4) + (2.0 * z4 - 5.0 * z2) * half + (1.0 - 2.0 * z2) * half**2
    whole = k**2 * pi2  # pi² k²
    even = np.exp(-whole / (2.0 * z * z))
    k2 = root / (36.0 * z**7) * float(np.sum(k2_odd * odd)) - root / (36.0 * z**3) * 2.0 * float(
        np.sum(whole * even)
    )
    k3_odd = (
        (5.0 - 30.0 * z2) * half**3
        + (212.0 * z4 - 60.0 * z2) * half**2
        + (135.0 * z4 - 96.0 * z6) * half
        - (30.0 * z6 + 90.0 * z**8)
    )
    k3 = root / (3240.0 * z**10) * float(np.sum(k3_odd * odd)) + root / (108.0 * z**6) * float(
        np.sum((3.0 * z2 - whole) * whole * even)
    )
    cdf = float(k0 + k1 / math.sqrt(n) + k2 / n + k3 / n**1.5)
    return min(max(cdf, 0.0), 1.0)


def kolmogorov_smirnov_sf(d: float, n: int) -> float:
    """P(D_n >= d) for the two-sided one-sample statistic: `scipy.stats.kstwo.sf(d, n)`."""
    if n < 1:
        raise ValueError(f"the KS sample size must be at least 1, got {n}")
    if d >= 1.0:
        return 0.0
    if d <= 0.0:
        return 1.0
    t = n * d
    if t <= 0.5:
        return 1.0
    if t <= 1.0:  # Ruben & Gambino, exact
        return 1.0 - math.exp(_log_factorial_over_power(n) + n * math.log(2.0 * t - 1.0))
    if t >= n - 1:  # Ruben & Gambino, exact
        return min(2.0 * (1.0 - d) ** n, 1.0)
    if d >= 0.5:  # the two one-sided events are disjoint: exact
        return min(2.0 * _smirnov_sf(n, d), 1.0)
    nd2 = t * d
    if n <= 140:
        if nd2 <= 4.0:
            return 1.0 - _durbin_cdf(n, d)
        return min(2.0 * _smirnov_sf(n, d), 1.0)  # Miller: the overlap is below 1e-13
    if nd2 >= 370.0:
        return 0.0
    if nd2 >= 2.2:
        return min(2.0 * _smirnov_sf(n, d), 1.0)
    if n <= 100_000 and n * d**1.5 <= 1.4:
        return 1.0 - _durbin_cdf(n, d)
    return 1.0 - _pelz_good_cdf(n, d)


# scipy.stats.ks_2samp(method="auto") is exact up to this many values in the larger sample.
MAX_EXACT_N = 10_000


def _prob_outside_square(n: int, h: int) -> float:
    """P(D_{n,n} >= h/n): scipy's `_compute_prob_outside_square` (Horner-like alternating sum)."""
    total = 0.0
    k = n // h
    while k >= 0:
        term = 1.0
        for j in range(h):
            term = (n - k * h - j) * term / (n + k * h + j + 1)
        total = term * (1.0 - total)
        k -= 1
    return 2 * total


def _outer_prob_inside(m: int, n: int, g: int, h: int) -> float:
    """1 - P(every lattice path stays inside |x/m - y/n| < h/lcm): scipy's
    `_compute_outer_prob_inside_method` (Hodges' inside method for 1 - p, Viehmann 2021)."""
    if m < n:
        m, n = n, m
    mg, ng = m // g, n // g
    minj, maxj = 0, min(math.ceil(h / mg), n + 1)
    curlen = maxj - minj
    column = np.ones(min(2 * maxj + 2, n + 1))
    column[minj:maxj] = 0.0
    values = column.tolist()  # Python floats: the same IEEE arithmetic, without numpy's overhead
    for i in range(1, m + 1):
        lastminj, lastlen = minj, curlen
        minj = min(max(math.floor((ng * i - h) / mg) + 1, 0), n)
        maxj = min(math.ceil((ng * i + h) / mg), n + 1)
        if maxj <= minj:
            return 1.0
        val = 0.0 if minj == 0 else 1.0
        for jj in range(maxj - minj):
            j = jj + minj
            val = (values[jj + minj - lastminj] * i + val * j) / (i + j)
            values[jj] = val
        curlen = maxj - minj
        if lastlen > curlen:
            for k in range(maxj - minj, min(maxj - minj + lastlen - curlen, len(values))):
                values[k] = 1.0
    return float(values[maxj - minj - 1])


def ks_2samp_test(d: float, n1: int, n2: int) -> tuple[float, float]:
    """(statistic, p-value) of the two-sided two-sample KS test with statistic `d` on samples of
    `n1` and `n2` values, as `scipy.stats.ks_2samp(method="auto")` reports them (in its exact
    regime the statistic is rounded to the lattice, h / lcm(n1, n2), as scipy does)."""
    if n1 < 1 or n2 < 1:
        raise ValueError(f"the KS sample sizes must be at least 1, got {n1} and {n2}")
    if max(n1, n2) <= MAX_EXACT_N:
        g = math.gcd(n1, n2)
        lcm = (n1 // g) * n2
        h = int(np.round(d * lcm))
        exact_d = h * 1.0 / lcm
        if h == 0:
            return exact_d, 1.0
        prob = _prob_outside_square(n1, h) if n1 == n2 else _outer_prob_inside(n1, n2, g, h)
        if math.isfinite(prob) and 0.0 <= prob <= 1.0:
            return exact_d, prob
        d = exact_d  # scipy goes on to the asymptotic method with the rounded statistic
    m, n = sorted([float(n1), float(n2)], reverse=True)
    effective = int(np.round(m * n / (m + n)))
    return d, min(max(kolmogorov_smirnov_sf(d, effective), 0.0), 1.0)
