"""Each bad input gets its own reason, exit code and a message naming the field: a table.

S3 permission failures run against a second moto server started with IAM enforcement on
(`INITIAL_NO_AUTH_ACTION_COUNT`): a "reader" user may read the data but not write models,
a "writer" user the reverse.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from kubeloop.local.demo.datagen import churn_table
from kubeloop.workloads.trainer.errors import EXIT_CODES

from .conftest import S3_ENV, Runner, Spec, free_port, run_cli, subprocess_env, write_parquet


def _table_with(column: str, values: list[Any], rows: int = 200) -> pa.Table:
    table = churn_table(rows, seed=2)
    index = table.column_names.index(column)
    return table.set_column(index, column, pa.array(values))


# name -> (how to break the spec or the data, reason, words the message must contain)
Breaker = Callable[[Spec, Path], None]


def _data(table: pa.Table) -> Breaker:
    def apply(spec: Spec, tmp: Path) -> None:
        folder = tmp / "bad-data"
        write_parquet(folder, table)
        spec["data"]["train"] = folder.as_uri()

    return apply


def _corrupt(spec: Spec, tmp: Path) -> None:
    folder = tmp / "corrupt"
    folder.mkdir()
    (folder / "part-0.parquet").write_bytes(b"PAR1 this is not a parquet file")
    spec["data"]["train"] = folder.as_uri()


CASES: dict[str, tuple[Breaker, str, tuple[str, ...]]] = {
    "unknown estimator": (
        lambda s, _: s["model"].update(estimator="SVC"),
        "UnknownEstimator",
        ("spec.model.estimator", "'SVC'", "LogisticRegression"),
    ),
    "unknown parameter": (
        lambda s, _: s["model"].update(params={"penalty_strength": 1}),
        "InvalidParameter",
        ("spec.model.params.penalty_strength", "accepts"),
    ),
    "parameter out of range": (
        lambda s, _: s["model"].update(params={"max_iter": -5}),
        "InvalidParameter",
        ("spec.model.params.max_iter",),
    ),
    "spec misses artifacts": (
        lambda s, _: s.pop("artifacts"),
        "InvalidSpec",
        ("spec.artifacts",),
    ),
    "no parquet at the uri": (
        lambda s, tmp: s["data"].update(train=(tmp / "nowhere").as_uri()),
        "DataNotFound",
        ("spec.data.train", "no Parquet file"),
    ),
    "empty dataset": (
        _data(churn_table(10, seed=1).slice(0, 0)),
        "EmptyDataset",
        ("spec.data.train", "no rows"),
    ),
    "missing target column": (
        lambda s, _: s["data"].update(target="cancelled"),
        "MissingTargetColumn",
        ("spec.data.target", "'cancelled'", "columns: tenure"),
    ),
    "missing feature column": (
        lambda s, _: s["data"].update(features=["tenure", "age"]),
        "MissingFeatureColumn",
        ("spec.data.features", "age"),
    ),
    "numeric column holding strings": (
        _data(_table_with("monthly_charges", [f"{i}.5" for i in range(199)] + ["unknown"])),
        "NonNumericColumn",
        ("'monthly_charges'", "'unknown'"),
    ),
    "string target for regression": (
        lambda s, _: (
            s["model"].update(task="regression", estimator="Ridge"),
            s["data"].update(target="contract"),
        ),
        "InvalidTarget",
        ("spec.data.target", "'contract'", "numeric"),
    ),
    "fractional target for classification": (
        lambda s, _: s["data"].update(target="monthly_charges"),
        "InvalidTarget",
        ("spec.data.target", "'monthly_charges'", "task regression"),
    ),
    "a single class": (
        _data(_table_with("churned", [1] * 200)),
        "InvalidTarget",
        ("spec.data.target", "single class"),
    ),
    "corrupt parquet": (
        _corrupt,
        "CorruptData",
        ("spec.data.train", "not readable Parquet"),
    ),
    "artifacts not writable": (
        # /sys refuses mkdir even to root, where chmod-based tests would pass silently.
        lambda s, _: s.update(artifacts="file:///sys/kubeloop-models/"),
        "ArtifactsNotWritable",
        ("spec.artifacts", "kubeloop-models"),
    ),
    "artifacts path impossible": (
        lambda s, _: s.update(artifacts="file:///proc/kubeloop-models/"),
        "ArtifactsNotWritable",
        ("spec.artifacts",),
    ),
}


def test_every_reason_has_its_own_exit_code() -> None:
    assert len(set(EXIT_CODES.values())) == len(EXIT_CODES)
    assert 0 not in EXIT_CODES.values()


@pytest.mark.parametrize("case", CASES)
def test_a_bad_input_fails_with_its_reason_and_code(
    case: str, spec_for: Callable[..., Spec], train: Runner, tmp_path: Path
) -> None:
    breaker, reason, words = CASES[case]
    spec = spec_for()
    breaker(spec, tmp_path)
    code, result = train(spec)
    assert (code, result["reason"]) == (EXIT_CODES[reason], reason), result
    assert result["kind"] == "TrainingResult" and result["ok"] is False
    for word in words:
        assert word in result["message"], (word, result["message"])


def test_nothing_is_published_when_training_fails(
    spec_for: Callable[..., Spec], train: Runner, tmp_path: Path
) -> None:
    spec = spec_for()
    spec["data"]["target"] = "cancelled"
    assert train(spec)[0] == EXIT_CODES["MissingTargetColumn"]
    assert not (tmp_path / "models" / "versions").exists()


def test_the_cli_exits_with_the_code_and_leaves_the_result_without_a_traceback(
    spec_for: Callable[..., Spec], tmp_path: Path
) -> None:
    spec = spec_for()
    spec["data"]["target"] = "cancelled"
    spec_path = tmp_path / "pipeline.yaml"
    spec_path.write_text(yaml.safe_dump({"kind": "TrainingPipeline", "spec": spec}))
    result_path = tmp_path / "termination-log"
    done = run_cli(
        ["train", "--spec", str(spec_path)],
        subprocess_env(KUBELOOP_RESULT_PATH=str(result_path), KUBELOOP_WORK_DIR=str(tmp_path)),
    )
    assert done.returncode == EXIT_CODES["MissingTargetColumn"]
    assert "Traceback" not in done.stderr + done.stdout
    result = json.loads(result_path.read_text())
    assert result["reason"] == "MissingTargetColumn" and "spec.data.target" in result["message"]


def test_the_spec_can_come_from_env_as_camel_case_json(
    spec_for: Callable[..., Spec], train: Runner, tmp_path: Path
) -> None:
    from kubeloop.api.training import TrainingPipelineSpec
    from kubeloop.workloads.trainer.main import main

    spec = spec_for(params={"C": 0.5})
    spec["data"]["validationFraction"] = 0.25
    wire = TrainingPipelineSpec.model_validate(spec).to_wire()  # what the Job's env holds
    result_path = tmp_path / "result.json"
    saved = dict(os.environ)
    os.environ.update(KUBELOOP_SPEC=json.dumps(wire), KUBELOOP_RUN_ID="12")
    try:
        code = main(["--result-path", str(result_path), "--work-dir", str(tmp_path)])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    result = json.loads(result_path.read_text())
    assert code == 0, result
    assert result["runId"] == "12" and result["rows"]["validation"] == 375


# --- object storage --------------------------------------------------------------------------


def test_a_missing_bucket_is_storage_unreachable(
    spec_for: Callable[..., Spec], train: Runner, bucket: str
) -> None:
    spec = spec_for()
    spec["data"]["train"] = "s3://no-such-bucket-kubeloop/churn/"
    spec["artifacts"] = f"{bucket}/models/"
    code, result = train(spec)
    assert (code, result["reason"]) == (EXIT_CODES["StorageUnreachable"], "StorageUnreachable")
    assert "no-such-bucket-kubeloop" in result["message"]


def test_an_endpoint_nobody_listens_on_is_storage_unreachable_within_seconds(
    spec_for: Callable[..., Spec], train: Runner
) -> None:
    spec = spec_for()
    spec["artifacts"] = "s3://models/churn/"
    started = time.monotonic()
    code, result = train(
        spec, env={**S3_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    )
    assert (code, result["reason"]) == (EXIT_CODES["StorageUnreachable"], "StorageUnreachable")
    assert time.monotonic() - started < 30


@dataclass(frozen=True)
class LockedS3:
    """A moto server enforcing IAM, with two users' keys."""

    endpoint: str
    reader: dict[str, str]
    writer: dict[str, str]


