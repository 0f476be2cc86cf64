"""Model performance from delayed labels, and its label-free estimate (spec.performance).

The payload log's window (spec.performance.window, longer than drift's: labels come late) is
streamed once. Each batch's rows are looked up in the labels by (request id, row); the joined
rows keep only their label, prediction and class probabilities, so memory grows with the labels
and the labelled rows, never with the window's features. For the estimate (binary classifiers)
every row keeps its positive-class probability and whether it was predicted positive: 9 bytes a
row. Metrics have scikit-learn's definitions (scores.py); the estimate is CBPE (cbpe.py).

Labels that match no served row of the window (another window, another deployment, a typo)
are counted as `unmatchedLabels`; duplicates as `duplicateLabels` (labels.py: last wins).

Only the rows the monitored version answered (`_model_version`, when the check knows it) are
measured and estimated: after a retrain the window still holds the old version's answers for
days, and judging the new version by them kept it Degraded, and its episode open, until they
aged out. A label of another version's row is matched (not `unmatchedLabels`), not measured.
"""

from __future__ import annotations

from collections.abc import Iterator
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
from kubeloop.workloads.monitor.prediction_drift import validation_predictions
from kubeloop.workloads.monitor.window import open_window, window_batches

__all__ = [
    "PerformanceResult",
    "check_performance",
    "class_codes",
    "measure",
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


def class_codes(classes: list[str], *values: npt.NDArray[Any]) -> list[npt.NDArray[np.int64]]:
    """Integer codes of string `values` by position in `classes`; a value that is not a class
    (a label the model never predicts) is appended to `classes` (in place)."""
    out = []
    for array in values:
        unique, inverse = np.unique(array.astype(str), return_inverse=True)
        for value in unique.tolist():
            if value not in classes:
                classes.append(value)
        position = {c: i for i, c in enumerate(classes)}
        out.append(np.asarray([position[v] for v in unique.tolist()], np.int64)[inverse])
    return out


def measure(
    metrics: list[str],
    truth: npt.NDArray[Any],
    predicted: npt.NDArray[Any],
    proba: npt.NDArray[np.float64] | None,
    classes: list[str] | None,
) -> dict[str, float | None]:
    """`metrics` on joined rows: string labels and predictions with the model's `classes` (its
    `_proba_` column order) for classification, floats for regression."""
    if truth.size == 0:
        return {}
    if classes is None:
        y, f = truth.astype(np.float64), predicted.astype(np.float64)
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


def _validation_calibrator(reference_uri: str, positive: str) -> cbpe.Calibrator | None:
    """Isotonic calibration on the version's validation predictions, if it kept them."""
    table = validation_predictions(reference_uri)
    column = PROBA_PREFIX + positive
    if table is None or column not in table.column_names or "_label" not in table.column_names:
        return None
    truth = pc.cast(table.column("_label"), pa.string()).to_numpy(zero_copy_only=False)
    return cbpe.fit_isotonic(
        table.column(column).to_numpy(zero_copy_only=False).astype(np.float64),
        truth == positive,
    )


@dataclass
class _Stream:
    """What the window's batches leave behind."""

    rows: int = 0
    truth: list[npt.NDArray[Any]] = field(default_factory=list)
    predicted: list[npt.NDArray[Any]] = field(default_factory=list)
    proba: list[npt.NDArray[np.float64]] = field(default_factory=list)
    score: list[npt.NDArray[np.float64]] = field(default_factory=list)  # positive-class p
    positive: list[npt.NDArray[np.bool_]] = field(default_factory=list)  # predicted positive


def _keys(ids: Any, rows: Any, by_row: bool) -> pa.Array:
    """The join key of each row: its request id, or id and row when labels name rows."""
    ids = pc.cast(ids, pa.string())
    if not by_row:
        return ids
    return pc.binary_join_element_wise(ids, pc.cast(rows, pa.string()), "\x1f")


def check_performance(
    spec: PerformanceSpec,
    payload_log_uri: str,
    reference_uri: str | None,
    now: datetime,
    model_version: str | None = None,
) -> PerformanceResult:
    """Join the window with the labels and reach a verdict; with `model_version`, on the rows
    that version answered only."""
    start = now - parse_duration(spec.window)
    dataset = open_window(payload_log_uri, start, now)
    if dataset is None or "_prediction" not in dataset.schema.names:
        return PerformanceResult(_verdict(spec, 0, 0.0, {}))
    schema = dataset.schema
    prediction_type = schema.field("_prediction").type
    classification = not (
        pa.types.is_floating(prediction_type) or pa.types.is_integer(prediction_type)
    )
    proba_columns = [n for n in schema.names if n.startswith(PROBA_PREFIX)]
    classes = [n[len(PROBA_PREFIX) :] for n in proba_columns] if classification else None
    labels = read_labels(spec.labels, classification)
    by_row = spec.labels.row_column is not None
    # Arrow hashes the labels' keys once per chunk of the window (in C++): far cheaper than a
    # Python dict lookup per row, and chunks of CHUNK_ROWS keep the rebuilds few even when the
    # server wrote thousands of small files.
    label_keys = _keys(labels.table.column("_request_id"), labels.table.column("_row"), by_row)
    label_values = labels.table.column("_label").to_numpy(zero_copy_only=False)
    seen = np.zeros(labels.table.num_rows, dtype=bool)
    binary = classes is not None and len(classes) == 2
    estimating = spec.estimate and binary
    stream = _Stream()
    columns = ["_request_id", "_row", "_prediction", *proba_columns]
    if model_version and "_model_version" in schema.names:
        columns.append("_model_version")
    for batch in _chunks(window_batches(dataset, columns, start, now)):
        n = batch.num_rows
        present = batch.schema.names
        # the rows the monitored version answered (all of them when the version is not known)
        mine = (
            pc.equal(batch.column(present.index("_model_version")), model_version)
            .fill_null(False)
            .to_numpy(zero_copy_only=False)
            if "_model_version" in present
            else slice(None)
        )
        stream.rows += n if isinstance(mine, slice) else int(mine.sum())
        row = (
            batch.column(present.index("_row"))
            if "_row" in present
            else pa.chunked_array([np.zeros(n, np.int32)])
        )
        keys = _keys(batch.column(present.index("_request_id")), row, by_row)
        found = pc.index_in(keys, value_set=label_keys).fill_null(-1).to_numpy().astype(np.int64)
        if not by_row:  # without a row column a label names row 0
            # (a version-1 file has no `_row`: null, read as row 0)
            found[pc.not_equal(row, 0).fill_null(False).to_numpy(zero_copy_only=False)] = -1
        hit = found >= 0
        seen[found[hit]] = True
        if not isinstance(mine, slice):
            hit &= mine
        prediction = batch.column(present.index("_prediction"))
        predicted = prediction.to_numpy(zero_copy_only=False)
        proba = (
            np.column_stack(
                [
                    batch.column(present.index(c)).to_numpy(zero_copy_only=False)
                    if c in present
                    else np.full(n, np.nan)
                    for c in proba_columns
                ]
            ).astype(np.float64)
            if proba_columns
            else None
        )
        if hit.any():
            stream.truth.append(label_values[found[hit]])
            stream.predicted.append(predicted[hit])
            if proba is not None:
                stream.proba.append(proba[hit])
        if estimating and proba is not None and classes is not None:
            stream.score.append(proba[mine, 1])
            is_positive = pc.equal(pc.cast(prediction, pa.string()), classes[1])
            stream.positive.append(
                is_positive.fill_null(False).to_numpy(zero_copy_only=False)[mine]
            )
    metrics = list(
        spec.metrics or (CLASSIFICATION_METRICS if classification else REGRESSION_METRICS)
    )
    truth = _concat(stream.truth)
    predicted_all = _concat(stream.predicted)
    proba_all = np.concatenate(stream.proba) if stream.proba else None
    result = PerformanceResult(
        _verdict(spec, 0, 0.0, {}),
        rows=stream.rows,
        labelled_rows=int(truth.size),
        duplicate_labels=labels.duplicates,
        unmatched_labels=int(labels.table.num_rows - seen.sum()),
        measured=measure(metrics, truth, predicted_all, proba_all, classes),
    )
    if estimating and classes is not None and stream.score:
        result.estimated, result.calibration = _estimate(
            spec,
            stream=stream,
            positive=classes[1],
            reference_uri=reference_uri,
            truth=truth,
            proba=proba_all,
        )
    result.verdict = _verdict(spec, result.labelled_rows, result.coverage, result.measured)
    return result


def _chunks(batches: Iterator[pa.RecordBatch], rows: int = CHUNK_ROWS) -> Iterator[pa.Table]:
    """The batches regrouped into tables of at least `rows` rows (the last one smaller)."""
    buffer: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        buffer.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield pa.Table.from_batches(buffer)
            buffer, count = [], 0
    if buffer:
        yield pa.Table.from_batches(buffer)


def _concat(parts: list[npt.NDArray[Any]]) -> npt.NDArray[Any]:
    return np.concatenate(parts) if parts else np.empty(0, dtype=object)


def _estimate(
    spec: PerformanceSpec,
    *,
    stream: _Stream,
    positive: str,
    reference_uri: str | None,
    truth: npt.NDArray[Any],
    proba: npt.NDArray[np.float64] | None,
) -> tuple[dict[str, float], str]:
    score = np.concatenate(stream.score)
    predicted_positive = np.concatenate(stream.positive)
    known = ~np.isnan(score)
    calibrator = _validation_calibrator(reference_uri, positive) if reference_uri else None
    how = "validation"
    if calibrator is None:
        how = "none"
        usable = proba is not None and truth.size >= spec.min_labelled_rows
        if usable and proba is not None:
            ok = ~np.isnan(proba[:, 1])
            calibrator = cbpe.fit_isotonic(proba[ok, 1], truth[ok].astype(str) == positive)
            how = "labels"
    estimated = cbpe.estimate(score[known], predicted_positive[known], calibrator)
    wanted = spec.metrics or CLASSIFICATION_METRICS
    return {k: v for k, v in estimated.items() if k in wanted}, how


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
