"""Delayed ground truth for the requests a client sent: what spec.performance.labels reads.

The true outcome of a served request is known later (a customer churns weeks after the
prediction). Whoever learns it writes a Parquet file of `request_id`, `row` (the row's
position inside its request) and the true `label`, keyed by the id the client sent with the
request (the payload log's `_request_id`), into the DriftMonitor's labels location. The same
labelled rows, with their features, are what a retrain learns from: `labelled_requests` gives
both from one draw, so the labels the monitor judges the model by are the ones the next version
trains on.

The demo's traffic generator (kubeloop.local.demo.traffic) keeps the rows of every request
answered (`TrafficStats.sent`); `label` computes the truth from the features (for the churn
data: `kubeloop.local.demo.datagen.churn_labels`, whose `flip` reverses the label relation
while the inputs stay the same).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from kubeloop.local.demo.traffic import TrafficStats
from kubeloop.storage import join, store_for

__all__ = ["LABEL_COLUMNS", "labelled_requests", "write_labels"]

# The labels file's columns, as spec.performance.labels names them (idColumn, rowColumn,
# labelColumn).
LABEL_COLUMNS = ("request_id", "row", "label")


def labelled_requests(
    traffic: Iterable[TrafficStats], label: Callable[[pa.Table], pa.Array]
) -> pa.Table:
    """Every row answered in `traffic`: its features, `request_id`, `row` and the true
    `label` (`label(features)`, computed over all rows at once)."""
    parts = []
    for stats in traffic:
        for request_id, rows in stats.sent.items():
            keys = {
                LABEL_COLUMNS[0]: pa.array([request_id] * rows.num_rows, pa.string()),
                LABEL_COLUMNS[1]: pa.array(range(rows.num_rows), pa.int32()),
            }
            parts.append(pa.table({**keys, **{n: rows.column(n) for n in rows.column_names}}))
    if not parts:
        raise ValueError("no request was answered: there is nothing to label")
    table = pa.concat_tables(parts)
    return table.append_column(LABEL_COLUMNS[2], label(table))


def write_labels(labelled: pa.Table, uri: str, name: str) -> str:
    """Write the label columns of `labelled` as `<uri>/<name>.parquet` (s3:// or file://);
    returns the file's URI. Each delivery is a new file: the monitor reads the folder."""
    buffer = io.BytesIO()
    pq.write_table(labelled.select(list(LABEL_COLUMNS)), buffer)
    target = join(uri, f"{name}.parquet")
    store_for(target).write_bytes(target, buffer.getvalue())
    return target
