"""The run scores the champion on its own validation rows, so the gate compares like with like.

Real runs of the trainer (in this process), real version folders on file://; the gate is the
operator's own pure function.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from kubeloop.api.training import TrainingPipelineSpec
from kubeloop.controller.training import gate
from kubeloop.local.demo.datagen import churn_table

from .conftest import Runner, Spec, write_parquet

GATED = {"metric": "roc_auc", "mustBeatChampion": True}


def _champion_env(result: dict[str, Any]) -> dict[str, str]:
    return {"KUBELOOP_CHAMPION_VERSION": result["version"], "KUBELOOP_CHAMPION_URI": result["uri"]}


def _status_champion(result: dict[str, Any]) -> dict[str, Any]:
    """status.champion as the operator records it when that run is promoted."""
    return {
        "version": result["version"],
        "uri": result["uri"],
        "metrics": result["metrics"],
        "score": result["metrics"]["roc_auc"],
    }


@pytest.fixture(scope="module")
def harder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Older, harder data: the same population with a third of its labels flipped, so any
    model's validation score on it is low."""
    table = churn_table(1500, seed=5)
    rng = np.random.default_rng(5)
    labels = table.column("churned").to_numpy()
    flipped = np.where(rng.uniform(size=len(labels)) < 0.33, 1 - labels, labels)
    table = table.set_column(
        table.schema.get_field_index("churned"), "churned", pa.array(flipped.astype(np.int64))
    )
    folder = tmp_path_factory.mktemp("harder")
    write_parquet(folder, table)
    return folder


def test_a_challenger_better_than_the_recorded_score_but_worse_on_the_same_rows_is_rejected(
    spec_for: Callable[..., Spec], train: Runner, harder_dir: Path
) -> None:
    # v1: a good model, recorded with a low score because its validation rows were noisy.
    older = spec_for(estimator="LogisticRegression", params={"max_iter": 300})
    older["data"]["train"] = harder_dir.as_uri() + "/"
    code, v1 = train(older)
    assert code == 0
    # v2: a weak model (three trees of depth 2) on today's clean data.
    weak = spec_for(
        estimator="RandomForestClassifier",
        params={"n_estimators": 3, "max_depth": 2},
    )
    weak["promotion"] = GATED
    code, v2 = train(weak, env=_champion_env(v1))
    assert code == 0 and v2["version"] == "2"

    recorded = v1["metrics"]["roc_auc"]
    own = v2["metrics"]["roc_auc"]
    same_rows = v2["championMetrics"]["roc_auc"]
    assert v2["championVersion"] == "1"
    assert recorded < own < same_rows, (recorded, own, same_rows)
    spec = TrainingPipelineSpec.model_validate(weak)
    champion = _status_champion(v1)
    passed, message = gate(spec, v2, champion)
    assert not passed
    assert message == (
        f"roc_auc {own:g} does not beat champion v1's {same_rows:g} on this run's validation data"
    )
    # What the gate decided before runs scored the champion: the unfair comparison promoted it.
    assert gate(spec, {"metrics": v2["metrics"]}, champion)[0]

    # The version's manifest records both scores on the same rows.
    manifest = json.loads((Path(v2["uri"].removeprefix("file://")) / "manifest.json").read_text())
    assert manifest["gate"] == {
        "validationRows": 300,
        "metrics": v2["metrics"],
        "champion": {"version": "1", "metrics": v2["championMetrics"]},
    }
    # The champion scored by itself on the same split gives the same numbers: same rows, same
    # evaluate().
    code, again = train(weak, env=_champion_env(v1))
    assert again["championMetrics"] == v2["championMetrics"]


def _corrupt(result: dict[str, Any]) -> str:
    folder = Path(result["uri"].removeprefix("file://"))
    with (folder / "model.joblib").open("ab") as handle:
        handle.write(b"\0")
    return "it failed checksum verification"


def _lose(result: dict[str, Any]) -> str:
    folder = Path(result["uri"].removeprefix("file://"))
    (folder / "manifest.json").unlink()
    return "its files cannot be read"


