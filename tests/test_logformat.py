"""kubeloop.logformat: the level and format knobs, and the JSON lines every kubeloop process
writes (the operator and the workload containers)."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from kubeloop.logformat import JsonLineFormatter, line_fields, parse_format, parse_level
from kubeloop.workloads import logsetup

OBJECT = {"kind": "Job", "namespace": "ml", "name": "churn-run-1"}
# 2026-11-30T18:00:00.250Z as a LogRecord's `created`.
CREATED = 1796061600.25


@pytest.mark.parametrize(
    ("value", "level"),
    [("DEBUG", "DEBUG"), ("info", "INFO"), (" Warning ", "WARNING"), ("ERROR", "ERROR")],
)
def test_levels_are_read_in_any_case(value: str, level: str) -> None:
    assert parse_level(value) == level


@pytest.mark.parametrize(
    ("value", "variable", "error"),
    [
        ("LOUD", None, "KUBELOOP_LOG_LEVEL='LOUD': set it to one of DEBUG, INFO, WARNING, ERROR"),
        ("CRITICAL", None, "KUBELOOP_LOG_LEVEL='CRITICAL': set it to one of DEBUG"),
        ("", "--log-level", "--log-level='': set it to one of DEBUG"),
    ],
)
def test_other_levels_are_refused_naming_the_variable(
    value: str, variable: str | None, error: str
) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(error)):
        parse_level(value) if variable is None else parse_level(value, variable)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("text", "text"), ("JSON", "json"), ("yaml", None), ("", None)],
)
def test_formats(value: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(
            ValueError,
            match=re.escape(f"KUBELOOP_LOG_FORMAT={value!r}: set it to one of text, json"),
        ):
            parse_format(value)
    else:
        assert parse_format(value) == expected


def _record(level: int, msg: str, *args: Any, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("kubeloop.kube", level, __file__, 1, msg, args, None)
    record.created = CREATED
    record.__dict__.update(extra)
    return record


@pytest.mark.parametrize(
    ("record", "fields"),
    [
        (
            _record(logging.INFO, "started %d runs", 2),
            {"level": "INFO", "message": "started 2 runs"},
        ),
        (  # kubeloop's own lines: extra={"object": ...}, an Event's reason
            _record(logging.WARNING, "refused", object=OBJECT, reason="ChildRefused"),
            {"level": "WARNING", "message": "refused", "object": OBJECT, "reason": "ChildRefused"},
        ),
        (  # kopf's per-object lines: its k8s_ref, of which the object's kind, namespace, name
            _record(
                logging.ERROR,
                "Handler failed",
                k8s_ref={**OBJECT, "apiVersion": "batch/v1", "uid": "u1"},
            ),
            {"level": "ERROR", "message": "Handler failed", "object": OBJECT},
        ),
        (  # a cluster-scoped or partial reference keeps what it has
            _record(logging.DEBUG, "x", k8s_ref={"kind": "Node", "name": "n1"}),
            {"level": "DEBUG", "message": "x", "object": {"kind": "Node", "name": "n1"}},
        ),
    ],
)
def test_line_fields(record: logging.LogRecord, fields: dict[str, Any]) -> None:
    common = {"time": "2026-11-30T18:00:00.250Z", "logger": "kubeloop.kube"}
    assert line_fields(record) == {**common, **fields}


def test_a_json_line_is_one_line_with_the_traceback_inside() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = _record(logging.ERROR, "reconcile failed\nsecond line", object=OBJECT)
        record.exc_info = sys.exc_info()
    line = JsonLineFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "reconcile failed\nsecond line" and parsed["object"] == OBJECT
    assert "RuntimeError: boom" in parsed["exception"]


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def test_workload_containers_take_the_same_knobs(
    root_logging: logging.Logger,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("KUBELOOP_LOG_LEVEL", "warning")
    monkeypatch.setenv("KUBELOOP_LOG_FORMAT", "json")
    root_logging.handlers[:] = []  # a container's process starts without a handler
    logsetup.configure_logging()
    logging.getLogger("kubeloop.trainer").info("dropped")
    logging.getLogger("kubeloop.trainer").warning("kept", extra={"object": OBJECT})
    (line,) = capsys.readouterr().err.splitlines()
    parsed = json.loads(line)
    assert (parsed["level"], parsed["logger"], parsed["message"]) == (
        "WARNING",
        "kubeloop.trainer",
        "kept",
    )
    assert parsed["object"] == OBJECT


def test_workload_containers_refuse_a_bad_knob_naming_it(
    root_logging: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBELOOP_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="KUBELOOP_LOG_FORMAT='xml'"):
        logsetup.configure_logging()
