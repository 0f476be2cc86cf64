"""ModelDeployment end to end against the emulator: resolve, serve, canary, rollback, restart.

The TrainingPipeline controller is the real one (its champion moves when a test finishes a Job).
The tests play the Deployment controller (status: observedGeneration, replicas, updated/ready)
and the kubelet (canary Pods with an IP); a canary Pod's `/metrics` is the real server metrics
class (kubeloop.workloads.server.metrics) served by prometheus_client on loopback.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from prometheus_client import start_http_server
from tests.integration.harness import MD, TP, Cluster, Operator, events, example, posted, settled
from tests.integration.harness import wait_for as _wait_for

from kubeloop.workloads.server.metrics import ServerMetrics

pytestmark = pytest.mark.slow  # minutes: `make test` starts it first

T = TypeVar("T")
DEPLOYS = "apps/v1/deployments"
SERVICES = "v1/services"
HPAS = "autoscaling/v2/horizontalpodautoscalers"
NETPOLS = "networking.k8s.io/v1/networkpolicies"
PODS = "v1/pods"


def wait_for(fn: Callable[[], T | None], what: str = "condition") -> T:
    # Operator, emulator and test share one process (and, here, two busy cores): generous.
    return _wait_for(fn, timeout=90, what=what)


# --- playing the other controllers ------------------------------------------------------------


def _result(version: str, auc: float) -> dict[str, Any]:
    return {
        "kind": "TrainingResult",
        "ok": True,
        "version": version,
        "uri": f"s3://models/churn/versions/{version}/",
        "metrics": {"roc_auc": auc, "accuracy": 0.8},
    }


def _pipeline(cluster: Cluster, name: str, champion: float | None = 0.9) -> None:
    """A real pipeline; with `champion`, run 1 finishes and version 1 becomes the champion."""
    cluster.create(example("churn-pipeline.yaml", name=name))
    wait_for(lambda: cluster.get("batch/v1/jobs", "ml", f"{name}-run-1"), what="run 1")
    if champion is not None:
        _finish_run(cluster, name, 1, champion)


def _finish_run(cluster: Cluster, name: str, run: int, auc: float) -> None:
    cluster.finish_job("ml", f"{name}-run-{run}", _result(str(run), auc))
    wait_for(
        lambda: (
            (_obj(cluster, TP, name).get("status") or {}).get("champion", {}).get("version")
            == str(run)
        ),
        what=f"version {run} champion of {name}",
    )


def _new_champion(cluster: Cluster, name: str, run: int, auc: float) -> None:
    cluster.patch(
        TP, "ml", name, {"metadata": {"annotations": {"kubeloop.io/run-requested-at": str(run)}}}
    )
    wait_for(lambda: cluster.get("batch/v1/jobs", "ml", f"{name}-run-{run}"), what=f"run {run}")
    _finish_run(cluster, name, run, auc)


def _obj(cluster: Cluster, resource: str, name: str) -> dict[str, Any]:
    obj = cluster.get(resource, "ml", name)
    assert obj is not None, f"{resource} {name} is missing"
    return obj


def _status(cluster: Cluster, name: str) -> dict[str, Any]:
    return _obj(cluster, MD, name).get("status") or {}


def _cond(cluster: Cluster, name: str, type_: str) -> dict[str, Any]:
    return {c["type"]: c for c in _status(cluster, name).get("conditions") or []}.get(type_, {})


def _env(dep: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}


def _uri(dep: dict[str, Any]) -> str:
    return str(_env(dep)["KUBELOOP_MODEL_URI"]["value"])


@pytest.fixture(autouse=True)
def _clean(cluster: Cluster) -> Iterator[None]:
    """Delete each test's objects (children go by owner references): fewer timers to run."""
    yield
    for resource in (MD, TP, PODS):
        for obj in cluster.list(resource, "ml"):
            cluster.thread.call(cluster.em.delete_object(resource, "ml", obj["metadata"]["name"]))


@pytest.fixture
def canary_metrics() -> Iterator[tuple[ServerMetrics, int]]:
    """The server's real metric families, exposed on a loopback port like a pod's :8080."""
    metrics = ServerMetrics("model")
    server, thread = start_http_server(0, addr="127.0.0.1", registry=metrics.registry)
    yield metrics, int(server.server_port)
    server.shutdown()
    server.server_close()
    thread.join(5)


