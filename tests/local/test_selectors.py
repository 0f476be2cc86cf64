"""Label and field selectors as the emulated API server filters lists and watches with them."""

from __future__ import annotations

from typing import Any

import pytest

from kubeloop.local.cluster.selectors import Selector, SelectorError, field_value

POD: dict[str, Any] = {
    "metadata": {"name": "web-1", "namespace": "ml", "labels": {"app": "web", "tier": "front"}},
    "spec": {"restartPolicy": "Always"},
    "status": {"phase": "Running"},
}
EVENT: dict[str, Any] = {
    "metadata": {"name": "e1", "namespace": "ml"},
    "involvedObject": {"kind": "TrainingPipeline", "name": "churn", "namespace": "ml", "uid": "u1"},
}


@pytest.mark.parametrize(
    ("params", "obj", "matches"),
    [
        ({}, POD, True),
        ({"fieldSelector": "metadata.name=web-1"}, POD, True),
        ({"fieldSelector": "metadata.name==web-2"}, POD, False),
        ({"fieldSelector": "metadata.name!=web-2,status.phase=Running"}, POD, True),
        ({"fieldSelector": "spec.nodeName="}, POD, True),  # absent reads as ""
        ({"fieldSelector": "involvedObject.name=churn,involvedObject.uid=u1"}, EVENT, True),
        ({"fieldSelector": "involvedObject.name=churn,involvedObject.uid=u2"}, EVENT, False),
        ({"labelSelector": "app=web"}, POD, True),
        ({"labelSelector": "app=web,tier!=front"}, POD, False),
        ({"labelSelector": "tier in (front, back)"}, POD, True),
        ({"labelSelector": "tier notin (front)"}, POD, False),
        ({"labelSelector": "app,!canary"}, POD, True),
        ({"labelSelector": "canary"}, POD, False),
        ({"labelSelector": "missing!=x"}, POD, True),  # a missing label is not x
        ({"labelSelector": "app=web", "fieldSelector": "metadata.name=other"}, POD, False),
    ],
)
def test_selector_matches(params: dict[str, str], obj: dict[str, Any], matches: bool) -> None:
    assert Selector.from_params(params).matches(obj) is matches


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"fieldSelector": "metadata.name"}, "fieldSelector 'metadata.name'"),
        ({"labelSelector": "app=(x"}, "labelSelector 'app=(x'"),
    ],
)
def test_a_selector_that_does_not_parse_is_named(params: dict[str, str], named: str) -> None:
    with pytest.raises(SelectorError, match=named.replace("(", r"\(")):
        Selector.from_params(params)


def test_field_values_are_compared_as_strings() -> None:
    obj = {"spec": {"replicas": 2, "paused": True, "none": None}}
    assert [field_value(obj, f"spec.{k}") for k in ("replicas", "paused", "none", "x")] == [
        "2",
        "true",
        "",
        "",
    ]
