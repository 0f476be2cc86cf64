"""Write scikit-learn's bundled digits (1,797 images of 8x8 pixels, no download) as Parquet.

    python make_data.py data/            # data/digits.parquet: what spec.data.train points at
    python make_data.py run/data --staged  # train.parquet + validation.parquet, as Kubeloop
                                           # stages them, for a run of train.py on a laptop

Columns: px0 .. px63 (float64 intensities 0..16, row by row) and label (int64, 0..9).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.datasets import load_digits

__all__ = ["digits_table", "main"]


def digits_table() -> pa.Table:
    """The 1,797 digits, one column per pixel and the label."""
    digits = load_digits()
    columns = {f"px{i}": digits.data[:, i].astype(np.float64) for i in range(64)}
    columns["label"] = digits.target.astype(np.int64)
    return pa.table(columns)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write into")
    parser.add_argument(
        "--staged",
        action="store_true",
        help="write train.parquet and validation.parquet (a seeded 80/20 split)",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    table = digits_table()
    if not args.staged:
        pq.write_table(table, args.out / "digits.parquet")
        return
    order = np.random.default_rng(42).permutation(table.num_rows)
    cut = int(0.8 * table.num_rows)
    pq.write_table(table.take(order[:cut]), args.out / "train.parquet")
    pq.write_table(table.take(order[cut:]), args.out / "validation.parquet")


if __name__ == "__main__":
    main()
