"""The emulator extension behaves like an API server where kopf and the operator rely on it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml

from kubeloop.local.cluster.emulator import EmulatorThread

ROOT = Path(__file__).resolve().parents[2]
TP = "/apis/kubeloop.io/v1alpha1/namespaces/ml/trainingpipelines"


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmulatorThread]:
    with EmulatorThread() as c:
        yield c


def _req(
    cluster: EmulatorThread, method: str, path: str, body: Any = None, ctype: str | None = None
) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    if ctype is None:
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


def test_a_child_created_while_its_owner_terminates_goes_with_the_owner(
    cluster: EmulatorThread,
) -> None:
    # A DELETE of an object with a finalizer only marks it; a reconcile in flight may still
    # create a child then (its owner exists). When the finalizer is removed the owner is gone,
    # and the garbage collector removes the child: no owner of it exists any more.
    pipeline = _pipeline("terminating")
    pipeline["metadata"]["finalizers"] = ["kubeloop.io/finalizer"]
    owner = _req(cluster, "POST", TP, pipeline)
    _req(cluster, "DELETE", f"{TP}/terminating")
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "terminating",
            "ownerReferences": [{"uid": owner["metadata"]["uid"], "name": "terminating"}],
        },
        "spec": {"ports": [{"port": 80}]},
    }
    _req(cluster, "POST", "/api/v1/namespaces/ml/services", service)
    em = cluster.emulator
    assert em.get_object("v1/services", "ml", "terminating") is not None  # the owner exists
    _req(cluster, "PATCH", f"{TP}/terminating", {"metadata": {"finalizers": None}})
    assert em.get_object("kubeloop.io/v1alpha1/trainingpipelines", "ml", "terminating") is None
    assert em.get_object("v1/services", "ml", "terminating") is None


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


def _versions(cluster: EmulatorThread, resource: str, name: str) -> int:
    """How many versions of the object were ever stored (each one sent a watch event)."""
    return len(cluster.emulator.objects[kmock.resource(resource), "ml", name].history)


@pytest.mark.parametrize(
    ("path", "kind", "api_version"),
    [
        (TP, "TrainingPipelineList", "kubeloop.io/v1alpha1"),
        ("/api/v1/namespaces/ml/pods", "PodList", "v1"),
        ("/apis/batch/v1/jobs", "JobList", "batch/v1"),
        ("/api/v1/namespaces", "NamespaceList", "v1"),
    ],
)
def test_lists_carry_kind_and_api_version(
    cluster: EmulatorThread, path: str, kind: str, api_version: str
) -> None:
    body = _req(cluster, "GET", path)
    assert (body["kind"], body["apiVersion"]) == (kind, api_version)
    assert int(body["metadata"]["resourceVersion"]) >= 0 and isinstance(body["items"], list)


def test_core_discovery_and_names_read_from_the_crds(cluster: EmulatorThread) -> None:
    core = _req(cluster, "GET", "/api/v1")
    assert core["groupVersion"] == "v1"
    pods = next(r for r in core["resources"] if r["name"] == "pods")
    assert pods["shortNames"] == ["po"] and pods["singularName"] == "pod" and pods["namespaced"]
    ours = _req(cluster, "GET", "/apis/kubeloop.io/v1alpha1")["resources"]
    tp = next(r for r in ours if r["name"] == "trainingpipelines")
    assert (tp["shortNames"], tp["categories"]) == (["tp"], ["kubeloop"])
    scale = next(r for r in ours if r["name"] == "modeldeployments/scale")
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")
    groups = [g["name"] for g in _req(cluster, "GET", "/apis")["groups"]]
    assert "kubeloop.io" in groups and "" not in groups


@pytest.mark.parametrize(
    ("method", "name", "body", "ctype"),
    [
        ("PATCH", "dry-merge", {"spec": {"seed": 7}}, None),
        ("PATCH", "dry-json", [{"op": "replace", "path": "/spec/seed", "value": 7}],
         "application/json-patch+json"),
        ("PATCH", "dry-smp", {"spec": {"seed": 7}}, "application/strategic-merge-patch+json"),
        ("PUT", "dry-put", None, None),
        ("DELETE", "dry-delete", None, None),
    ],
)  # fmt: skip
def test_dry_run_answers_what_would_be_stored_and_stores_nothing(
    cluster: EmulatorThread, method: str, name: str, body: Any, ctype: str | None
) -> None:
    resource = "kubeloop.io/v1alpha1/trainingpipelines"
    _req(cluster, "POST", TP, _pipeline(name))
    before, versions = (
        cluster.emulator.get_object(resource, "ml", name),
        _versions(cluster, resource, name),
    )
    assert before is not None
    if method == "PUT":
        body = {**before, "spec": {**before["spec"], "seed": 7}}
    answer = _req(cluster, method, f"{TP}/{name}?dryRun=All", body, ctype)
    if method != "DELETE":
        assert answer["spec"]["seed"] == 7 and answer["metadata"]["generation"] == 2
    assert cluster.emulator.get_object(resource, "ml", name) == before
    assert _versions(cluster, resource, name) == versions


def test_dry_run_create_and_refusals(cluster: EmulatorThread) -> None:
    created = _req(cluster, "POST", f"{TP}?dryRun=All", _pipeline("never"))
    assert created["metadata"]["uid"] and created["spec"]["runPolicy"]["historyLimit"] == 10
    assert (
        cluster.emulator.get_object("kubeloop.io/v1alpha1/trainingpipelines", "ml", "never") is None
    )
    bad = _pipeline("never")
    bad["spec"]["promotion"] = {"metric": "rmse"}
    with pytest.raises(urllib.error.HTTPError) as err:  # admission runs on a dry run too
        _req(cluster, "POST", f"{TP}?dryRun=All", bad)
    assert err.value.code == 422
    _req(cluster, "POST", TP, _pipeline("exists"))
    with pytest.raises(urllib.error.HTTPError) as err:
        _req(cluster, "POST", f"{TP}?dryRun=All", _pipeline("exists"))
    assert err.value.code == 409
    with pytest.raises(urllib.error.HTTPError) as err:
        _req(
            cluster,
            "PATCH",
            f"{TP}/exists?dryRun=All",
            {"spec": {"data": {"features": ["a", "a"]}}},
        )
    assert err.value.code == 422


def test_put_replaces_keeping_server_fields_and_refuses_a_stale_version(
    cluster: EmulatorThread,
) -> None:
    obj = _req(cluster, "POST", TP, _pipeline("put"))
    _req(cluster, "PATCH", f"{TP}/put/status", {"status": {"phase": "Running"}})
    sent = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": {"name": "put"}}
    sent["spec"] = {**obj["spec"], "seed": 9}
    stored = _req(cluster, "PUT", f"{TP}/put", sent)
    assert stored["spec"]["seed"] == 9 and stored["metadata"]["uid"] == obj["metadata"]["uid"]
    assert stored["metadata"]["generation"] == 2 and stored["status"] == {"phase": "Running"}
    sent["metadata"]["resourceVersion"] = obj["metadata"]["resourceVersion"]
    with pytest.raises(urllib.error.HTTPError) as err:
        _req(cluster, "PUT", f"{TP}/put", sent)
    assert err.value.code == 409


def test_the_scale_subresource_reads_and_writes_a_scale(cluster: EmulatorThread) -> None:
    md = "/apis/kubeloop.io/v1alpha1/namespaces/ml/modeldeployments"
    doc = next(
        d
        for d in yaml.safe_load_all((ROOT / "examples/local/churn.yaml").read_text())
        if d["kind"] == "ModelDeployment"
    )
    doc["metadata"]["name"] = "scaled"
    _req(cluster, "POST", md, doc)
    scale = _req(cluster, "GET", f"{md}/scaled/scale")
    assert (scale["kind"], scale["apiVersion"]) == ("Scale", "autoscaling/v1")
    assert scale["spec"]["replicas"] == 2 and scale["status"]["replicas"] == 0
    scale = _req(cluster, "PATCH", f"{md}/scaled/scale", {"spec": {"replicas": 3}})
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 3
    scale = _req(cluster, "PUT", f"{md}/scaled/scale", {**scale, "spec": {"replicas": 4}})
    stored = cluster.emulator.get_object("kubeloop.io/v1alpha1/modeldeployments", "ml", "scaled")
    assert stored is not None and stored["spec"]["replicas"] == 4 == scale["spec"]["replicas"]
    assert (
        _req(cluster, "PATCH", f"{md}/scaled/scale?dryRun=All", {"spec": {"replicas": 9}})["spec"][
            "replicas"
        ]
        == 9
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        _req(cluster, "PATCH", f"{md}/scaled/scale", {"spec": {"replicas": -1}})
    assert err.value.code == 422 and b"spec.replicas" in err.value.read()
    stored = cluster.emulator.get_object("kubeloop.io/v1alpha1/modeldeployments", "ml", "scaled")
    assert stored is not None and stored["spec"]["replicas"] == 4


def test_namespaces_are_served_cluster_scoped(cluster: EmulatorThread) -> None:
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}
    assert _req(cluster, "POST", "/api/v1/namespaces", ns)["metadata"]["name"] == "team-a"
    assert cluster.emulator.get_object("v1/namespaces", None, "team-a") is not None
    names = [n["metadata"]["name"] for n in _req(cluster, "GET", "/api/v1/namespaces")["items"]]
    assert "team-a" in names
    assert _req(cluster, "GET", "/api/v1/namespaces/team-a")["metadata"]["name"] == "team-a"
    _req(cluster, "DELETE", "/api/v1/namespaces/team-a")
    assert cluster.emulator.get_object("v1/namespaces", None, "team-a") is None


def test_a_change_undone_by_the_crd_defaults_is_a_no_op(cluster: EmulatorThread) -> None:
    # kubectl replace/apply of a manifest without the defaulted fields: defaulted again, so
    # the spec (and generation, the operator's cue to act) does not change.
    obj = _req(cluster, "POST", TP, _pipeline("defaults"))
    again = _req(cluster, "PATCH", f"{TP}/defaults", {"spec": {"runPolicy": None}})
    assert again == obj
    sent = _pipeline("defaults")
    replaced = _req(cluster, "PUT", f"{TP}/defaults", sent)
    assert replaced["metadata"]["generation"] == 1 and replaced["spec"] == obj["spec"]


def test_a_status_write_is_pruned_and_validated(cluster: EmulatorThread) -> None:
    _req(cluster, "POST", TP, _pipeline("status"))
    status = {"phase": "Running", "lastRunId": None, "typo": 1, "champion": None}
    obj = _req(
        cluster,
        "PATCH",
        f"{TP}/status/status",
        [{"op": "add", "path": "/status", "value": status}],
        "application/json-patch+json",
    )
    assert obj["status"] == {"phase": "Running"}  # unknown fields and nulls pruned
    with pytest.raises(urllib.error.HTTPError) as err:
        _req(cluster, "PATCH", f"{TP}/status/status", {"status": {"lastRunId": "seven"}})
    assert err.value.code == 422
    assert b"status.lastRunId" in err.value.read()


def test_generated_names_do_not_collide_at_the_scale_of_a_test_module(
    cluster: EmulatorThread,
) -> None:
    """kopf names its Events by `generateName`; a module posts about a thousand. With 5 random
    hex characters one in two such modules lost an Event to a 409 (a real API server draws
    again on a collision since Kubernetes 1.32)."""
    from kubeloop.local.cluster.emulator import generate_name

    names = {generate_name("kopf-event-") for _ in range(200_000)}
    assert len(names) == 200_000
    created = _req(
        cluster,
        "POST",
        "/api/v1/namespaces/ml/events",
        {
            "metadata": {"generateName": "churn."},
            "involvedObject": {"kind": "TrainingPipeline", "name": "churn", "namespace": "ml"},
            "reason": "Test",
            "message": "generated",
        },
    )
    assert created["metadata"]["name"].startswith("churn.")
    assert len(created["metadata"]["name"]) == len("churn.") + 12


def test_leases_are_served_and_of_two_updates_from_one_version_exactly_one_wins(
    cluster: EmulatorThread,
) -> None:
    """Leader election (kubeloop.controller.leader) takes a Lease by a PUT that names the
    resourceVersion it read: when two replicas race for one expired lease, one must get 409."""
    leases = "/apis/coordination.k8s.io/v1/namespaces/kubeloop-system/leases"
    group = _req(cluster, "GET", "/apis/coordination.k8s.io/v1")
    assert {r["name"]: r["kind"] for r in group["resources"]}["leases"] == "Lease"
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "kubeloop-leader"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15, "leaseTransitions": 0},
    }
    stored = _req(cluster, "POST", leases, lease)
    read = stored["metadata"]["resourceVersion"]

    def take(holder: str) -> int:
        body = {**lease, "metadata": {"name": "kubeloop-leader", "resourceVersion": read}}
        body["spec"] = {**lease["spec"], "holderIdentity": holder, "leaseTransitions": 1}
        try:
            _req(cluster, "PUT", f"{leases}/kubeloop-leader", body)
        except urllib.error.HTTPError as err:
            return err.code
        return 200

    async def hold_the_store() -> None:  # as a watch taking its snapshot does, for a while
        async with cluster.emulator.lock:
            held.set()
            await asyncio.sleep(0.3)

    held = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(9) as pool:
        holding = pool.submit(cluster.call, hold_the_store())
        assert held.wait(10)
        codes = list(pool.map(take, [f"replica-{i}" for i in range(8)]))
        holding.result()
    assert sorted(codes) == [200] + [409] * 7
    holder = _req(cluster, "GET", f"{leases}/kubeloop-leader")["spec"]["holderIdentity"]
    assert holder == f"replica-{codes.index(200)}"
