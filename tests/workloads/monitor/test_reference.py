"""A raw Parquet reference is profiled within a memory budget, exactly when columns fit it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from kubeloop.profile import build_profile, load_profile
from kubeloop.workloads.monitor.reference import BYTES_PER_VALUE, column_groups, profile_dataset


@pytest.mark.parametrize(
    ("names", "rows", "budget", "groups"),
    [
        (["a", "b", "c"], 1_000, 3 * 1_000 * BYTES_PER_VALUE, [["a", "b", "c"]]),
        (["a", "b", "c"], 1_000, 2 * 1_000 * BYTES_PER_VALUE, [["a", "b"], ["c"]]),
        (["a", "b", "c"], 1_000, 1_000 * BYTES_PER_VALUE, [["a"], ["b"], ["c"]]),
        (["a", "b", "c"], 1_000, 1_000 * BYTES_PER_VALUE - 1, []),  # stream instead
    ],
)
def test_column_groups_fit_the_budget(
    names: list[str], rows: int, budget: int, groups: list[list[str]]
) -> None:
    assert column_groups(names, rows, budget) == groups


def _reference(tmp_path: Path) -> tuple[pa.Table, ds.Dataset]:
    rng = np.random.default_rng(4)
    rows = 30_000
    x = rng.normal(0, 1, rows)
    x[::97] = np.nan
    table = pa.table(
        {
            "x": x,
            "y": np.floor(rng.gamma(2.0, 10.0, rows)),
            "c": rng.choice(["a", "b", "c"], rows).tolist(),
        }
    )
    folder = tmp_path / "reference"
    folder.mkdir()
    pq.write_table(table.slice(0, 17_000), folder / "part-0.parquet", row_group_size=5_000)
    pq.write_table(table.slice(17_000), folder / "part-1.parquet", row_group_size=5_000)
    return table, ds.dataset(folder, format="parquet")


def test_columns_that_fit_are_profiled_exactly_one_group_at_a_time(tmp_path: Path) -> None:
    table, dataset = _reference(tmp_path)
    expected = build_profile(table, ["x", "y"], ["c"])
    one_at_a_time = profile_dataset(dataset, ["x", "y"], ["c"], budget=30_000 * BYTES_PER_VALUE)
    assert one_at_a_time == expected


def test_a_reference_too_large_for_the_budget_is_streamed_with_exact_counts(
    tmp_path: Path,
) -> None:
    table, dataset = _reference(tmp_path)
    streamed = load_profile(profile_dataset(dataset, ["x", "y"], ["c"], budget=1_000))
    for name in ("x", "y"):
        values = table.column(name).to_numpy()
        ordered = np.sort(values[~np.isnan(values)])
        ref = streamed.numeric[name]
        assert ref.count == ordered.size and ref.missing == values.size - ordered.size
        assert ref.le.tolist() == np.searchsorted(ordered, ref.points, side="right").tolist()
        assert ref.lt.tolist() == np.searchsorted(ordered, ref.points, side="left").tolist()
    assert sum(streamed.categorical["c"].categories.values()) == table.num_rows
