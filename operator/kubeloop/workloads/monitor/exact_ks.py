"""The two-sample Kolmogorov-Smirnov test computed exactly against the full reference data.

The profile's sketch (kubeloop.profile) gives the KS statistic within a stated bound, and at
millions of rows a 1e-5 error of the statistic moves a mid-range p-value by ~0.01. So the
deciding KS test is computed from the reference data itself (a raw Parquet reference, or the
rows a profile was built from: kubeloop.workloads.monitor.exact_reference), one numeric
feature at a time, with memory bounded by the window's column:

- the window's values of the feature are read (time-filtered, as the check reads them) and
  sorted: m float64 values;
- the reference column is streamed in chunks of at least m rows (never the whole column unless
  it is that small); each chunk is sorted and, for every window value w, the chunk's values
  < w and <= w are counted (`np.searchsorted` of the sorted window into the sorted chunk) and
  added up: after the last chunk both ECDFs are known exactly at every window value and just
  before it;
- between two neighbouring window values the window's ECDF is flat and the reference's only
  rises, so the largest gap over the union of both samples is at a window value or just before
  one: sup |F_ref - F_win| exactly, the same float operations as `scipy.stats.ks_2samp`
  (counts divided by the sizes, then subtracted), hence the same statistic bit for bit;
- its p-value as scipy's `method="auto"` (kubeloop.workloads.monitor.pvalues.ks_2samp_test).

Peak memory: the sorted window column, one reference chunk of the same size and the two count
arrays, ~5 x 8 bytes x m (at 10M window rows, ~400 MB), whatever the reference's size.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

import numpy as np
import numpy.typing as npt
import pyarrow.dataset as ds

from kubeloop.profile import numeric_values
from kubeloop.workloads.monitor.pvalues import ks_2samp_test
from kubeloop.workloads.monitor.stats import KSResult
from kubeloop.workloads.monitor.window import window_batches

__all__ = ["MIN_CHUNK", "ExactKS", "dataset_values", "exact_ks"]

FloatArray = npt.NDArray[np.float64]
# Reference rows sorted and counted at once, at the least (more when the window is larger).
MIN_CHUNK = 1 << 20


class ExactKS:
    """Counts of reference values < and <= each (sorted) window value, over streamed chunks."""

    def __init__(self, window_sorted: FloatArray) -> None:
        self.window = window_sorted
        self.below = np.zeros(window_sorted.size, dtype=np.int64)  # reference values < w
        self.through = np.zeros(window_sorted.size, dtype=np.int64)  # reference values <= w
        self.n_ref = 0

    def add_reference(self, values: FloatArray) -> None:
        """Count one chunk of reference values (any order, no missing values)."""
        if values.size == 0:
            return
        ordered = np.sort(values)
        self.below += np.searchsorted(ordered, self.window, side="left")
        self.through += np.searchsorted(ordered, self.window, side="right")
        self.n_ref += int(ordered.size)

    def result(self) -> KSResult:
        """The exact statistic and scipy's p-value for it (bound 0)."""
        m, n = int(self.window.size), self.n_ref
        if m == 0 or n == 0:
            return KSResult(0.0, 1.0, 0.0)
        win_le = np.searchsorted(self.window, self.window, side="right")
        win_lt = np.searchsorted(self.window, self.window, side="left")
        at = np.abs(self.through / n - win_le / m).max()
        before = np.abs(self.below / n - win_lt / m).max()
        statistic, p_value = ks_2samp_test(float(max(at, before)), n, m)
        return KSResult(statistic, p_value, 0.0)


def dataset_values(reference: ds.Dataset, name: str) -> Iterator[FloatArray]:
    """The non-missing values of column `name` of a raw reference dataset, in batches."""
    for batch in reference.to_batches(columns=[name], batch_size=128 * 1024, batch_readahead=1):
        yield numeric_values(batch.column(name))[0]


def exact_ks(
    window: ds.Dataset,
    reference: Iterable[FloatArray],
    name: str,
    start: datetime,
    end: datetime,
) -> KSResult:
    """The exact KS test of feature `name` between the window's rows in [start, end] and every
    reference value (non-missing, in any number of arrays: see module docstring)."""
    batches = window_batches(window, [name], start, end)
    parts = [numeric_values(batch.column(name))[0] for batch in batches]
    values = np.concatenate(parts) if parts else np.empty(0)
    del parts
    test = ExactKS(np.sort(values))
    del values
    chunk_rows = max(test.window.size, MIN_CHUNK)
    pending: list[FloatArray] = []
    held = 0
    for values in reference:
        pending.append(values)
        held += values.size
        if held >= chunk_rows:
            test.add_reference(np.concatenate(pending))
            pending, held = [], 0
    if pending:
        test.add_reference(np.concatenate(pending))
    return test.result()
