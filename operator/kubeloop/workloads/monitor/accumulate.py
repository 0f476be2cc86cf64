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
    categorical_values,
    fine_bin,
    numeric_values,
    quantile_bin,
)

__all__ = ["CategoricalAccumulator", "NumericAccumulator"]


@dataclass
class NumericAccumulator:
    """Current-window counts of one numeric feature against its reference profile."""

    ref: NumericProfile
    points: FloatArray = field(init=False)  # distinct reference sample values, sorted
    ref_le: FloatArray = field(init=False)  # reference sample values <= each point
    # current values v with points[j-1] < v <= points[j]; the last slot: above every point
    at_or_before: FloatArray = field(init=False)
    equal: FloatArray = field(init=False)  # current values == points[j]
    bins: FloatArray = field(init=False)  # current rows per reference quantile bin
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
        self.points = np.unique(self.ref.sample)
        self.ref_le = np.searchsorted(self.ref.sample, self.points, side="right").astype(float)
        self.at_or_before = np.zeros(self.points.size + 1)
        self.equal = np.zeros(self.points.size)
        self.bins = np.zeros(self.ref.counts.size)
        self.fine = np.zeros(self.ref.fine_edges.size + 1)

    def add(self, column: pa.Array | pa.ChunkedArray) -> None:
        """Fold one batch of the feature's column into the counts."""
        values, missing = numeric_values(column)
        self.missing += missing
        if values.size == 0:
            return
        self.count += int(values.size)
        self.total += float(values.sum())
        self.minimum = min(self.minimum, float(values.min()))
        self.maximum = max(self.maximum, float(values.max()))
        k = self.points.size
        if k:
            # index[v] = number of points < v, so v <= points[j] exactly when index[v] <= j.
            index = np.searchsorted(self.points, values, side="left")
            self.at_or_before += np.bincount(index, minlength=k + 1)
            hit = index < k
            hit[hit] = self.points[index[hit]] == values[hit]
            self.equal += np.bincount(index[hit], minlength=k)
            low = values < self.points[0]
            self.below_sum += float(values[low].sum())
            high = index == k
            self.above_sum += float(values[high].sum())
            self.above_count += int(high.sum())
        if self.bins.size:
            self.bins += np.bincount(quantile_bin(values, self.ref.edges), minlength=self.bins.size)
        if self.ref.fine_edges.size:
            self.fine += np.bincount(
                fine_bin(values, self.ref.fine_edges), minlength=self.fine.size
            )

    def cur_le(self) -> FloatArray:
        """Current values <= each reference point."""
        cumulative: FloatArray = np.cumsum(self.at_or_before)[:-1]
        return cumulative

    def cur_lt(self) -> FloatArray:
        """Current values < each reference point."""
        return self.cur_le() - self.equal


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
        strings, missing = categorical_values(column)
        self.missing += missing
        if len(strings) == 0:
            return
        index = pc.index_in(strings, value_set=self._value_set)
        # Values the profile does not list land in the last slot ("unseen" / reference other).
        filled = pc.fill_null(index, len(self.keys)).to_numpy(zero_copy_only=False)
        self.counts += np.bincount(filled, minlength=self.counts.size)

    @property
    def unseen(self) -> int:
        """Current rows whose value is not among the profile's categories."""
        return int(self.counts[-1])

    @property
    def count(self) -> int:
        """Current non-missing rows."""
        return int(self.counts.sum())
