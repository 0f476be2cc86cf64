"""Synthetic drift-benchmark data: a reference Parquet folder, its profile.json, and a window of
payload logs in the server's layout (dt=/hour= partitions), written in chunks so generating
10M x 50 never holds the whole table."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kubeloop.profile import build_profile_streaming
from kubeloop.workloads.monitor.reference import feature_kinds

__all__ = ["NOW", "generate", "names", "shifted"]

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
CHUNK = 500_000
CATEGORIES = [f"cat_{i:02d}" for i in range(30)]


def names(features: int) -> tuple[list[str], list[str]]:
    """(numeric, categorical) feature names: 70% numeric, 30% categorical."""
    n_cat = max(1, round(features * 0.3))
    return [f"num_{i:02d}" for i in range(features - n_cat)], [f"cat_{i:02d}" for i in range(n_cat)]


def shifted(features: int) -> list[str]:
    """The features whose current-window distribution differs from the reference by construction
    (a fifth of each kind, see _chunk); every other feature is drawn identically."""
    numeric, categorical = names(features)
    return [n for i, n in enumerate(numeric) if i % 5 == 0] + [
        n for i, n in enumerate(categorical) if i % 5 == 0
    ]


def _chunk(rng: np.random.Generator, rows: int, features: int, drift: bool) -> pa.Table:
    numeric, categorical = names(features)
    columns: dict[str, pa.Array] = {}
    for i, name in enumerate(numeric):
        # A fifth of the features drift in the current window, by half a standard deviation.
        shift = 0.5 if drift and i % 5 == 0 else 0.0
        if i % 3 == 0:
            values = rng.normal(shift, 1.0, rows)
        elif i % 3 == 1:
            values = rng.lognormal(0.0 + shift, 0.5, rows)
        else:
            values = np.floor(rng.gamma(2.0, 10.0, rows) * (1 + shift))
        columns[name] = pa.array(values)
    for i, name in enumerate(categorical):
        k = 5 + 5 * (i % 5)
        p = np.linspace(1.0, 2.0, k)
        if drift and i % 5 == 0:
            p = p[::-1]
        index = rng.choice(k, rows, p=p / p.sum())
        columns[name] = pa.DictionaryArray.from_arrays(
            pa.array(index.astype(np.int32)), pa.array(CATEGORIES[:k])
        ).dictionary_decode()
    return pa.table(columns)


def generate(root: Path, ref_rows: int, cur_rows: int, features: int, seed: int = 0) -> None:
    """Write root/reference/*.parquet, root/version/profile.json and root/logs/dt=.../hour=..."""
    if (root / "done").exists():
        return
    rng = np.random.default_rng(seed)
    (root / "reference").mkdir(parents=True, exist_ok=True)
    for i, start in enumerate(range(0, ref_rows, CHUNK)):
        table = _chunk(rng, min(CHUNK, ref_rows - start), features, drift=False)
        pq.write_table(table, root / "reference" / f"part-{i:04d}.parquet")
    chunks = range(0, cur_rows, CHUNK)
    for i, start in enumerate(chunks):
        rows = min(CHUNK, cur_rows - start)
        table = _chunk(rng, rows, features, drift=True)
        # Spread the window over the last 20 hours, one file per chunk.
        when = NOW - timedelta(hours=1 + (i * 20) // max(len(chunks), 1))
        table = table.append_column("_ts", pa.array([when] * rows, pa.timestamp("us", tz="UTC")))
        table = table.append_column("_model_version", pa.array(["1"] * rows))
        folder = root / "logs" / f"dt={when:%Y-%m-%d}" / f"hour={when:%H}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / f"part-{i:04d}.parquet")
    import pyarrow.dataset as ds

    dataset = ds.dataset(root / "reference", format="parquet")
    numeric, categorical = feature_kinds(dataset.schema, dataset.schema.names)
    profile = build_profile_streaming(
        lambda: dataset.to_batches(batch_size=128 * 1024), numeric, categorical
    )
    (root / "version").mkdir(exist_ok=True)
    (root / "version" / "profile.json").write_text(json.dumps(profile))
    (root / "done").write_text("ok")
