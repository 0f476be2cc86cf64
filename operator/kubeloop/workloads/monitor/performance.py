"""Model performance from delayed labels, and its label-free estimate (spec.performance).

The payload log's window (spec.performance.window, longer than drift's: labels come late) is
streamed once: by the drift check's own scan when both windows are the same (main.py), else by
a scan of its own. Each batch's rows are looked up in the labels by (request id, row); the
joined rows keep only their label, prediction and class probabilities, so memory grows with the
labels and the labelled rows, never with the window's features. The estimate (binary
classifiers) counts each batch per calibrator segment when the version's validation predictions
calibrate it (cbpe.Estimate); calibrated on the window's own labels it keeps each row's
positive-class probability and whether it was predicted positive (9 bytes a row) until they are
joined. Metrics have scikit-learn's definitions (scores.py); the estimate is CBPE (cbpe.py).

Labels that match no served row of the window (another window, another deployment, a typo)
are counted as `unmatchedLabels`; duplicates as `duplicateLabels` (labels.py: last wins).

Only the rows the monitored version answered (`_model_version`, when the check knows it) are
measured and estimated: after a retrain the window still holds the old version's answers for
days, and judging the new version by them kept it Degraded, and its episode open, until they
aged out. A label of another version's row is matched (not `unmatchedLabels`), not measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from kubeloop.api.common import parse_duration
from kubeloop.api.monitor import CLASSIFICATION_METRICS, REGRESSION_METRICS, PerformanceSpec
from kubeloop.decide.performance import PerformanceVerdict, performance_verdict
from kubeloop.payload_schema import PROBA_PREFIX
from kubeloop.workloads.monitor import cbpe, scores
from kubeloop.workloads.monitor.labels import read_labels
from kubeloop.workloads.monitor.validation import Validation, open_validation
from kubeloop.workloads.monitor.window import open_window, window_batches

__all__ = [
    "LabelJoin",
    "PerformanceResult",
    "check_performance",
    "class_codes",
    "measure",
    "no_predictions",
]

# Window rows joined per lookup: the labels are hashed once per chunk (a few tens of MB of ids).
CHUNK_ROWS = 1 << 19


@dataclass
class PerformanceResult:
    """What one check measured and estimated, and its verdict."""

    verdict: PerformanceVerdict
    rows: int = 0
    labelled_rows: int = 0
    duplicate_labels: int = 0
    unmatched_labels: int = 0
    measured: dict[str, float | None] = field(default_factory=dict)
    estimated: dict[str, float] = field(default_factory=dict)
    calibration: str = "none"

    @property
    def coverage(self) -> float:
        """Share of the window's rows with a label."""
        return self.labelled_rows / self.rows if self.rows else 0.0

    def as_result(self) -> dict[str, Any]:
        """The camelCase entry of the DriftResult (status.performance)."""
        return {
            "verdict": self.verdict.verdict,
            "breached": list(self.verdict.breached),
            "measured": {k: round(v, 6) for k, v in self.measured.items() if v is not None},
            "estimated": {k: round(v, 6) for k, v in self.estimated.items()},
            "rows": self.rows,
            "labelledRows": self.labelled_rows,
            "coverage": round(self.coverage, 6),
            "duplicateLabels": self.duplicate_labels,
            "unmatchedLabels": self.unmatched_labels,
            "calibration": self.calibration,
        }


def class_codes(classes: list[str], *values: Any) -> list[npt.NDArray[np.int64]]:
    """Integer codes of string `values` (numpy or Arrow arrays) by position in `classes`; a
    value that is not a class (a label the model never predicts) is appended to `classes` (in
    place), in sorted order. A null is the class "None" (as numpy's str of None)."""
    out = []
    for array in values:
        strings = _strings(array)
        for value in sorted(pc.unique(strings).to_pylist()):
            if value not in classes:
                classes.append(value)
        codes = pc.index_in(strings, value_set=pa.array(classes, pa.string()))
        out.append(np.asarray(codes.to_numpy(zero_copy_only=False), np.int64))
    return out


