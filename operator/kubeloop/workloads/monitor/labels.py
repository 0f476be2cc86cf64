"""Delayed labels: a Parquet file or folder of (request id[, row], true label), read once.

Rules (README "Performance from delayed labels"):
- The id column and the label column (and the row column, when the spec names one) must exist:
  otherwise a LabelsSchemaError names the missing column, the spec field and the columns found.
- Rows with a null id or label carry nothing and are skipped.
- Duplicates: several labels for one (id, row) — a label corrected later — keep the last one in
  file order (files in path order, rows in file order); the others are counted in `duplicates`.
- Without a row column a label belongs to row 0 of its request.

Memory: only the two or three projected columns of the labels are held, as Arrow arrays (about
40 bytes a label with a 32-character id); the payload log is streamed past them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from kubeloop.api.monitor import LabelsSource
from kubeloop.storage import arrow_filesystem

__all__ = ["KEY", "Labels", "LabelsSchemaError", "read_labels"]

# The join key on both sides: the payload log's own column names.
KEY = ("_request_id", "_row")
LABEL = "_label"


class LabelsSchemaError(ValueError):
    """The labels do not have the columns the spec names."""


@dataclass(frozen=True)
class Labels:
    """Deduplicated labels: `table` has `_request_id`, `_row` (int32) and `_label`."""

    table: pa.Table
    duplicates: int


def _open(uri: str) -> ds.Dataset:
    filesystem, path = arrow_filesystem(uri)
    try:
        return ds.dataset(path, filesystem=filesystem, format="parquet")
    except (FileNotFoundError, pa.ArrowInvalid) as exc:
        raise ValueError(
            f"spec.performance.labels.uri: no Parquet labels at {uri} ({exc})"
        ) from exc


def read_labels(source: LabelsSource, classification: bool) -> Labels:
    """The labels at `source.uri`, the label as string (classification) or float64."""
    dataset = _open(str(source.uri))
    found = dataset.schema.names
    wanted = {
        "idColumn": source.id_column,
        "labelColumn": source.label_column,
        **({"rowColumn": source.row_column} if source.row_column else {}),
    }
    for field, column in wanted.items():
        if column not in found:
            raise LabelsSchemaError(
                f"labels {source.uri} have no column {column!r} "
                f"(spec.performance.labels.{field}); their columns: {', '.join(found)}"
            )
    table = dataset.to_table(columns=list(wanted.values()))
    try:
        ids = pc.cast(table.column(source.id_column), pa.string())
        label_type = pa.string() if classification else pa.float64()
        labels = pc.cast(table.column(source.label_column), label_type)
        rows = (
            pc.cast(table.column(source.row_column), pa.int32())
            if source.row_column
            else pa.chunked_array([np.zeros(table.num_rows, np.int32)])
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise LabelsSchemaError(
            f"labels {source.uri}: column types do not fit (spec.performance.labels): {exc}"
        ) from exc
    keyed = pa.table({KEY[0]: ids, KEY[1]: rows, LABEL: labels})
    keep = pc.and_(pc.is_valid(keyed.column(KEY[0])), pc.is_valid(keyed.column(LABEL)))
    keyed = keyed.filter(keep)
    # (the ids are valid here: their distinct values are their unique ones, found by one hash
    # pass, cheaper than count_distinct's aggregation)
    if not source.row_column and len(pc.unique(keyed.column(KEY[0]))) == len(keyed):
        return Labels(keyed, 0)  # no duplicates (the common case): nothing to group
    # last wins: the largest position of each key
    keyed = keyed.append_column("_position", pa.array(np.arange(keyed.num_rows, dtype=np.int64)))
    last = keyed.group_by(list(KEY), use_threads=False).aggregate([("_position", "max")])
    unique = keyed.take(last.column("_position_max")).select([*KEY, LABEL])
    return Labels(unique, keyed.num_rows - unique.num_rows)
