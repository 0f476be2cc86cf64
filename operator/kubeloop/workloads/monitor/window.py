"""Reading the traffic window from the payload logs: hive partitions pruned, batches streamed.

Layout (docs/contracts.md): `<destination>/dt=YYYY-MM-DD/hour=HH/part-<uuid>.parquet`, UTC,
with a `_ts` column. Only partitions that overlap the window are opened; inside them rows are
filtered on `_ts`, and only the feature columns are decoded.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pyarrow as pa
import pyarrow.dataset as ds

from kubeloop.storage import arrow_filesystem

__all__ = ["BATCH_ROWS", "open_window", "partition_filter", "window_batches"]

BATCH_ROWS = 128 * 1024
PARTITIONING = ds.partitioning(
    pa.schema([("dt", pa.string()), ("hour", pa.int32())]), flavor="hive"
)


def partition_filter(start: datetime, end: datetime) -> ds.Expression:
    """Partitions (dt, hour) that overlap [start, end]; ISO dates compare as strings."""
    start_dt, end_dt = start.strftime("%Y-%m-%d"), end.strftime("%Y-%m-%d")
    dt, hour = ds.field("dt"), ds.field("hour")
    after_start = (dt > start_dt) | ((dt == start_dt) & (hour >= start.hour))
    before_end = (dt < end_dt) | ((dt == end_dt) & (hour <= end.hour))
    return after_start & before_end


def open_window(uri: str) -> ds.Dataset | None:
    """The payload-log dataset at `uri`, or None when nothing was logged there yet."""
    filesystem, path = arrow_filesystem(uri)
    try:
        return ds.dataset(
            path,
            filesystem=filesystem,
            format="parquet",
            partitioning=PARTITIONING,
            exclude_invalid_files=False,
            # Files being written (or temp files of the writer) are not data.
            ignore_prefixes=[".", "_"],
        )
    except (FileNotFoundError, pa.ArrowInvalid):
        return None


def window_batches(
    dataset: ds.Dataset, columns: list[str], start: datetime, end: datetime
) -> Iterator[pa.RecordBatch]:
    """Record batches of `columns` (those present) for rows with start <= _ts <= end."""
    names = set(dataset.schema.names)
    condition = partition_filter(start, end)
    if "_ts" in names:
        ts_type = dataset.schema.field("_ts").type
        condition = (
            condition
            & (ds.field("_ts") >= pa.scalar(start, type=ts_type))
            & (ds.field("_ts") <= pa.scalar(end, type=ts_type))
        )
    present = [name for name in columns if name in names]
    scanner = dataset.scanner(
        columns=present,
        filter=condition,
        batch_size=BATCH_ROWS,
        # Small read-ahead keeps memory bounded by a few batches per file, not by the window.
        batch_readahead=2,
        fragment_readahead=2,
        use_threads=True,
    )
    for batch in scanner.to_batches():
        if batch.num_rows:
            yield batch
