"""Training data: Parquet (file or folder) from s3:// or file://, read with pyarrow datasets.

Columns are projected (only target + features are read), types are checked before any
training starts, the split is deterministic by seed, and a fingerprint of the files (paths,
sizes, and a content marker: the ETag on S3, the MD5 of the bytes on file://) is recorded for
lineage and compared by the data-watch CronJob (`kubeloop fingerprint`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kubeloop.api.training import TrainingPipelineSpec
from kubeloop.modelformat import Feature
from kubeloop.profile_source import ProfileSource, parquet_files
from kubeloop.storage import FileStore, ObjectInfo, S3Store, StorageError, arrow_filesystem
from kubeloop.workloads.trainer.errors import TrainingError, classify_storage_error

__all__ = [
    "Dataset",
    "TrainingData",
    "data_files",
    "fingerprint",
    "load_training_data",
    "preflight",
]

# A string column is "numeric holding strings" when this share of its distinct values parse
# as numbers but some do not (e.g. "12.5", "n/a", " "). All-numeric strings (zip codes) and
# mostly-text columns stay categorical.
NUMERIC_SHARE = 0.8
MAX_MANIFEST_CATEGORIES = 1000


@dataclass(frozen=True)
class Dataset:
    """One Parquet input: its URI, files and the projected table."""

    uri: str
    files: tuple[ObjectInfo, ...]
    table: pa.Table


@dataclass(frozen=True)
class TrainingData:
    """The tables the model sees, the feature schema and lineage facts."""

    train: pa.Table
    validation: pa.Table
    features: tuple[Feature, ...]
    target: str
    classes: tuple[Any, ...] | None
    fingerprint: str
    files: tuple[ObjectInfo, ...]
    dropped_missing_target: int
    # The rows of `train` as a selection from its files, recorded in profile.json so the
    # monitor can stream exactly them again (kubeloop.profile_source).
    source: ProfileSource | None = None


def preflight(uri: str) -> None:
    """Fail fast (seconds, not minutes of retries) when an s3:// bucket cannot be reached."""
    if urlparse(uri).scheme != "s3":
        return
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
        config=Config(connect_timeout=5, read_timeout=10, retries={"total_max_attempts": 2}),
    )
    bucket, _ = S3Store.split(uri)
    try:
        client.head_bucket(Bucket=bucket)
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
        if code in ("404", "NoSuchBucket"):
            raise TrainingError(
                "StorageUnreachable", f"bucket {bucket!r} of {uri} does not exist"
            ) from exc
        if code in ("403", "AccessDenied"):
            return  # head_bucket may be forbidden while object access is allowed
        raise TrainingError(
            "StorageUnreachable", f"cannot reach the object store for {uri}: {code}"
        ) from exc


def _list_parquet(uri: str, field: str) -> tuple[ObjectInfo, ...]:
    try:
        # On file:// each file's marker is the MD5 of its bytes: an mtime changes when
        # identical bytes are rewritten, so rewritten files would look like new data.
        found = parquet_files(uri)
    except StorageError as exc:
        raise classify_storage_error(exc, writing=False) from exc
    if not found:
        raise TrainingError("DataNotFound", f"{field}: no Parquet file at {uri}")
    return found


def data_files(spec: TrainingPipelineSpec) -> tuple[ObjectInfo, ...]:
    """The files a run of `spec` trains on (training, then validation), listed only: on S3
    the listing's ETags stand for the content, nothing is read."""
    files = _list_parquet(spec.data.train, "spec.data.train")
    if spec.data.validation:
        files += _list_parquet(spec.data.validation, "spec.data.validation")
    return files


def _arrow_path(uri: str) -> str:
    if urlparse(uri).scheme == "s3":
        bucket, key = S3Store.split(uri)
        return f"{bucket}/{key}"
    return str(FileStore.path(uri))


def fingerprint(files: tuple[ObjectInfo, ...]) -> str:
    """sha256 over (path, size, ETag/MD5) of every input file: same files, same print."""
    digest = hashlib.sha256()
    for info in files:
        digest.update(f"{info.uri}\0{info.size}\0{info.marker}\n".encode())
    return "sha256:" + digest.hexdigest()


def _read(uri: str, field: str, target: str, wanted: list[str] | None) -> Dataset:
    files = _list_parquet(uri, field)
    filesystem, _ = arrow_filesystem(uri)
    try:
        table = _read_files([_arrow_path(f.uri) for f in files], filesystem, uri, target, wanted)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        if _corrupt(exc):
            raise TrainingError(
                "CorruptData",
                f"{field}: {uri} holds a file that is not readable Parquet ({exc}): "
                "rewrite or remove it",
            ) from exc
        raise TrainingError(
            "NonNumericColumn", f"{field}: files of {uri} disagree on column types: {exc}"
        ) from exc
    except OSError as exc:
        error = StorageError(f"cannot read {uri}: {exc}")
        raise classify_storage_error(error, writing=False) from exc
    return Dataset(uri, files, table)


