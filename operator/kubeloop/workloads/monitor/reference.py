"""The reference the window is compared with: a version's profile.json or a Parquet dataset.

A model version folder (the trainer wrote `profile.json` next to `manifest.json`) is read as is:
no training data is touched. Any other URI is read as a Parquet file or folder and profiled on
the spot, into the same sketch (kubeloop.profile), so the rest of the check has one code path:

- columns are read a few at a time, as many as fit `COLUMN_BUDGET` bytes (a float64 value,
  its sorted copy, its prefix sum and Arrow's buffer: 32 bytes a row), each sorted once and
  profiled from all of its values, which is exact and reads every byte once: peak memory is
  the budget, not the table (10M rows x 50 features: one column at a time, ~320 MB);
- a reference so large that a single column does not fit the budget is streamed in two passes
  of record batches instead (`kubeloop.profile.build_profile_streaming`: exact counts at points
  chosen from a bounded sample), so memory stays bounded whatever its size.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
from pyarrow import fs

from kubeloop.profile import Profile, build_profile, build_profile_streaming, load_profile
from kubeloop.storage import NotFoundError, arrow_filesystem, join, store_for

__all__ = [
    "BYTES_PER_VALUE",
    "COLUMN_BUDGET",
    "column_groups",
    "feature_kinds",
    "load_reference",
    "profile_dataset",
]

# Memory the raw-reference profiler may hold in column values at once.
COLUMN_BUDGET = 512 * 2**20
# A float64 value, its sorted copy, its prefix sum and the Arrow buffer it was decoded from.
BYTES_PER_VALUE = 32
BATCH_ROWS = 128 * 1024


def feature_kinds(schema: pa.Schema, names: list[str]) -> tuple[list[str], list[str]]:
    """(numeric, categorical) split of `names` by Arrow type; booleans count as categorical."""
    numeric: list[str] = []
    categorical: list[str] = []
    for name in names:
        kind = schema.field(name).type
        is_number = pa.types.is_integer(kind) or pa.types.is_floating(kind)
        (numeric if is_number or pa.types.is_decimal(kind) else categorical).append(name)
    return numeric, categorical


def load_reference(
    uri: str, features: list[str] | None, served: list[str] | None = None
) -> Profile:
    """The reference profile for `uri`, restricted to `features` when given.

    A Parquet reference usually holds more than the model's inputs (the target, ids): without
    explicit `features`, only its columns that also appear in the traffic (`served`) are used.
    """
    profile_uri = uri if uri.endswith("profile.json") else join(uri, "profile.json")
    try:
        raw = store_for(profile_uri).read_bytes(profile_uri)
    except NotFoundError:
        return _profile_parquet(uri, features, served)
    profile = load_profile(raw)
    if features is not None:
        unknown = sorted(set(features) - set(profile.features))
        if unknown:
            raise ValueError(f"spec.features {unknown} are not in the reference profile {uri}")
        keep = set(features)
        profile = Profile(
            rows=profile.rows,
            numeric={k: v for k, v in profile.numeric.items() if k in keep},
            categorical={k: v for k, v in profile.categorical.items() if k in keep},
        )
    return profile


def _profile_parquet(uri: str, features: list[str] | None, served: list[str] | None) -> Profile:
    filesystem, path = arrow_filesystem(uri)
    try:
        dataset = ds.dataset(path, filesystem=filesystem, format="parquet")
    except FileNotFoundError as exc:
        raise ValueError(f"reference {uri} has neither profile.json nor Parquet data") from exc
    names = [n for n in dataset.schema.names if not n.startswith("_")]
    if features is not None:
        unknown = sorted(set(features) - set(names))
        if unknown:
            raise ValueError(f"spec.features {unknown} are not columns of the reference {uri}")
        names = [n for n in names if n in set(features)]
    elif served is not None:
        names = [n for n in names if n in set(served)]
    numeric, categorical = feature_kinds(dataset.schema, names)
    if categorical:  # counted by their dictionary codes, not decoded to strings
        options = ds.ParquetReadOptions(dictionary_columns=categorical)
        parquet = ds.ParquetFileFormat(read_options=options)
        dataset = ds.dataset(path, filesystem=filesystem, format=parquet)
    return load_profile(profile_dataset(dataset, numeric, categorical))


def column_groups(names: list[str], rows: int, budget: int = COLUMN_BUDGET) -> list[list[str]]:
    """`names` in groups of as many columns as fit `budget` at BYTES_PER_VALUE a row; empty
    when not even one column fits (then the reference must be streamed)."""
    per_group = budget // max(rows * BYTES_PER_VALUE, 1)
    if per_group < 1:
        return []
    return [names[i : i + per_group] for i in range(0, len(names), per_group)]


def profile_dataset(
    dataset: ds.Dataset, numeric: list[str], categorical: list[str], budget: int = COLUMN_BUDGET
) -> dict[str, Any]:
    """The profile dict of a Parquet dataset, within `budget` bytes (see module docstring)."""
    columns = [*numeric, *categorical]
    groups = column_groups(columns, dataset.count_rows(), budget) if columns else [[]]
    scan = {
        "batch_size": BATCH_ROWS,
        "batch_readahead": 1,
        "fragment_readahead": 1,
        # Whole column chunks pre-buffered per file cost hundreds of MiB on wide files (see
        # window.window_batches); object stores keep it to coalesce ranged GETs.
        "fragment_scan_options": ds.ParquetFragmentScanOptions(
            pre_buffer=not isinstance(getattr(dataset, "filesystem", None), fs.LocalFileSystem)
        ),
    }
    if not groups:

        def batches() -> Iterator[pa.RecordBatch]:
            yield from dataset.to_batches(columns=columns, **scan)

        return build_profile_streaming(batches, numeric, categorical)
    merged: dict[str, Any] = {}
    for group in groups:
        table = dataset.to_table(columns=group, **scan)
        keep = set(group)
        part = build_profile(
            table, [n for n in numeric if n in keep], [n for n in categorical if n in keep]
        )
        del table
        if not merged:
            merged = part
        else:
            merged["numeric"].update(part["numeric"])
            merged["categorical"].update(part["categorical"])
    return merged