def _canary_pod(cluster: Cluster, md: str, version: str, port: int) -> None:
    """Play the kubelet: a running canary pod whose IP:port serves the metrics above."""
    cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{md}-canary-pod",
                "namespace": "ml",
                "labels": {
                    "kubeloop.io/modeldeployment": md,
                    "kubeloop.io/track": "canary",
                    "kubeloop.io/model-version": version,
                },
            },
            "spec": {
                "containers": [
                    {"name": "server", "ports": [{"name": "http", "containerPort": port}]}
                ]
            },
            "status": {"phase": "Running", "podIP": "127.0.0.1"},
        }
    )


def _md(name: str, pipeline: str, replicas: int = 4, **spec: Any) -> dict[str, Any]:
    doc = example("churn-deployment.yaml", name=name)
    doc["spec"]["model"]["pipelineRef"]["name"] = pipeline
    doc["spec"]["replicas"] = replicas
    doc["spec"].pop("autoscaling")
    doc["spec"]["rollout"]["canary"]["stepSeconds"] = 1
    doc["spec"].update(spec)
    return doc


def _uri_md(name: str, version: int, replicas: int = 2) -> dict[str, Any]:
    """A canary deployment of a version folder by URI: a new URI is a new version."""
    doc = _md(name, "unused", replicas=replicas)
    doc["spec"]["model"] = {"uri": f"s3://models/churn/versions/{version}/"}
    doc["spec"]["storageSecretRef"] = {"name": "s3-credentials"}
    return doc


def _serving(cluster: Cluster, name: str, version: int) -> None:
    """Create, roll out, and wait until `version` serves all traffic."""
    cluster.create(_uri_md(name, version))
    wait_for(lambda: cluster.get(DEPLOYS, "ml", name), what=f"Deployment {name}")
    cluster.roll_out_deployment("ml", name)
    wait_for(lambda: _status(cluster, name).get("modelVersion") == str(version), what="serving")


def _new_uri(cluster: Cluster, name: str, version: int) -> dict[str, Any]:
    uri = f"s3://models/churn/versions/{version}/"
    cluster.patch(MD, "ml", name, {"spec": {"model": {"uri": uri}}})
    return wait_for(lambda: cluster.get(DEPLOYS, "ml", f"{name}-canary"), what="canary")


# --- tests ------------------------------------------------------------------------------------


