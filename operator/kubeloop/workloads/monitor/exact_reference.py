"""The reference the exact KS test streams, or why there is none (then the sketch's KS stands).

With `tests.numeric: ks` the deciding test is computed from the full reference
(kubeloop.workloads.monitor.exact_ks), never silently from the profile's sketch:

- a **raw Parquet reference**: its rows, streamed;
- a **profile** (a version's profile.json): the rows it was built from, streamed again from the
  source it records (kubeloop.profile_source) when every recorded file is still there with the
  same size and content marker (ETag on S3, MD5 on file://); the trainer's selection of rows
  (missing targets dropped, the seeded validation hold-out left out) is reproduced, and must
  give the profile's row count. While each feature is streamed its values are counted at the
  sketch's points: only when those counts, the non-missing count and the missing count are the
  profile's own is the exact result used for that feature;
- otherwise (no recorded source: a profile written before it was recorded; files moved,
  changed or unreadable; a selection or count that does not match) the sketch's KS is used and
  the result says so: `ksReference` with `exact: false` and the reason, and `pValueExact: false`
  on each feature whose KS p-value is approximate.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from kubeloop.profile import NumericProfile, Profile, numeric_values
from kubeloop.profile_source import ProfileSource, md5_file
from kubeloop.storage import (
    FileStore,
    ObjectInfo,
    StorageError,
    arrow_filesystem,
    store_for,
)
from kubeloop.workloads.monitor.accumulate import CategoricalAccumulator, NumericAccumulator
from kubeloop.workloads.monitor.exact_ks import dataset_values, exact_ks
from kubeloop.workloads.monitor.reference import raw_reference

__all__ = [
    "ExactReference",
    "KSReference",
    "SketchCheck",
    "SourceRows",
    "current_files",
    "exact_ks_features",
    "open_exact_reference",
    "source_problem",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
BATCH_ROWS = 128 * 1024
MAX_REASON = 1000


@dataclass(frozen=True)
class KSReference:
    """What the deciding KS test was computed against (the result's `ksReference`)."""

    exact: bool
    source: Literal["parquet", "profileSource", "profile"]
    reason: str | None = None

    def as_result(self) -> dict[str, Any]:
        """The result JSON entry (docs/contracts.md)."""
        out: dict[str, Any] = {"exact": self.exact, "source": self.source}
        if self.reason:
            out["reason"] = self.reason[:MAX_REASON]
        return out


def source_problem(
    source: ProfileSource | None, found: Mapping[str, ObjectInfo] | None, error: str | None
) -> str | None:
    """Why the profile's recorded source cannot stand for its rows now; None when it can.

    `found`: the recorded files' URIs that exist now, with their current size and content
    marker; `error`: why they could not be looked at.
    """
    if source is None or not source.files:
        return "the profile records no source data (written before sources were recorded)"
    if error is not None or found is None:
        return f"its source data cannot be read: {error or 'not listed'}"
    for recorded in source.files:
        now = found.get(recorded.uri)
        if now is None:
            return f"source file {recorded.uri} is gone"
        if now.size != recorded.size:
            return f"source file {recorded.uri} changed ({recorded.size} -> {now.size} bytes)"
        if now.marker != recorded.marker:
            return f"source file {recorded.uri} changed (content marker differs)"
    return None


def _folder(uri: str) -> str:
    return uri[: uri.rfind("/") + 1]


def current_files(files: tuple[ObjectInfo, ...]) -> dict[str, ObjectInfo]:
    """The recorded `files` that exist now, by URI, with their current size and marker (one
    listing of their common folder; on file:// the MD5 of those whose size still matches)."""
    if not files:
        return {}
    prefix = _folder(files[0].uri)  # the deepest folder holding every file
    while not all(f.uri.startswith(prefix) for f in files):
        prefix = _folder(prefix[:-1])
    store = store_for(prefix)
    wanted = {f.uri: f for f in files}
    found = {o.uri: o for o in store.list(prefix) if o.uri in wanted}
    if isinstance(store, FileStore):
        for uri, info in found.items():
            if info.size == wanted[uri].size:
                found[uri] = ObjectInfo(uri, info.size, md5_file(FileStore.path(uri)))
    return found


class SketchCheck:
    """Counts of streamed reference values at a profile's points: equal to the profile's own
    counts means the values are (at every point) the ones it was built from."""

    def __init__(self, profile: NumericProfile) -> None:
        self.profile = profile
        self.le = np.zeros(profile.points.size)
        self.count = 0
        self.missing = 0

    def feed(self, values: FloatArray, missing: int) -> None:
        """Count one chunk of (non-missing) values and its missing count."""
        self.count += int(values.size)
        self.missing += missing
        points = self.profile.points
        if values.size and points.size:
            # A value v is <= points[j] exactly when fewer than j + 1 points are < v.
            below = np.searchsorted(points, values, side="left")
            self.le += np.cumsum(np.bincount(below, minlength=points.size + 1))[: points.size]

    def matches(self) -> bool:
        """Whether every count is the profile's."""
        ref = self.profile
        return (
            self.count == ref.count
            and self.missing == ref.missing
            and np.array_equal(self.le, ref.le)
        )


class SourceRows:
    """The rows of a profile's recorded source that it counted, streamed a column at a time.

    The trainer's selection is rebuilt once as a mask over all rows of the files in order:
    rows with a target dropped (read from the target column), then the seeded hold-out.
    """

    def __init__(self, source: ProfileSource) -> None:
        self.source = source
        self.filesystem, _ = arrow_filesystem(source.files[0].uri)
        self.paths = [arrow_filesystem(f.uri)[1] for f in source.files]
        self.keep = self._selection()
        self.selected = int(self.keep.sum()) if self.keep is not None else sum(self._file_rows())

    def _open(self, path: str) -> pq.ParquetFile:
        return pq.ParquetFile(self.filesystem.open_input_file(path))

    def _file_rows(self) -> list[int]:
        return [self._open(p).metadata.num_rows for p in self.paths]

    def _selection(self) -> BoolArray | None:
        target = self.source.target
        if target is None:
            return None
        parts: list[BoolArray] = []
        for path in self.paths:
            parquet = self._open(path)
            if target in parquet.schema_arrow.names:
                column = parquet.read(columns=[target]).column(target)
                valid = column.is_valid().to_numpy(zero_copy_only=False)
                parts.append(np.asarray(valid, dtype=bool))
            else:  # a file without the target column: every row's target is missing
                parts.append(np.zeros(parquet.metadata.num_rows, dtype=bool))
        keep = np.concatenate(parts) if parts else np.zeros(0, dtype=bool)
        seed, fraction = self.source.holdout_seed, self.source.holdout_fraction
        if seed is not None and fraction is not None:
            # The trainer's split (kubeloop.workloads.trainer.data.load_training_data).
            valid_rows = np.flatnonzero(keep)
            n = int(valid_rows.size)
            order = np.random.default_rng(seed).permutation(n)
            held = round(n * fraction)
            keep[:] = False
            keep[valid_rows[order[held:]]] = True
        return keep

    def values(self, name: str, check: SketchCheck | None = None) -> Iterator[FloatArray]:
        """The selected rows' non-missing values of column `name`, in chunks; `check` counts
        them (and the missing ones) as they pass."""
        offset = 0
        for path in self.paths:
            parquet = self._open(path)
            rows = parquet.metadata.num_rows
            if name not in parquet.schema_arrow.names:
                chosen = rows if self.keep is None else int(self.keep[offset : offset + rows].sum())
                if check is not None:
                    check.feed(np.empty(0), chosen)
                offset += rows
                continue
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=[name]):
                column: pa.Array = batch.column(0)
                if self.keep is not None:
                    column = column.filter(pa.array(self.keep[offset : offset + batch.num_rows]))
                offset += batch.num_rows
                values, missing = numeric_values(column)
                if check is not None:
                    check.feed(values, missing)
                yield values


