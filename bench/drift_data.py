"""Synthetic drift-benchmark data: a reference Parquet folder, its profile.json, and a window of
payload logs in the server's layout (dt=/hour= partitions), written in chunks so generating
10M x 50 never holds the whole table.

A third of the features shift in the window: numeric ones alternately by half a standard
deviation (mean) and by 1.5x their spread (scale), over normal, lognormal and floored-gamma
(discrete) shapes; categorical ones have their category shares reversed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kubeloop.profile_source import ProfileSource, parquet_files
from kubeloop.workloads.monitor.reference import feature_kinds, profile_dataset

__all__ = ["NOW", "generate", "names", "record_source", "shift_kind", "shifted"]

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
CHUNK = 500_000
CATEGORIES = [f"cat_{i:02d}" for i in range(30)]


def names(features: int) -> tuple[list[str], list[str]]:
    """(numeric, categorical) feature names: 70% numeric, 30% categorical."""
    n_cat = max(1, round(features * 0.3))
    return [f"num_{i:02d}" for i in range(features - n_cat)], [f"cat_{i:02d}" for i in range(n_cat)]


def shifted(features: int) -> list[str]:
    """The features whose current-window distribution differs from the reference by construction
    (a third of each kind, see _chunk); every other feature is drawn identically."""
    numeric, categorical = names(features)
    return [n for i, n in enumerate(numeric) if i % 3 == 0] + [
        n for i, n in enumerate(categorical) if i % 3 == 0
    ]


# name -> (draw, mean, standard deviation) of the numeric shapes, cycled over the features.
SHAPES = [
    ("normal", lambda rng, rows: rng.normal(0.0, 1.0, rows), 0.0, 1.0),
    (
        "lognormal",
        lambda rng, rows: rng.lognormal(0.0, 0.5, rows),
        float(np.exp(0.125)),
        float(np.exp(0.125) * np.sqrt(np.exp(0.25) - 1.0)),
    ),
    ("gamma", lambda rng, rows: rng.gamma(2.0, 10.0, rows), 20.0, float(np.sqrt(200.0))),
]


def shift_kind(index: int) -> str:
    """How the numeric feature at `index` shifts in the window: none, mean or scale."""
    if index % 3:
        return "none"
    return "mean" if (index // 3) % 2 == 0 else "scale"


def _chunk(rng: np.random.Generator, rows: int, features: int, drift: bool) -> pa.Table:
    numeric, categorical = names(features)
    columns: dict[str, pa.Array] = {}
    for i, name in enumerate(numeric):
        shape, draw, mean, std = SHAPES[(i // 3) % len(SHAPES)]
        values = draw(rng, rows)
        kind = shift_kind(i) if drift else "none"
        if kind == "mean":  # half a standard deviation
            values = values + 0.5 * std
        elif kind == "scale":  # 1.5x the spread about the mean
            values = mean + (values - mean) * 1.5
        if shape == "gamma":  # a discrete feature: ties in both ECDFs
            values = np.floor(values)
        columns[name] = pa.array(values)
    for i, name in enumerate(categorical):
        k = 5 + 5 * (i % 5)
        p = np.linspace(1.0, 3.0, k)
        if drift and i % 3 == 0:
            p = p[::-1]
        index = rng.choice(k, rows, p=p / p.sum())
        columns[name] = pa.DictionaryArray.from_arrays(
            pa.array(index.astype(np.int32)), pa.array(CATEGORIES[:k])
        ).dictionary_decode()
    return pa.table(columns)


def record_source(root: Path) -> None:
    """Record in root/version/profile.json the data it was built from, as the trainer does
    (every row of root/reference: no target, no hold-out), so that a KS check against the
    profile streams that data (kubeloop.workloads.monitor.exact_reference)."""
    path = root / "version" / "profile.json"
    profile = json.loads(path.read_text())
    if "source" in profile:
        return
    files = parquet_files(f"file://{root / 'reference'}")
    profile["source"] = ProfileSource(files=files, rows=int(profile["rows"])).to_dict()
    path.write_text(json.dumps(profile))


def generate(root: Path, ref_rows: int, cur_rows: int, features: int, seed: int = 0) -> None:
    """Write root/reference/*.parquet, root/version/profile.json and root/logs/dt=.../hour=..."""
    if (root / "done").exists():
        record_source(root)  # data generated before profiles recorded their source
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
    # What the trainer's build_profile writes, a few columns at a time (the monitor's own
    # raw-reference path): exact points, memory bounded.
    profile = profile_dataset(dataset, numeric, categorical)
    (root / "version").mkdir(exist_ok=True)
    (root / "version" / "profile.json").write_text(json.dumps(profile))
    record_source(root)
    (root / "done").write_text("ok")
