"""The operator reads a run's live progress from its own pod (the pod has no API access).

The pods are the real builder's (built-in and custom training, Indexed workers); the endpoint
is the SDK's real one, in this process, on loopback.
"""

from __future__ import annotations

import copy
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kubeloop.api.parse import parse_resource
from kubeloop.api.training import TrainingPipeline
from kubeloop.controller.run_progress import pod_progress_url, read_progress
from kubeloop.resources.common import Owner, WorkloadDefaults
from kubeloop.resources.training import build_training_job
from kubeloop_sdk.progressendpoint import ProgressEndpoint

OWNER = Owner("kubeloop.io/v1alpha1", "TrainingPipeline", "churn", "ml", "uid-1")
INDEX = "batch.kubernetes.io/job-completion-index"
BUILTIN = {
    "model": {"framework": "sklearn", "task": "classification", "estimator": "LogisticRegression"}
}
CUSTOM = {
    "model": {"framework": "custom", "task": "classification"},
    "trainer": {"image": "registry.example.com/team/churn:1", "command": ["python", "t.py"]},
}


def _pod(
    model: dict[str, Any],
    *,
    ip: str | None = "10.0.0.7",
    phase: str = "Running",
    index: str | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    doc = {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "TrainingPipeline",
        "metadata": {"name": "churn", "namespace": "ml", "uid": "uid-1"},
        "spec": {
            "data": {"train": "s3://data/churn/", "target": "churned"},
            "artifacts": "s3://models/churn/",
            **model,
        },
    }
    parsed = parse_resource(doc)
    assert isinstance(parsed, TrainingPipeline)
    job = build_training_job(
        OWNER, parsed.spec, run_id=3, trigger="Manual", generation=1, defaults=WorkloadDefaults()
    )
    template = job["spec"]["template"]
    meta = copy.deepcopy(template["metadata"])
    meta["name"] = "churn-run-3-x7k2p"
    if index is not None:
        meta.setdefault("annotations", {})[INDEX] = index
    if deleting:
        meta["deletionTimestamp"] = "2026-11-30T00:00:00Z"
    status: dict[str, Any] = {"phase": phase}
    if ip:
        status["podIP"] = ip
    return {"metadata": meta, "spec": copy.deepcopy(template["spec"]), "status": status}


@pytest.mark.parametrize(
    ("pod", "url"),
    [
        (_pod(BUILTIN), "http://10.0.0.7:8090/progress"),
        (_pod(BUILTIN, ip="fd00::7"), "http://[fd00::7]:8090/progress"),
        # a custom run's user code is an init container: its pod is Pending meanwhile
        (_pod(CUSTOM, phase="Pending"), "http://10.0.0.7:8090/progress"),
        (_pod(BUILTIN, index="0"), "http://10.0.0.7:8090/progress"),
        (_pod(BUILTIN, index="1"), None),  # rank 0 runs in pod 0 of an Indexed Job
        (_pod(BUILTIN, ip=None, phase="Pending"), None),  # not scheduled yet
        (_pod(BUILTIN, phase="Succeeded"), None),  # ended: its result is in the message
        (_pod(BUILTIN, phase="Failed"), None),
        (_pod(BUILTIN, deleting=True), None),
    ],
)
def test_pod_progress_url(pod: dict[str, Any], url: str | None) -> None:
    assert pod_progress_url(pod) == url


def test_a_pod_of_a_job_from_before_progress_was_served_is_not_read() -> None:
    pod = _pod(BUILTIN)
    for container in pod["spec"]["containers"]:
        container.pop("ports")
    assert pod_progress_url(pod) is None


@pytest.fixture
def endpoint() -> Iterator[ProgressEndpoint]:
    served = ProgressEndpoint("127.0.0.1", 0)
    yield served
    served.close()


def _serving(port: int, name: str = "churn-run-3-x7k2p", ip: str = "127.0.0.1") -> dict[str, Any]:
    pod = _pod(BUILTIN, ip=ip)
    pod["metadata"]["name"] = name
    pod["spec"]["containers"][0]["ports"][0]["containerPort"] = port
    return pod


def test_reads_what_the_pod_serves(endpoint: ProgressEndpoint) -> None:
    assert read_progress([_serving(endpoint.port)]) is None  # 204: nothing reported yet
    endpoint.publish({"percent": 40, "runId": "3"})
    assert read_progress([_serving(endpoint.port)]) == {"percent": 40, "runId": "3"}


def test_an_unreachable_pod_is_skipped_not_an_error(endpoint: ProgressEndpoint) -> None:
    endpoint.publish({"percent": 40, "runId": "3"})
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = int(probe.getsockname()[1])
    assert read_progress([_serving(closed)], timeout=0.5) is None
    # the next live pod answers
    pods = [_serving(closed, "churn-run-3-a"), _serving(endpoint.port, "churn-run-3-b")]
    assert read_progress(pods, timeout=0.5) == {"percent": 40, "runId": "3"}


def test_a_pod_that_trickles_its_answer_does_not_hold_the_reconcile() -> None:
    """The pod runs the team's image: an answer that never ends is given up at the deadline."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n{")
            while not stop.wait(0.05):
                conn.sendall(b" ")

    server = threading.Thread(target=trickle, daemon=True)
    server.start()
    started = time.monotonic()
    try:
        assert read_progress([_serving(listener.getsockname()[1])], timeout=0.5) is None
        assert time.monotonic() - started < 3
    finally:
        stop.set()
        server.join(5)
        listener.close()
