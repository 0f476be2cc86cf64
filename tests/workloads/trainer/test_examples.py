"""The shipped examples: every TrainingPipeline parses for the trainer, and the local one
trains on a laptop-sized dataset into a complete version (`kubeloop train --spec FILE`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubeloop.local.demo.datagen import write_demo_data
from kubeloop.modelformat import verify_folder
from kubeloop.workloads.trainer.main import load_spec, main

from .conftest import ROOT

PIPELINES = sorted(
    p for p in (ROOT / "examples").rglob("*.yaml") if "kind: TrainingPipeline" in p.read_text()
)


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.name)
def test_every_example_pipeline_parses(path: Path) -> None:
    spec = load_spec(str(path))
    assert spec.data.target and spec.artifacts


def test_the_local_example_trains_a_complete_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # its file:// URIs are relative: .demo/ under the cwd
    monkeypatch.setenv("KUBELOOP_NUM_THREADS", "1")
    monkeypatch.setenv("KUBELOOP_WORK_DIR", str(tmp_path / "scratch"))
    write_demo_data(tmp_path / ".demo" / "data", rows=2000)
    result_path = tmp_path / "result.json"
    example = ROOT / "examples" / "local" / "churn.yaml"
    code = main(["--spec", str(example), "--result-path", str(result_path)])
    result = json.loads(result_path.read_text())
    assert code == 0, result
    folder = tmp_path / ".demo" / "models" / "churn" / "versions" / "1"
    verify_folder(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["metrics"]["roc_auc"] >= 0.75  # the example's promotion gate
    assert manifest["data"]["rows"]["train"] == 1600
    assert manifest["data"]["fingerprint"].startswith("sha256:")
    assert len(manifest["features"]) == 6 and manifest["profile"] == "profile.json"
    assert set(manifest["files"]) == {
        "model.joblib",
        "profile.json",
        "validation-outputs.json",
        "validation-predictions.parquet",
    }