def _strings(array: Any) -> pa.Array:
    """`array` as an Arrow string array: Arrow strings stay in Arrow (a dictionary decoded);
    anything else goes through numpy's str, as the codes always have."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if isinstance(array, pa.Array):
        if pa.types.is_dictionary(array.type):
            array = array.cast(array.type.value_type)
        if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
            return pc.fill_null(pc.cast(array, pa.string()), "None")
        array = array.to_numpy(zero_copy_only=False)
    return pa.array(np.asarray(array).astype(str), pa.string())


def measure(
    metrics: list[str],
    truth: Any,
    predicted: Any,
    proba: npt.NDArray[np.float64] | None,
    classes: list[str] | None,
) -> dict[str, float | None]:
    """`metrics` on joined rows: string labels and predictions (numpy or Arrow arrays) with the
    model's `classes` (its `_proba_` column order) for classification, floats for regression."""
    if len(truth) == 0:
        return {}
    if classes is None:
        y, f = _floats(truth), _floats(predicted)
        return {
            k: v
            for k, v in {"rmse": scores.rmse(y, f), "mae": scores.mae(y, f)}.items()
            if k in metrics
        }
    known = list(classes)
    t, p = class_codes(known, truth, predicted)
    positive = 1 if len(known) == 2 else None
    out: dict[str, float | None] = {
        "accuracy": scores.accuracy(t, p),
        "f1": scores.f1(t, p, positive),
        "roc_auc": None,
    }
    if proba is not None and proba.shape[1] == len(known) and not np.isnan(proba).any():
        out["roc_auc"] = scores.roc_auc(t, proba, positive)
    return {k: v for k, v in out.items() if k in metrics}


def _floats(values: Any) -> npt.NDArray[np.float64]:
    if isinstance(values, pa.ChunkedArray | pa.Array):
        values = values.to_numpy(zero_copy_only=False)
    return np.asarray(values).astype(np.float64)


def _mask(condition: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.bool_]:
    """A boolean Arrow array as numpy, null as False."""
    return np.asarray(pc.fill_null(condition, False).to_numpy(zero_copy_only=False), bool)


def _keys(ids: Any, rows: Any, by_row: bool) -> pa.Array:
    """The join key of each row: its request id, or id and row when labels name rows."""
    ids = pc.cast(ids, pa.string())
    if not by_row:
        return ids
    return pc.binary_join_element_wise(ids, pc.cast(rows, pa.string()), "\x1f")


def _equals(column: pa.ChunkedArray, value: str) -> npt.NDArray[np.bool_]:
    """Whether each row of a string (or dictionary) column is `value`; null is not. A
    dictionary is compared once per entry, not once per row."""
    parts = []
    for chunk in column.chunks:
        if pa.types.is_dictionary(chunk.type):
            entries = _mask(pc.equal(pc.cast(chunk.dictionary, pa.string()), value))
            codes = chunk.indices.fill_null(0).to_numpy(zero_copy_only=False)
            hit = entries[codes] if entries.size else np.zeros(len(chunk), bool)
            if chunk.null_count:
                hit &= _mask(pc.is_valid(chunk))
            parts.append(hit)
        else:
            parts.append(_mask(pc.equal(pc.cast(chunk, pa.string()), value)))
    return np.concatenate(parts) if parts else np.zeros(0, bool)


def _column(table: pa.Table, name: str) -> pa.ChunkedArray | None:
    index = table.schema.get_field_index(name)
    return table.column(index) if index >= 0 else None


def _floats_of(table: pa.Table, name: str) -> npt.NDArray[np.float64]:
    """A probability column as float64 (NaN for null, all NaN when the batch lacks it)."""
    column = _column(table, name)
    if column is None:
        return np.full(table.num_rows, np.nan)
    return np.asarray(column.to_numpy(zero_copy_only=False), np.float64)