def test_create_serves_the_champion_with_service_hpa_and_status(
    cluster: Cluster, operator: Operator
) -> None:
    _pipeline(cluster, "p-create")
    doc = example("churn-deployment.yaml", name="md-create")  # autoscaling 2..10, canary
    doc["spec"]["model"]["pipelineRef"]["name"] = "p-create"
    cluster.create(doc)
    dep = wait_for(lambda: cluster.get(DEPLOYS, "ml", "md-create"), what="Deployment")
    assert dep["metadata"]["ownerReferences"][0]["name"] == "md-create"
    assert dep["metadata"]["annotations"]["kubeloop.io/model-version"] == "1"
    assert dep["spec"]["replicas"] == 2  # autoscaling.minReplicas; the HPA takes it from here
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    env = _env(dep)
    assert env["KUBELOOP_MODEL_URI"]["value"] == "s3://models/churn/versions/1/"
    assert env["KUBELOOP_PAYLOAD_LOG_URI"]["value"] == "s3://logs/churn/"
    assert env["KUBELOOP_MAX_BATCH_SIZE"]["value"] == "64"
    assert env["KUBELOOP_MAX_LATENCY_MS"]["value"] == "2"
    # No storageSecretRef of its own: the pipeline's Secret, by reference only.
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "s3-credentials"
    assert all("value" not in e for k, e in env.items() if k.startswith("AWS_"))
    svc = wait_for(lambda: cluster.get(SERVICES, "ml", "md-create"), what="Service")
    assert svc["spec"]["selector"] == {
        "kubeloop.io/modeldeployment": "md-create",
        "app.kubernetes.io/component": "serving",
    }
    hpa = _obj(cluster, HPAS, "md-create")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "md-create"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    for child in (svc, hpa):
        assert (
            child["metadata"]["ownerReferences"][0]["uid"]
            == dep["metadata"]["ownerReferences"][0]["uid"]
        )
        assert "app.kubernetes.io/instance" not in child["metadata"]["labels"]

    status = wait_for(
        lambda: _cond(cluster, "md-create", "Ready") and _status(cluster, "md-create")
    )
    assert _cond(cluster, "md-create", "Ready")["reason"] == "PodsNotReady"
    assert "modelVersion" not in status  # nothing serves yet

    cluster.roll_out_deployment("ml", "md-create")
    wait_for(lambda: _status(cluster, "md-create").get("modelVersion") == "1", what="serving v1")
    wait_for(lambda: _cond(cluster, "md-create", "Ready").get("status") == "True", what="Ready")
    wait_for(lambda: _cond(cluster, "md-create", "Progressing").get("reason") == "Complete")
    status = _status(cluster, "md-create")
    assert status["url"] == "http://md-create.ml.svc:8080"
    assert status["selector"] == (
        "app.kubernetes.io/component=serving,kubeloop.io/modeldeployment=md-create"
    )
    assert (status["replicas"], status["readyReplicas"]) == (2, 2)
    assert status["modelUri"] == "s3://models/churn/versions/1/"
    assert status["observedGeneration"] == 1
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Ready"]["reason"] == "Serving" and conds["Ready"]["observedGeneration"] == 1
    assert (conds["Progressing"]["status"], conds["Progressing"]["reason"]) == ("False", "Complete")
    assert (conds["Degraded"]["status"], conds["Degraded"]["reason"]) == ("False", "AsExpected")
    assert events(cluster, "md-create", "Serving")


def test_champion_change_steps_a_canary_then_promotes(
    cluster: Cluster, operator: Operator, canary_metrics: tuple[ServerMetrics, int]
) -> None:
    _pipeline(cluster, "p-canary")
    doc = _md("md-canary", "p-canary", replicas=4)
    doc["spec"]["rollout"]["canary"]["steps"] = [10, 50, 100]
    cluster.create(doc)
    wait_for(lambda: cluster.get(DEPLOYS, "ml", "md-canary"))
    cluster.roll_out_deployment("ml", "md-canary")
    wait_for(lambda: _status(cluster, "md-canary").get("modelVersion") == "1")

    _new_champion(cluster, "p-canary", 2, 0.95)
    canary = wait_for(lambda: cluster.get(DEPLOYS, "ml", "md-canary-canary"), what="canary")
    assert canary["metadata"]["annotations"]["kubeloop.io/model-version"] == "2"
    assert _uri(canary) == "s3://models/churn/versions/2/"
    # One canary pod beside all 4 stable ones (none taken away): 20%, the closest to 10%,
    # and status says so next to the declared step.
    assert canary["spec"]["replicas"] == 1
    status = wait_for(lambda: (s := _status(cluster, "md-canary")).get("canary") and s)
    assert _obj(cluster, DEPLOYS, "md-canary")["spec"]["replicas"] == 4
    assert _uri(_obj(cluster, DEPLOYS, "md-canary")) == "s3://models/churn/versions/1/"
    assert status["canary"]["version"] == "2" and status["canary"]["stepPercent"] == 10
    assert status["canary"]["trafficPercent"] == 20
    assert status["canary"]["step"] == 0 and status["modelVersion"] == "1"
    progressing = _cond(cluster, "md-canary", "Progressing")
    assert progressing["reason"] == "Canary" and "readiness only" in progressing["message"]
    settled(cluster, "modeldeployments", "md-canary")  # not ready: the step holds, however long
    assert _status(cluster, "md-canary")["canary"]["step"] == 0

    # Ready canary pods with healthy traffic (0.5% errors): the step moves on.
    metrics, port = canary_metrics
    metrics.requests.labels("md-canary", "2", "200", "rest").inc(199)
    metrics.requests.labels("md-canary", "2", "500", "grpc").inc(1)
    _canary_pod(cluster, "md-canary", "2", port)
    cluster.roll_out_deployment("ml", "md-canary-canary")
    wait_for(lambda: _status(cluster, "md-canary")["canary"]["trafficPercent"] == 50, what="50%")
    # 50%: the canary is scaled up to 4 beside the 4 stable pods, not 2 and 2.
    assert _obj(cluster, DEPLOYS, "md-canary-canary")["spec"]["replicas"] == 4
    assert _obj(cluster, DEPLOYS, "md-canary")["spec"]["replicas"] == 4
    assert _status(cluster, "md-canary")["canary"]["stepPercent"] == 50
    assert "within maxErrorRate" in _cond(cluster, "md-canary", "Progressing")["message"]
    step_events = events(cluster, "md-canary", "CanaryStep")
    assert any("0.50%" in e["message"] for e in step_events)

    cluster.roll_out_deployment("ml", "md-canary-canary")
    # Last step (100): the stable Deployment rolls to version 2; the canary stays meanwhile.
    wait_for(lambda: _uri(_obj(cluster, DEPLOYS, "md-canary")).endswith("/2/"), what="promote")
    assert _obj(cluster, DEPLOYS, "md-canary")["spec"]["replicas"] == 4
    # The status is written after the Deployment it describes: wait for it, do not race it.
    wait_for(
        lambda: _cond(cluster, "md-canary", "Progressing")["reason"] == "Promoting",
        what="Progressing=Promoting",
    )
    time.sleep(1)
    assert cluster.get(DEPLOYS, "ml", "md-canary-canary") is not None
    assert _status(cluster, "md-canary")["modelVersion"] == "1"

    cluster.roll_out_deployment("ml", "md-canary")
    wait_for(lambda: cluster.get(DEPLOYS, "ml", "md-canary-canary") is None, what="canary gone")
    wait_for(lambda: _status(cluster, "md-canary").get("modelVersion") == "2", what="serving v2")
    status = _status(cluster, "md-canary")
    assert "canary" not in status and (status["replicas"], status["readyReplicas"]) == (4, 4)
    assert _cond(cluster, "md-canary", "Progressing")["reason"] == "Complete"
    assert posted(events(cluster, "md-canary", "Promoted")) == 1