@dataclass(frozen=True)
class ExactReference:
    """Where the exact KS reads the reference: a raw dataset, a profile's source rows, or
    nowhere (`reason` says why)."""

    kind: Literal["parquet", "profileSource", "profile"]
    dataset: ds.Dataset | None = None
    rows: SourceRows | None = None
    reason: str | None = None


def open_exact_reference(uri: str, profile: Profile) -> ExactReference:
    """The reference data for the exact KS of a check against `uri` (module docstring)."""
    raw = raw_reference(uri)
    if raw is not None:
        return ExactReference("parquet", dataset=raw)
    source = profile.source
    found: dict[str, ObjectInfo] | None = None
    error: str | None = None
    if source is not None and source.files:
        try:
            found = current_files(source.files)
        except (StorageError, OSError) as exc:
            error = str(exc)
    problem = source_problem(source, found, error)
    if problem is not None:
        return ExactReference("profile", reason=problem)
    assert source is not None
    try:
        rows = SourceRows(source)
    except (StorageError, OSError, pa.ArrowException) as exc:
        return ExactReference("profile", reason=f"its source data cannot be read: {exc}")
    if rows.selected != source.rows:
        return ExactReference(
            "profile",
            reason=f"the recorded selection of its source gives {rows.selected} rows, the "
            f"profile counted {source.rows}",
        )
    return ExactReference("profileSource", rows=rows)


def exact_ks_features(
    accumulators: Mapping[str, NumericAccumulator | CategoricalAccumulator],
    window: ds.Dataset,
    reference: ExactReference,
    start: datetime,
    end: datetime,
) -> KSReference:
    """Set the exact KS test on every numeric accumulator the reference allows, one feature at
    a time; what it was computed against (and why not, where not) for the result."""
    numeric = {
        name: acc
        for name, acc in accumulators.items()
        if isinstance(acc, NumericAccumulator) and acc.count
    }
    if reference.dataset is not None:
        for name, acc in numeric.items():
            values = dataset_values(reference.dataset, name)
            acc.exact_ks = exact_ks(window, values, name, start, end)
        return KSReference(True, "parquet")
    if reference.rows is None:
        return KSReference(False, "profile", reference.reason)
    differing = []
    try:
        for name, acc in numeric.items():
            check = SketchCheck(acc.ref)
            result = exact_ks(window, reference.rows.values(name, check), name, start, end)
            if check.matches():
                acc.exact_ks = result
            else:
                differing.append(name)
    except (StorageError, OSError, pa.ArrowException) as exc:
        for acc in numeric.values():
            acc.exact_ks = None
        return KSReference(False, "profile", f"its source data cannot be read: {exc}")
    if differing:
        shown = ", ".join(differing[:10]) + (" ..." if len(differing) > 10 else "")
        return KSReference(
            False,
            "profileSource",
            f"the source's values of {shown} differ from the profile's counts; their KS "
            "p-values come from the sketch",
        )
    return KSReference(True, "profileSource")
