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

The profile of a raw reference is cached beside it (`CACHE_NAME` in its folder, or
`<file>.kubeloop-profile.json` beside a single file; Arrow skips `_`-prefixed files when it
reads a folder), keyed by the data files' names, sizes and modification times and by the
profiled columns: the first check against a reference pays the profiling, later ones read the
cache, and a changed reference is profiled again. Where the reference cannot be written (a
read-only bucket), every check profiles it and says so on stderr.

The raw reference stays available to the check (`raw_reference`): with `tests.numeric: ks` the
deciding KS test is computed exactly from it (kubeloop.workloads.monitor.exact_ks).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
from pyarrow import fs

from kubeloop.profile import Profile, build_profile, build_profile_streaming, load_profile
from kubeloop.storage import NotFoundError, StorageError, arrow_filesystem, join, store_for

__all__ = [
    "BYTES_PER_VALUE",
    "CACHE_NAME",
    "COLUMN_BUDGET",
    "column_groups",
    "feature_kinds",
    "load_reference",
    "profile_dataset",
    "raw_reference",
]

# Memory the raw-reference profiler may hold in column values at once.
COLUMN_BUDGET = 512 * 2**20
# A float64 value, its sorted copy, its prefix sum and the Arrow buffer it was decoded from.
BYTES_PER_VALUE = 32
BATCH_ROWS = 128 * 1024
# The cached profile of a raw reference folder, inside it.
CACHE_NAME = "_kubeloop_profile.json"
CACHE_FORMAT = "kubeloop.profile-cache/v1"


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
            source=profile.source,
        )
    return profile


def _open_parquet(uri: str) -> tuple[ds.Dataset, fs.FileSystem, str]:
    filesystem, path = arrow_filesystem(uri)
    try:
        return ds.dataset(path, filesystem=filesystem, format="parquet"), filesystem, path
    except FileNotFoundError as exc:
        raise ValueError(f"reference {uri} has neither profile.json nor Parquet data") from exc


def raw_reference(uri: str) -> ds.Dataset | None:
    """The reference's Parquet dataset, or None when `uri` is a version with a profile.json."""
    profile_uri = uri if uri.endswith("profile.json") else join(uri, "profile.json")
    if store_for(profile_uri).exists(profile_uri):
        return None
    return _open_parquet(uri)[0]


def _cache_location(uri: str, filesystem: fs.FileSystem, path: str) -> tuple[str, list[str]]:
    """(cache URI, data files as 'path size mtime') of a raw reference."""
    info = filesystem.get_file_info(path)
    if info.type == fs.FileType.File:
        infos = [info]
        cache = uri + ".kubeloop-profile.json"
    else:
        infos = filesystem.get_file_info(fs.FileSelector(path, recursive=True))
        cache = join(uri, CACHE_NAME)
    files = sorted(
        f"{i.path} {i.size} {i.mtime_ns}"
        for i in infos
        if i.type == fs.FileType.File and not i.base_name.startswith(("_", "."))
    )
    return cache, files


def _profile_parquet(uri: str, features: list[str] | None, served: list[str] | None) -> Profile:
    dataset, filesystem, path = _open_parquet(uri)
    names = [n for n in dataset.schema.names if not n.startswith("_")]
    if features is not None:
        unknown = sorted(set(features) - set(names))
        if unknown:
            raise ValueError(f"spec.features {unknown} are not columns of the reference {uri}")
        names = [n for n in names if n in set(features)]
    elif served is not None:
        names = [n for n in names if n in set(served)]
    numeric, categorical = feature_kinds(dataset.schema, names)
    cache, files = _cache_location(uri, filesystem, path)
    key = hashlib.sha256(json.dumps([files, numeric, categorical]).encode()).hexdigest()
    store = store_for(cache)
    try:
        cached = json.loads(store.read_bytes(cache))
        if cached.get("format") == CACHE_FORMAT and cached.get("key") == key:
            return load_profile(cached["profile"])
    except (StorageError, ValueError, KeyError, AttributeError):
        pass  # absent, unreadable or stale: profile again
    if categorical:  # counted by their dictionary codes, not decoded to strings
        options = ds.ParquetReadOptions(dictionary_columns=categorical)
        parquet = ds.ParquetFileFormat(read_options=options)
        dataset = ds.dataset(path, filesystem=filesystem, format=parquet)
    profile = profile_dataset(dataset, numeric, categorical)
    text = json.dumps({"format": CACHE_FORMAT, "key": key, "profile": profile})
    try:
        store.write_bytes(cache, text.encode())
    except (StorageError, OSError) as exc:
        print(f"reference profile not cached at {cache}: {exc}", file=sys.stderr, flush=True)
    return load_profile(profile)


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
