"""Fixtures of the trainer tests.

Real: Parquet files written with pyarrow (the churn generator of `kubeloop.local.demo.datagen`),
scikit-learn and PyTorch on CPU, moto's S3 server on loopback for s3:// (the trainer reaches it
through AWS_ENDPOINT_URL, exactly as in a pod), `torchrun` with the gloo backend for DDP, and a
real Pushgateway when the Debian package is installed. Nothing is mocked; where a test needs a
process to die, it dies by SIGKILL.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from kubeloop.local.demo.datagen import churn_table

ROOT = Path(__file__).resolve().parents[3]
Spec = dict[str, Any]
Runner = Callable[..., tuple[int, dict[str, Any]]]

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def write_parquet(folder: Path, table: pa.Table, name: str = "part-0.parquet") -> Path:
    """Write one Parquet file into `folder` (created); returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    pq.write_table(table, path)
    return path


def make_spec(data: str, artifacts: str, **model: Any) -> Spec:
    """A TrainingPipeline spec (snake-case keys the models accept as camelCase too)."""
    return {
        "data": {"train": data, "target": "churned"},
        "model": {
            "framework": "sklearn",
            "task": "classification",
            "estimator": "LogisticRegression",
            **model,
        },
        "artifacts": artifacts,
        "seed": 7,
    }


def with_changes(spec: Spec, **sections: Any) -> Spec:
    """A deep copy of `spec` with keys of its sections replaced, e.g. data={"target": "x"}."""
    out = copy.deepcopy(spec)
    for section, values in sections.items():
        if isinstance(out.get(section), dict):
            out[section].update(values)
        else:
            out[section] = values
    return out


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a trainer subprocess: this checkout's package first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT / "operator"), env.get("PYTHONPATH")])
    )
    env.setdefault("KUBELOOP_NUM_THREADS", "1")
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def churn_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-file Parquet dataset of 1500 churn rows (numeric + categorical + 0/1 label)."""
    folder = tmp_path_factory.mktemp("churn")
    write_parquet(folder, churn_table(1500, seed=3))
    return folder


@pytest.fixture
def spec_for(tmp_path: Path, churn_dir: Path) -> Callable[..., Spec]:
    """spec_for(**model) -> a spec over churn_dir with file:// artifacts in tmp_path."""

    def build(**model: Any) -> Spec:
        return make_spec(churn_dir.as_uri() + "/", (tmp_path / "models").as_uri() + "/", **model)

    return build


def train_in_process(argv: list[str], env: dict[str, str]) -> int:
    """`kubeloop train <argv>` in this process with `env` added to the environment, which is
    restored after: what a trainer container runs, without a Python start and the imports
    (seconds each on 2 cores) for every step a test runs. Where the process boundary is what a
    test checks (user code with the SDK alone, a SIGKILL), the test starts a process itself."""
    from kubeloop.workloads.trainer.main import main

    saved = dict(os.environ)
    os.environ.update({"KUBELOOP_NUM_THREADS": "1", **env})  # 2 shared cores: more contend
    # Like a fresh pod: boto3's default session caches the credentials it first resolved.
    boto3.DEFAULT_SESSION = None
    try:
        return main(argv)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        boto3.DEFAULT_SESSION = None


@pytest.fixture
def train(tmp_path: Path) -> Runner:
    """Run `kubeloop train --spec` in this process; returns (exit code, result JSON)."""

    def run(spec: Spec, *args: str, env: dict[str, str] | None = None) -> tuple[int, Any]:
        name = uuid.uuid4().hex[:8]
        spec_path = tmp_path / f"spec-{name}.yaml"
        spec_path.write_text(yaml.safe_dump({"kind": "TrainingPipeline", "spec": spec}))
        result_path = tmp_path / f"result-{name}.json"
        code = train_in_process(
            ["--spec", str(spec_path), "--result-path", str(result_path), *args],
            {"KUBELOOP_WORK_DIR": str(tmp_path / "scratch"), **(env or {})},
        )
        return code, json.loads(result_path.read_text())

    return run


# s3_endpoint and bucket (moto on loopback) come from tests/conftest.py.


def upload_dir(folder: Path, uri: str) -> None:
    """Copy every file of `folder` below the s3:// prefix `uri`."""
    import boto3

    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            key = f"{prefix.rstrip('/')}/{path.relative_to(folder).as_posix()}".lstrip("/")
            client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())


def run_cli(
    args: list[str], env: dict[str, str], timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """`python -m kubeloop.cli <args>` as a pod runs it; output captured."""
    return subprocess.run(
        [sys.executable, "-m", "kubeloop.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


MLP = {"epochs": 6, "hiddenSizes": [16], "batchSize": 64, "patience": 0, "dropout": 0.2}


def mlp_spec(spec_for: Callable[..., Spec], **params: Any) -> Spec:
    """A TabularMLP spec: small and fast, dropout on (so its RNG is part of what is checked)."""
    return spec_for(framework="torch", estimator="TabularMLP", params={**MLP, **params})


def write_spec(spec: Spec, path: Path) -> Path:
    """Write `spec` as a TrainingPipeline YAML file, as a user passes it to --spec."""
    path.write_text(yaml.safe_dump({"kind": "TrainingPipeline", "spec": spec}))
    return path


def manifest_of(result: dict[str, Any]) -> dict[str, Any]:
    """The manifest of a file:// result's version, plus `_weights`: the sha256 of model.pt."""
    from kubeloop.modelformat import sha256_file

    folder = Path(result["uri"].removeprefix("file://"))
    manifest: dict[str, Any] = json.loads((folder / "manifest.json").read_text())
    manifest["_weights"] = sha256_file(folder / "model.pt")
    return manifest
