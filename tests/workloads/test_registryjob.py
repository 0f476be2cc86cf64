"""`kubeloop registry promote` on a real registry, file:// and moto's S3: a version published by
the registry's own code is verified and the alias written; a missing, corrupt or foreign version
is refused with its reason, exit code and a sentence naming the version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kubeloop.cli import main as cli
from kubeloop.modelformat import write_manifest
from kubeloop.registry import Registry
from kubeloop.storage import join, store_for
from kubeloop.workloads.registryjob import EXIT_CODES


@pytest.fixture(params=["file", "s3"])
def artifacts(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "file":
        return f"file://{tmp_path}/models/churn/"
    bucket: str = request.getfixturevalue("bucket")
    return f"{bucket}/models/churn/"


def _publish(
    artifacts: str, tmp_path: Path, run_id: str, auc: float, pipeline: str = "churn"
) -> int:
    """A version as a run publishes it: claimed, its files, then the manifest with checksums."""
    folder = tmp_path / f"run-{run_id}"
    folder.mkdir()
    (folder / "model.bin").write_bytes(f"model of run {run_id}".encode())
    registry = Registry(artifacts)
    claim = registry.allocate(run_id, "uid-1")
    write_manifest(
        folder,
        {
            "version": str(claim.version),
            "pipeline": pipeline,
            "namespace": "ml",
            "runId": run_id,
            "metrics": {"roc_auc": auc},
        },
    )
    registry.publish(folder, claim)
    return claim.version


def _promote(
    artifacts: str, tmp_path: Path, version: int | str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict[str, Any]]:
    out = tmp_path / "result.json"
    code = cli(
        [
            "registry", "promote", "--artifacts", artifacts, "--version", str(version),
            "--alias", "champion", "--by", "annotation kubeloop.io/promote",
            "--reason", "approved", "--pipeline", "ml/churn", "--result-path", str(out),
            "--work-dir", str(tmp_path / "work"),
        ]
    )  # fmt: skip
    capsys.readouterr()
    result: dict[str, Any] = json.loads(out.read_text())
    return code, result


def test_promote_verifies_and_points_the_alias(
    artifacts: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _publish(artifacts, tmp_path, "1", 0.8)
    second = _publish(artifacts, tmp_path, "2", 0.9)
    code, result = _promote(artifacts, tmp_path, first, capsys)
    assert code == 0, result
    code, result = _promote(artifacts, tmp_path, second, capsys)
    assert code == 0, result
    registry = Registry(artifacts)
    assert result == {
        "kind": "RegistryResult",
        "ok": True,
        "alias": "champion",
        "version": "2",
        "uri": registry.version_uri(2),
        "metrics": {"roc_auc": 0.9},
        "runId": "2",
        "previous": "1",
    }
    pointer = registry.get_alias("champion")
    assert pointer is not None and pointer["version"] == "2"
    assert pointer["by"] == "annotation kubeloop.io/promote" and pointer["reason"] == "approved"


def test_a_missing_version_is_refused(
    artifacts: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _publish(artifacts, tmp_path, "1", 0.8)
    code, result = _promote(artifacts, tmp_path, 7, capsys)
    assert code == EXIT_CODES["VersionNotFound"] == 50
    assert result["ok"] is False and result["reason"] == "VersionNotFound"
    assert "version 7 under" in result["message"] and "does not exist" in result["message"]
    assert Registry(artifacts).get_alias("champion") is None


def test_a_corrupt_version_is_refused(
    artifacts: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    version = _publish(artifacts, tmp_path, "1", 0.8)
    model = join(Registry(artifacts).version_uri(version), "model.bin")
    store_for(artifacts).write_bytes(model, b"tampered")
    code, result = _promote(artifacts, tmp_path, version, capsys)
    assert code == EXIT_CODES["ChecksumMismatch"] == 51
    assert result["reason"] == "ChecksumMismatch"
    assert "version 1 under" in result["message"]
    assert "model.bin: sha256 differs from the manifest" in result["message"]
    assert Registry(artifacts).get_alias("champion") is None


def test_another_pipelines_version_is_refused(
    artifacts: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    version = _publish(artifacts, tmp_path, "1", 0.8, pipeline="fraud")
    code, result = _promote(artifacts, tmp_path, version, capsys)
    assert code == EXIT_CODES["WrongPipeline"] == 52
    assert result["reason"] == "WrongPipeline"
    assert "was trained by ml/fraud, not by TrainingPipeline ml/churn" in result["message"]


def test_unreachable_storage_is_a_storage_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], s3_endpoint: str
) -> None:
    code, result = _promote("s3://no-such-bucket-kubeloop/models/", tmp_path, 1, capsys)
    assert code == EXIT_CODES["StorageUnreachable"] == 30
    assert result["reason"] == "StorageUnreachable" and result["version"] == "1"


def test_the_jobs_pod_failure_policy_names_exactly_the_refusals() -> None:
    """A refusal is final (the Job fails at once); a storage hiccup is retried."""
    from kubeloop.resources.registry import REGISTRY_REFUSAL_EXIT_CODES
    from kubeloop.workloads.registryjob import REFUSALS

    assert tuple(EXIT_CODES[r] for r in REFUSALS) == REGISTRY_REFUSAL_EXIT_CODES
