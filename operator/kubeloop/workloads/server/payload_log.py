"""Payload logging: each inference row → Parquet under `<dest>/dt=YYYY-MM-DD/hour=HH/`.

Layout and columns per docs/contracts.md: one column per feature (raw values as received),
`_ts` (timestamp[us, UTC]), `_model_version`, `_request_id`, `_prediction` (string labels for
classification, float64 for regression); since schema version 2 (the file's Parquet metadata
`kubeloop.payload_log_schema`) also `_row` (int32, the row's position inside its request, so a
delayed label can name one row of a many-row request) and, for classifiers, one float64 column
`_proba_<class>` per class (what performance estimation and prediction drift need). Readers of
version 1 files find those columns absent. The request path only appends references to arrays it
already holds; a background thread builds tables and writes files, every `flush_seconds` or
`flush_rows` rows. Memory is bounded by `max_pending_rows`: beyond it rows are dropped and
counted (`kubeloop_payload_log_rows_dropped_total`), never silently. `close()` writes everything
still pending: the SIGTERM path calls it after the last request is answered.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from kubeloop.payload_schema import PROBA_PREFIX, SCHEMA_METADATA_KEY, SCHEMA_VERSION
from kubeloop.storage import join, store_for

__all__ = ["PayloadLogger"]

log = logging.getLogger("kubeloop.serve")


@dataclass
class _Record:
    columns: dict[str, np.ndarray[Any, Any]]
    predictions: np.ndarray[Any, Any]
    rows: int
    ts_us: int
    request_id: str
    probabilities: np.ndarray[Any, Any] | None = None


class PayloadLogger:
    """Buffers logged requests in memory (bounded) and writes them as Parquet off the hot path."""

    def __init__(
        self,
        destination: str,
        *,
        features: list[tuple[str, str]],
        model_version: str,
        classification: bool,
        sample_rate: float = 1.0,
        flush_rows: int = 10_000,
        flush_seconds: float = 5.0,
        max_pending_rows: int = 200_000,
        on_written: Callable[[int], None] = lambda _n: None,
        on_dropped: Callable[[int, str], None] = lambda _n, _reason: None,
        classes: list[Any] | None = None,
    ) -> None:
        # Import pyarrow here, before requests come: a first import inside the flush thread
        # races sklearn's pyarrow check in the predict thread ("partially initialized module
        # 'pyarrow'"), which failed the first requests of a fresh server.
        import pyarrow.parquet  # noqa: F401

        self.destination = destination
        self._features = features  # (name, kind)
        self._version = model_version
        self._classification = classification
        self._classes = [str(c) for c in classes] if classes is not None else None
        self._sample_rate = sample_rate
        self._flush_rows = flush_rows
        self._flush_seconds = flush_seconds
        self._max_pending = max_pending_rows
        self._on_written = on_written
        self._on_dropped = on_dropped
        self._store = store_for(destination)
        self._lock = threading.Lock()
        self._pending: list[_Record] = []
        self._pending_rows = 0
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="kubeloop-payload-log", daemon=True)
        self._thread.start()

    def submit(
        self,
        columns: dict[str, np.ndarray[Any, Any]],
        predictions: np.ndarray[Any, Any],
        rows: int,
        request_id: str,
        probabilities: np.ndarray[Any, Any] | None = None,
    ) -> bool:
        """Queue one answered request (`probabilities`: (rows, classes) of a classifier); False
        when sampled out or dropped (and counted)."""
        if self._sample_rate < 1.0 and random.random() >= self._sample_rate:
            return False
        record = _Record(
            columns, predictions, rows, time.time_ns() // 1000, request_id, probabilities
        )
        with self._lock:
            if self._closed or self._pending_rows + rows > self._max_pending:
                dropped = True
            else:
                dropped = False
                self._pending.append(record)
                self._pending_rows += rows
                if self._pending_rows >= self._flush_rows:
                    self._wake.set()
        if dropped:
            self._on_dropped(rows, "closed" if self._closed else "buffer_full")
            return False
        return True

    def close(self) -> None:
        """Stop the thread and write everything pending (the SIGTERM path)."""
        with self._lock:
            self._closed = True
        self._wake.set()
        self._thread.join()
        self._flush()

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(self._flush_seconds)
            self._wake.clear()
            if self._closed:
                return
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            records, self._pending, self._pending_rows = self._pending, [], 0
        if not records:
            return
        # one file per UTC hour that the records fall in
        by_hour: dict[tuple[str, str], list[_Record]] = {}
        for record in records:
            moment = datetime.fromtimestamp(record.ts_us / 1e6, tz=UTC)
            key = (moment.strftime("%Y-%m-%d"), moment.strftime("%H"))
            by_hour.setdefault(key, []).append(record)
        for (day, hour), group in by_hour.items():
            rows = sum(r.rows for r in group)
            uri = join(
                self.destination, f"dt={day}", f"hour={hour}", f"part-{uuid.uuid4()}.parquet"
            )
            try:
                self._store.write_bytes(uri, self._encode(group), if_absent=True)
            except Exception:
                log.exception("payload log: writing %d rows to %s failed; rows dropped", rows, uri)
                self._on_dropped(rows, "write_failed")
                continue
            self._on_written(rows)

    def _encode(self, group: list[_Record]) -> bytes:
        import pyarrow as pa
        import pyarrow.parquet as pq

        arrays: dict[str, Any] = {}
        for name, kind in self._features:
            values = np.concatenate([r.columns[name] for r in group])
            if kind == "categorical":
                arrays[name] = pa.array([None if v is None else str(v) for v in values.tolist()])
            else:
                arrays[name] = pa.array(values.astype(np.float64, copy=False))
        arrays["_ts"] = pa.array(
            np.concatenate([np.full(r.rows, r.ts_us, dtype=np.int64) for r in group]),
            type=pa.timestamp("us", tz="UTC"),
        )
        total = sum(r.rows for r in group)
        arrays["_model_version"] = pa.array([self._version] * total, type=pa.string())
        arrays["_request_id"] = pa.array(
            [r.request_id for r in group for _ in range(r.rows)], type=pa.string()
        )
        arrays["_row"] = pa.array(
            np.concatenate([np.arange(r.rows, dtype=np.int32) for r in group]), pa.int32()
        )
        predictions = np.concatenate([r.predictions for r in group])
        if self._classification:
            arrays["_prediction"] = pa.array([str(v) for v in predictions.tolist()], pa.string())
        else:
            arrays["_prediction"] = pa.array(predictions.astype(np.float64, copy=False))
        arrays.update(self._probability_columns(group))
        table = pa.table(arrays).replace_schema_metadata({SCHEMA_METADATA_KEY: SCHEMA_VERSION})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        return bytes(sink.getvalue().to_pybytes())

    def _probability_columns(self, group: list[_Record]) -> dict[str, Any]:
        """`_proba_<class>` columns; null in rows whose request came without probabilities."""
        import pyarrow as pa

        classes = self._classes
        if not classes or all(r.probabilities is None for r in group):
            return {}
        parts = [
            np.asarray(r.probabilities, dtype=np.float64)
            if r.probabilities is not None and r.probabilities.shape[1:] == (len(classes),)
            else np.full((r.rows, len(classes)), np.nan)
            for r in group
        ]
        proba = np.concatenate(parts)
        return {
            f"{PROBA_PREFIX}{label}": pa.array(proba[:, k], from_pandas=True)
            for k, label in enumerate(classes)
        }