def test_canary_beside_an_hpa_is_sized_against_the_hpas_count(
    cluster: Cluster, operator: Operator
) -> None:
    """The stable Deployment's count is the HPA's: the canary is sized beside it and status
    reports the share those pods give (the example: 2..10 pods, a 25% first step)."""
    doc = example("churn-deployment.yaml", name="md-hpa")
    doc["spec"]["model"] = {"uri": "s3://models/churn/versions/1/"}
    doc["spec"]["storageSecretRef"] = {"name": "s3-credentials"}
    cluster.create(doc)
    wait_for(lambda: cluster.get(DEPLOYS, "ml", "md-hpa"), what="Deployment")
    cluster.roll_out_deployment("ml", "md-hpa")
    wait_for(lambda: _status(cluster, "md-hpa").get("modelVersion") == "1", what="serving v1")

    canary = _new_uri(cluster, "md-hpa", 2)
    status = wait_for(lambda: (s := _status(cluster, "md-hpa")).get("canary") and s)
    # One canary pod beside the HPA's 2: a third of the pods, so a third of the requests.
    assert canary["spec"]["replicas"] == 1
    assert status["canary"]["trafficPercent"] == 33 and status["canary"]["stepPercent"] == 25
    assert _obj(cluster, DEPLOYS, "md-hpa")["spec"]["replicas"] == 2

    # The HPA scales the stable Deployment to 6: the canary follows, 2 beside 6 is 25%.
    cluster.patch(DEPLOYS, "ml", "md-hpa", {"spec": {"replicas": 6}})
    wait_for(lambda: _obj(cluster, DEPLOYS, "md-hpa-canary")["spec"]["replicas"] == 2, what="2")
    wait_for(lambda: _status(cluster, "md-hpa")["canary"]["trafficPercent"] == 25, what="25%")
    assert _obj(cluster, DEPLOYS, "md-hpa")["spec"]["replicas"] == 6  # the HPA's to set


