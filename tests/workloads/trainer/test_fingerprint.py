"""`kubeloop fingerprint` (the data-watch CronJob's command): the same data gives the same
fingerprint, and the one a run records; new data gives another; on S3 it only lists."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from kubeloop.local.demo.datagen import churn_table
from kubeloop.workloads.datawatch import main

from .conftest import Runner, make_spec, upload_dir, write_parquet


def _fingerprint(tmp_path: Path, spec: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump({"kind": "TrainingPipeline", "spec": spec}))
    result_path = tmp_path / "result.json"
    code = main(["--spec", str(spec_path), "--result-path", str(result_path)])
    return code, json.loads(result_path.read_text())


def _rewrite(path: Path, table: pa.Table) -> None:
    """Write `table` to `path` again, with a later mtime (a job that rewrites its output)."""
    before = path.stat().st_mtime_ns
    pq.write_table(table, path)
    os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))


def test_on_file_identical_bytes_rewritten_keep_the_fingerprint_and_a_new_file_changes_it(
    tmp_path: Path, train: Runner
) -> None:
    data = tmp_path / "data"
    table = churn_table(300, seed=1)
    path = write_parquet(data, table)
    spec = make_spec(data.as_uri() + "/", (tmp_path / "models").as_uri() + "/")
    code, first = _fingerprint(tmp_path, spec)
    assert code == 0, first
    assert first["kind"] == "DataFingerprint" and first["ok"] is True
    assert first["files"] == 1 and first["bytes"] == path.stat().st_size

    _rewrite(path, table)
    assert _fingerprint(tmp_path, spec)[1]["fingerprint"] == first["fingerprint"]

    # A run of the same data records the same fingerprint (the operator compares the two).
    code, result = train(spec, "--run-id", "1")
    assert code == 0, result
    assert result["dataFingerprint"] == first["fingerprint"]

    write_parquet(data, churn_table(100, seed=2), "part-1.parquet")
    _, second = _fingerprint(tmp_path, spec)
    assert second["files"] == 2
    assert second["fingerprint"] != first["fingerprint"]


def test_missing_data_is_a_result_naming_the_field(tmp_path: Path) -> None:
    spec = make_spec((tmp_path / "nothing").as_uri() + "/", (tmp_path / "m").as_uri() + "/")
    code, result = _fingerprint(tmp_path, spec)
    assert code == 20
    assert result["ok"] is False and result["reason"] == "DataNotFound"
    assert "spec.data.train" in result["message"]


def test_on_s3_it_lists_only_and_follows_the_etags(
    tmp_path: Path, bucket: str, monkeypatch: Any
) -> None:
    data = tmp_path / "data"
    table = churn_table(300, seed=1)
    write_parquet(data, table)
    upload_dir(data, f"{bucket}/churn/")
    spec = make_spec(f"{bucket}/churn/", f"{bucket}/models/")
    calls: list[str] = []
    record: Callable[..., None] = lambda model, **_: calls.append(model.name)  # noqa: E731
    session = boto3.Session()
    session.events.register("before-call.s3", record)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)

    code, first = _fingerprint(tmp_path, spec)
    assert code == 0, first
    assert set(calls) == {"ListObjectsV2"}  # no GetObject: the listing's ETags stand in

    upload_dir(data, f"{bucket}/churn/")  # identical bytes uploaded again: same ETag
    assert _fingerprint(tmp_path, spec)[1]["fingerprint"] == first["fingerprint"]

    write_parquet(data, churn_table(100, seed=2), "part-1.parquet")
    upload_dir(data, f"{bucket}/churn/")
    _, second = _fingerprint(tmp_path, spec)
    assert second["files"] == 2 and second["fingerprint"] != first["fingerprint"]
