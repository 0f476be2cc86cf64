"""Where a profile's reference rows came from: the data files and the rows of them it counted.

A profile (kubeloop.profile) is a sketch; a few statistics need the reference itself (at
millions of rows the KS p-value moves ~0.01 for a 1e-5 change of its statistic, more than any
compact sketch can hold). So the profile records its source, enough to stream exactly the rows
it was built from again, and to tell when that is no longer possible:

- `files`: the Parquet files in the order they were read, each with its size and a content
  marker (the ETag an S3 listing gives; on file://, the MD5 of the bytes, as the trainer's
  data fingerprint has it: an mtime changes when identical bytes are rewritten);
- `rows`: how many rows the profile counted;
- the selection the trainer made from those files' rows: rows whose `target` is missing are
  dropped, then, without a separate validation set, the rows a seeded permutation holds out
  (`holdoutSeed`, `holdoutFraction`: `np.random.default_rng(seed).permutation(n)`, its first
  `round(n * fraction)` entries) are not profiled.

`parquet_files` is the one listing of a Parquet URI with those markers, used by the trainer
(data fingerprint, profile source) and by the monitor (is the source still the same?).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kubeloop.storage import FileStore, ObjectInfo, store_for

__all__ = ["ProfileSource", "md5_file", "parquet_files"]


def md5_file(path: Path) -> str:
    """Hex MD5 of a file's bytes (what S3's ETag is for a single-part upload)."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parquet_files(uri: str) -> tuple[ObjectInfo, ...]:
    """The Parquet files of `uri` (a .parquet file or a folder; `_`/`.`-prefixed parts
    skipped), sorted by URI, each with a content marker; empty when there are none. Raises
    StorageError when the store cannot be listed."""
    store = store_for(uri)
    if uri.endswith(".parquet"):
        found = [o for o in store.list(uri) if o.uri == uri]
    else:
        prefix = uri.rstrip("/") + "/"
        found = [
            o
            for o in store.list(prefix)
            if o.uri.endswith(".parquet")
            and not any(p.startswith(("_", ".")) for p in o.uri[len(prefix) :].split("/"))
        ]
    if isinstance(store, FileStore):
        found = [replace(o, marker=md5_file(FileStore.path(o.uri))) for o in found]
    return tuple(sorted(found, key=lambda o: o.uri))


@dataclass(frozen=True)
class ProfileSource:
    """The data a profile was built from (module docstring)."""

    files: tuple[ObjectInfo, ...]
    rows: int
    target: str | None = None
    holdout_seed: int | None = None
    holdout_fraction: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The `source` entry of profile.json."""
        return {
            "files": [{"uri": f.uri, "size": f.size, "marker": f.marker} for f in self.files],
            "rows": self.rows,
            "target": self.target,
            "holdoutSeed": self.holdout_seed,
            "holdoutFraction": self.holdout_fraction,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ProfileSource:
        """Parse the `source` entry of profile.json (KeyError/TypeError/ValueError if bad)."""
        seed, fraction = raw.get("holdoutSeed"), raw.get("holdoutFraction")
        return cls(
            files=tuple(
                ObjectInfo(str(f["uri"]), int(f["size"]), str(f["marker"])) for f in raw["files"]
            ),
            rows=int(raw["rows"]),
            target=str(raw["target"]) if raw.get("target") is not None else None,
            holdout_seed=int(seed) if seed is not None else None,
            holdout_fraction=float(fraction) if fraction is not None else None,
        )