def test_min_requests_holds_a_step_while_the_canary_metrics_cannot_be_read(
    cluster: Cluster, operator: Operator, canary_metrics: tuple[ServerMetrics, int]
) -> None:
    _pipeline(cluster, "p-evidence")
    doc = _md("md-evidence", "p-evidence", replicas=2)
    doc["spec"]["rollout"]["canary"]["analysis"] = {"minRequests": 5}
    cluster.create(doc)
    wait_for(lambda: cluster.get(DEPLOYS, "ml", "md-evidence"))
    cluster.roll_out_deployment("ml", "md-evidence")
    wait_for(lambda: _status(cluster, "md-evidence").get("modelVersion") == "1")
    _new_champion(cluster, "p-evidence", 2, 0.95)
    wait_for(lambda: cluster.get(DEPLOYS, "ml", "md-evidence-canary"), what="canary")
    cluster.roll_out_deployment("ml", "md-evidence-canary")

    # A ready canary pod whose port answers nothing: no evidence, so the step waits for it
    # (with minRequests 0 it would move on readiness).
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nothing = closed.getsockname()[1]
    _canary_pod(cluster, "md-evidence", "2", nothing)
    wait_for(
        lambda: "holding until" in _cond(cluster, "md-evidence", "Progressing")["message"],
        what="the step held for want of metrics",
    )
    # real time on purpose: stepSeconds is 1, so without the hold the step would have moved
    time.sleep(2.5)
    assert _status(cluster, "md-evidence")["canary"]["step"] == 0

    # The metrics become readable and show 10 good requests: the step moves on.
    metrics, port = canary_metrics
    metrics.requests.labels("md-evidence", "2", "200", "rest").inc(10)
    cluster.delete(PODS, "ml", "md-evidence-canary-pod")
    _canary_pod(cluster, "md-evidence", "2", port)
    wait_for(lambda: _status(cluster, "md-evidence")["canary"]["trafficPercent"] == 50, what="50%")
    assert "0.00% over 10 requests" in _cond(cluster, "md-evidence", "Progressing")["message"]


def test_canary_error_rate_over_max_rolls_back(
    cluster: Cluster, operator: Operator, canary_metrics: tuple[ServerMetrics, int]
) -> None:
    _serving(cluster, "md-errors", 1)
    metrics, port = canary_metrics
    metrics.requests.labels("md-errors", "2", "200", "rest").inc(90)
    metrics.requests.labels("md-errors", "2", "500", "grpc").inc(10)  # gRPC counts too
    metrics.requests.labels("md-errors", "2", "422", "rest").inc(
        50
    )  # client errors are not failures
    _new_uri(cluster, "md-errors", 2)
    _canary_pod(cluster, "md-errors", "2", port)  # analysis needs traffic, not readiness

    wait_for(lambda: cluster.get(DEPLOYS, "ml", "md-errors-canary") is None, what="rollback")
    degraded = wait_for(
        lambda: (c := _cond(cluster, "md-errors", "Degraded")).get("status") == "True" and c
    )
    assert degraded["reason"] == "ErrorRateTooHigh"
    assert "6.67%" in degraded["message"] and "maxErrorRate 1.00%" in degraded["message"]
    status = _status(cluster, "md-errors")
    assert status["failedRollout"]["version"] == "2" and "canary" not in status
    assert status["modelVersion"] == "1"
    stable = _obj(cluster, DEPLOYS, "md-errors")
    assert _uri(stable).endswith("/1/") and stable["spec"]["replicas"] == 2
    assert events(cluster, "md-errors", "RolledBack")[0]["type"] == "Warning"
    settled(cluster, "modeldeployments", "md-errors")  # the rolled-back version is not retried
    # The message first written is the one every later reconcile writes (it once gained a
    # suffix on the next resync: one status write more, and Argo CD fixtures that raced it).
    assert _cond(cluster, "md-errors", "Degraded")["message"] == degraded["message"]
    assert degraded["message"].endswith(
        "retried when the spec changes or another version is resolved"
    )
    assert cluster.get(DEPLOYS, "ml", "md-errors-canary") is None
    assert posted(events(cluster, "md-errors", "CanaryStarted")) == 1

    # A spec change (not a scale) retries the version.
    # (Its canary may be gone again before a poll sees it: the error rate is still too high.)
    cluster.patch(MD, "ml", "md-errors", {"spec": {"workers": 2}})
    wait_for(
        lambda: posted(events(cluster, "md-errors", "CanaryStarted")) == 2, what="retried canary"
    )