class LabelJoin:
    """The window's rows joined with the labels as they stream past, batch by batch (feed
    `add` the batches of `columns`), and what the estimate keeps of every row.

    Batches are regrouped into CHUNK_ROWS tables before the lookup: Arrow hashes the labels'
    keys once per lookup (in C++), far cheaper than a Python dict per row, and few lookups even
    when the server wrote thousands of small files. `expected_rows` (the window files' row
    count, from their metadata) makes the last lookup run as the last batch arrives, beside its
    features, not after the scan. Only the labelled rows' label, prediction and probabilities
    are kept (Arrow strings, never Python objects), and what the estimate needs (module
    docstring).
    """

    def __init__(
        self,
        spec: PerformanceSpec,
        schema: pa.Schema,
        validation: Validation | None = None,
        expected_rows: int | None = None,
        model_version: str | None = None,
    ) -> None:
        self.spec = spec
        self.expected_rows = expected_rows
        # Only the rows this version answered count (all rows when it is not known).
        self.model_version = model_version
        prediction_type = schema.field("_prediction").type
        if pa.types.is_dictionary(prediction_type):
            prediction_type = prediction_type.value_type
        self.classification = not (
            pa.types.is_floating(prediction_type) or pa.types.is_integer(prediction_type)
        )
        self.proba_columns = [n for n in schema.names if n.startswith(PROBA_PREFIX)]
        self.classes = (
            [n[len(PROBA_PREFIX) :] for n in self.proba_columns] if self.classification else None
        )
        self.labels = read_labels(spec.labels, self.classification)
        self.by_row = spec.labels.row_column is not None
        table = self.labels.table
        self.label_keys = _keys(table.column("_request_id"), table.column("_row"), self.by_row)
        self.label_values = table.column("_label").combine_chunks()
        self.seen = np.zeros(table.num_rows, dtype=bool)
        self.estimating = spec.estimate and self.classes is not None and len(self.classes) == 2
        # With the version's validation predictions the calibrator is known before the scan:
        # the estimate then counts each batch as it passes (cbpe.Estimate), else it keeps the
        # scores until the window's own labels have calibrated them.
        calibrator = (
            validation.calibrator(self.classes[1])
            if validation is not None and self.estimating and self.classes is not None
            else None
        )
        self._cbpe = cbpe.Estimate(calibrator) if calibrator is not None else None
        self.columns = self.columns_of(schema, model_version)
        self.rows = 0
        self._buffer: list[pa.RecordBatch] = []
        self._buffered = 0
        self._added = 0
        self._truth: list[pa.Array] = []
        self._predicted: list[pa.Array] = []
        self._proba: list[npt.NDArray[np.float64]] = []
        self._score: list[npt.NDArray[np.float64]] = []  # positive-class p
        self._positive: list[npt.NDArray[np.bool_]] = []  # predicted positive

    @staticmethod
    def columns_of(schema: pa.Schema, model_version: str | None = None) -> list[str]:
        """The window columns a join reads, for a window of `schema` (and the version column
        when only `model_version`'s rows count)."""
        proba = [n for n in schema.names if n.startswith(PROBA_PREFIX)]
        version = ["_model_version"] if model_version and "_model_version" in schema.names else []
        return ["_request_id", "_row", "_prediction", *proba, *version]

    def _mine(self, rows: pa.Table) -> npt.NDArray[np.bool_] | None:
        """Which of `rows` the monitored version answered; None: all of them."""
        column = _column(rows, "_model_version")
        if self.model_version is None or column is None:
            return None
        return _equals(column, self.model_version)

    def add(self, batch: pa.RecordBatch) -> None:
        """Take one batch of the window (any columns; those of `columns` are used)."""
        names = set(batch.schema.names)
        kept = batch.select([c for c in self.columns if c in names])
        if self.estimating and self.classes is not None:  # every row, batch by batch
            rows = pa.Table.from_batches([kept])
            score = _floats_of(rows, self.proba_columns[1])
            positive = _equals(rows.column("_prediction"), self.classes[1])
            mine = self._mine(rows)
            if mine is not None:
                score, positive = score[mine], positive[mine]
            if self._cbpe is not None:
                self._cbpe.add(score, positive)
            else:
                self._score.append(score)
                self._positive.append(positive)
        self._buffer.append(kept)
        self._buffered += batch.num_rows
        self._added += batch.num_rows
        last = self.expected_rows is not None and self._added >= self.expected_rows
        if self._buffered >= CHUNK_ROWS or last:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        names = {tuple(b.schema.names) for b in self._buffer}
        if len(names) == 1:
            chunk = pa.Table.from_batches(self._buffer)
        else:  # files of different schema versions: joined one batch at a time
            chunk = None
            for batch in self._buffer:
                self._join(pa.Table.from_batches([batch]))
        if chunk is not None:
            self._join(chunk)
        self._buffer, self._buffered = [], 0

    def _join(self, chunk: pa.Table) -> None:
        n = chunk.num_rows
        mine = self._mine(chunk)
        self.rows += n if mine is None else int(mine.sum())
        row = _column(chunk, "_row")
        if row is None:
            row = pa.chunked_array([np.zeros(n, np.int32)])
        ids = _column(chunk, "_request_id")
        if ids is None:
            ids = pa.chunked_array([pa.nulls(n, pa.string())])
        keys = _keys(ids, row, self.by_row)
        found = pc.index_in(keys, value_set=self.label_keys)
        hit = np.flatnonzero(_mask(pc.is_valid(found)))  # only the labelled rows go further
        if hit.size and not self.by_row:  # without a row column a label names row 0
            # (a version-1 file has no `_row`: null, read as row 0)
            hit = hit[~_mask(pc.not_equal(row.take(hit), 0))]
        if hit.size and mine is not None:  # another version's row: matched, not measured
            self.seen[np.asarray(found.take(pa.array(hit)).to_numpy(), np.int64)] = True
            hit = hit[mine[hit]]
        prediction = chunk.column("_prediction")
        if hit.size:
            taken = pa.array(hit)
            label = np.asarray(found.take(taken).to_numpy(), np.int64)
            self.seen[label] = True
            self._truth.append(self.label_values.take(pa.array(label)))
            predicted = prediction.take(taken).combine_chunks()
            if pa.types.is_dictionary(predicted.type):  # as the drift check reads it
                predicted = predicted.cast(predicted.type.value_type)
            self._predicted.append(predicted)
            if self.proba_columns:
                logged = [c for c in self.proba_columns if c in chunk.column_names]
                hits = chunk.select(logged).take(taken)
                self._proba.append(
                    np.column_stack([_floats_of(hits, c) for c in self.proba_columns])
                )

    def result(self) -> PerformanceResult:
        """The metrics, the estimate and the verdict of everything added."""
        self._flush()
        spec = self.spec
        metrics = list(
            spec.metrics or (CLASSIFICATION_METRICS if self.classification else REGRESSION_METRICS)
        )
        truth = _concat(self._truth, self.label_values.type)
        predicted = _concat(self._predicted, None)
        proba = np.concatenate(self._proba) if self._proba else None
        result = PerformanceResult(
            _verdict(spec, 0, 0.0, {}),
            rows=self.rows,
            labelled_rows=len(truth),
            duplicate_labels=self.labels.duplicates,
            unmatched_labels=int(self.labels.table.num_rows - self.seen.sum()),
            measured=measure(metrics, truth, predicted, proba, self.classes),
        )
        if self.estimating and self.rows:
            result.estimated, result.calibration = self._estimate(truth, proba)
        result.verdict = _verdict(spec, result.labelled_rows, result.coverage, result.measured)
        return result

    def _estimate(
        self, truth: pa.Array, proba: npt.NDArray[np.float64] | None
    ) -> tuple[dict[str, float], str]:
        wanted = self.spec.metrics or CLASSIFICATION_METRICS
        if self._cbpe is not None:
            estimated, how = self._cbpe.result(), "validation"
        else:
            assert self.classes is not None
            calibrator, how = None, "none"
            if proba is not None and len(truth) >= self.spec.min_labelled_rows:
                ok = ~np.isnan(proba[:, 1])
                is_positive = _equals(pa.chunked_array([truth]), self.classes[1])
                calibrator = cbpe.fit_isotonic(proba[ok, 1], is_positive[ok])
                how = "labels"
            estimated = cbpe.estimate(
                np.concatenate(self._score), np.concatenate(self._positive), calibrator
            )
        return {k: v for k, v in estimated.items() if k in wanted}, how


