"""kubeloop_sdk.report: the progress line, and `status.currentRun.progress` written through
the status subresource of the emulated API server (over HTTP, with a kubeconfig as a laptop
or `kubeloop local` pod has one), refused for a run that is not current."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import kubeloop_sdk as kl
from kubeloop.local.cluster.emulator import EmulatorThread
from kubeloop_sdk import progress
from kubeloop_sdk.progress import Reporter, progress_line, progress_of

from .conftest import MakeContext

ROOT = Path(__file__).resolve().parents[2]
TP = "kubeloop.io/v1alpha1/trainingpipelines"


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"epoch": 2, "epochs": 8}, {"epoch": 2, "epochs": 8, "percent": 25}),
        (
            {"epoch": 3, "epochs": 3, "loss": 1},
            {"epoch": 3, "epochs": 3, "percent": 100, "loss": 1.0},
        ),
        ({"percent": 40, "epoch": 1, "epochs": 8}, {"epoch": 1, "epochs": 8, "percent": 40}),
        ({"percent": 130.0}, {"percent": 100}),
        ({"percent": -5}, {"percent": 0}),
        ({"epoch": 4}, {"epoch": 4}),
        ({"loss": 0.5, "eta_seconds": 12.7}, {"loss": 0.5, "etaSeconds": 12}),
    ],
)
def test_progress_fields_and_the_percent_from_epochs(
    kwargs: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert progress_of(**kwargs) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0, "epoch": 0}, "report(epochs=0)"),
        ({"loss": "low"}, "report(loss=...): a number"),
        ({"loss": float("nan")}, "report(loss=...): a number"),
        ({"epoch": 1.5}, "report(epoch=...): an int"),
        ({"percent": True}, "report(percent=...): a number"),
    ],
)
def test_a_wrong_argument_is_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        kl.report(**kwargs)


def test_the_line_is_the_trainers_format() -> None:
    line = progress_line(progress_of(epoch=2, epochs=4, loss=0.123456))
    assert line == "kubeloop-progress epoch=2 epochs=4 percent=50 loss=0.1235"


def test_reports_are_printed_by_rank_0_only(
    make_context: MakeContext, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    make_context()
    kl.report(epoch=1, epochs=2)
    monkeypatch.setenv("RANK", "1")
    kl.report(epoch=2, epochs=2)
    assert capsys.readouterr().out.splitlines() == ["kubeloop-progress epoch=1 epochs=2 percent=50"]


def test_without_a_context_the_line_is_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(kl.CONTEXT_ENV, str(tmp_path / "none.json"))
    kl.report(percent=5)
    assert capsys.readouterr().out == "kubeloop-progress percent=5\n"


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmulatorThread]:
    with EmulatorThread() as thread:
        yield thread


def _current_run(name: str, run_id: str) -> dict[str, Any]:
    """`status.currentRun` with the fields the CRD requires, as the operator writes it."""
    return {
        "id": run_id,
        "job": f"{name}-run-{run_id}",
        "trigger": "Manual",
        "startedAt": "2026-11-30T00:00:00Z",
    }


@pytest.fixture
def pipeline(cluster: EmulatorThread) -> Iterator[str]:
    """A TrainingPipeline whose run 3 is current."""
    obj = yaml.safe_load((ROOT / "examples" / "churn-pipeline.yaml").read_text())
    name = obj["metadata"]["name"] = "sdk-progress"
    cluster.call(cluster.emulator.create_object(obj))
    cluster.call(
        cluster.emulator.patch_object(
            TP,
            "ml",
            name,
            {"status": {"currentRun": _current_run(name, "3")}},
            subresource="status",
        )
    )
    yield name
    cluster.call(cluster.emulator.delete_object(TP, "ml", name))


def _kubeconfig(path: Path, server: str, as_json: bool) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "other", "cluster": {"server": "https://127.0.0.1:1"}},
            {"name": "local", "cluster": {"server": server}},
        ],
        "users": [{"name": "local", "user": {"token": "t"}}],
        "contexts": [
            {"name": "other", "context": {"cluster": "other", "user": "local"}},
            {"name": "local", "context": {"cluster": "local", "user": "local"}},
        ],
        "current-context": "local",
    }
    if not as_json:  # what `kubeloop local` writes: YAML, one cluster
        for key in ("clusters", "contexts"):
            config[key] = config[key][1:]
    path.write_text(json.dumps(config) if as_json else yaml.safe_dump(config))
    return path


def _progress(cluster: EmulatorThread, name: str) -> dict[str, Any] | None:
    obj = cluster.emulator.get_object(TP, "ml", name) or {}
    found: dict[str, Any] | None = obj.get("status", {}).get("currentRun", {}).get("progress")
    return found


@pytest.mark.parametrize("as_json", [True, False], ids=["json-kubeconfig", "yaml-kubeconfig"])
def test_report_writes_the_current_runs_progress_and_a_late_one_is_refused(  # noqa: PLR0917 - fixtures
    cluster: EmulatorThread,
    pipeline: str,
    make_context: MakeContext,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    as_json: bool,
) -> None:
    monkeypatch.setattr(progress, "_REPORTER", Reporter())
    kubeconfig = _kubeconfig(tmp_path / "kubeconfig", cluster.url, as_json)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    make_context(run_id="3", namespace="ml", pipeline=pipeline, progress_patch=True)

    kl.report(epoch=2, epochs=8, loss=0.5)
    got = _progress(cluster, pipeline)
    assert got is not None
    assert {k: got[k] for k in ("runId", "epoch", "epochs", "percent", "loss")} == {
        "runId": "3",
        "epoch": 2,
        "epochs": 8,
        "percent": 25,
        "loss": 0.5,
    }
    kl.report(epoch=3, epochs=8)  # within 5 s of the last patch: the log line only
    assert _progress(cluster, pipeline) == got

    # run 2 reports late, when run 3 is current: the API refuses it, report() does not raise
    make_context(run_id="2", namespace="ml", pipeline=pipeline, progress_patch=True)
    with caplog.at_level(logging.WARNING, logger="kubeloop_sdk"):
        kl.report(percent=100)
    assert _progress(cluster, pipeline) == got
    assert "progress of run 2 not written: 422" in caplog.text


def test_no_api_to_report_to_is_a_warning(
    make_context: MakeContext,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(progress, "_REPORTER", Reporter())
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    make_context(progress_patch=True)
    with caplog.at_level(logging.WARNING, logger="kubeloop_sdk"):
        kl.report(percent=100)
    assert "no kubeconfig at" in caplog.text
    assert capsys.readouterr().out == "kubeloop-progress percent=100\n"


def test_patches_are_throttled_but_100_percent_always_goes(make_context: MakeContext) -> None:
    ctx = make_context(progress_patch=True)
    now = [0.0]
    sent: list[int] = []
    reporter = Reporter(
        interval=5.0,
        clock=lambda: now[0],
        send=lambda _, body: sent.append(body[-1]["value"]["percent"]),
    )
    for t, percent in [(0.0, 10), (1.0, 20), (5.5, 30), (6.0, 40), (6.5, 100), (6.6, 100)]:
        now[0] = t
        reporter.report({"percent": percent}, ctx)
    assert sent == [10, 30, 100, 100]
