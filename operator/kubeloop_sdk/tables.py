"""The data Kubeloop staged for this run: `train.parquet` and `validation.parquet`.

The split is Kubeloop's (deterministic for the pipeline's seed), so the gate scores every
version on rows your code never trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kubeloop_sdk.context import context

__all__ = ["SPLITS", "read_table"]

SPLITS = ("train", "validation")


def read_table(split: str = "train", columns: Sequence[str] | None = None) -> Any:
    """`<dataDir>/<split>.parquet` as a pyarrow.Table (pyarrow must be in your image)."""
    if split not in SPLITS:
        raise ValueError(f"read_table(split={split!r}): use 'train' or 'validation'")
    path = context().data_dir / f"{split}.parquet"
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(
            "kubeloop_sdk.read_table needs pyarrow in your image (pip install pyarrow); "
            f"or read {path} with a Parquet reader of your own"
        ) from None
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no {split} data; Kubeloop's prepare container stages it (in a run of "
            "your own, put the Parquet file there, or set dataDir in write_context)"
        )
    return pq.read_table(path, columns=list(columns) if columns is not None else None)