def _read_files(
    paths: list[str], filesystem: Any, uri: str, target: str, wanted: list[str] | None
) -> pa.Table:
    """The rows of every file, as a pyarrow dataset would give them: the first file's schema
    rules, a column a later file lacks is null there, other types are cast safely to it (a
    lossy cast raises). Read file by file with pyarrow.parquet: pyarrow.dataset imports
    pandas (a second of CPU in every trainer container that reads data)."""
    schema: pa.Schema | None = None
    columns: list[str] = []
    tables = []
    for path in paths:
        with filesystem.open_input_file(path) as handle:
            parquet = pq.ParquetFile(handle)
            if schema is None:
                names = parquet.schema_arrow.names
                if target not in names:
                    raise TrainingError(
                        "MissingTargetColumn",
                        f"spec.data.target {target!r} is not a column of {uri} (columns: "
                        f"{', '.join(names[:20])})",
                    )
                features = wanted if wanted is not None else [n for n in names if n != target]
                missing = [n for n in features if n not in names]
                if missing:
                    raise TrainingError(
                        "MissingFeatureColumn",
                        f"spec.data.features: {', '.join(missing)} not in {uri}",
                    )
                columns = [*features, target]
                schema = pa.schema([parquet.schema_arrow.field(n) for n in columns])
            present = set(parquet.schema_arrow.names)
            part = parquet.read(columns=[n for n in columns if n in present])
        whole = [
            part.column(f.name) if f.name in present else pa.nulls(part.num_rows, f.type)
            for f in schema
        ]
        tables.append(pa.Table.from_arrays(whole, names=columns).cast(schema, safe=True))
    assert schema is not None  # _list_parquet returns at least one file
    return pa.concat_tables(tables)


_CORRUPT_HINTS = ("magic bytes", "is this a 'parquet' file", "deserialize", "corrupt", "thrift")


def _corrupt(exc: Exception) -> bool:
    """Whether pyarrow failed on the bytes of a file rather than on mismatched schemas."""
    text = str(exc).lower()
    return any(hint in text for hint in _CORRUPT_HINTS)


def _kind(name: str, dtype: pa.DataType) -> str:
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return "numeric"
    if (
        pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or pa.types.is_dictionary(dtype)
        or pa.types.is_boolean(dtype)
    ):
        return "categorical"
    raise TrainingError(
        "InvalidSpec",
        f"column {name!r} has type {dtype}, which the trainer cannot use: leave it out of "
        "spec.data.features",
    )


def _as_strings(column: pa.ChunkedArray) -> pa.Array:
    array = column.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    return pc.cast(array, pa.string())


def _check_numeric_strings(name: str, column: pa.ChunkedArray, uri: str) -> None:
    if pa.types.is_boolean(column.type):
        return
    uniques = pc.unique(pc.drop_null(_as_strings(column))).to_pylist()[:5000]
    bad = []
    for value in uniques:
        try:
            float(value)
        except ValueError:
            bad.append(value)
    numeric = len(uniques) - len(bad)
    if bad and numeric >= 5 and numeric / len(uniques) >= NUMERIC_SHARE:
        examples = ", ".join(repr(v) for v in bad[:3])
        raise TrainingError(
            "NonNumericColumn",
            f"column {name!r} of {uri} looks numeric ({numeric} of {len(uniques)} distinct "
            f"values are numbers) but holds strings such as {examples}: clean or cast it",
        )


def _categories(column: pa.ChunkedArray) -> tuple[str, ...]:
    values = [str(v) for v in pc.unique(pc.drop_null(column.combine_chunks())).to_pylist()]
    if pa.types.is_dictionary(column.type):
        values = [str(v) for v in pc.unique(pc.drop_null(_as_strings(column))).to_pylist()]
    return tuple(sorted(values)[:MAX_MANIFEST_CATEGORIES])


MAX_CLASSES = 1000


def _check_class_labels(target: str, column: pa.ChunkedArray) -> None:
    """A classification target holds labels: not fractions, and not thousands of values."""
    if pa.types.is_floating(column.type):
        values = column.to_numpy(zero_copy_only=False)
        if np.any(values != np.round(values)):
            raise TrainingError(
                "InvalidTarget",
                f"spec.data.target {target!r} holds fractional numbers, not class labels: "
                "use task regression, or store the labels as integers or strings",
            )
    distinct = pc.count_distinct(column).as_py()
    if distinct > MAX_CLASSES:
        raise TrainingError(
            "InvalidTarget",
            f"spec.data.target {target!r} has {distinct} distinct values (at most {MAX_CLASSES} "
            "classes): use task regression, or bin the target",
        )