SETUP_ACTIONS = 9  # requests moto lets through unauthenticated: the setup below, no more


@pytest.fixture(scope="module")
def locked_s3(churn_dir: Path) -> Iterator[LockedS3]:
    import boto3

    server = shutil.which("moto_server")
    if server is None:
        pytest.skip("moto_server (moto[server]) is not installed")
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_ACTIONS)}
    proc = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        admin = {"endpoint_url": endpoint, "region_name": "us-east-1", **_keys(S3_ENV)}
        s3, iam = boto3.client("s3", **admin), boto3.client("iam", **admin)
        s3.create_bucket(Bucket="data")
        s3.create_bucket(Bucket="models")
        body = (churn_dir / "part-0.parquet").read_bytes()
        s3.put_object(Bucket="data", Key="churn/part-0.parquet", Body=body)
        read_all = ["arn:aws:s3:::data", "arn:aws:s3:::data/*"]
        models = ["arn:aws:s3:::models", "arn:aws:s3:::models/*"]
        reader = _user(iam, "reader", ["s3:GetObject", "s3:ListBucket"], read_all + models)
        writer = _user(iam, "writer", ["s3:*"], models)
        yield LockedS3(endpoint, reader, writer)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _keys(env: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
    }


def _user(iam: Any, name: str, actions: list[str], resources: list[str]) -> dict[str, str]:
    statement = {"Effect": "Allow", "Action": actions, "Resource": resources}
    iam.create_user(UserName=name)
    iam.put_user_policy(
        UserName=name,
        PolicyName="access",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [statement]}),
    )
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        "AWS_DEFAULT_REGION": "us-east-1",
    }


@pytest.mark.parametrize(
    ("user", "reason", "field"),
    [
        ("reader", "ArtifactsNotWritable", "spec.artifacts"),
        ("writer", "StorageAccessDenied", "s3://data/churn/"),
    ],
)
def test_s3_permissions_are_reported_by_what_was_refused(  # noqa: PLR0917 - fixtures
    user: str,
    reason: str,
    field: str,
    locked_s3: LockedS3,
    spec_for: Callable[..., Spec],
    train: Runner,
) -> None:
    spec = spec_for()
    spec["data"]["train"] = "s3://data/churn/"
    spec["artifacts"] = "s3://models/churn/"
    keys = getattr(locked_s3, user)
    code, result = train(spec, env={**keys, "AWS_ENDPOINT_URL": locked_s3.endpoint})
    assert (code, result["reason"]) == (EXIT_CODES[reason], reason), result
    assert field in result["message"]
    assert keys["AWS_SECRET_ACCESS_KEY"] not in json.dumps(result)
