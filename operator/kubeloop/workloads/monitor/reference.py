"""The reference the window is compared with: a version's profile.json or a Parquet dataset.

A model version folder (the trainer wrote `profile.json` next to `manifest.json`) is read as is:
no training data is touched. Any other URI is read as a Parquet file or folder and profiled in
two streaming passes (`kubeloop.profile.ProfileBuilder`), so a reference larger than memory
works too. In both cases KS and Wasserstein use the profile's bounded random sample
(`kubeloop.profile.SAMPLE_SIZE` values) as the reference side: one code path, bounded memory,
and exact whenever the reference has no more rows than the sample.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.dataset as ds

from kubeloop.profile import Profile, build_profile_streaming, load_profile
from kubeloop.storage import NotFoundError, arrow_filesystem, join, store_for

__all__ = ["feature_kinds", "load_reference"]


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

    def batches() -> Iterator[pa.RecordBatch]:
        yield from dataset.to_batches(columns=names, batch_size=128 * 1024, batch_readahead=2)

    return load_profile(build_profile_streaming(batches, numeric, categorical))
