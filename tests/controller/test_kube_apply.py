"""kube.Kube.apply, the one way the controllers write children: the request it sends (server-side
apply, field manager kubeloop, force), and what it does to an emulated API server's objects."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from kubeloop.controller import kube
from kubeloop.controller.transport import Endpoint, Transport
from kubeloop.local.cluster.emulator import EmulatorThread


def _service(port: int = 80, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "churn", "namespace": "ml", "labels": {"app": "churn"}},
        "spec": {"selector": {"app": "churn"}, "ports": [{"port": port}], **spec},
    }


def _job() -> dict[str, Any]:
    container = {"name": "c", "image": "trainer:1"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "churn-run-1", "namespace": "ml"},
        "spec": {"template": {"spec": {"containers": [container], "restartPolicy": "Never"}}},
    }


class _Recorder(Transport):
    """A transport that records each request and answers with the body it was sent."""

    def __init__(self) -> None:
        super().__init__(Endpoint("http://127.0.0.1:1", False, lambda: None))
        self.calls: list[dict[str, Any]] = []

    def send(self, method: str, path: str, **kwargs: Any) -> Any:
        self.calls.append({"path": path, "method": method, **kwargs})
        return copy.deepcopy(kwargs["body"])


def test_apply_sends_one_server_side_apply_as_field_manager_kubeloop_with_force() -> None:
    recorder = _Recorder()
    kube.Kube(recorder).apply(_service())
    (call,) = recorder.calls
    assert (call["method"], call["path"]) == ("PATCH", "/api/v1/namespaces/ml/services/churn")
    assert call["content_type"] == "application/apply-patch+yaml"
    assert call["query"] == [("fieldManager", "kubeloop"), ("force", "true")]
    sent = call["body"]
    annotations = sent["metadata"].pop("annotations")
    assert sent == _service() and set(annotations) == {kube.APPLIED_ANNOTATION}
    assert annotations == kube.applied_config(_service())["metadata"]["annotations"]
    # The digest follows the manifest: a changed one is a new configuration.
    changed = kube.applied_config(_service(port=81))["metadata"]["annotations"]
    assert changed != annotations


def test_apply_sends_nothing_when_the_observed_child_holds_the_manifest() -> None:
    recorder = _Recorder()
    client = kube.Kube(recorder)
    stored = client.apply(_service())
    observed = {**stored, "spec": {**stored["spec"], "clusterIP": "10.0.0.7"}}  # a default
    assert client.apply(_service(), observed) is observed and len(recorder.calls) == 1
    edited = copy.deepcopy(observed)
    edited["spec"]["ports"] = [{"port": 8080}]  # someone changed a field kubeloop sets
    client.apply(_service(), edited)
    client.apply(_service(type="NodePort"), observed)  # the manifest changed
    assert len(recorder.calls) == 3


def test_a_job_is_created_once_and_never_updated() -> None:
    recorder = _Recorder()
    client = kube.Kube(recorder)
    client.apply(_job())
    (call,) = recorder.calls
    assert (call["method"], call["path"]) == ("POST", "/apis/batch/v1/namespaces/ml/jobs")
    assert call["query"] == [("fieldManager", "kubeloop")]
    running = {**_job(), "status": {"active": 1}}
    assert client.apply({**_job(), "spec": {}}, running) is running  # no update, no request
    assert len(recorder.calls) == 1


@pytest.fixture
def client() -> Iterator[tuple[kube.Kube, EmulatorThread]]:
    with EmulatorThread() as thread:
        yield kube.connect(thread.url), thread


def _managers(obj: dict[str, Any]) -> set[tuple[str, str]]:
    return {(e["manager"], e["operation"]) for e in obj["metadata"]["managedFields"]}


def test_against_the_emulated_api_server(client: tuple[kube.Kube, EmulatorThread]) -> None:
    api, thread = client
    created = api.apply(_service(type="NodePort"))
    assert created["spec"]["type"] == "NodePort" and _managers(created) == {("kubeloop", "Apply")}
    version = created["metadata"]["resourceVersion"]
    again = api.apply(_service(type="NodePort"))  # unchanged: a no-op, no new version
    assert again["metadata"]["resourceVersion"] == version

    # A person's edit of a field kubeloop sets is taken back (force); their own label stays.
    edit = {"metadata": {"labels": {"team": "a"}}, "spec": {"ports": [{"port": 9}]}}
    served = thread.emulator.requests_served
    api.patch("Service", "ml", "churn", edit)
    edited = api.get("Service", "ml", "churn")
    assert edited is not None and edited["spec"]["ports"] == [{"port": 9}]
    # A field the manifest no longer sets (type) is removed.
    applied = api.apply(_service(), edited)
    assert applied["spec"]["ports"] == [{"port": 80}] and "type" not in applied["spec"]
    assert applied["metadata"]["labels"] == {"app": "churn", "team": "a"}
    assert thread.emulator.requests_served == served + 3

    job = api.apply(_job())
    assert ("kubeloop", "Update") in _managers(job)  # created, by field manager kubeloop
    retried = api.apply(_job())  # a retried create returns the Job as it is
    assert retried["metadata"]["uid"] == job["metadata"]["uid"]
    assert json.dumps(retried["spec"], sort_keys=True) == json.dumps(job["spec"], sort_keys=True)
