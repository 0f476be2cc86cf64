"""The trainer validates its data against the champion's profile before training and refuses
bad data with DataValidationFailed (exit 27), naming the columns; no version is written.

The champion is a version folder holding only what validation reads (its profile.json, built
from clean churn data as the trainer builds it): nothing is trained for it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest

from kubeloop.local.demo.datagen import churn_table
from kubeloop.profile import build_profile
from kubeloop.workloads.trainer.errors import EXIT_CODES

from .conftest import Runner, Spec, write_parquet

NUMERIC = ["tenure", "monthly_charges", "total_charges", "support_calls"]
CATEGORICAL = ["contract", "payment_method"]


@pytest.fixture
def champion(tmp_path: Path) -> dict[str, str]:
    """KUBELOOP_CHAMPION_* of a champion trained on clean data (its profile only)."""
    folder = tmp_path / "champion" / "versions" / "1"
    folder.mkdir(parents=True)
    profile = build_profile(churn_table(1500, seed=3), NUMERIC, CATEGORICAL)
    (folder / "profile.json").write_text(json.dumps(profile))
    return {"KUBELOOP_CHAMPION_VERSION": "1", "KUBELOOP_CHAMPION_URI": folder.as_uri()}


def _forty_percent_nulls(table: pa.Table) -> pa.Table:
    tenure = table.column("tenure").to_pylist()
    nulled = pa.array([None if i % 5 < 2 else v for i, v in enumerate(tenure)])
    return table.set_column(table.schema.get_field_index("tenure"), "tenure", nulled)


@pytest.mark.parametrize(
    ("broken", "named"),
    [
        (_forty_percent_nulls, "tenure: nullShare 0.4"),
        (lambda t: t.drop_columns(["support_calls"]), "support_calls: missingColumnShare 1"),
    ],
    ids=["nulls", "missing-column"],
)
def test_bad_data_is_refused_before_training(
    spec_for: Callable[..., Spec],
    train: Runner,
    champion: dict[str, str],
    tmp_path: Path,
    *,
    broken: Callable[[pa.Table], pa.Table],
    named: str,
) -> None:
    write_parquet(tmp_path / "broken", broken(churn_table(600, seed=9)))
    spec = spec_for()
    spec["data"]["train"] = (tmp_path / "broken").as_uri() + "/"
    code, result = train(spec, env=champion)
    assert code == EXIT_CODES["DataValidationFailed"] == 27
    assert (result["ok"], result["reason"]) == (False, "DataValidationFailed")
    assert named in result["message"] and "champion v1" in result["message"]
    assert not list((tmp_path / "models").rglob("manifest.json"))  # bad data trains no model


def test_the_check_can_be_loosened_or_turned_off(
    spec_for: Callable[..., Spec], train: Runner, champion: dict[str, str], tmp_path: Path
) -> None:
    write_parquet(tmp_path / "nulls", _forty_percent_nulls(churn_table(600, seed=9)))
    spec = {**spec_for(), "dataValidation": {"nullShare": 0.5}}
    spec["data"]["train"] = (tmp_path / "nulls").as_uri() + "/"
    code, result = train(spec, env=champion)
    assert (code, result["ok"]) == (0, True)