def check_performance(
    spec: PerformanceSpec,
    payload_log_uri: str,
    reference_uri: str | None,
    now: datetime,
    model_version: str | None = None,
    *,
    validation: Validation | None = None,
) -> PerformanceResult:
    """Join the window with the labels and reach a verdict, with `model_version` on the rows
    that version answered only (a scan of its own: the drift check feeds a `LabelJoin` from
    its own scan when both windows are the same)."""
    start = now - parse_duration(spec.window)
    dataset = open_window(payload_log_uri, start, now)
    if dataset is None or "_prediction" not in dataset.schema.names:
        return no_predictions(spec)
    if validation is None and reference_uri and spec.estimate:
        validation = open_validation(reference_uri)
    join = LabelJoin(spec, dataset.schema, validation, dataset.count_rows(), model_version)
    for batch in window_batches(dataset, join.columns, start, now):
        join.add(batch)
    return join.result()


def no_predictions(spec: PerformanceSpec) -> PerformanceResult:
    """The result of a window without logged predictions."""
    return PerformanceResult(_verdict(spec, 0, 0.0, {}))


def _concat(parts: list[pa.Array], kind: pa.DataType | None) -> pa.Array:
    return pa.concat_arrays(parts) if parts else pa.array([], kind or pa.string())


def _verdict(
    spec: PerformanceSpec, labelled: int, coverage: float, measured: dict[str, float | None]
) -> PerformanceVerdict:
    return performance_verdict(
        measured,
        labelled_rows=labelled,
        coverage=coverage,
        min_labelled_rows=spec.min_labelled_rows,
        min_coverage=spec.min_coverage,
        thresholds=spec.thresholds.items(),
    )
