"""The emulated API serves what kubectl's everyday verbs read (issue 15): selectors on lists and
watches, watch-list's initial-events bookmark, pods/log (tail, follow), SelfSubjectAccessReview
and the protobuf Job of `kubectl create job --from=cronjob/...`. Over HTTP, as kubectl calls it;
tests/local/test_kubectl_cluster.py drives the real kubectl against the whole loop."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubeloop.local.cluster.emulator import EmulatorThread
from kubeloop.local.cluster.podlogs import PodLogs
from kubeloop.local.cluster.podspec import container_files

DATA = Path(__file__).resolve().parents[1] / "data/kubectl"
CM = "/api/v1/namespaces/ml/configmaps"


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmulatorThread]:
    with EmulatorThread() as c:
        yield c


def _req(
    cluster: EmulatorThread,
    method: str,
    path: str,
    body: Any = None,
    ctype: str = "application/json",
) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode() if body else None
    req = urllib.request.Request(
        cluster.url + path, data=data, method=method, headers={"Content-Type": ctype}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        raw = resp.read()
        return json.loads(raw) if "json" in resp.headers.get("Content-Type", "") else raw


def _create(cluster: EmulatorThread, obj: dict[str, Any]) -> dict[str, Any]:
    return cluster.call(cluster.emulator.create_object(obj))


def _configmap(name: str, **labels: str) -> dict[str, Any]:
    meta = {"name": name, "namespace": "ml", "labels": labels}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}


def wait_for(check: Callable[[], Any], timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return value


def _watch(cluster: EmulatorThread, query: str, count: int) -> list[dict[str, Any]]:
    """The first `count` events of a watch, read in the background into the returned list
    (then the connection is closed: an open one would hold the emulator's shutdown)."""
    events: list[dict[str, Any]] = []

    def read() -> None:
        with urllib.request.urlopen(f"{cluster.url}{CM}?watch=true&{query}") as resp:
            for line in resp:
                events.append(json.loads(line))
                if len(events) == count:
                    return

    threading.Thread(target=read, daemon=True).start()
    return events


def test_lists_and_watches_honour_selectors_and_end_initial_events(
    cluster: EmulatorThread,
) -> None:
    _create(cluster, _configmap("web", app="web"))
    _create(cluster, _configmap("db", app="db"))
    names = [
        i["metadata"]["name"]
        for i in _req(cluster, "GET", f"{CM}?labelSelector=app%3Dweb")["items"]
    ]
    assert names == ["web"]
    listed = _req(cluster, "GET", f"{CM}?fieldSelector=metadata.name%3Ddb")["items"]
    assert [i["metadata"]["name"] for i in listed] == ["db"]

    # kubectl wait / rollout status: watch-list of one object by name, then its changes only.
    events = _watch(cluster, "fieldSelector=metadata.name%3Dweb&sendInitialEvents=true", 3)
    wait_for(lambda: len(events) >= 2)
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert events[1]["object"]["kind"] == "ConfigMap"
    cluster.call(cluster.emulator.patch_object("v1/configmaps", "ml", "db", {"data": {"a": "1"}}))
    cluster.call(cluster.emulator.patch_object("v1/configmaps", "ml", "web", {"data": {"a": "2"}}))
    wait_for(lambda: len(events) >= 3)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events[2:]] == [
        ("MODIFIED", "web")
    ]

    with pytest.raises(urllib.error.HTTPError) as err:
        _req(cluster, "GET", f"{CM}?fieldSelector=metadata.name")
    assert err.value.code == 400 and "fieldSelector" in err.value.read().decode()


def test_events_of_one_object_by_field_selector(cluster: EmulatorThread) -> None:
    for i, (kind, uid) in enumerate([("TrainingPipeline", "u1"), ("ModelDeployment", "u2")]):
        involved = {"kind": kind, "name": "churn", "namespace": "ml", "uid": uid}
        meta = {"name": f"e{i}", "namespace": "ml"}
        _create(
            cluster,
            {"apiVersion": "v1", "kind": "Event", "metadata": meta, "involvedObject": involved},
        )
    query = "involvedObject.name%3Dchurn,involvedObject.namespace%3Dml,involvedObject.uid%3Du1"
    items = _req(cluster, "GET", f"/api/v1/namespaces/ml/events?fieldSelector={query}")["items"]
    assert [i["metadata"]["name"] for i in items] == ["e0"]


def test_self_subject_access_review_allows(cluster: EmulatorThread) -> None:
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": "create", "resource": "trainingpipelines"}},
    }
    path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    answer = _req(cluster, "POST", path, review)
    assert answer["status"]["allowed"] is True and answer["spec"] == review["spec"]
    protobuf = "application/vnd.kubernetes.protobuf"
    body = (DATA / "selfsubjectaccessreview.pb").read_bytes()
    assert _req(cluster, "POST", path, body, protobuf)["status"]["allowed"] is True


def test_kubectls_protobuf_job_from_a_cronjob_is_created(cluster: EmulatorThread) -> None:
    template = {"spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "i"}]}}
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": "nightly",
            "namespace": "ml",
            "uid": "71a0f9fe-4c86-4be0-b9d8-f2b2124a61e0",  # the one the captured Job names
        },
        "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": template}}},
    }
    _create(cluster, cronjob)
    protobuf = "application/vnd.kubernetes.protobuf"
    body = (DATA / "job-from-cronjob.pb").read_bytes()
    job = _req(cluster, "POST", "/apis/batch/v1/namespaces/ml/jobs", body, protobuf)
    assert job["metadata"]["name"] == "drift-now" and job["metadata"]["uid"]
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    assert job["spec"]["template"]["spec"] == template["spec"]
    assert job["spec"]["selector"] == {
        "matchLabels": {"batch.kubernetes.io/controller-uid": job["metadata"]["uid"]}
    }
    with pytest.raises(urllib.error.HTTPError) as err:  # any other protobuf body
        _req(cluster, "POST", "/api/v1/namespaces", b"k8s\x00\x0a\x00", protobuf)
    assert err.value.code == 415 and "kubectl apply -f" in err.value.read().decode()


def test_pod_log_tail_and_follow(cluster: EmulatorThread, tmp_path: Path) -> None:
    cluster.emulator.pod_logs = PodLogs(tmp_path)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "worker", "namespace": "ml"},
        "spec": {"initContainers": [{"name": "setup"}], "containers": [{"name": "main"}]},
        "status": {"phase": "Running"},
    }
    _create(cluster, pod)
    pod_dir = tmp_path / "pods/ml/worker"
    pod_dir.mkdir(parents=True)
    log = container_files(pod_dir, "main").log
    log.write_bytes(b"a\nb\n")
    container_files(pod_dir, "setup", init=True).log.write_bytes(b"setup done\n")
    path = "/api/v1/namespaces/ml/pods/worker/log"
    assert _req(cluster, "GET", f"{path}?container=main&tailLines=1") == b"b\n"
    assert _req(cluster, "GET", f"{path}?container=setup") == b"setup done\n"

    followed: list[bytes] = []

    def follow() -> None:
        with urllib.request.urlopen(f"{cluster.url}{path}?container=main&follow=true") as resp:
            followed.append(resp.read())  # until the stream ends

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    with log.open("ab") as out:
        out.write(b"c\n")
    cluster.call(
        cluster.emulator.patch_object(
            "v1/pods", "ml", "worker", {"status": {"phase": "Succeeded"}}, subresource="status"
        )
    )
    reader.join(10)
    assert followed == [b"a\nb\nc\n"]
