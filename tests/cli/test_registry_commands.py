"""`kubeloop versions` and `kubeloop compare` on a real registry: three versions published by
the real trainer (in this process; LogisticRegression on the churn data), promoted through
the real Registry, read back on file:// and on moto's S3 server."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from tests.workloads.trainer.conftest import make_spec, train_in_process, write_parquet

from kubeloop.cli import main
from kubeloop.local.demo.datagen import churn_table
from kubeloop.registry import Registry
from kubeloop.registrycli.views import compare_rows, short_fingerprint

# run id, data set, trigger env (None: the Job predates KUBELOOP_TRIGGER), model params
_RUNS = (("1", "a", "Create", {}), ("2", "a", None, {"C": 0.5}), ("3", "b", "NewData", {}))


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("churn")
    write_parquet(root / "a", churn_table(900, seed=3))
    write_parquet(root / "b", churn_table(700, seed=5))  # new data: another fingerprint
    return {name: (root / name).as_uri() + "/" for name in ("a", "b")}


def _publish_three(artifacts: str, datasets: dict[str, str], work: Path) -> Registry:
    for run_id, data, trigger, params in _RUNS:
        spec = make_spec(datasets[data], artifacts, params=params)
        spec_path = work / f"spec-{run_id}.yaml"
        spec_path.write_text(yaml.safe_dump({"kind": "TrainingPipeline", "spec": spec}))
        env = {"KUBELOOP_WORK_DIR": str(work / "scratch")}
        if trigger:
            env["KUBELOOP_TRIGGER"] = trigger
        argv = ["--spec", str(spec_path), "--run-id", run_id]
        assert train_in_process([*argv, "--result-path", str(work / "result.json")], env) == 0
    registry = Registry(artifacts)
    registry.set_alias("champion", 1, by="operator", reason="gate passed", run_id="1")
    registry.set_alias("production", 1, by="kubectl-annotate:alice", reason="approved")
    registry.set_alias("champion", 3, by="operator", reason="beat the champion", run_id="3")
    return registry


@pytest.fixture(scope="module", params=["file", "s3"])
def registry(
    request: pytest.FixtureRequest,
    datasets: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Registry]:
    """A registry of three versions: v1 (Create, data a) is production, v2 (Manual, data a,
    C=0.5) nothing, v3 (NewData, data b) champion, which replaced v1."""
    work = tmp_path_factory.mktemp("registry")
    if request.param == "file":
        yield _publish_three((work / "models").as_uri() + "/", datasets, work)
        return
    endpoint: str = request.getfixturevalue("s3_endpoint")
    name = f"cli-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)
    yield _publish_three(f"s3://{name}/models/churn/", datasets, work)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def test_versions_lists_newest_first_with_run_trigger_metrics_data_aliases_promotion(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "versions", "churn", "--artifacts", registry.artifacts)
    assert (code, err) == (0, "")
    header, *lines = out.splitlines()
    assert _cells(header) == [
        "VERSION", "RUN", "TRIGGER", "ACCURACY", "F1", "LOG_LOSS", "ROC_AUC",
        "DATA", "ALIASES", "PROMOTED",
    ]  # fmt: skip
    rows = [_cells(line) for line in lines]
    manifests = {n: registry.read_manifest(n) for n in (1, 2, 3)}
    fingerprints = {n: short_fingerprint(m["data"]["fingerprint"]) for n, m in manifests.items()}
    assert fingerprints[1] == fingerprints[2] != fingerprints[3]
    history = {(e["alias"], e["version"]): e for e in registry.history()}
    expected = []
    for number, trigger, aliases, promoted in (
        (3, "NewData", "champion", history[("champion", "3")]),
        (2, "Manual", "-", None),
        (1, "Create", "production", history[("production", "1")]),
    ):
        metrics = manifests[number]["metrics"]
        when = "-"
        if promoted:
            when = f"{promoted['promotedAt'][:19].replace('T', ' ')}Z by {promoted['by']}"
        expected.append(
            [
                str(number),
                str(number),  # run ids 1-3 published versions 1-3
                trigger,
                *(f"{metrics[m]:.4f}" for m in ("accuracy", "f1", "log_loss", "roc_auc")),
                fingerprints[number],
                aliases,
                when,
            ]
        )
    assert rows == expected
    assert rows[2][-1].endswith("by kubectl-annotate:alice")


def test_versions_json_is_the_same_data_as_a_list(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(
        capsys, "versions", "churn", "--artifacts", registry.artifacts, "-o", "json"
    )
    assert code == 0
    rows = json.loads(out)
    assert [r["version"] for r in rows] == [3, 2, 1]
    assert [r["trigger"] for r in rows] == ["NewData", "Manual", "Create"]
    assert [r["aliases"] for r in rows] == [["champion"], [], ["production"]]
    for row in rows:
        manifest = registry.read_manifest(row["version"])
        assert row["metrics"] == manifest["metrics"]
        assert row["dataFingerprint"] == manifest["data"]["fingerprint"]
        assert row["runId"] == str(row["version"])
    # v1 was champion, then production: both promotions are listed, the latest shown.
    assert [(p["alias"], p["by"]) for p in rows[2]["promotions"]] == [
        ("champion", "operator"),
        ("production", "kubectl-annotate:alice"),
    ]
    assert rows[2]["promoted"]["reason"] == "approved"
    assert rows[0]["promoted"]["reason"] == "beat the champion"
    assert rows[1]["promoted"] is None


def test_compare_shows_both_versions_side_by_side_marks_differences_and_metric_deltas(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(
        capsys, "compare", "churn", "production", "champion", "--artifacts", registry.artifacts
    )
    assert (code, err) == (0, "")
    header, *lines = out.splitlines()
    assert _cells(header) == ["FIELD", "1 (production)", "3 (champion)", "DELTA"]
    table = {}
    for line in lines:
        marker, cells = line[0], _cells(line[1:])
        table[cells[0]] = (marker, cells[1:])
    a, b = registry.read_manifest(1), registry.read_manifest(3)
    for metric in ("accuracy", "roc_auc", "log_loss", "f1"):
        va, vb = a["metrics"][metric], b["metrics"][metric]
        assert table[f"metrics.{metric}"] == ("*", [f"{va:.4f}", f"{vb:.4f}", f"{vb - va:+.4f}"])
    fingerprints = [short_fingerprint(m["data"]["fingerprint"]) for m in (a, b)]
    assert table["data.fingerprint"] == ("*", fingerprints)
    assert table["data.train"] == ("*", [a["data"]["train"], b["data"]["train"]])
    assert table["data.rows.train"][0] == "*"
    assert table["lineage.trigger"] == ("*", ["Create", "NewData"])
    assert table["lineage.runId"] == ("*", ["1", "3"])
    assert table["lineage.aliases"] == ("*", ["production", "champion"])
    assert table["lineage.previousChampion"] == ("*", ["-", "1"])
    assert table["params.C"] == (" ", ["1.0", "1.0"])
    assert table["lineage.estimator"] == (" ", ["LogisticRegression", "LogisticRegression"])


def test_compare_json_resolves_numbers_and_latest(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(
        capsys, "compare", "churn", "1", "latest", "--artifacts", registry.artifacts, "-o", "json"
    )
    assert code == 0
    doc = json.loads(out)
    assert (doc["a"], doc["b"]) == ({"ref": "1", "version": 1}, {"ref": "latest", "version": 3})
    rows = {f"{r['section']}.{r['field']}": r for r in doc["rows"]}
    a, b = registry.read_manifest(1), registry.read_manifest(3)
    assert rows["metrics.roc_auc"]["delta"] == pytest.approx(
        b["metrics"]["roc_auc"] - a["metrics"]["roc_auc"]
    )
    assert rows["params.C"] == {
        "section": "params", "field": "C", "a": 1.0, "b": 1.0, "differs": False, "delta": None,
    }  # fmt: skip
    assert rows["lineage.trigger"]["differs"] is True


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["compare", "churn", "staging", "1"],
            "'staging' is neither a version nor an alias under {uri}: use a version (1, 2, 3), "
            "'latest' or a set alias (champion, production)",
        ),
        (
            ["compare", "churn", "1", "9"],
            "version 9 does not exist under {uri}: versions are 1, 2, 3",
        ),
    ],
)
def test_unknown_versions_and_aliases_are_named_with_what_exists(
    registry: Registry, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = _run(capsys, *argv, "--artifacts", registry.artifacts)
    assert (code, out) == (1, "")
    assert err == f"error: {message.format(uri=registry.artifacts)}\n"


def test_an_empty_registry_says_no_versions_yet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "versions", "churn", "--artifacts", tmp_path.as_uri())
    assert code == 1
    assert err.startswith(f"error: no model versions under {tmp_path.as_uri()} yet: a run of churn")


def test_an_unreadable_registry_names_the_credentials_to_check(
    s3_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "versions", "churn", "--artifacts", "s3://no-such-bucket/m/")
    assert code == 1
    assert "bucket of s3://no-such-bucket/m/versions/ does not exist" in err
    assert "your own credentials: AWS_ACCESS_KEY_ID" in err


def test_compare_rows_table() -> None:
    a = {"metrics": {"auc": 0.8}, "params": {"C": 1}, "runId": "1", "data": {"files": [1]}}
    b = {"metrics": {"auc": 0.9, "f1": 0.5}, "params": {"C": 1}, "runId": "2", "seed": 7}
    rows = {f"{r.section}.{r.field}": (r.a, r.b, r.differs, r.delta) for r in compare_rows(a, b)}
    assert rows == {
        "metrics.auc": (0.8, 0.9, True, pytest.approx(0.1)),
        "metrics.f1": (None, 0.5, True, None),  # one side lacks it: no delta
        "params.C": (1, 1, False, None),
        "lineage.runId": ("1", "2", True, None),
        "lineage.seed": (None, 7, True, None),
    }  # data.files is never compared


def _assert_no_cluster_error(err: str) -> None:
    assert err.startswith("error: ")
    assert "pass --artifacts URI to read the registry without the cluster" in err


def test_without_artifacts_the_pipeline_is_read_through_the_kubeconfig(
    registry: Registry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from kubeloop.controller.kube import connect
    from kubeloop.local.cluster.emulator import EmulatorThread
    from kubeloop.local.cluster.stack import write_kubeconfig

    spec: dict[str, Any] = make_spec("file:///data/", registry.artifacts)
    spec["promotion"] = {"metric": "roc_auc"}
    pipeline = {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "TrainingPipeline",
        "metadata": {"name": "churn", "namespace": "ml"},
        "spec": spec,
    }
    with EmulatorThread() as api:
        connect(api.url).create(pipeline)
        write_kubeconfig(tmp_path / "kubeconfig", api.url)
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
        code, out, err = _run(capsys, "versions", "churn", "-n", "ml")
        assert (code, err) == (0, "")
        # The gate's metric alone: the column the promotion decision reads.
        assert _cells(out.splitlines()[0])[:5] == ["VERSION", "RUN", "TRIGGER", "ROC_AUC", "DATA"]
        assert [_cells(line)[0] for line in out.splitlines()[1:]] == ["3", "2", "1"]
        code, _, err = _run(capsys, "versions", "nope", "-n", "ml")
        assert code == 1
        assert err.startswith("error: TrainingPipeline ml/nope not found: check the name and -n")
        _assert_no_cluster_error(err)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    code, _, err = _run(capsys, "versions", "churn", "-n", "ml")
    assert code == 1
    _assert_no_cluster_error(err)
