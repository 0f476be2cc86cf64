"""Reference profile of a dataset: everything drift monitoring needs, so it never re-reads data.

The trainer calls `build_profile` on the training table and stores the dict as `profile.json`
in the model version folder; the monitor loads it with `load_profile`. Per numeric feature it
keeps a quantile sketch of the *whole* column (see below), a fine equal-width histogram (plots),
moments, min/max and the missing count. Per categorical feature it keeps the most frequent
categories with counts, the count of the rest ("other") and the missing count.

The numeric sketch: up to `POINTS` reference values ("points", sorted, distinct, always
including the minimum and the maximum) with, for each, the exact number of reference values
<= it (`pointsLe`) and == it (`pointsAt`), and the sum of the values strictly between each
point and the next (`insideSum`), all over every row. When a column has at most
`POINTS` distinct values every one of them is a point and the sketch *is* the column's ECDF;
otherwise half of the points sit at evenly spaced ranks and half at evenly spaced values, so at
most ~2 count/POINTS reference values and ~2/POINTS of the range lie between two neighbours.
The monitor derives everything numeric from it:

- PSI / Jensen-Shannon bins: their edges are points, so the reference count of every bin is
  exact (kubeloop.workloads.monitor.binning);
- Kolmogorov-Smirnov and Wasserstein: the reference ECDF is exact at every point and can only
  rise by the counted mass between two of them; the monitor turns that into a stated error
  bound (kubeloop.workloads.monitor.stats).

The profile is a few hundred KiB per numeric feature at most whatever the table size.
`ProfileBuilder` builds the same profile from record batches in two streaming passes, for
references too large to hold in memory: pass 1 draws a bounded random sample and the points are
chosen the same way (plus the exact minimum and maximum), pass 2 counts every
row at them, so the counts stay exact and only the spacing of the points is approximate.

The trainer adds the profile's `source` (kubeloop.profile_source: the files and the rows of
them it counted), so the monitor can compute what no sketch can hold, the exact KS p-value,
from the same rows again.

Profiles written before `kubeloop.profile/v2` kept a 10,000-value random sample instead of the
sketch; `load_profile` reads them with the sample as the reference (the old behaviour).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from kubeloop.profile_source import ProfileSource

__all__ = [
    "FINE_BINS",
    "MAX_CATEGORIES",
    "POINTS",
    "PROFILE_FORMAT",
    "SAMPLE_SIZE",
    "CategoricalProfile",
    "NumericProfile",
    "Profile",
    "ProfileBuilder",
    "build_profile",
    "build_profile_streaming",
    "categorical_values",
    "fine_bin",
    "load_profile",
    "numeric_values",
    "sketch_points",
]

PROFILE_FORMAT = "kubeloop.profile/v2"
OLD_FORMAT = "kubeloop.profile/v1"
# Points of the numeric sketch: at most ~2/10,000 of the reference (in mass and in range)
# between two neighbours.
POINTS = 10_000
FINE_BINS = 50
# Pass-1 sample of the streaming builder, from which the points are chosen: 20x the points
# keeps the reference mass between two neighbouring points within ~1.3/POINTS (order
# statistics of a uniform sample; the counts themselves are exact either way).
SAMPLE_SIZE = 20 * POINTS
MAX_CATEGORIES = 200
SEED = 20240601

FloatArray = npt.NDArray[np.float64]


def numeric_values(column: pa.ChunkedArray | pa.Array) -> tuple[FloatArray, int]:
    """(non-missing values as float64, missing count) of a column; NaN counts as missing."""
    values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    nan = np.isnan(values)
    if not nan.any():  # the usual case: no second copy
        return values, 0
    finite = values[~nan]
    return finite, int(values.size - finite.size)


def categorical_values(column: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, int]:
    """(non-missing values as strings, missing count) of a column."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    strings = pc.cast(column, pa.string())
    missing = strings.null_count
    return (pc.drop_null(strings) if missing else strings), int(missing)


def _count_categories(strings: pa.Array) -> dict[str, int]:
    counts = pc.value_counts(strings)
    return dict(
        zip(
            counts.field("values").to_pylist(),
            counts.field("counts").to_pylist(),
            strict=True,
        )
    )


