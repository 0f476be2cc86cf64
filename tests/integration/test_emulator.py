"""The emulator extension behaves like an API server where kopf and the operator rely on it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeloop.local.emulator import EmulatorThread

ROOT = Path(__file__).resolve().parents[2]
TP = "/apis/kubeloop.io/v1alpha1/namespaces/ml/trainingpipelines"


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmulatorThread]:
    with EmulatorThread() as c:
        yield c


def _req(cluster: EmulatorThread, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    ctype = "application/merge-patch+json" if method == "PATCH" else "application/json"
    req = urllib.request.Request(
        cluster.url + path, data=data, method=method, headers={"Content-Type": ctype}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


def _pipeline(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "examples/churn-pipeline.yaml").read_text())
    doc["metadata"]["name"] = name
    return doc


def test_create_sets_server_metadata_and_defaults(cluster: EmulatorThread) -> None:
    obj = _req(cluster, "POST", TP, _pipeline("meta"))
    meta = obj["metadata"]
    assert meta["uid"] and meta["generation"] == 1 and meta["resourceVersion"]
    assert meta["namespace"] == "ml" and meta["creationTimestamp"].endswith("Z")
    assert obj["spec"]["runPolicy"]["historyLimit"] == 10  # CRD default applied


def test_status_subresource_splits_status_from_spec(cluster: EmulatorThread) -> None:
    _req(cluster, "POST", TP, _pipeline("split"))
    obj = _req(
        cluster,
        "PATCH",
        f"{TP}/split/status",
        {"status": {"phase": "Running"}, "spec": {"seed": 7}},
    )
    assert obj["status"] == {"phase": "Running"} and obj["spec"]["seed"] == 42
    obj = _req(
        cluster, "PATCH", f"{TP}/split", {"status": {"phase": "Failed"}, "spec": {"seed": 7}}
    )
    assert obj["status"] == {"phase": "Running"} and obj["spec"]["seed"] == 7
    assert obj["metadata"]["generation"] == 2
    rv = int(obj["metadata"]["resourceVersion"])
    obj = _req(cluster, "PATCH", f"{TP}/split", {"metadata": {"annotations": {"a": "b"}}})
    assert obj["metadata"]["generation"] == 2  # metadata changes do not bump generation
    assert int(obj["metadata"]["resourceVersion"]) > rv


def test_invalid_custom_resource_is_refused_with_422(cluster: EmulatorThread) -> None:
    bad = _pipeline("bad")
    bad["spec"]["promotion"] = {"metric": "rmse"}
    with pytest.raises(urllib.error.HTTPError) as err:
        _req(cluster, "POST", TP, bad)
    assert err.value.code == 422
    assert b"spec.promotion.metric" in err.value.read()


def test_discovery_lists_status_subresource_and_kopf_prerequisites(cluster: EmulatorThread) -> None:
    names = [r["name"] for r in _req(cluster, "GET", "/apis/kubeloop.io/v1alpha1")["resources"]]
    assert "trainingpipelines/status" in names and "modeldeployments/scale" in names
    core = [r["name"] for r in _req(cluster, "GET", "/api/v1")["resources"]]
    assert "namespaces" in core
    crds = _req(cluster, "GET", "/apis/apiextensions.k8s.io/v1")["resources"]
    assert [r["name"] for r in crds] == ["customresourcedefinitions"]


def test_in_process_api_and_garbage_collection(cluster: EmulatorThread) -> None:
    owner = _req(cluster, "POST", TP, _pipeline("owner"))
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "owner-run-1",
            "namespace": "ml",
            "ownerReferences": [{"uid": owner["metadata"]["uid"], "name": "owner"}],
        },
        "spec": {},
    }
    em = cluster.emulator
    cluster.call(em.create_object(job))
    cluster.call(
        em.patch_object(
            "batch/v1/jobs", "ml", "owner-run-1", {"status": {"succeeded": 1}}, subresource="status"
        )
    )
    stored = em.get_object("batch/v1/jobs", "ml", "owner-run-1")
    assert stored is not None and stored["status"] == {"succeeded": 1}
    assert [j["metadata"]["name"] for j in em.list_objects("batch/v1/jobs", "ml")] == [
        "owner-run-1"
    ]
    _req(cluster, "DELETE", f"{TP}/owner")
    assert em.get_object("batch/v1/jobs", "ml", "owner-run-1") is None


def test_a_child_created_after_its_owner_was_deleted_is_collected(cluster: EmulatorThread) -> None:
    # A reconcile in flight when its owner is deleted can create (or patch) a child after the
    # owner's dependents were collected; the real garbage collector still removes it.
    owner = _req(cluster, "POST", TP, _pipeline("gone"))
    _req(cluster, "DELETE", f"{TP}/gone")
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "gone",
            "ownerReferences": [{"uid": owner["metadata"]["uid"], "name": "gone"}],
        },
        "spec": {"ports": [{"port": 80}]},
    }
    _req(cluster, "POST", "/api/v1/namespaces/ml/services", service)
    assert cluster.emulator.get_object("v1/services", "ml", "gone") is None
    em = cluster.emulator
    cluster.call(
        em.create_object({**service, "metadata": {**service["metadata"], "namespace": "ml"}})
    )
    assert em.get_object("v1/services", "ml", "gone") is None
    # A child whose owner still exists stays.
    alive = _req(cluster, "POST", TP, _pipeline("alive"))
    service["metadata"] = {
        "name": "alive",
        "ownerReferences": [{"uid": alive["metadata"]["uid"], "name": "alive"}],
    }
    _req(cluster, "POST", "/api/v1/namespaces/ml/services", service)
    assert em.get_object("v1/services", "ml", "alive") is not None


def test_a_spec_change_is_admitted_like_a_create(cluster: EmulatorThread) -> None:
    _req(cluster, "POST", TP, _pipeline("changed"))
    features = ["tenure", "contract", "tenure"]
    with pytest.raises(urllib.error.HTTPError) as err:
        _req(cluster, "PATCH", f"{TP}/changed", {"spec": {"data": {"features": features}}})
    assert err.value.code == 422
    assert 'spec.data.features[2]: Duplicate value: \\"tenure\\"' in err.value.read().decode()
    # A valid change is stored with the CRD's defaults, as on create.
    obj = _req(cluster, "PATCH", f"{TP}/changed", {"spec": {"runPolicy": None, "seed": 7}})
    assert obj["spec"]["seed"] == 7 and obj["spec"]["runPolicy"]["historyLimit"] == 10
