"""Fixed-size accumulators: each current-window batch is folded into counts and dropped.

Their size depends only on the reference profile (bins, sample points, categories), so a window
of ten million rows takes as much memory as one of a thousand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kubeloop.profile import (
    CategoricalProfile,
    FloatArray,
    NumericProfile,
    Profile,
    categorical_values,
    fine_counts_sorted,
    numeric_values,
)

__all__ = ["CategoricalAccumulator", "NumericAccumulator", "accumulators_for"]


@dataclass
class NumericAccumulator:
    """Current-window counts of one numeric feature at its reference sketch's points.

    Each batch is sorted once; every count is then a binary search of the (at most POINTS)
    reference points into the sorted batch, which is several times faster than searching each
    value among the points and gives the same counts. The PSI / Jensen-Shannon bins are unions
    of the intervals between points (kubeloop.workloads.monitor.binning), so they need no
    counts of their own.
    """

    ref: NumericProfile
    le: FloatArray = field(init=False)  # current values <= each point
    lt: FloatArray = field(init=False)  # current values < each point
    # Sum of the current values strictly between each point and the next (Wasserstein).
    inside_sum: FloatArray = field(init=False)
    fine: FloatArray = field(init=False)  # below, FINE_BINS inside, above the reference range
    count: int = 0
    missing: int = 0
    below_sum: float = 0.0  # sum of current values below points[0]
    above_sum: float = 0.0  # sum of current values above points[-1]
    above_count: int = 0
    total: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf

    def __post_init__(self) -> None:
        self.le = np.zeros(self.points.size)
        self.lt = np.zeros(self.points.size)
        self.inside_sum = np.zeros(max(self.points.size - 1, 0))
        self.fine = np.zeros(self.ref.fine_edges.size + 1)

    @property
    def points(self) -> FloatArray:
        """The reference sketch's points (sorted, distinct)."""
        return self.ref.points

    def add(self, column: pa.Array | pa.ChunkedArray) -> None:
        """Fold one batch of the feature's column into the counts."""
        values, missing = numeric_values(column)
        self.missing += missing
        n = int(values.size)
        if n == 0:
            return
        ordered = np.sort(values)
        self.count += n
        self.total += float(ordered.sum())
        self.minimum = min(self.minimum, float(ordered[0]))
        self.maximum = max(self.maximum, float(ordered[-1]))
        if self.points.size:
            le = np.searchsorted(ordered, self.points, side="right")
            lt = np.searchsorted(ordered, self.points, side="left")
            self.le += le
            self.lt += lt
            prefix = np.empty(n + 1)  # prefix[k]: sum of the k smallest values of the batch
            prefix[0] = 0.0
            np.cumsum(ordered, out=prefix[1:])
            self.inside_sum += prefix[lt[1:]] - prefix[le[:-1]]
            self.below_sum += float(ordered[: lt[0]].sum())
            self.above_sum += float(ordered[le[-1] :].sum())
            self.above_count += n - int(le[-1])
        if self.ref.fine_edges.size:
            self.fine += fine_counts_sorted(ordered, self.ref.fine_edges)


@dataclass
class CategoricalAccumulator:
    """Current-window counts of one categorical feature over the reference's categories."""

    ref: CategoricalProfile
    keys: list[str] = field(init=False)
    counts: FloatArray = field(init=False)  # per reference category, then "unseen"
    missing: int = 0
    _value_set: pa.Array = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.keys = list(self.ref.categories)
        self._value_set = pa.array(self.keys, type=pa.string())
        self.counts = np.zeros(len(self.keys) + 1)

    def add(self, column: pa.Array | pa.ChunkedArray) -> None:
        """Fold one batch of the feature's column into the counts."""
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if pa.types.is_dictionary(column.type):
            self._add_dictionary(column)
            return
        strings, missing = categorical_values(column)
        self.missing += missing
        if len(strings) == 0:
            return
        index = pc.index_in(strings, value_set=self._value_set)
        # Values the profile does not list land in the last slot ("unseen" / reference other).
        filled = pc.fill_null(index, len(self.keys)).to_numpy(zero_copy_only=False)
        self.counts += np.bincount(filled, minlength=self.counts.size)

    def _add_dictionary(self, column: pa.DictionaryArray) -> None:
        # Map each dictionary entry once to its slot (null entries to a missing slot), then
        # count the integer codes.
        k = len(self.keys)
        entries = pc.cast(column.dictionary, pa.string())
        slots = pc.index_in(entries, value_set=self._value_set).to_numpy(zero_copy_only=False)
        slots = np.where(np.isnan(slots.astype(float)), k, slots).astype(np.int64)
        slots[np.asarray(pc.is_null(entries).to_numpy(zero_copy_only=False), bool)] = k + 1
        indices = column.indices
        self.missing += indices.null_count
        codes = pc.drop_null(indices) if indices.null_count else indices
        counts = np.bincount(slots[codes.to_numpy(zero_copy_only=False)], minlength=k + 2)
        self.counts += counts[: k + 1]
        self.missing += int(counts[k + 1])

    @property
    def unseen(self) -> int:
        """Current rows whose value is not among the profile's categories."""
        return int(self.counts[-1])

    @property
    def count(self) -> int:
        """Current non-missing rows."""
        return int(self.counts.sum())


def accumulators_for(
    profile: Profile,
) -> dict[str, NumericAccumulator | CategoricalAccumulator]:
    """One empty accumulator per feature of `profile`, numeric first."""
    return {
        **{name: NumericAccumulator(p) for name, p in profile.numeric.items()},
        **{name: CategoricalAccumulator(p) for name, p in profile.categorical.items()},
    }
