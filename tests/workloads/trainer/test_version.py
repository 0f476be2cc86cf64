"""The model version a run writes: folder, manifest, checksums, profile, safe numbering."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from kubeloop.api.training import TrainingPipelineSpec
from kubeloop.modelformat import ChecksumError, load_predictor, verify_folder
from kubeloop.profile import load_profile
from kubeloop.registry import Registry
from kubeloop.storage import store_for
from kubeloop.workloads.monitor.validation import fit_calibrator
from kubeloop.workloads.trainer import run as run_module
from kubeloop.workloads.trainer.context import RunContext
from kubeloop.workloads.trainer.mlp import Distributed
from kubeloop.workloads.trainer.progress import ProgressReporter
from kubeloop.workloads.trainer.run import run_training

from .conftest import Runner, Spec, upload_dir


def _folder(result: dict[str, Any]) -> Path:
    return Path(result["uri"].removeprefix("file://"))


def test_a_sklearn_version_has_model_manifest_profile_and_checksums(
    spec_for: Callable[..., Spec], train: Runner
) -> None:
    code, result = train(spec_for(estimator="RandomForestClassifier", params={"n_estimators": 5}))
    assert code == 0
    assert result["version"] == "1" and result["uri"].endswith("/models/versions/1")
    folder = _folder(result)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sorted(manifest["files"]) == [
        "model.joblib",
        "profile.json",
        "validation-outputs.json",
        "validation-predictions.parquet",
    ]
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    # what the monitor compares served outputs with (prediction drift, CBPE calibration)
    outputs = pq.read_table(folder / "validation-predictions.parquet")
    assert outputs.num_rows == manifest["data"]["rows"]["validation"]
    proba = [n for n in outputs.column_names if n.startswith("_proba_")]
    assert len(proba) == 2 and {"_prediction", "_label"} <= set(outputs.column_names)
    # and what the monitor derives from them, derived once (the same as from the Parquet)
    positive = proba[1][len("_proba_") :]
    stored = json.loads((folder / "validation-outputs.json").read_text())["calibrators"][positive]
    fitted = fit_calibrator(outputs, positive)
    assert fitted is not None and stored == {"x": fitted.x.tolist(), "y": fitted.y.tolist()}
    assert manifest["version"] == "1" and manifest["framework"] == "sklearn"
    assert manifest["estimator"] == "RandomForestClassifier"
    assert manifest["params"]["n_estimators"] == 5 and manifest["params"]["random_state"] == 7
    assert manifest["metrics"] == result["metrics"]
    assert manifest["seed"] == 7 and manifest["task"] == "classification"
    assert {"python", "scikit-learn", "numpy", "pyarrow"} <= set(manifest["frameworkVersions"])
    data = manifest["data"]
    assert data["fingerprint"].startswith("sha256:") and len(data["files"]) == 1
    assert data["rows"] == {"train": 1200, "validation": 300, "droppedMissingTarget": 0}
    assert manifest["target"] == {"name": "churned", "dtype": "int64", "classes": [0, 1]}
    features = {f["name"]: f for f in manifest["features"]}
    assert features["tenure"]["kind"] == "numeric" and features["tenure"]["dtype"] == "double"
    assert features["contract"]["categories"] == ["month-to-month", "one-year", "two-year"]
    profile = load_profile((folder / "profile.json").read_text())
    assert sorted(profile.features) == sorted(features)
    # Its source: the files read and the rows of them profiled (the monitor's exact KS).
    assert profile.source is not None and profile.source.rows == 1200 == profile.rows
    assert [(f.uri, f.size, f.marker) for f in profile.source.files] == [
        (f["uri"], f["size"], f["marker"]) for f in data["files"]
    ]
    assert (profile.source.target, profile.source.holdout_seed) == ("churned", 7)


def test_a_tampered_file_fails_verification(spec_for: Callable[..., Spec], train: Runner) -> None:
    code, result = train(spec_for())
    assert code == 0
    folder = _folder(result)
    verify_folder(folder)
    with (folder / "model.joblib").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ChecksumError, match=r"model\.joblib: sha256 differs"):
        load_predictor(folder)


def test_the_preprocessing_is_saved_with_the_model_and_handles_unseen_categories(
    spec_for: Callable[..., Spec], train: Runner
) -> None:
    code, result = train(spec_for())
    assert code == 0
    predictor = load_predictor(_folder(result))
    pipeline = predictor._model
    # The fitted scaler of the saved pipeline holds the training rows' means (the profile's).
    scaler = pipeline.named_steps["preprocess"].named_transformers_["numeric"][-1]
    profile = json.loads((_folder(result) / "profile.json").read_text())["numeric"]
    numeric = ["tenure", "monthly_charges", "total_charges", "support_calls"]
    assert scaler.mean_ == pytest.approx([profile[n]["mean"] for n in numeric], rel=1e-9)
    rows = {
        "tenure": np.array([12.0, np.nan]),
        "monthly_charges": np.array([70.0, 70.0]),
        "total_charges": np.array([840.0, 840.0]),
        "support_calls": np.array([1.0, 1.0]),
        "contract": np.array(["lifetime", None], dtype=object),  # unseen, missing
        "payment_method": np.array(["crypto", "credit-card"], dtype=object),
    }
    prediction = predictor.predict(rows)
    assert prediction.probabilities is not None
    assert np.all(np.isfinite(prediction.probabilities))
    assert np.allclose(prediction.probabilities.sum(axis=1), 1.0)


def test_a_torch_version_loads_for_serving_with_the_same_predictions(
    spec_for: Callable[..., Spec], train: Runner
) -> None:
    code, result = train(
        spec_for(
            framework="torch", estimator="TabularMLP", params={"epochs": 2, "hiddenSizes": [8]}
        )
    )
    assert code == 0, result
    folder = _folder(result)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sorted(manifest["files"]) == [
        "model.pt",
        "preprocess.joblib",
        "profile.json",
        "validation-outputs.json",
        "validation-predictions.parquet",
    ]
    assert manifest["architecture"]["hiddenSizes"] == [8]
    assert manifest["training"]["device"] == "cpu" and manifest["training"]["amp"] is False
    assert "torch" in manifest["frameworkVersions"]
    predictor = load_predictor(folder)
    rows = {f["name"]: np.array([1.0, 30.0]) for f in manifest["features"]}
    rows["contract"] = np.array(["one-year", "two-year"], dtype=object)
    rows["payment_method"] = np.array(["credit-card", "unseen"], dtype=object)
    prediction = predictor.predict(rows)
    assert prediction.probabilities is not None and prediction.probabilities.shape == (2, 2)


def test_runs_number_their_versions_and_never_overwrite(
    spec_for: Callable[..., Spec], train: Runner
) -> None:
    spec = spec_for()
    first = train(spec, "--run-id", "a")[1]
    second = train(spec, "--run-id", "b")[1]
    again = train(spec, "--run-id", "a")[1]  # a restarted pod of run a: same version back
    assert (first["version"], second["version"], again["version"]) == ("1", "2", "1")
    assert Registry(spec["artifacts"]).versions() == [1, 2]


def _job_env(spec: Spec, uid: str, run_id: int) -> dict[str, str]:
    """The run's env as the operator's real Job builder sets it for pipeline object `uid`."""
    from kubeloop.resources.common import Owner, WorkloadDefaults
    from kubeloop.resources.training import build_training_job

    owner = Owner("kubeloop.io/v1alpha1", "TrainingPipeline", "churn", "ml", uid)
    parsed = TrainingPipelineSpec.model_validate(spec)
    job = build_training_job(
        owner, parsed, run_id=run_id, trigger="Create", generation=1, defaults=WorkloadDefaults()
    )
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    wanted = {"KUBELOOP_PIPELINE", "KUBELOOP_PIPELINE_UID", "KUBELOOP_RUN_ID", "KUBELOOP_NAMESPACE"}
    return {e["name"]: e["value"] for e in env if e["name"] in wanted}


def test_a_recreated_pipeline_trains_a_new_version_instead_of_reusing_the_old_one(
    spec_for: Callable[..., Spec], train: Runner, caplog: pytest.LogCaptureFixture
) -> None:
    """Delete a pipeline, create one with the same name and artifacts but another model: its
    run 1 trains and publishes a new version, it does not get the old object's version 1.
    A restarted pod of the new run 1 still gets its own version back."""
    old_spec = spec_for(estimator="LogisticRegression")
    code, old = train(old_spec, env=_job_env(old_spec, "uid-old", 1))
    assert code == 0 and old["version"] == "1", old

    new_spec = spec_for(estimator="RandomForestClassifier", params={"n_estimators": 5})
    caplog.set_level(logging.INFO, logger="kubeloop.train")
    code, new = train(new_spec, env=_job_env(new_spec, "uid-new", 1))
    assert code == 0 and new["version"] == "2", new
    assert not any("already published" in r.getMessage() for r in caplog.records)
    manifest = json.loads((_folder(new) / "manifest.json").read_text())
    assert manifest["estimator"] == "RandomForestClassifier" and manifest["runId"] == "1"
    assert manifest["pipelineUid"] == "uid-new"
    old_manifest = json.loads((_folder(old) / "manifest.json").read_text())
    assert old_manifest["estimator"] == "LogisticRegression"  # version 1 is untouched

    code, again = train(new_spec, env=_job_env(new_spec, "uid-new", 1))
    assert code == 0 and again["version"] == "2"  # same run of the same object: resumed
    assert Registry(new_spec["artifacts"]).versions() == [1, 2]


def test_a_half_written_version_is_never_listed_and_its_run_completes_it(
    spec_for: Callable[..., Spec], train: Runner
) -> None:
    spec = spec_for()
    registry = Registry(spec["artifacts"])
    claim = registry.allocate("crashed")
    store_for(spec["artifacts"]).write_bytes(claim.uri + "/model.joblib", b"partial")
    assert registry.versions() == []
    other = train(spec, "--run-id", "other")[1]
    assert other["version"] == "2"  # number 1 stays with its run
    code, resumed = train(spec, "--run-id", "crashed")
    assert code == 0 and resumed["version"] == "1"
    verify_folder(_folder(resumed))
    assert registry.versions() == [1, 2]


class _TogetherRegistry(Registry):
    """A Registry whose allocate() waits until every run is ready to allocate."""

    barrier: threading.Barrier

    def allocate(self, run_id: str, pipeline_uid: str | None = None) -> Any:
        self.barrier.wait(timeout=60)
        return super().allocate(run_id, pipeline_uid)


def _finish_together(spec: Spec, runs: int, tmp_path: Path, monkeypatch: Any) -> list[Any]:
    _TogetherRegistry.barrier = threading.Barrier(runs)
    monkeypatch.setattr(run_module, "Registry", _TogetherRegistry)
    parsed = TrainingPipelineSpec.model_validate(spec)
    results: list[Any] = [None] * runs

    def one(i: int) -> None:
        ctx = RunContext(
            run_id=f"run-{i}",
            pipeline="churn",
            namespace="ml",
            image="test",
            work_dir=tmp_path,
            dist=Distributed(),
            progress=ProgressReporter(None, None),
        )
        try:
            results[i] = run_training(parsed, ctx)
        except Exception as exc:  # reported below, with the thread's failure
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def test_runs_finishing_together_get_distinct_versions_on_file(
    spec_for: Callable[..., Spec], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = spec_for()
    results = _finish_together(spec, 3, tmp_path, monkeypatch)
    assert all(isinstance(r, dict) for r in results), results
    assert sorted(r["version"] for r in results) == ["1", "2", "3"]
    assert Registry(spec["artifacts"]).versions() == [1, 2, 3]


def test_runs_finishing_together_get_distinct_versions_on_s3(
    spec_for: Callable[..., Spec],
    bucket: str,
    churn_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    upload_dir(churn_dir, f"{bucket}/data/")
    spec = spec_for()
    spec["data"]["train"] = f"{bucket}/data/"
    spec["artifacts"] = f"{bucket}/models/"
    results = _finish_together(spec, 3, tmp_path, monkeypatch)
    assert all(isinstance(r, dict) for r in results), results
    assert sorted(r["version"] for r in results) == ["1", "2", "3"]
    registry = Registry(spec["artifacts"])
    assert registry.versions() == [1, 2, 3]
    owners = {registry.read_manifest(v)["runId"] for v in (1, 2, 3)}
    assert owners == {"run-0", "run-1", "run-2"}
