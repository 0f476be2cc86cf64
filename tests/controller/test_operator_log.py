"""The operator's log: timestamped lines on stderr at the level asked for, and every Event the
operator posts is also a log line naming its object."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import kopf
import pytest

from kubeloop.controller import main as operator_main
from kubeloop.controller.events import recorder
from kubeloop.controller.status import post_event

LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\] (\S+) +\[(\w+) *\] (.*)$")
BODY = {
    "apiVersion": "kubeloop.io/v1alpha1",
    "kind": "TrainingPipeline",
    "metadata": {"name": "churn", "namespace": "ml", "uid": "u1"},
}


pytestmark = pytest.mark.usefixtures("restore_logging")  # tests/controller/conftest.py


def _lines(text: str) -> list[tuple[str, str, str]]:
    return [m.groups() for line in text.splitlines() if (m := LINE.match(line))]


def test_events_reach_the_log_with_time_level_and_object(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    posted: list[dict[str, Any]] = []
    monkeypatch.setattr(
        recorder, "record", lambda _obj, type_, *_args: posted.append({"type": type_})
    )
    operator_main.configure_logging("info")
    post_event(BODY, "RunStarted", "run 1 (Create): Job churn-run-1")
    post_event(BODY, "ChildRefused", "the API server refused ...", warning=True)
    lines = _lines(capfd.readouterr().err)
    assert ("kubeloop.operator", "INFO", "TrainingPipeline ml/churn: RunStarted: run 1 (Create): "
            "Job churn-run-1") in lines  # fmt: skip
    assert (
        "kubeloop.operator",
        "WARNING",
        "TrainingPipeline ml/churn: ChildRefused: the API server refused ...",
    ) in lines
    assert [p["type"] for p in posted] == ["Normal", "Warning"]


def test_the_level_knob_drops_info_lines(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recorder, "record", lambda *_args: None)
    operator_main.configure_logging("WARNING")
    post_event(BODY, "RunStarted", "run 1")
    post_event(BODY, "RunFailed", "run 1: no column churned", warning=True)
    assert [level for _, level, _ in _lines(capfd.readouterr().err)] == ["WARNING"]


def test_flag_and_env_choose_the_level(monkeypatch: pytest.MonkeyPatch) -> None:
    captured: dict[str, Any] = {}
    monkeypatch.setattr(kopf, "run", lambda **kwargs: captured.update(kwargs))
    monkeypatch.setenv("KUBELOOP_LOG_LEVEL", "ERROR")
    assert operator_main.main(["--liveness", ""]) == 0
    assert logging.getLogger().level == logging.ERROR
    assert operator_main.main(["--log-level", "debug", "--liveness", ""]) == 0
    assert logging.getLogger().level == logging.DEBUG
    with pytest.raises(SystemExit):
        operator_main.main(["--log-level", "LOUD"])


def test_a_bad_env_value_stops_the_operator_naming_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kopf, "run", lambda **_kwargs: None)
    for variable, value in (("KUBELOOP_LOG_LEVEL", "LOUD"), ("KUBELOOP_LOG_FORMAT", "yaml")):
        with monkeypatch.context() as env:
            env.setenv(variable, value)
            with pytest.raises(SystemExit):
                operator_main.main(["--liveness", ""])
        assert f"{variable}={value!r}: set it to one of " in capsys.readouterr().err


def test_json_lines_carry_time_level_logger_and_the_object(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--log-format json` (KUBELOOP_LOG_FORMAT): one JSON object a line, for a log pipeline
    to index by object; the message is the text format's. kopf's own per-object lines (its
    `k8s_ref`) carry the object too."""
    monkeypatch.setattr(recorder, "record", lambda *_args: None)
    monkeypatch.setattr(kopf, "run", lambda **_kwargs: None)
    monkeypatch.setenv("KUBELOOP_LOG_FORMAT", "json")
    assert operator_main.main(["--liveness", ""]) == 0
    post_event(BODY, "RunFailed", "run 1: no column churned", warning=True)
    ref = {"apiVersion": "kubeloop.io/v1alpha1", "kind": "TrainingPipeline", "uid": "u1"}
    logging.getLogger("kopf.objects").error(
        "Handler failed", extra={"k8s_ref": {**ref, "namespace": "ml", "name": "churn"}}
    )
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.strip()]
    (event, kopf_line) = [x for x in lines if x.get("object")]
    obj = {"kind": "TrainingPipeline", "namespace": "ml", "name": "churn"}
    assert event["object"] == kopf_line["object"] == obj
    assert (event["level"], event["logger"], event["reason"]) == (
        "WARNING",
        "kubeloop.operator",
        "RunFailed",
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["time"])
    assert event["message"] == "TrainingPipeline ml/churn: RunFailed: run 1: no column churned"
    assert (kopf_line["level"], kopf_line["logger"]) == ("ERROR", "kopf.objects")
    with pytest.raises(SystemExit):
        operator_main.main(["--log-format", "yaml"])