def load_training_data(spec: TrainingPipelineSpec) -> TrainingData:
    """Read, check and split the data of a spec; raises TrainingError with the reason."""
    target = spec.data.target
    for uri in filter(None, (spec.data.train, spec.data.validation)):
        preflight(uri)
    train = _read(spec.data.train, "spec.data.train", target, spec.data.features)
    names = [n for n in train.table.column_names if n != target]
    validation = (
        _read(spec.data.validation, "spec.data.validation", target, names)
        if spec.data.validation
        else None
    )
    kinds = {n: _kind(n, train.table.schema.field(n).type) for n in names}
    for name, kind in kinds.items():
        if kind == "categorical":
            _check_numeric_strings(name, train.table.column(name), train.uri)
        if validation is not None:
            other = _kind(name, validation.table.schema.field(name).type)
            if other != kind:
                raise TrainingError(
                    "NonNumericColumn",
                    f"column {name!r} is {kind} in spec.data.train but {other} in "
                    "spec.data.validation",
                )

    def clean(table: pa.Table) -> tuple[pa.Table, int]:
        if table.column(target).null_count == 0:
            return table, 0  # the common case: no copy of the whole table
        valid = pc.is_valid(table.column(target))
        kept = table.filter(valid)
        return kept, table.num_rows - kept.num_rows

    table, dropped = clean(train.table)
    if table.num_rows == 0:
        raise TrainingError(
            "EmptyDataset", f"spec.data.train {spec.data.train} has no rows with a target"
        )
    target_type = table.schema.field(target).type
    if spec.model.task == "regression" and not (
        pa.types.is_integer(target_type) or pa.types.is_floating(target_type)
    ):
        raise TrainingError(
            "InvalidTarget",
            f"spec.data.target {target!r} must be numeric for task regression but is "
            f"{target_type}: cast it or use task classification",
        )
    if spec.model.task == "classification":
        _check_class_labels(target, table.column(target))
    if validation is not None:
        val_table, val_dropped = clean(validation.table)
        dropped += val_dropped
        if val_table.num_rows == 0:
            raise TrainingError(
                "EmptyDataset", f"spec.data.validation {spec.data.validation} has no rows"
            )
        train_table = table
    else:
        rng = np.random.default_rng(spec.seed)
        order = rng.permutation(table.num_rows)
        n_val = round(table.num_rows * spec.data.validation_fraction)
        if n_val < 1 or n_val >= table.num_rows:
            raise TrainingError(
                "EmptyDataset",
                f"spec.data.train has {table.num_rows} rows: too few to hold out "
                f"{spec.data.validation_fraction:.0%} for validation",
            )
        val_table = table.take(pa.array(np.sort(order[:n_val])))
        train_table = table.take(pa.array(np.sort(order[n_val:])))
    classes = None
    if spec.model.task == "classification":
        classes = tuple(sorted(pc.unique(train_table.column(target)).to_pylist()))
        if len(classes) < 2:
            raise TrainingError(
                "InvalidTarget",
                f"spec.data.target {target!r} has a single class {classes!r} in the training "
                "rows: classification needs at least two",
            )
        unseen = set(pc.unique(val_table.column(target)).to_pylist()) - set(classes)
        if unseen:
            raise TrainingError(
                "InvalidTarget",
                f"spec.data.validation holds target classes the training rows lack: "
                f"{sorted(unseen, key=str)[:10]!r}",
            )
    features = tuple(
        Feature(
            name=n,
            dtype=str(train_table.schema.field(n).type),
            kind=kinds[n],
            categories=_categories(train_table.column(n)) if kinds[n] == "categorical" else None,
        )
        for n in names
    )
    files = train.files + (validation.files if validation is not None else ())
    return TrainingData(
        train=train_table,
        validation=val_table,
        features=features,
        target=target,
        classes=classes,
        fingerprint=fingerprint(files),
        files=files,
        dropped_missing_target=dropped,
        source=ProfileSource(
            files=train.files,
            rows=train_table.num_rows,
            target=target,
            holdout_seed=None if validation is not None else spec.seed,
            holdout_fraction=None if validation is not None else spec.data.validation_fraction,
        ),
    )


def feature_columns(table: pa.Table, features: tuple[Feature, ...]) -> dict[str, Any]:
    """One numpy array per feature, as `modelformat.feature_matrix` expects."""
    out: dict[str, Any] = {}
    for feat in features:
        column = table.column(feat.name)
        if feat.kind == "numeric":
            out[feat.name] = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        else:
            if pa.types.is_dictionary(column.type):
                column = pa.chunked_array([_as_strings(column)])
            out[feat.name] = column.to_numpy(zero_copy_only=False)
    return out
