"""kopf's diff base is built only for the kinds with change handlers (controller/diffbase.py)."""

from __future__ import annotations

from typing import Any

import kopf
import pytest
from kopf._cogs.structs.diffs import diff

import kubeloop.controller.main  # noqa: F401 (registers every handler with kopf)
from kubeloop.controller.diffbase import CHANGE_HANDLED_KINDS, ChangeHandledDiffBase
from kubeloop.controller.kube import PLURALS

STORAGE = {"prefix": "kubeloop.io", "key": "last-handled-configuration"}


def _body(kind: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {
            "name": "a",
            "namespace": "ml",
            "labels": {"app": "a"},
            "annotations": {"kubeloop.io/last-handled-configuration": '{"spec": {"x": 0}}'},
        },
        "spec": {"x": 1, "template": {"containers": [{"name": "c", "image": "i"}]}},
        "status": {"phase": "Running"},
    }


def test_the_kinds_are_those_with_kopf_change_handlers() -> None:
    """A change handler added for another kind must be added here, or its diff is empty."""
    registry = kopf.get_default_registry()
    selectors = registry._changing.get_all_selectors()
    plurals = {selector.plural or selector.any_name for selector in selectors}
    kinds = {kind for kind, (_, plural) in PLURALS.items() if plural in plurals}
    assert kinds == CHANGE_HANDLED_KINDS


@pytest.mark.parametrize(
    ("kind", "same_as_kopf"),
    [
        ("ModelDeployment", True),
        ("DriftMonitor", True),
        ("", True),  # a body without a kind: kopf's own essence
        ("TrainingPipeline", False),
        ("Job", False),
        ("Pod", False),
        ("Deployment", False),
        ("CronJob", False),
    ],
)
def test_essence(kind: str, same_as_kopf: bool) -> None:
    body = kopf.Body(_body(kind))
    ours = ChangeHandledDiffBase(**STORAGE).build(body=body)
    kopfs = kopf.AnnotationsDiffBaseStorage(**STORAGE).build(body=body)
    assert kopfs["spec"]["x"] == 1  # kopf's essence holds the spec
    assert ours == (kopfs if same_as_kopf else {})


def test_an_update_still_diffs_for_a_change_handled_kind() -> None:
    """The stored base is read back as before: the spec change shows in the diff."""
    storage = ChangeHandledDiffBase(**STORAGE)
    body = kopf.Body(_body("ModelDeployment"))
    old = storage.fetch(body=body)
    new = storage.build(body=body)
    assert old == {"spec": {"x": 0}}
    assert ("change", ("spec", "x"), 0, 1) in list(diff(old, new))


@pytest.mark.parametrize(
    ("kind", "stored"),
    [
        ("ModelDeployment", {"spec": {"x": 0}}),
        ("DriftMonitor", {"spec": {"x": 0}}),
        ("", {"spec": {"x": 0}}),
        ("TrainingPipeline", None),  # not even looked up: no change handler reads it
        ("Job", None),
    ],
)
def test_the_stored_base_is_read_only_for_a_change_handled_kind(
    kind: str, stored: dict[str, Any] | None
) -> None:
    assert ChangeHandledDiffBase(**STORAGE).fetch(body=kopf.Body(_body(kind))) == stored