def test_canary_pods_never_ready_roll_back(cluster: Cluster, operator: Operator) -> None:
    _serving(cluster, "md-stuck", 1)
    _new_uri(cluster, "md-stuck", 2)
    cluster.stall_deployment("ml", "md-stuck-canary")
    wait_for(lambda: cluster.get(DEPLOYS, "ml", "md-stuck-canary") is None, what="rollback")
    degraded = wait_for(
        lambda: (c := _cond(cluster, "md-stuck", "Degraded")).get("status") == "True" and c
    )
    assert degraded["reason"] == "ProgressDeadlineExceeded" and "timed out" in degraded["message"]
    assert _uri(_obj(cluster, DEPLOYS, "md-stuck")).endswith("/1/")
    wait_for(lambda: _cond(cluster, "md-stuck", "Ready").get("status") == "True")

    # A newer version gets its own canary.
    canary = _new_uri(cluster, "md-stuck", 3)
    assert _uri(canary).endswith("/3/")
    wait_for(lambda: _cond(cluster, "md-stuck", "Degraded").get("status") == "False")


def test_pinned_version_rolls_in_place(cluster: Cluster, operator: Operator) -> None:
    cluster.create(example("pinned-version-deployment.yaml", name="md-pinned"))
    dep = wait_for(lambda: cluster.get(DEPLOYS, "ml", "md-pinned"), what="Deployment")
    assert _uri(dep) == "s3://models/churn/versions/3/"
    assert dep["metadata"]["annotations"]["kubeloop.io/model-version"] == "3"
    assert _env(dep)["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "s3-credentials",
        "key": "AWS_SECRET_ACCESS_KEY",
        "optional": False,
    }
    cluster.roll_out_deployment("ml", "md-pinned")
    wait_for(lambda: _status(cluster, "md-pinned").get("modelVersion") == "3")

    # RollingUpdate (no rollout set): the one Deployment changes version in place.
    cluster.patch(MD, "ml", "md-pinned", {"spec": {"model": {"uri": "s3://models/churn/v/4/"}}})
    wait_for(lambda: _uri(_obj(cluster, DEPLOYS, "md-pinned")).endswith("/4/"), what="v4")
    assert cluster.get(DEPLOYS, "ml", "md-pinned-canary") is None
    wait_for(lambda: _cond(cluster, "md-pinned", "Progressing").get("reason") == "RollingUpdate")
    assert _status(cluster, "md-pinned")["modelVersion"] == "3"  # until every pod is new
    cluster.roll_out_deployment("ml", "md-pinned")
    wait_for(lambda: _status(cluster, "md-pinned").get("modelVersion") == "4")

    # `kubectl scale md md-pinned --replicas=3` patches spec.replicas through /scale.
    cluster.patch(MD, "ml", "md-pinned", {"spec": {"replicas": 3}}, "scale")
    wait_for(lambda: _obj(cluster, DEPLOYS, "md-pinned")["spec"]["replicas"] == 3, what="scaled")
    cluster.roll_out_deployment("ml", "md-pinned")
    wait_for(lambda: _status(cluster, "md-pinned").get("readyReplicas") == 3, what="3 ready")
    assert _status(cluster, "md-pinned")["replicas"] == 3  # statusReplicasPath

    # Deleting the ModelDeployment takes its children along (owner references; delete_object
    # skips the finalizer kopf puts on it for the timer: tests/integration/test_deletion.py).
    cluster.thread.call(cluster.em.delete_object(MD, "ml", "md-pinned"))
    for resource in (DEPLOYS, SERVICES):
        wait_for(lambda r=resource: cluster.get(r, "ml", "md-pinned") is None, what=resource)

    # A pinned version of a pipeline: the version folder under the pipeline's artifacts.
    _pipeline(cluster, "p-pinned", champion=None)  # a pinned version needs no champion
    doc = _md("md-pin-tp", "p-pinned", replicas=2)
    doc["spec"]["model"]["version"] = "7"
    cluster.create(doc)
    dep = wait_for(lambda: cluster.get(DEPLOYS, "ml", "md-pin-tp"), what="pinned v7")
    assert _uri(dep) == "s3://models/churn/versions/7/"
    assert _env(dep)["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "s3-credentials"


def test_waits_for_a_model_without_children(cluster: Cluster, operator: Operator) -> None:
    cluster.create(_md("md-orphan", "p-missing"))
    ready = wait_for(lambda: _cond(cluster, "md-orphan", "Ready"), what="Ready")
    assert ready["status"] == "False" and ready["reason"] == "PipelineNotFound"
    assert "spec.model.pipelineRef" in ready["message"]
    # Only a person can fix a missing reference: Stalled (Argo CD: Degraded), as a
    # DriftMonitor's missing deployment is.
    stalled = _cond(cluster, "md-orphan", "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "PipelineNotFound")
    assert stalled["message"] == ready["message"]
    # A missing reference is a Warning, as a DriftMonitor's missing deployment is.
    wait_for(
        lambda: [
            e
            for e in cluster.list("v1/events", "ml")
            if e["involvedObject"]["name"] == "md-orphan"
            and (e["reason"], e["type"]) == ("PipelineNotFound", "Warning")
        ],
        what="a Warning PipelineNotFound Event",
    )

    _pipeline(cluster, "p-wait", champion=None)
    cluster.create(_md("md-wait", "p-wait"))
    ready = wait_for(lambda: _cond(cluster, "md-wait", "Ready"), what="Ready")
    assert ready["status"] == "False" and ready["reason"] == "WaitingForModel"
    assert "no champion yet" in ready["message"]
    assert _cond(cluster, "md-wait", "Stalled")["status"] == "False"  # a champion will come
    time.sleep(1)
    assert cluster.get(DEPLOYS, "ml", "md-wait") is None
    assert cluster.get(SERVICES, "ml", "md-wait") is None

    _finish_run(cluster, "p-wait", 1, 0.9)  # the champion appears: serving starts
    dep = wait_for(lambda: cluster.get(DEPLOYS, "ml", "md-wait"), what="Deployment")
    assert _uri(dep).endswith("/1/")
    assert cluster.get(DEPLOYS, "ml", "md-wait-canary") is None  # a first version is no canary


def test_security_knobs_roll_the_deployment_and_own_a_network_policy(
    cluster: Cluster, operator: Operator, caplog: pytest.LogCaptureFixture
) -> None:
    token = "tok-9d1e77c2b0"
    cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "md-token", "namespace": "ml"},
            "stringData": {"token": token},
        }
    )
    web = {"namespaceSelector": {"matchLabels": {"team": "web"}}}
    doc = example("pinned-version-deployment.yaml", name="md-secure")
    doc["spec"]["networkPolicy"] = {"enabled": True, "allowFrom": [web]}
    cluster.create(doc)
    # The operator writes the policy before the Deployment (no server pod runs unprotected),
    # so the Deployment may not exist yet when the policy does.
    policy = wait_for(lambda: cluster.get(NETPOLS, "ml", "md-secure"), what="NetworkPolicy")
    dep = wait_for(lambda: cluster.get(DEPLOYS, "ml", "md-secure"), what="Deployment")
    assert (
        policy["metadata"]["ownerReferences"][0]["uid"]
        == (dep["metadata"]["ownerReferences"][0]["uid"])
    )
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= (
        dep["spec"]["template"]["metadata"]["labels"].items()
    )
    assert policy["spec"]["ingress"][0]["from"] == [web]
    assert "KUBELOOP_AUTH_TOKEN" not in _env(dep)
    cluster.roll_out_deployment("ml", "md-secure")
    wait_for(lambda: _status(cluster, "md-secure").get("modelVersion") == "3")

    # Turning auth and TLS on changes the pod template: the Deployment rolls.
    cluster.patch(
        MD,
        "ml",
        "md-secure",
        {
            "spec": {
                "auth": {"tokenSecretRef": {"name": "md-token", "key": "token"}},
                "tls": {"secretRef": {"name": "md-tls"}},
            }
        },
    )

    def with_auth() -> dict[str, Any] | None:
        dep = _obj(cluster, DEPLOYS, "md-secure")
        return dep if "KUBELOOP_AUTH_TOKEN" in _env(dep) else None

    dep = wait_for(with_auth, what="auth in the template")
    assert _env(dep)["KUBELOOP_AUTH_TOKEN"] == {
        "name": "KUBELOOP_AUTH_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "md-token", "key": "token"}},
    }
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    (volume,) = [v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls"]
    assert volume["secret"]["secretName"] == "md-tls"
    wait_for(
        lambda: _status(cluster, "md-secure").get("url") == "https://md-secure.ml.svc:8080",
        what="https url",
    )

    # Off again: the operator deletes the NetworkPolicy it owns.
    cluster.patch(MD, "ml", "md-secure", {"spec": {"networkPolicy": {"enabled": False}}})
    wait_for(lambda: cluster.get(NETPOLS, "ml", "md-secure") is None, what="policy deleted")
    # The token itself is nowhere the operator writes: pod spec, status, events, its log.
    settled(cluster, "modeldeployments", "md-secure")
    written = [
        _obj(cluster, DEPLOYS, "md-secure"),
        _obj(cluster, MD, "md-secure"),
        *cluster.list("v1/events", "ml"),
    ]
    assert token not in repr(written)
    assert token not in caplog.text


def test_invalid_spec_names_the_field(cluster: Cluster, operator: Operator) -> None:
    cluster.em.admission = False  # what the CRD would refuse, slipped past it
    try:
        doc = _md("md-bad", "p-any")
        doc["spec"]["rollout"]["canary"]["steps"] = [50, 10]
        cluster.create(doc)
    finally:
        cluster.em.admission = True
    ready = wait_for(lambda: _cond(cluster, "md-bad", "Ready"), what="Ready")
    assert ready["status"] == "False" and ready["reason"] == "InvalidSpec"
    assert "spec.rollout.canary.steps" in ready["message"]
    assert events(cluster, "md-bad", "InvalidSpec")
    assert cluster.get(DEPLOYS, "ml", "md-bad") is None
    settled(cluster, "modeldeployments", "md-bad")  # its own writes (status, kopf's marks) done
    rv = _obj(cluster, MD, "md-bad")["metadata"]["resourceVersion"]
    settled(cluster, "modeldeployments", "md-bad")  # no retry storm: nothing is written again
    assert _obj(cluster, MD, "md-bad")["metadata"]["resourceVersion"] == rv


def test_restart_mid_canary_resumes_at_the_recorded_step(
    cluster: Cluster, operator: Operator
) -> None:
    doc = _uri_md("md-restart", 1, replicas=4)
    cluster.create(doc)
    wait_for(lambda: cluster.get(DEPLOYS, "ml", "md-restart"))
    cluster.roll_out_deployment("ml", "md-restart")
    wait_for(lambda: _status(cluster, "md-restart").get("modelVersion") == "1")
    _new_uri(cluster, "md-restart", 2)
    cluster.roll_out_deployment("ml", "md-restart-canary")
    wait_for(lambda: (_status(cluster, "md-restart").get("canary") or {}).get("step") == 1)
    before = _status(cluster, "md-restart")["canary"]

    operator.stop()
    time.sleep(1.5)  # real time on purpose: longer than stepSeconds, so a reset would show
    operator.start()
    # Resumed and reconciled several times; the 50% canary is not ready yet, so it holds.
    settled(cluster, "modeldeployments", "md-restart")
    after = _status(cluster, "md-restart")["canary"]
    assert after == before and after["trafficPercent"] == 50
    assert _obj(cluster, DEPLOYS, "md-restart-canary")["spec"]["replicas"] == 4
    assert posted(events(cluster, "md-restart", "CanaryStarted")) == 1

    cluster.roll_out_deployment("ml", "md-restart-canary")  # and it goes on from there
    wait_for(lambda: _uri(_obj(cluster, DEPLOYS, "md-restart")).endswith("/2/"), what="promote")
    cluster.roll_out_deployment("ml", "md-restart")
    wait_for(lambda: _status(cluster, "md-restart").get("modelVersion") == "2")
    assert cluster.get(DEPLOYS, "ml", "md-restart-canary") is None
