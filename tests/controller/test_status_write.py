"""controller.status_write: status goes out through the kind's typed status model, as the merge
patch of what changed; a key the model does not have is refused loudly, never sent."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from kubeloop.controller import kube
from kubeloop.controller.status_write import StatusSchemaError, merge_patch, status_patch

READY = {
    "type": "Ready",
    "status": "True",
    "reason": "Serving",
    "message": "ok",
    "lastTransitionTime": "2026-01-01T00:00:00Z",
}


@pytest.mark.parametrize(
    ("before", "after", "patch"),
    [
        ({}, {}, {}),
        ({"a": 1}, {"a": 1}, {}),
        ({"a": 1}, {"a": 2}, {"a": 2}),
        ({"a": 1}, {}, {"a": None}),  # removed
        ({"a": None}, {}, {}),  # nothing to remove
        ({}, {"a": {"b": 1}}, {"a": {"b": 1}}),
        ({"a": {"b": 1, "c": 2}}, {"a": {"b": 1}}, {"a": {"c": None}}),  # nested removal
        ({"a": {"b": 1}}, {"a": {"b": 1}}, {}),
        ({"a": [1, 2]}, {"a": [1]}, {"a": [1]}),  # lists are replaced whole
        ({"a": {"b": 1}}, {"a": 3}, {"a": 3}),
    ],
)
def test_merge_patch(before: dict[str, Any], after: dict[str, Any], patch: dict[str, Any]) -> None:
    assert merge_patch(before, after) == patch


def test_a_training_status_is_written_from_its_model() -> None:
    before = {
        "lastRunId": 1,
        "currentRun": {
            "id": "1",
            "job": "churn-run-1",
            "trigger": "Create",
            "startedAt": "2026-01-01T00:00:00Z",
            "progress": {"percent": 40},
        },
    }
    run = {"id": "2", "job": "churn-run-2", "trigger": "Manual"}
    after = {
        "lastRunId": 2,
        "currentRun": {**run, "startedAt": "2026-01-02T00:00:00Z", "progress": None},
        "champion": None,
        "conditions": [READY],
    }
    patch = status_patch("TrainingPipeline", "churn", before, after)
    # The new run's entry drops the previous one's progress; what was not set is not sent.
    assert patch["currentRun"] == {**run, "startedAt": "2026-01-02T00:00:00Z", "progress": None}
    assert patch["lastRunId"] == 2 and patch["conditions"] == [READY]
    assert "champion" not in patch and "runs" not in patch
    stored = _merged(before, patch)
    assert "progress" not in stored["currentRun"]
    assert status_patch("TrainingPipeline", "churn", stored, after) == {}  # written: no more


def _merged(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """What a server stores after a merge patch (RFC 7396)."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            out[key] = _merged(out.get(key) or {}, value)
        else:
            out[key] = value
    return out


MISTYPED_RUN = {"id": "1", "job": "j", "trigger": "Create", "startedAt": "t", "progres": {}}


@pytest.mark.parametrize(
    ("kind", "status", "field"),
    [
        ("TrainingPipeline", {"lastRunID": 3}, "status.lastRunID"),
        ("TrainingPipeline", {"currentRun": MISTYPED_RUN}, "status.currentRun.progres"),
        ("ModelDeployment", {"readyReplica": 1}, "status.readyReplica"),
        ("ModelDeployment", {"replicas": "two"}, "status.replicas"),
        ("DriftMonitor", {"conditions": [{**READY, "lastTransition": "t"}]}, "lastTransition"),
    ],
)
def test_a_key_the_model_does_not_have_is_refused_naming_it(
    kind: str, status: dict[str, Any], field: str
) -> None:
    with pytest.raises(StatusSchemaError) as refused:
        status_patch(kind, "x", {}, status)
    assert field in str(refused.value) and f"{kind} x: not written" in str(refused.value)


def test_only_the_status_writer_patches_status() -> None:
    """Every status write of the controllers goes through status_write.write_status."""
    folder = Path(kube.__file__).parent
    callers = {
        path.name
        for path in folder.glob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr == "patch_status"
    }
    assert callers == {"status_write.py"}
