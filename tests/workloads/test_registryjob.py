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


def _inspect(
    artifacts: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    pipeline: str = "ml/churn",
    extra: tuple[str, ...] = (),
) -> tuple[int, dict[str, Any]]:
    out = tmp_path / "inspect.json"
    code = cli(
        [
            "registry", "inspect", "--artifacts", artifacts, "--pipeline", pipeline,
            "--result-path", str(out), *extra,
        ]
    )  # fmt: skip
    capsys.readouterr()
    result: dict[str, Any] = json.loads(out.read_text())
    return code, result


def _run_dir(artifacts: str, run_id: str) -> None:
    """What every run writes before it trains (registry.last_run_id lists these)."""
    store_for(artifacts).write_bytes(join(artifacts, "runs", run_id, "run.json"), b"{}")


def test_inspect_reads_aliases_champion_and_run_numbering(
    artifacts: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a pipeline created again adopts: the champion (its manifest's metrics and run),
    every alias, and the highest run id (runs 3-5 published nothing)."""
    for run_id, auc in (("1", 0.8), ("2", 0.9)):
        _publish(artifacts, tmp_path, run_id, auc)
    for run_id in ("1", "2", "3", "4", "5"):
        _run_dir(artifacts, run_id)
    registry = Registry(artifacts)
    registry.set_alias("champion", 2, by="gate", reason="beats v1")
    registry.set_alias("production", 1, by="annotation alias.kubeloop.io/production", reason="")
    code, result = _inspect(artifacts, tmp_path, capsys)
    assert code == 0, result
    promoted_at = registry.get_alias("champion")["promotedAt"]  # type: ignore[index]
    assert result == {
        "kind": "RegistryResult",
        "ok": True,
        "operation": "inspect",
        "lastRunId": 5,
        "aliases": {"champion": "2", "production": "1"},
        "versions": [1, 2],
        "champion": {
            "version": "2",
            "uri": registry.version_uri(2),
            "runId": "2",
            "promotedAt": promoted_at,
        },
        "metrics": {"roc_auc": 0.9},
    }


def test_inspect_of_an_empty_registry_is_a_new_pipeline(
    artifacts: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, result = _inspect(artifacts, tmp_path, capsys)
    assert code == 0, result
    assert result == {
        "kind": "RegistryResult",
        "ok": True,
        "operation": "inspect",
        "lastRunId": 0,
        "aliases": {},
        "versions": [],
    }


def test_inspect_refuses_a_champion_of_another_pipeline(
    artifacts: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two pipelines sharing an artifacts location: adopting the other's champion would serve
    its model."""
    version = _publish(artifacts, tmp_path, "1", 0.8, pipeline="fraud")
    Registry(artifacts).set_alias("champion", version, by="gate", reason="")
    code, result = _inspect(artifacts, tmp_path, capsys)
    assert code == EXIT_CODES["WrongPipeline"]
    assert result["ok"] is False and result["operation"] == "inspect"
    assert "trained by ml/fraud, not by TrainingPipeline ml/churn" in result["message"]


def test_inspect_of_unreachable_storage_is_a_storage_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], s3_endpoint: str
) -> None:
    code, result = _inspect("s3://no-such-bucket-kubeloop/models/", tmp_path, capsys)
    assert code == EXIT_CODES["StorageUnreachable"] == 30
    assert result["ok"] is False and result["reason"] == "StorageUnreachable"


_FIRST_RUN = ("--require-empty", "--run-id", "1", "--pipeline-uid", "uid-1")


def _marker(artifacts: str, run_id: str, uid: str) -> None:
    body = json.dumps({"runId": run_id, "pipelineUid": uid}).encode()
    store_for(artifacts).write_bytes(join(artifacts, "runs", run_id, "run.json"), body)


def test_require_empty_lets_a_new_pipelines_first_run_train(
    artifacts: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing there, or only this run's own marker and version claim (a retried pod): the
    init container exits 0 and the pod trains."""
    code, result = _inspect(artifacts, tmp_path, capsys, extra=_FIRST_RUN)
    assert (code, result["ok"], result["empty"]) == (0, True, True)
    _marker(artifacts, "1", "uid-1")
    _publish(artifacts, tmp_path, "1", 0.8)  # claimed by (uid-1, run 1)
    code, result = _inspect(artifacts, tmp_path, capsys, extra=_FIRST_RUN)
    assert (code, result["empty"], result["lastRunId"]) == (0, True, 1)


@pytest.mark.parametrize(
    "left",
    ["another object's run 1", "run 2", "an alias"],
)
def test_require_empty_stops_a_run_where_the_registry_holds_more(
    left: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pipeline deleted and created again (its run 1, a later run, its aliases): exit 60,
    with what the registry holds for the operator to adopt."""
    from kubeloop.workloads.registryjob import NOT_EMPTY_EXIT_CODE

    artifacts = f"file://{tmp_path}/models/churn/"
    if left == "an alias":
        version = _publish(artifacts, tmp_path, "1", 0.8)
        Registry(artifacts).set_alias("production", version, by="gate", reason="")
    else:
        _marker(artifacts, *(("1", "uid-0") if left.startswith("another") else ("2", "uid-1")))
    code, result = _inspect(artifacts, tmp_path, capsys, extra=_FIRST_RUN)
    assert code == NOT_EMPTY_EXIT_CODE == 60
    assert result["ok"] is True and result["empty"] is False and result["lastRunId"] >= 1


def test_require_empty_of_unreachable_storage_is_a_failed_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], s3_endpoint: str
) -> None:
    from kubeloop.workloads.registryjob import READ_FAILED_EXIT_CODE

    artifacts = "s3://no-such-bucket-kubeloop/models/"
    code, result = _inspect(artifacts, tmp_path, capsys, extra=_FIRST_RUN)
    assert code == READ_FAILED_EXIT_CODE == 61
    assert result["ok"] is False and result["reason"] == "StorageUnreachable"


def test_the_run_jobs_pod_failure_policy_names_the_first_run_codes() -> None:
    from kubeloop.resources.registry import FIRST_RUN_READ_EXIT_CODES
    from kubeloop.workloads.registryjob import NOT_EMPTY_EXIT_CODE, READ_FAILED_EXIT_CODE

    assert FIRST_RUN_READ_EXIT_CODES == (NOT_EMPTY_EXIT_CODE, READ_FAILED_EXIT_CODE)
