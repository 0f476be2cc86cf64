"""Fixed-size accumulators: each current-window batch is folded into counts and dropped.

Their size depends only on the reference profile (bins, sample points, categories), so a window
of ten million rows takes as much memory as one of a thousand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
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
from kubeloop.workloads.monitor.placement import GRID, MAX_PER_CELL, Grid, places, point_grid
from kubeloop.workloads.monitor.stats import KSResult

__all__ = [
    "GRID",
    "MAX_PER_CELL",
    "CategoricalAccumulator",
    "NumericAccumulator",
    "accumulators_for",
]

IntArray = npt.NDArray[np.int64]


@dataclass
class NumericAccumulator:
    """Current-window counts of one numeric feature at its reference sketch's points.

    Each value is placed among the (at most POINTS) reference points without sorting the
    batch: a table over GRID equal-width cells of the points' range gives how many points lie
    in the cells before the value's, and a few vectorised steps through the points of its own
    cell (at most MAX_PER_CELL) give its exact place; counts and sums per place are then
    bincounts. That is several times faster than sorting the batch, which is the fallback when
    the points crowd into a few cells (a range stretched by an extreme value), and gives the
    same counts. The PSI / Jensen-Shannon bins are unions of the intervals between points
    (kubeloop.workloads.monitor.binning), so they need no counts of their own.
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
    # The KS test computed from the raw reference (kubeloop.workloads.monitor.exact_ks), which
    # then replaces the sketch's.
    exact_ks: KSResult | None = None

    _grid: Grid | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        self._grid = point_grid(self.points)
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
        self.count += n
        self.total += float(values.sum())
        self.minimum = min(self.minimum, float(values.min()))
        self.maximum = max(self.maximum, float(values.max()))
        if self._grid is not None:
            self._add_placed(values)
            return
        ordered = np.sort(values)
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

    def _add_placed(self, values: FloatArray) -> None:
        """The counts of `add`, from each value's place among the points (class docstring)."""
        assert self._grid is not None
        size = self.points.size
        below, at = places(values, self.points, self._grid)
        through = below + at  # points <= value
        # Values <= point j: those with fewer than j + 1 points below; < point j: likewise.
        self.le += np.cumsum(np.bincount(below, minlength=size + 1)[:size])
        self.lt += np.cumsum(np.bincount(through, minlength=size + 1)[:size])
        # Values on no point, summed per gap: [0] below the first, [size] above the last.
        gaps = np.bincount(through, weights=np.where(at, 0.0, values), minlength=size + 1)
        self.inside_sum += gaps[1:size]
        self.below_sum += float(gaps[0])
        self.above_sum += float(gaps[size])
        self.above_count += int(np.count_nonzero(below == size))
        if self.ref.fine_edges.size:
            bins = _fine_bins(values, self.ref.fine_edges)
            self.fine += np.bincount(bins, minlength=self.ref.fine_edges.size + 1)


def _fine_bins(values: FloatArray, edges: FloatArray) -> IntArray:
    """`kubeloop.profile.fine_bin` for equal-width `edges`, by arithmetic: a guess from the
    value's offset, moved to the exact bin by comparisons with its neighbouring edges."""
    size = edges.size
    width = (float(edges[-1]) - float(edges[0])) / (size - 1)
    with np.errstate(over="ignore", invalid="ignore"):  # far values: clipped to the ends
        guess = np.clip((values - edges[0]) / width, -1, size - 1)
    index: IntArray = guess.astype(np.int64) + 1  # edges <= value, up to rounding: 0 .. size
    above = np.concatenate([edges, [np.inf]])
    under = np.concatenate([[-np.inf], edges])
    for _ in range(2):
        index += above[index] <= values  # one more edge is <= the value
        index -= under[index] > values  # the last counted edge is above the value
    index[values == edges[-1]] = size - 1  # the last inside bin is closed
    return index


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
