"""s3:// end to end against moto's S3 server: data in, version, checkpoints and aliases out."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import boto3

from kubeloop.modelformat import load_predictor
from kubeloop.registry import Registry
from kubeloop.storage import store_for
from kubeloop.workloads.trainer.checkpoints import CheckpointStore

from .conftest import Runner, Spec, mlp_spec, upload_dir


def _download(prefix: str, folder: Path) -> Path:
    store = store_for(prefix)
    for obj in store.list(prefix.rstrip("/") + "/"):
        target = folder / obj.uri[len(prefix.rstrip("/")) + 1 :]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(store.read_bytes(obj.uri))
    return folder


def test_sklearn_from_s3_data_to_an_s3_version_that_verifies(
    spec_for: Callable[..., Spec], train: Runner, bucket: str, churn_dir: Path, tmp_path: Path
) -> None:
    upload_dir(churn_dir, f"{bucket}/datasets/churn/")
    spec = spec_for(estimator="HistGradientBoostingClassifier", params={"max_iter": 20})
    spec["data"]["train"] = f"{bucket}/datasets/churn/"
    spec["artifacts"] = f"{bucket}/models/churn/"
    code, result = train(spec, "--run-id", "3")
    assert code == 0, result
    assert result["uri"] == f"{bucket}/models/churn/versions/1"
    registry = Registry(spec["artifacts"])
    manifest = registry.read_manifest(1)
    etag = boto3.client("s3").head_object(
        Bucket=bucket.removeprefix("s3://"), Key="datasets/churn/part-0.parquet"
    )["ETag"]
    assert manifest["data"]["files"][0]["marker"] == etag.strip('"')
    folder = _download(result["uri"], tmp_path / "v1")
    predictor = load_predictor(folder)  # verifies every sha256 before loading
    assert predictor.classes == (0, 1)
    registry.set_alias("champion", 1, by="test", reason="verified")
    assert registry.resolve("champion") == result["uri"]


def test_torch_on_s3_checkpoints_under_the_run_and_publishes(
    spec_for: Callable[..., Spec], train: Runner, bucket: str, churn_dir: Path
) -> None:
    upload_dir(churn_dir, f"{bucket}/datasets/churn/")
    spec = mlp_spec(spec_for, epochs=3)
    spec["data"]["train"] = f"{bucket}/datasets/churn/part-0.parquet"
    spec["artifacts"] = f"{bucket}/models/churn/"
    code, result = train(spec, "--run-id", "9")
    assert code == 0, result
    store = CheckpointStore(spec["artifacts"], "9")
    assert store._epochs() == [2, 3]
    import torch

    state = torch.load(io.BytesIO(store.store.read_bytes(store.uri(3))), weights_only=True)
    assert state["epoch"] == 3 and [h["epoch"] for h in state["history"]] == [1, 2, 3]
    manifest = Registry(spec["artifacts"]).read_manifest(1)
    assert sorted(manifest["files"]) == [
        "model.pt",
        "preprocess.joblib",
        "profile.json",
        "validation-outputs.json",
        "validation-predictions.parquet",
    ]
    run_marker = store_for(spec["artifacts"]).read_bytes(f"{spec['artifacts']}runs/9/run.json")
    assert json.loads(run_marker)["runId"] == "9"
