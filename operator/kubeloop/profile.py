"""Reference profile of a dataset: everything drift monitoring needs, so it never re-reads data.

The trainer calls `build_profile` on the training table and stores the dict as `profile.json`
in the model version folder; the monitor loads it with `load_profile`. Per numeric feature it
keeps reference-quantile bin edges with counts (PSI, Jensen-Shannon), a fine equal-width
histogram (Wasserstein, plots), moments, min/max, the missing count and a bounded, seeded
random sample (Kolmogorov-Smirnov). Per categorical feature it keeps the most frequent
categories with counts, the count of the rest ("other") and the missing count.

The profile is a few hundred KiB at most whatever the table size: the sample and the number of
categories are bounded. `ProfileBuilder` builds the same profile from record batches in two
streaming passes, for references too large to hold in memory.
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

__all__ = [
    "FINE_BINS",
    "MAX_CATEGORIES",
    "PROFILE_FORMAT",
    "QUANTILE_BINS",
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
    "quantile_bin",
]

PROFILE_FORMAT = "kubeloop.profile/v1"
# Ten reference-quantile bins: Evidently's and the credit-scoring literature's usual PSI size;
# few enough that sampling noise alone keeps PSI far below 0.2 from a few hundred rows on.
QUANTILE_BINS = 10
FINE_BINS = 50
SAMPLE_SIZE = 10_000
MAX_CATEGORIES = 200
SEED = 20240601

FloatArray = npt.NDArray[np.float64]


def numeric_values(column: pa.ChunkedArray | pa.Array) -> tuple[FloatArray, int]:
    """(non-missing values as float64, missing count) of a column; NaN counts as missing."""
    values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    finite = values[~np.isnan(values)]
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


@dataclass(frozen=True)
class NumericProfile:
    """Reference summary of one numeric feature."""

    name: str
    edges: FloatArray  # interior quantile edges; bins are (-inf, e0], (e0, e1], ..., (ek, inf)
    counts: FloatArray  # reference rows per quantile bin
    fine_edges: FloatArray  # FINE_BINS + 1 equal-width edges over [min, max]
    fine_counts: FloatArray  # rows per fine bin
    sample: FloatArray  # sorted bounded random sample of the non-missing values
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

    @property
    def features(self) -> list[str]:
        """Every profiled feature, numeric first."""
        return [*self.numeric, *self.categorical]


def quantile_bin(values: FloatArray, edges: FloatArray) -> npt.NDArray[np.intp]:
    """Bin index of each value for right-closed bins (-inf, e0], (e0, e1], ..., (ek, inf)."""
    return np.searchsorted(edges, values, side="left")


def _quantile_edges(values: FloatArray, bins: int) -> FloatArray:
    if values.size == 0:
        return np.empty(0)
    # Interior edges only; duplicates (discrete features) collapse so no bin is empty by design.
    inner = np.quantile(values, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    return np.unique(inner).astype(np.float64)


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

    def add(self, values: FloatArray, missing: int) -> None:
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
    sample; the quantile edges come from the sample (exact when the data fits in the sample).
    Pass 2 (`count`) counts every row into the quantile and fine bins. `build_profile` runs both
    passes over an in-memory table.
    """

    def __init__(self, numeric: list[str], categorical: list[str], *, seed: int = SEED) -> None:
        self.numeric = list(numeric)
        self.categorical = list(categorical)
        rng = np.random.default_rng(seed)
        self._num = {name: _NumericAccumulator(rng) for name in self.numeric}
        self._cat: dict[str, dict[str, int]] = {name: {} for name in self.categorical}
        self._cat_missing = dict.fromkeys(self.categorical, 0)
        self._bin_counts: dict[str, FloatArray] = {}
        self._fine_counts: dict[str, FloatArray] = {}
        self._edges: dict[str, FloatArray] = {}
        self._fine_edges: dict[str, FloatArray] = {}
        self.rows = 0
        self._passed_first = False

    @property
    def columns(self) -> list[str]:
        """The columns the builder reads."""
        return [*self.numeric, *self.categorical]

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Pass 1: fold one batch into the moments, counts and sample."""
        self.rows += batch.num_rows
        for name in self.numeric:
            self._num[name].add(*numeric_values(batch.column(name)))
        for name in self.categorical:
            strings, missing = categorical_values(batch.column(name))
            self._cat_missing[name] += missing
            counts = self._cat[name]
            for key, value in _count_categories(strings).items():
                counts[key] = counts.get(key, 0) + value

    def exact_edges(self, name: str, values: FloatArray) -> None:
        """Take quantile edges from all of a feature's values instead of the sample."""
        self._edges[name] = _quantile_edges(values, QUANTILE_BINS)

    def _finish_first_pass(self) -> None:
        for name, acc in self._num.items():
            if name not in self._edges:
                self._edges[name] = _quantile_edges(acc.sample, QUANTILE_BINS)
            self._fine_edges[name] = _fine_edges(acc.minimum, acc.maximum)
            self._bin_counts[name] = np.zeros(self._edges[name].size + 1)
            self._fine_counts[name] = np.zeros(max(self._fine_edges[name].size - 1, 0))
        self._passed_first = True

    def count(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Pass 2: count one batch into the quantile and fine bins (after every `add`)."""
        if not self._passed_first:
            self._finish_first_pass()
        for name in self.numeric:
            values, _ = numeric_values(batch.column(name))
            if values.size == 0:
                continue
            bins = self._bin_counts[name]
            bins += np.bincount(quantile_bin(values, self._edges[name]), minlength=bins.size)
            fine = self._fine_counts[name]
            # Pass-1 min/max bound every value, so only inside bins (1..FINE_BINS) are hit.
            index = fine_bin(values, self._fine_edges[name]) - 1
            fine += np.bincount(index, minlength=fine.size)[: fine.size]

    def result(self) -> dict[str, Any]:
        """The JSON-serialisable profile (see module docstring)."""
        if not self._passed_first:
            self._finish_first_pass()
        numeric: dict[str, Any] = {}
        for name, acc in self._num.items():
            mean, std = acc.moments()
            numeric[name] = {
                "count": acc.count,
                "missing": acc.missing,
                "mean": _num(mean),
                "std": _num(std),
                "min": _num(acc.minimum),
                "max": _num(acc.maximum),
                "edges": self._edges[name].tolist(),
                "counts": [int(c) for c in self._bin_counts[name]],
                "fineEdges": self._fine_edges[name].tolist(),
                "fineCounts": [int(c) for c in self._fine_counts[name]],
                "sample": np.sort(acc.sample).tolist(),
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
            "sampleSize": SAMPLE_SIZE,
            "numeric": numeric,
            "categorical": categorical,
        }


def _num(value: float) -> float | None:
    return value if math.isfinite(value) else None


def build_profile(table: pa.Table, numeric: list[str], categorical: list[str]) -> dict[str, Any]:
    """Profile `table` for drift monitoring: a JSON-serialisable dict (see module docstring).

    `numeric` columns are cast to float64 (NaN and null are missing); `categorical` columns are
    compared as strings. Deterministic: the sample is drawn with a fixed seed.
    """
    missing = [name for name in [*numeric, *categorical] if name not in table.column_names]
    if missing:
        raise ValueError(f"cannot profile: columns {missing} are not in the table")
    builder = ProfileBuilder(numeric, categorical)
    table = table.select(builder.columns)
    builder.add(table)
    # The table is in memory anyway: exact quantile edges give every bin its 1/QUANTILE_BINS.
    for name in numeric:
        builder.exact_edges(name, numeric_values(table.column(name))[0])
    builder.count(table)
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


def load_profile(data: Mapping[str, Any] | str | bytes) -> Profile:
    """Parse a profile dict or its JSON text into a `Profile`."""
    raw: Mapping[str, Any] = json.loads(data) if isinstance(data, str | bytes) else data
    if raw.get("format") != PROFILE_FORMAT:
        raise ValueError(f"not a Kubeloop profile (format {raw.get('format')!r})")
    numeric = {
        name: NumericProfile(
            name=name,
            edges=_array(item["edges"]),
            counts=_array(item["counts"]),
            fine_edges=_array(item["fineEdges"]),
            fine_counts=_array(item["fineCounts"]),
            sample=np.sort(_array(item["sample"])),
            missing=int(item["missing"]),
            count=int(item["count"]),
            mean=_float(item["mean"]),
            std=_float(item["std"]),
            minimum=_float(item["min"]),
            maximum=_float(item["max"]),
        )
        for name, item in raw.get("numeric", {}).items()
    }
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
    return Profile(rows=int(raw["rows"]), numeric=numeric, categorical=categorical)
