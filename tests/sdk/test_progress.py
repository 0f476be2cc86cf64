"""kubeloop_sdk.report: the progress line, and the latest report served on the pod's progress
endpoint (read over HTTP as the operator reads it), by rank 0 only."""

from __future__ import annotations

import json
import logging
import re
import socket
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import kubeloop_sdk as kl
from kubeloop_sdk import progress, progressendpoint
from kubeloop_sdk.progress import Reporter, progress_line, progress_of, progress_value

from .conftest import MakeContext


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


def test_the_served_value_holds_only_the_progress_fields_and_the_run() -> None:
    value = progress_value(
        {"epoch": 3, "epochs": 10, "loss": 0.25, "valLoss": 0.3, "percent": 130, "etaSeconds": 7},
        "4",
        now=datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
    )
    assert value == {
        "epoch": 3,
        "epochs": 10,
        "loss": 0.25,
        "percent": 100,
        "etaSeconds": 7,
        "updatedAt": "2026-11-23T10:00:00Z",
        "runId": "4",
    }


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


def _served(port: int) -> tuple[int, Any]:
    """(HTTP status, decoded body) of GET /progress, as the operator reads it."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/progress", timeout=5) as response:
        body = response.read()
        return response.status, json.loads(body) if body else None


def test_report_serves_the_latest_progress_of_the_run_on_the_pods_endpoint(
    make_context: MakeContext, progress_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "_REPORTER", Reporter())
    make_context(run_id="3")
    kl.report(epoch=2, epochs=8, loss=0.5)
    code, got = _served(progress_port)
    assert code == 200
    assert {k: got[k] for k in ("runId", "epoch", "epochs", "percent", "loss")} == {
        "runId": "3",
        "epoch": 2,
        "epochs": 8,
        "percent": 25,
        "loss": 0.5,
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", got["updatedAt"])
    kl.report(epoch=3, epochs=8)  # no throttle: serving the latest costs nothing
    assert _served(progress_port)[1]["epoch"] == 3
    assert "loss" not in _served(progress_port)[1]  # the latest report, not a merge


def test_rank_1_serves_nothing(
    make_context: MakeContext, progress_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "_REPORTER", Reporter())
    monkeypatch.setenv("RANK", "1")
    make_context(run_id="3")
    kl.report(percent=50)
    # opened here (it would not be by rank 1): nothing was published on it
    assert progressendpoint.endpoint_from_env() is not None
    assert _served(progress_port) == (204, None)


def test_a_search_trial_serves_nothing(progress_port: int) -> None:
    # The operator reads no trial's progress: an endpoint would only hold the pod at exit.
    env = {progressendpoint.PORT_ENV: str(progress_port), progressendpoint.TRIAL_ENV: "{}"}
    assert progressendpoint.endpoint_from_env(env) is None


def test_without_a_progress_port_only_the_line(
    make_context: MakeContext, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(progressendpoint.PORT_ENV, raising=False)
    monkeypatch.setattr(progressendpoint, "_SLOT", progressendpoint._Slot())
    make_context()
    assert Reporter().report({"percent": 100}, kl.context()) is False
    assert capsys.readouterr().out == "kubeloop-progress percent=100\n"


def test_a_port_that_cannot_be_opened_is_a_warning(
    make_context: MakeContext,
    progress_port: int,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(progress, "_REPORTER", Reporter())
    make_context()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", progress_port))
        with caplog.at_level(logging.WARNING, logger="kubeloop_sdk"):
            kl.report(percent=100)
    assert f"progress is not served (KUBELOOP_PROGRESS_PORT='{progress_port}')" in caplog.text
    assert capsys.readouterr().out == "kubeloop-progress percent=100\n"


def test_a_failing_publish_never_fails_training(
    make_context: MakeContext, caplog: pytest.LogCaptureFixture
) -> None:
    def down(_: dict[str, Any]) -> bool:
        raise ConnectionError("endpoint gone")

    with caplog.at_level(logging.WARNING, logger="kubeloop_sdk"):
        assert Reporter(publish=down).report({"percent": 5}, make_context(run_id="2")) is False
    assert "progress of run 2 not served: endpoint gone" in caplog.text
