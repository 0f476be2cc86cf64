"""Reading training data: file or folder, projection, the seeded split, the fingerprint."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubeloop.api.training import TrainingPipelineSpec
from kubeloop.local.demo.datagen import churn_table
from kubeloop.modelformat import Feature, feature_matrix
from kubeloop.workloads.trainer.data import feature_columns, load_training_data
from kubeloop.workloads.trainer.errors import TrainingError

from .conftest import make_spec, with_changes, write_parquet


def _spec(uri: str, **changes: object) -> TrainingPipelineSpec:
    raw = with_changes(make_spec(uri, "file:///unused/"), **changes)
    return TrainingPipelineSpec.model_validate(raw)


def test_a_single_file_and_its_folder_read_the_same_rows(churn_dir: Path) -> None:
    by_file = load_training_data(_spec((churn_dir / "part-0.parquet").as_uri()))
    by_folder = load_training_data(_spec(churn_dir.as_uri() + "/"))
    assert by_file.train.num_rows + by_file.validation.num_rows == 1500
    assert by_file.train.equals(by_folder.train)
    assert by_file.validation.equals(by_folder.validation)


def test_a_folder_of_several_files_skips_hidden_and_underscore_files(tmp_path: Path) -> None:
    table = churn_table(900, seed=1)
    write_parquet(tmp_path, table.slice(0, 300), "part-0.parquet")
    write_parquet(tmp_path / "year=2026", table.slice(300, 300), "part-1.parquet")
    write_parquet(tmp_path, table.slice(600, 300), "part-2.parquet")
    (tmp_path / "_SUCCESS").write_text("")
    write_parquet(tmp_path / ".staging", table.slice(0, 50), "part-9.parquet")
    data = load_training_data(_spec(tmp_path.as_uri()))
    assert data.train.num_rows + data.validation.num_rows == 900
    assert [Path(f.uri).name for f in data.files] == [
        "part-0.parquet",
        "part-2.parquet",
        "part-1.parquet",
    ]


def test_only_the_named_features_and_the_target_are_read(churn_dir: Path) -> None:
    data = load_training_data(_spec(churn_dir.as_uri(), data={"features": ["tenure", "contract"]}))
    assert data.train.column_names == ["tenure", "contract", "churned"]
    assert [(f.name, f.kind) for f in data.features] == [
        ("tenure", "numeric"),
        ("contract", "categorical"),
    ]
    contract = data.features[1]
    assert contract.categories == ("month-to-month", "one-year", "two-year")


def test_the_split_is_a_function_of_the_seed(churn_dir: Path) -> None:
    uri = churn_dir.as_uri()
    first = load_training_data(_spec(uri, seed=11))
    again = load_training_data(_spec(uri, seed=11))
    other = load_training_data(_spec(uri, seed=12))
    assert first.validation.equals(again.validation)
    assert first.train.equals(again.train)
    assert not first.validation.equals(other.validation)
    assert first.validation.num_rows == 300  # validationFraction 0.2 of 1500
    # Train and validation partition the rows: no row is in both, none is lost.
    seen = np.concatenate(
        [first.train.column("total_charges").to_numpy(), first.validation.column("total_charges")]
    )
    assert sorted(seen.tolist()) == sorted(churn_table(1500, seed=3).column(2).to_pylist())


def test_a_fraction_of_the_rows_is_held_out(churn_dir: Path) -> None:
    data = load_training_data(_spec(churn_dir.as_uri(), data={"validationFraction": 0.1}))
    assert (data.train.num_rows, data.validation.num_rows) == (1350, 150)


def test_an_explicit_validation_set_is_used_whole(tmp_path: Path) -> None:
    write_parquet(tmp_path / "train", churn_table(400, seed=1))
    write_parquet(tmp_path / "valid", churn_table(120, seed=2))
    spec = _spec((tmp_path / "train").as_uri(), data={"validation": (tmp_path / "valid").as_uri()})
    data = load_training_data(spec)
    assert (data.train.num_rows, data.validation.num_rows) == (400, 120)
    assert len(data.files) == 2


def test_rows_without_a_target_are_dropped_and_counted(tmp_path: Path) -> None:
    table = churn_table(500, seed=1)
    target = table.column("churned").to_pylist()
    target[:25] = [None] * 25
    table = table.set_column(6, "churned", pa.array(target, pa.int64()))
    write_parquet(tmp_path, table)
    data = load_training_data(_spec(tmp_path.as_uri()))
    assert data.dropped_missing_target == 25
    assert data.train.num_rows + data.validation.num_rows == 475


def test_the_fingerprint_changes_with_the_files_and_only_then(tmp_path: Path) -> None:
    path = write_parquet(tmp_path, churn_table(300, seed=1))
    spec = _spec(tmp_path.as_uri())
    first = load_training_data(spec).fingerprint
    assert first.startswith("sha256:")
    assert load_training_data(spec).fingerprint == first
    write_parquet(tmp_path, churn_table(300, seed=2))  # same name and size class, new content
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert load_training_data(spec).fingerprint != first


def test_feature_columns_give_floats_for_numbers_and_strings_for_categories(
    churn_dir: Path,
) -> None:
    table = pa.table(
        {
            "n": pa.array([1, None, 3], pa.int32()),
            "c": pa.array(["a", "b", "a"]).dictionary_encode(),
            "churned": [0, 1, 0],
        }
    )
    write_parquet(churn_dir.parent / "dict", table)
    data = load_training_data(
        _spec((churn_dir.parent / "dict").as_uri(), data={"validationFraction": 0.34})
    )
    columns = feature_columns(data.train, data.features)
    assert columns["n"].dtype == np.float64
    assert [str(v) for v in columns["c"]] == [str(v) for v in data.train.column("c").to_pylist()]


def test_a_numeric_column_holding_strings_is_refused_before_training(tmp_path: Path) -> None:
    values = [f"{v:.2f}" for v in np.linspace(1, 100, 200)]
    values[17] = "n/a"
    table = pa.table({"charges": values, "churned": [i % 2 for i in range(200)]})
    write_parquet(tmp_path, table)
    with pytest.raises(TrainingError) as info:
        load_training_data(_spec(tmp_path.as_uri()))
    assert info.value.reason == "NonNumericColumn"
    assert "'charges'" in info.value.message and "'n/a'" in info.value.message


def test_text_columns_that_are_not_numbers_stay_categorical(tmp_path: Path) -> None:
    table = pa.table({"zip": ["10115", "80331", "20095"] * 50, "churned": [0, 1] * 75})
    write_parquet(tmp_path, table)
    data = load_training_data(_spec(tmp_path.as_uri()))
    assert data.features[0].kind == "categorical"


@given(
    st.lists(
        st.one_of(
            st.none(),
            st.just(float("nan")),
            st.text(max_size=5),
            st.integers(-5, 5),
            st.floats(allow_nan=False, width=32),
            st.booleans(),
        ),
        max_size=30,
    ),
    st.booleans(),
)
@settings(max_examples=200, deadline=None)
def test_categorical_columns_become_str_or_nan_exactly_as_value_by_value(
    values: list[object], as_array: bool
) -> None:
    def missing(v: object) -> bool:
        return v is None or (isinstance(v, float) and math.isnan(v))

    raw = np.array(values, dtype=object) if as_array else values
    feature = Feature(name="c", dtype="string", kind="categorical")
    got = feature_matrix({"c": raw}, [feature])[:, 0].tolist()
    assert [missing(v) for v in got] == [missing(v) for v in values]
    assert [v for v in got if not missing(v)] == [str(v) for v in values if not missing(v)]
    assert all(type(v) is str for v in got if not missing(v))