def _count_dictionary(column: pa.DictionaryArray) -> tuple[dict[str, int], int]:
    """(count per value, missing count) of a dictionary column: counting its integer codes
    costs a fraction of decoding every string."""
    indices = column.indices
    missing = indices.null_count
    codes = pc.drop_null(indices) if missing else indices
    counts = np.bincount(
        np.asarray(codes.to_numpy(zero_copy_only=False), dtype=np.int64),
        minlength=len(column.dictionary),
    )
    entries = pc.cast(column.dictionary, pa.string()).to_pylist()
    found: dict[str, int] = {}
    for entry, count in zip(entries, counts.tolist(), strict=True):
        if not count:
            continue
        if entry is None:  # a null dictionary entry is a missing value too
            missing += count
        else:
            found[entry] = found.get(entry, 0) + count
    return found, int(missing)


@dataclass(frozen=True)
class NumericProfile:
    """Reference summary of one numeric feature (the sketch: see module docstring)."""

    name: str
    points: FloatArray  # sorted distinct reference values, min and max included
    le: FloatArray  # reference values <= each point, over every row
    lt: FloatArray  # reference values < each point, over every row
    inside_sum: FloatArray  # sum of the reference values strictly between each point and the next
    fine_edges: FloatArray  # FINE_BINS + 1 equal-width edges over [min, max]
    fine_counts: FloatArray  # rows per fine bin
    missing: int
    count: int  # non-missing rows
    mean: float
    std: float
    minimum: float
    maximum: float


@dataclass(frozen=True)
class CategoricalProfile:
    """Reference summary of one categorical feature."""

    name: str
    categories: dict[str, int]  # the MAX_CATEGORIES most frequent values and their counts
    other: int  # rows with any further value
    missing: int
    count: int  # non-missing rows


@dataclass(frozen=True)
class Profile:
    """A loaded reference profile."""

    rows: int
    numeric: dict[str, NumericProfile]
    categorical: dict[str, CategoricalProfile]
    # The data it was built from (kubeloop.profile_source); None in profiles written before
    # it was recorded, or unreadable.
    source: ProfileSource | None = None

    @property
    def features(self) -> list[str]:
        """Every profiled feature, numeric first."""
        return [*self.numeric, *self.categorical]


def sketch_points(ordered: FloatArray, limit: int = POINTS) -> FloatArray:
    """The sketch's points for sorted values: every distinct value when there are at most
    `limit`; else half of them at evenly spaced ranks and half at the values nearest to evenly
    spaced values over [min, max] (first and last included), so that neither the mass nor the
    width between two neighbouring points is large (the tails of a normal feature are wide in
    value and thin in mass)."""
    if ordered.size == 0:
        return np.empty(0)
    # Already sorted: distinct values without np.unique's sort.
    distinct: FloatArray = ordered[np.concatenate([[True], ordered[1:] != ordered[:-1]])]
    if distinct.size <= limit:
        return distinct.astype(np.float64)
    half = limit // 2
    ranks = np.round(np.linspace(0, ordered.size - 1, half)).astype(np.int64)
    grid = np.linspace(distinct[0], distinct[-1], limit - half)
    nearest = np.clip(np.searchsorted(distinct, grid), 0, distinct.size - 1)
    return np.unique(np.concatenate([ordered[ranks], distinct[nearest]])).astype(np.float64)


def _fine_edges(minimum: float, maximum: float) -> FloatArray:
    if not math.isfinite(minimum) or not math.isfinite(maximum):
        return np.empty(0)
    if maximum <= minimum:  # a constant feature still gets a bin around its one value
        maximum = minimum + max(abs(minimum), 1.0) * 1e-9
    return np.linspace(minimum, maximum, FINE_BINS + 1)


def fine_bin(values: FloatArray, fine_edges: FloatArray) -> npt.NDArray[np.intp]:
    """Fine-histogram bin of each value: 0 below min, 1..FINE_BINS inside, FINE_BINS+1 above.

    Inside bins are [e_i, e_i+1) with the last one closed, like numpy.histogram.
    """
    index = np.searchsorted(fine_edges, values, side="right")
    index[values == fine_edges[-1]] = fine_edges.size - 1
    return index


def fine_counts_sorted(ordered: FloatArray, fine_edges: FloatArray) -> FloatArray:
    """Counts of sorted values in the FINE_BINS + 2 bins of `fine_bin` (below, inside, above)."""
    n = ordered.size
    before = np.searchsorted(ordered, fine_edges, side="left")
    through_last = int(np.searchsorted(ordered, fine_edges[-1], side="right"))
    bounds = np.concatenate([[0], before[:-1], [through_last, n]])
    return np.diff(bounds).astype(np.float64)


