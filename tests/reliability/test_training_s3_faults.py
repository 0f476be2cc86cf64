"""Training through S3 faults: `kubeloop train` (a subprocess, as in a pod) reads its Parquet
data and publishes its model version through the fault proxy in front of moto. It must finish
with a complete version that verifies, or fail with a clear reason — never half a version.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from tests.reliability.faultproxy import FaultPlan, fault_proxy

from kubeloop.local.demo.datagen import churn_table
from kubeloop.modelformat import verify_folder
from kubeloop.registry import Registry
from kubeloop.storage import S3Store, join

pytestmark = pytest.mark.slow  # minutes: `make test` starts it first

ROOT = Path(__file__).resolve().parents[2]


def _spec(bucket: str) -> dict[str, object]:
    return {
        "kind": "TrainingPipeline",
        "spec": {
            "data": {"train": join(bucket, "datasets/churn/"), "target": "churned"},
            "model": {
                "framework": "sklearn",
                "task": "classification",
                "estimator": "HistGradientBoostingClassifier",
                "params": {"max_iter": 20},
            },
            "artifacts": join(bucket, "models/churn/"),
            "seed": 7,
        },
    }


def _train(spec_path: Path, result: Path, endpoint: str, run_id: str) -> int:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "operator"),
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_MAX_ATTEMPTS": "10",
        "AWS_RETRY_MODE": "standard",
        "KUBELOOP_WORK_DIR": str(result.parent / f"work-{run_id}"),
        "KUBELOOP_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubeloop.cli",
            "train",
            "--spec",
            str(spec_path),
            "--run-id",
            run_id,
            "--result-path",
            str(result),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        print(proc.stdout[-2000:], proc.stderr[-2000:])
    return proc.returncode


def test_training_through_s3_faults_publishes_a_complete_version(
    bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    store = S3Store()
    for part in range(3):
        sink = io.BytesIO()
        pq.write_table(churn_table(600, seed=part), sink)
        store.write_bytes(join(bucket, f"datasets/churn/part-{part}.parquet"), sink.getvalue())
    spec_path = tmp_path / "pipeline.yaml"
    spec_path.write_text(yaml.safe_dump(_spec(bucket)))
    plan = FaultPlan({"ok": 0.8, "throttle": 0.07, "error": 0.07, "lost": 0.06}, seed=17)
    with fault_proxy(s3_endpoint, plan) as proxy:
        code = _train(spec_path, tmp_path / "result.json", proxy, "1")
    result = json.loads((tmp_path / "result.json").read_text())
    assert code == 0, result
    registry = Registry(join(bucket, "models/churn/"))
    assert registry.versions() == [1]
    prefix = registry.version_uri(1) + "/"
    folder = tmp_path / "v1"
    for obj in store.list(prefix):
        target = folder / obj.uri[len(prefix) :]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(store.read_bytes(obj.uri))
    verify_folder(folder)
    print(
        f"\nRELIABILITY training-s3-faults: requests={sum(plan.counts.values())}, "
        f"faults={plan.faults} {dict(plan.counts)}, exit={code}, versions=1, half_written=0"
    )
    assert plan.faults > 0


def test_training_against_a_dead_store_fails_clearly(bucket: str, tmp_path: Path) -> None:
    spec_path = tmp_path / "pipeline.yaml"
    spec_path.write_text(yaml.safe_dump(_spec(bucket)))
    plan = FaultPlan({"error": 1.0}, seed=1)
    with fault_proxy("http://127.0.0.1:9", plan) as proxy:
        os.environ["AWS_MAX_ATTEMPTS"] = "2"
        try:
            code = _train(spec_path, tmp_path / "result.json", proxy, "1")
        finally:
            del os.environ["AWS_MAX_ATTEMPTS"]
    result = json.loads((tmp_path / "result.json").read_text())
    print(f"\nRELIABILITY training-dead-store: exit={code}, result={result}")
    assert code != 0
    assert result.get("ok") is False
    text = json.dumps(result)
    assert result["reason"] == "StorageUnreachable" and "s3://" in result["message"], text