@pytest.mark.parametrize("spoil", [_corrupt, _lose], ids=["checksum mismatch", "missing version"])
def test_a_champion_that_cannot_be_scored_gives_an_error_and_the_run_still_succeeds(
    spec_for: Callable[..., Spec], train: Runner, spoil: Callable[[dict[str, Any]], str]
) -> None:
    code, v1 = train(spec_for())
    assert code == 0
    cause = spoil(v1)
    spec = {**spec_for(), "promotion": GATED}
    code, v2 = train(spec, env=_champion_env(v1))
    assert code == 0 and v2["ok"] and v2["version"] == "2"
    assert "championMetrics" not in v2
    assert v2["championError"].startswith(f"champion v1 ({v1['uri']}) could not be scored: {cause}")
    passed, message = gate(TrainingPipelineSpec.model_validate(spec), v2, _status_champion(v1))
    assert not passed and v2["championError"] in message


def test_a_champion_whose_signature_does_not_fit_the_new_data_gives_an_error(
    spec_for: Callable[..., Spec], train: Runner, tmp_path: Path
) -> None:
    code, v1 = train(spec_for())
    assert code == 0
    narrower = churn_table(600, seed=9).drop_columns(["support_calls"])
    write_parquet(tmp_path / "narrower", narrower)
    # The column is dropped on purpose: data validation lets a missing column pass.
    spec = {**spec_for(), "promotion": GATED, "dataValidation": {"missingColumnShare": 1}}
    spec["data"]["train"] = (tmp_path / "narrower").as_uri() + "/"
    code, v2 = train(spec, env=_champion_env(v1))
    assert code == 0
    assert v2["championError"] == (
        f"champion v1 ({v1['uri']}) could not be scored: its signature does not fit the new "
        "data: inputs support_calls are not feature columns of this run's data"
    )


def test_without_must_beat_champion_the_champion_is_not_scored(
    spec_for: Callable[..., Spec], train: Runner
) -> None:
    code, v1 = train(spec_for())
    spec = {**spec_for(), "promotion": {"metric": "roc_auc", "mustBeatChampion": False}}
    code, v2 = train(spec, env=_champion_env(v1))
    assert code == 0
    assert not {"championVersion", "championMetrics", "championError"} & set(v2)
    manifest = json.loads((Path(v2["uri"].removeprefix("file://")) / "manifest.json").read_text())
    assert "gate" not in manifest


def test_a_long_champion_error_leaves_room_for_the_metrics_in_the_result(
    spec_for: Callable[..., Spec], train: Runner, tmp_path: Path
) -> None:
    code, v1 = train(spec_for())
    folder = Path(v1["uri"].removeprefix("file://"))
    manifest = json.loads((folder / "manifest.json").read_text())
    # A manifest listing many files that are not there: a checksum error naming each of them.
    manifest["files"].update({f"shard-{i:04d}.bin": "0" * 64 for i in range(400)})
    (folder / "manifest.json").write_text(json.dumps(manifest))
    code, v2 = train({**spec_for(), "promotion": GATED}, env=_champion_env(v1))
    assert code == 0 and "truncated" not in v2
    assert v2["metrics"]["roc_auc"] > 0.5
    assert v2["championError"].startswith("champion v1 (") and v2["championError"].endswith("...")
    assert len(v2["championError"]) == 600


def test_a_retried_pod_of_a_published_run_reports_the_champion_scores_it_recorded(
    spec_for: Callable[..., Spec], train: Runner
) -> None:
    code, v1 = train(spec_for(), "--run-id", "1")
    spec = {**spec_for(), "promotion": GATED}
    code, v2 = train(spec, "--run-id", "2", env=_champion_env(v1))
    assert code == 0 and v2["championVersion"] == "1"
    # The same run again (its pod retried after publishing): the version back, with the
    # scores that run recorded in its manifest.
    code, again = train(spec, "--run-id", "2", env=_champion_env(v1))
    assert code == 0 and again["version"] == "2"
    assert again["championVersion"] == "1"
    assert again["championMetrics"] == v2["championMetrics"]