class _NumericAccumulator:
    """Pass 1 state of one numeric feature: moments, min/max, missing count, reservoir sample."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.count = 0
        self.missing = 0
        self.total = 0.0
        self.total_sq = 0.0
        self.shift: float | None = None  # first value: moments about it keep precision
        self.minimum = math.inf
        self.maximum = -math.inf
        self.keys: FloatArray = np.empty(0)
        self.sample: FloatArray = np.empty(0)

    def add(self, values: FloatArray, missing: int, *, sample: bool = True) -> None:
        self.missing += missing
        if values.size == 0:
            return
        if self.shift is None:
            self.shift = float(values[0])
        centred = values - self.shift
        self.count += int(values.size)
        self.total += float(centred.sum())
        self.total_sq += float(np.dot(centred, centred))
        self.minimum = min(self.minimum, float(values.min()))
        self.maximum = max(self.maximum, float(values.max()))
        if not sample:
            return
        # Bottom-k of uniform random keys = a uniform sample without replacement, mergeable
        # across batches in O(k) memory.
        keys = self.rng.random(values.size)
        if values.size > SAMPLE_SIZE:
            part = np.argpartition(keys, SAMPLE_SIZE)[:SAMPLE_SIZE]
            keys, values = keys[part], values[part]
        keys = np.concatenate([self.keys, keys])
        values = np.concatenate([self.sample, values])
        if keys.size > SAMPLE_SIZE:
            part = np.argpartition(keys, SAMPLE_SIZE)[:SAMPLE_SIZE]
            keys, values = keys[part], values[part]
        self.keys, self.sample = keys, values

    def moments(self) -> tuple[float, float]:
        if self.count == 0 or self.shift is None:
            return math.nan, math.nan
        mean_c = self.total / self.count
        var = max(self.total_sq / self.count - mean_c * mean_c, 0.0)
        return self.shift + mean_c, math.sqrt(var)


class ProfileBuilder:
    """Builds a profile from record batches in two passes with memory bounded by the profile.

    Pass 1 (`add`) gathers moments, min/max, missing counts, category counts and a reservoir
    sample, from which the sketch's points are chosen. Pass 2 (`count`) counts every row at the
    points and into the fine bins. `exact_points` replaces the sample's choice of points by the
    column's own (when the whole column is in memory, as in `build_profile`).
    """

    def __init__(
        self, numeric: list[str], categorical: list[str], *, seed: int = SEED, sample: bool = True
    ) -> None:
        self.numeric = list(numeric)
        self.categorical = list(categorical)
        rng = np.random.default_rng(seed)
        self._num = {name: _NumericAccumulator(rng) for name in self.numeric}
        self._cat: dict[str, dict[str, int]] = {name: {} for name in self.categorical}
        self._cat_missing = dict.fromkeys(self.categorical, 0)
        self._points: dict[str, FloatArray] = {}
        self._le: dict[str, FloatArray] = {}
        self._lt: dict[str, FloatArray] = {}
        self._inside_sum: dict[str, FloatArray] = {}
        self._fine_counts: dict[str, FloatArray] = {}
        self._fine_edges: dict[str, FloatArray] = {}
        self.rows = 0
        self._passed_first = False
        # Without a sample (every column comes to `exact_points`) pass 1 costs no random keys.
        self._sampling = sample

    @property
    def columns(self) -> list[str]:
        """The columns the builder reads."""
        return [*self.numeric, *self.categorical]

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Pass 1: fold one batch into the moments, counts and sample."""
        self.rows += batch.num_rows
        for name in self.numeric:
            self.add_numeric(name, *numeric_values(batch.column(name)))
        for name in self.categorical:
            self.add_categorical(name, batch.column(name))

    def add_numeric(self, name: str, values: FloatArray, missing: int) -> None:
        """Pass 1 for one numeric feature's (non-missing) values."""
        self._num[name].add(values, missing, sample=self._sampling)

    def add_categorical(self, name: str, column: pa.ChunkedArray | pa.Array) -> None:
        """Pass 1 for one categorical feature's column."""
        counts = self._cat[name]
        chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
        for chunk in chunks:
            if pa.types.is_dictionary(chunk.type):
                found, missing = _count_dictionary(chunk)
            else:
                strings, missing = categorical_values(chunk)
                found = _count_categories(strings)
            self._cat_missing[name] += missing
            for key, value in found.items():
                counts[key] = counts.get(key, 0) + value

    def exact_points(self, name: str, ordered: FloatArray) -> None:
        """Take a feature's points from all of its (sorted) values instead of the sample
        (after its `add_numeric`, before any of its values is counted)."""
        self._points[name] = sketch_points(ordered)
        self._finish_numeric(name)

    def _finish_numeric(self, name: str) -> None:
        acc = self._num[name]
        if name not in self._points:
            # The sample's spacing, with the exact extremes so nothing lies outside.
            extremes = [acc.minimum, acc.maximum] if acc.count else []
            self._points[name] = sketch_points(np.sort(np.concatenate([acc.sample, extremes])))
        self._fine_edges[name] = _fine_edges(acc.minimum, acc.maximum)
        size = self._points[name].size
        self._le[name] = np.zeros(size)
        self._lt[name] = np.zeros(size)
        self._inside_sum[name] = np.zeros(max(size - 1, 0))
        self._fine_counts[name] = np.zeros(max(self._fine_edges[name].size - 1, 0))

    def _finish_first_pass(self) -> None:
        for name in self._num:
            if name not in self._le:
                self._finish_numeric(name)
        self._passed_first = True

    def count(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Pass 2: count one batch at the points and into the fine bins (after every `add`)."""
        if not self._passed_first:
            self._finish_first_pass()
        for name in self.numeric:
            values, _ = numeric_values(batch.column(name))
            if values.size == 0:
                continue
            self.count_sorted(name, np.sort(values))

    def count_sorted(self, name: str, ordered: FloatArray) -> None:
        """Pass 2 for one feature's sorted values (each value exactly once over all calls)."""
        if name not in self._le:
            self._finish_numeric(name)
        points = self._points[name]
        le = np.searchsorted(ordered, points, side="right")
        lt = np.searchsorted(ordered, points, side="left")
        self._le[name] += le
        self._lt[name] += lt
        # Sum of ordered[le[j] : lt[j + 1]] from prefix sums (prefix[k] = sum of the first k).
        prefix = np.empty(ordered.size + 1)
        prefix[0] = 0.0
        np.cumsum(ordered, out=prefix[1:])
        self._inside_sum[name] += prefix[lt[1:]] - prefix[le[:-1]]
        edges = self._fine_edges[name]
        if edges.size:
            # Pass-1 min/max bound every value, so only inside bins (1..FINE_BINS) are hit.
            self._fine_counts[name] += fine_counts_sorted(ordered, edges)[1:-1]

    def result(self) -> dict[str, Any]:
        """The JSON-serialisable profile (see module docstring)."""
        if not self._passed_first:
            self._finish_first_pass()
        numeric: dict[str, Any] = {}
        for name, acc in self._num.items():
            mean, std = acc.moments()
            le = self._le[name]
            numeric[name] = {
                "count": acc.count,
                "missing": acc.missing,
                "mean": _num(mean),
                "std": _num(std),
                "min": _num(acc.minimum),
                "max": _num(acc.maximum),
                "points": self._points[name].tolist(),
                "pointsLe": le.astype(np.int64).tolist(),
                # Mostly 1 on continuous data: the short column of the two.
                "pointsAt": (le - self._lt[name]).astype(np.int64).tolist(),
                "insideSum": self._inside_sum[name].tolist(),
                "fineEdges": self._fine_edges[name].tolist(),
                "fineCounts": self._fine_counts[name].astype(np.int64).tolist(),
            }
        categorical: dict[str, Any] = {}
        for name, counts in self._cat.items():
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            kept = dict(ranked[:MAX_CATEGORIES])
            categorical[name] = {
                "count": sum(counts.values()),
                "missing": self._cat_missing[name],
                "categories": kept,
                "other": sum(v for _, v in ranked[MAX_CATEGORIES:]),
            }
        return {
            "format": PROFILE_FORMAT,
            "rows": self.rows,
            "points": POINTS,
            "numeric": numeric,
            "categorical": categorical,
        }


def _num(value: float) -> float | None:
    return value if math.isfinite(value) else None


def build_profile(table: pa.Table, numeric: list[str], categorical: list[str]) -> dict[str, Any]:
    """Profile `table` for drift monitoring: a JSON-serialisable dict (see module docstring).

    `numeric` columns are cast to float64 (NaN and null are missing); `categorical` columns are
    compared as strings. The table is in memory, so each numeric column is sorted once and its
    points are chosen from all of its values (`sketch_points`). Deterministic.
    """
    absent = [name for name in [*numeric, *categorical] if name not in table.column_names]
    if absent:
        raise ValueError(f"cannot profile: columns {absent} are not in the table")
    builder = ProfileBuilder(numeric, categorical, sample=False)
    builder.rows = table.num_rows
    # One column at a time: decoded, sorted and counted once, then dropped.
    for name in numeric:
        values, missing = numeric_values(table.column(name))
        builder.add_numeric(name, values, missing)
        ordered = np.sort(values)
        del values
        builder.exact_points(name, ordered)
        builder.count_sorted(name, ordered)
    for name in categorical:
        builder.add_categorical(name, table.column(name))
    return builder.result()


def build_profile_streaming(
    batches: Callable[[], Iterable[pa.RecordBatch]], numeric: list[str], categorical: list[str]
) -> dict[str, Any]:
    """`build_profile` over a re-iterable source of record batches (two streaming passes)."""
    builder = ProfileBuilder(numeric, categorical)
    for batch in batches():
        builder.add(batch)
    for batch in batches():
        builder.count(batch)
    return builder.result()


def _array(values: Any) -> FloatArray:
    return np.asarray(values if values is not None else [], dtype=np.float64)


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _numeric(name: str, item: Mapping[str, Any], old: bool) -> NumericProfile:
    if old:
        # v1: a random sample stood for the reference; it still does, as before v2, its
        # counts scaled to the reference's so the missing share keeps its weight.
        sample = np.sort(_array(item["sample"]))
        count = int(item["count"])
        scale = count / sample.size if sample.size else 0.0
        points = np.unique(sample)
        le_at = np.searchsorted(sample, points, side="right")
        lt_at = np.searchsorted(sample, points, side="left")
        le, lt = le_at.astype(np.float64) * scale, lt_at.astype(np.float64) * scale
        prefix = np.concatenate([[0.0], np.cumsum(sample)])
        inside_sum = (prefix[lt_at[1:]] - prefix[le_at[:-1]]) * scale
    else:
        points = _array(item["points"])
        le = _array(item["pointsLe"])
        lt = le - _array(item["pointsAt"])
        inside_sum = _array(item["insideSum"])
        count = int(item["count"])
    return NumericProfile(
        name=name,
        points=points,
        le=le,
        lt=lt,
        inside_sum=inside_sum,
        fine_edges=_array(item["fineEdges"]),
        fine_counts=_array(item["fineCounts"]),
        missing=int(item["missing"]),
        count=count,
        mean=_float(item["mean"]),
        std=_float(item["std"]),
        minimum=_float(item["min"]),
        maximum=_float(item["max"]),
    )


def load_profile(data: Mapping[str, Any] | str | bytes) -> Profile:
    """Parse a profile dict or its JSON text into a `Profile`."""
    raw: Mapping[str, Any] = json.loads(data) if isinstance(data, str | bytes) else data
    if raw.get("format") not in (PROFILE_FORMAT, OLD_FORMAT):
        raise ValueError(f"not a Kubeloop profile (format {raw.get('format')!r})")
    old = raw.get("format") == OLD_FORMAT
    numeric = {name: _numeric(name, item, old) for name, item in raw.get("numeric", {}).items()}
    categorical = {
        name: CategoricalProfile(
            name=name,
            categories={str(k): int(v) for k, v in item["categories"].items()},
            other=int(item["other"]),
            missing=int(item["missing"]),
            count=int(item["count"]),
        )
        for name, item in raw.get("categorical", {}).items()
    }
    return Profile(
        rows=int(raw["rows"]), numeric=numeric, categorical=categorical, source=_source(raw)
    )


def _source(raw: Mapping[str, Any]) -> ProfileSource | None:
    """The profile's recorded source; a malformed one counts as none (the sketch still works)."""
    entry = raw.get("source")
    if not isinstance(entry, Mapping):
        return None
    try:
        return ProfileSource.from_dict(entry)
    except (KeyError, TypeError, ValueError):
        return None
