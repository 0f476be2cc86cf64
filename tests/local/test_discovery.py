"""The emulated API server's discovery documents, list wrapping and Scale, as pure functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeloop.local.cluster.discovery import (
    ServedResource,
    api_group,
    api_group_list,
    api_resource_list,
    crd_resources,
    get_path,
    initial_events_end,
    list_document,
    scale_document,
    scale_patch,
    served_resources,
)
from kubeloop.local.cluster.emulator import RESOURCES

SERVED = served_resources(RESOURCES)
MD = SERVED["kubeloop.io/v1alpha1/modeldeployments"]
DEPLOY = SERVED["apps/v1/deployments"]


def test_crd_names_are_those_of_the_committed_crds(repo_root: Path) -> None:
    for served in crd_resources().values():
        crd = yaml.safe_load((repo_root / f"crds/{served.group}_{served.plural}.yaml").read_text())
        names = crd["spec"]["names"]
        assert list(served.short_names) == names["shortNames"]
        assert list(served.categories) == names["categories"]
        assert served.kind.lower() == names["singular"]


@pytest.mark.parametrize(
    ("key", "short_names", "categories", "namespaced"),
    [
        ("kubeloop.io/v1alpha1/trainingpipelines", ("tp",), ("kubeloop",), True),
        ("kubeloop.io/v1alpha1/modeldeployments", ("md",), ("kubeloop",), True),
        ("kubeloop.io/v1alpha1/driftmonitors", ("dm",), ("kubeloop",), True),
        ("v1/pods", ("po",), ("all",), True),
        ("v1/namespaces", ("ns",), (), False),
        ("apps/v1/deployments", ("deploy",), ("all",), True),
        ("batch/v1/cronjobs", ("cj",), ("all",), True),
        ("autoscaling/v2/horizontalpodautoscalers", ("hpa",), ("all",), True),
        ("networking.k8s.io/v1/networkpolicies", ("netpol",), (), True),
        ("v1/secrets", (), (), True),
    ],
)
def test_every_resource_has_its_names(
    key: str, short_names: tuple[str, ...], categories: tuple[str, ...], namespaced: bool
) -> None:
    served = SERVED[key]
    assert (served.short_names, served.categories, served.namespaced) == (
        short_names,
        categories,
        namespaced,
    )


@pytest.mark.parametrize(
    ("group", "version", "group_version", "names"),
    [
        ("", "v1", "v1", {"pods", "pods/status", "namespaces", "events"}),
        ("kubeloop.io", "v1alpha1", "kubeloop.io/v1alpha1", {"modeldeployments/scale"}),
        ("apps", "v1", "apps/v1", {"deployments", "deployments/scale"}),
    ],
)
def test_resource_lists(group: str, version: str, group_version: str, names: set[str]) -> None:
    doc = api_resource_list(SERVED.values(), group, version)
    assert doc is not None and doc["groupVersion"] == group_version
    assert names <= {r["name"] for r in doc["resources"]}
    for entry in doc["resources"]:
        assert {"name", "singularName", "namespaced", "kind", "verbs"} <= entry.keys()
        if "/" not in entry["name"]:
            assert entry["singularName"] == entry["kind"].lower()
            assert set(entry["verbs"]) >= {"get", "list", "watch", "create", "patch", "delete"}


def test_unknown_groups_are_not_served() -> None:
    assert api_resource_list(SERVED.values(), "example.com", "v1") is None
    assert api_group(SERVED.values(), "example.com") is None
    assert api_group(SERVED.values(), "kubeloop.io") == {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": "kubeloop.io",
        "versions": [{"groupVersion": "kubeloop.io/v1alpha1", "version": "v1alpha1"}],
        "preferredVersion": {"groupVersion": "kubeloop.io/v1alpha1", "version": "v1alpha1"},
    }
    groups = {g["name"] for g in api_group_list(SERVED.values())["groups"]}
    assert groups == {
        "kubeloop.io",
        "events.k8s.io",
        "batch",
        "apps",
        "autoscaling",
        "networking.k8s.io",
        "rbac.authorization.k8s.io",
        "apiextensions.k8s.io",
        "coordination.k8s.io",
        "authorization.k8s.io",
    }


def test_pod_logs_and_access_reviews_have_their_verbs() -> None:
    core = api_resource_list(SERVED.values(), "", "v1")
    assert core is not None
    log = next(r for r in core["resources"] if r["name"] == "pods/log")
    assert (log["verbs"], log["kind"]) == (["get"], "Pod")
    reviews = api_resource_list(SERVED.values(), "authorization.k8s.io", "v1")
    assert reviews is not None
    [review] = reviews["resources"]
    assert (review["name"], review["verbs"], review["namespaced"]) == (
        "selfsubjectaccessreviews",
        ["create"],
        False,
    )


def test_initial_events_end_is_an_annotated_bookmark() -> None:
    assert initial_events_end(MD, "12") == {
        "type": "BOOKMARK",
        "object": {
            "kind": "ModelDeployment",
            "apiVersion": "kubeloop.io/v1alpha1",
            "metadata": {
                "resourceVersion": "12",
                "annotations": {"k8s.io/initial-events-end": "true"},
            },
        },
    }


@pytest.mark.parametrize(
    ("key", "kind", "api_version"),
    [
        ("kubeloop.io/v1alpha1/trainingpipelines", "TrainingPipelineList", "kubeloop.io/v1alpha1"),
        ("v1/pods", "PodList", "v1"),
        ("batch/v1/jobs", "JobList", "batch/v1"),
    ],
)
def test_list_document(key: str, kind: str, api_version: str) -> None:
    assert list_document(SERVED[key], [{"a": 1}], "7") == {
        "kind": kind,
        "apiVersion": api_version,
        "metadata": {"resourceVersion": "7"},
        "items": [{"a": 1}],
    }


@pytest.mark.parametrize(
    ("obj", "path", "value"),
    [
        ({"spec": {"replicas": 2}}, ".spec.replicas", 2),
        ({"spec": {}}, ".spec.replicas", None),
        ({"spec": 3}, ".spec.replicas", None),
        ({}, ".status.selector", None),
    ],
)
def test_get_path(obj: dict[str, Any], path: str, value: Any) -> None:
    assert get_path(obj, path) == value


@pytest.mark.parametrize(
    ("served", "obj", "spec", "status"),
    [
        (MD, {"spec": {"replicas": 2}}, {"replicas": 2}, {"replicas": 0}),
        (
            MD,
            {"spec": {"replicas": 2}, "status": {"replicas": 2, "selector": "app=x"}},
            {"replicas": 2},
            {"replicas": 2, "selector": "app=x"},
        ),
        (DEPLOY, {"spec": {}, "status": {"replicas": 1}}, {"replicas": 0}, {"replicas": 1}),
    ],
)
def test_scale_document(
    served: ServedResource, obj: dict[str, Any], spec: dict[str, Any], status: dict[str, Any]
) -> None:
    obj = {"metadata": {"name": "n", "namespace": "ml", "labels": {"x": "y"}}, **obj}
    scale = scale_document(served, obj)
    assert (scale["kind"], scale["apiVersion"]) == ("Scale", "autoscaling/v1")
    assert scale["metadata"] == {"name": "n", "namespace": "ml"}
    assert (scale["spec"], scale["status"]) == (spec, status)


@pytest.mark.parametrize(
    ("scale", "patch", "error"),
    [
        ({"spec": {"replicas": 3}}, {"spec": {"replicas": 3}}, None),
        ({"spec": {"replicas": 0}}, {"spec": {"replicas": 0}}, None),
        ({"spec": {}}, {}, None),
        ({"spec": {"replicas": -1}}, None, "non-negative"),
        ({"spec": {"replicas": "3"}}, None, "non-negative"),
        ({"spec": {"replicas": True}}, None, "non-negative"),
    ],
)
def test_scale_patch(
    scale: dict[str, Any], patch: dict[str, Any] | None, error: str | None
) -> None:
    if error is None:
        assert scale_patch(MD, scale) == patch
    else:
        with pytest.raises(ValueError, match=error):
            scale_patch(MD, scale)
