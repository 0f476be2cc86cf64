"""DriftMonitor end to end against the emulator: CronJob from the served version, verdicts from
termination messages, bounded per-feature status, one retrain per drift episode (also across an
operator restart), and the ways a monitor cannot run.

The tests play the CronJob controller (`Cluster.spawn_job`) and the kubelet (`finish_job`).
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway
from tests.integration.harness import (
    CRONJOBS,
    DM,
    JOBS,
    MD,
    TP,
    Cluster,
    Operator,
    events,
    example,
    posted,
    settled,
    wait_for,
)

from kubeloop.api.monitor import PUSHGATEWAY_JOB, pushgateway_group
from kubeloop.controller.kube import APPLIED_ANNOTATION
from kubeloop.controller.monitor import MAX_FEATURES
from kubeloop.local.cluster.emulator import EmulatorThread

pytestmark = pytest.mark.slow  # minutes: `make test` starts it first


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A fresh API per test: the emulator keeps deleted objects and Events, and every list
    scans them, so a long-lived one slows down the tests that come later."""
    with EmulatorThread() as thread:
        yield Cluster(thread)


@pytest.fixture
def operator(cluster: Cluster) -> Iterator[Operator]:
    op = Operator(cluster.thread.url)
    op.start()
    yield op
    op.stop()


def _training(version: str, auc: float, pipeline: str) -> dict[str, Any]:
    return {
        "kind": "TrainingResult",
        "ok": True,
        "version": version,
        "uri": f"s3://models/{pipeline}/versions/{version}",
        "metrics": {"roc_auc": auc},
    }


def _drift(verdict: str, share: float = 0.5, features: int = 2) -> dict[str, Any]:
    return {
        "kind": "DriftResult",
        "verdict": verdict,
        "driftShare": share,
        "rows": 1234,
        "modelVersion": "1",
        "features": {
            f"f{i:03d}": {
                "test": "psi",
                "score": 0.31 if i % 2 == 0 else 0.01,
                "threshold": 0.2,
                "drifted": verdict == "Drift" and i % 2 == 0,
            }
            for i in range(features)
        },
    }


def _obj(cluster: Cluster, resource: str, name: str) -> dict[str, Any]:
    obj = cluster.get(resource, "ml", name)
    assert obj is not None, f"{resource} {name} is missing"
    return obj


def _status(cluster: Cluster, resource: str, name: str) -> dict[str, Any]:
    return _obj(cluster, resource, name).get("status") or {}


def _cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return {c["type"]: c for c in status.get("conditions") or []}.get(type_, {})


def _pipeline_jobs(cluster: Cluster, pipeline: str) -> list[str]:
    return sorted(
        j["metadata"]["name"]
        for j in cluster.list(JOBS, "ml")
        if j["metadata"].get("labels", {}).get("kubeloop.io/trainingpipeline") == pipeline
    )


def _loop(cluster: Cluster, name: str, *, retrain: bool = True) -> None:
    """A pipeline with a champion (version 1), a deployment serving it, a monitor on it."""
    cluster.create(example("churn-pipeline.yaml", name=name))
    wait_for(lambda: cluster.get(JOBS, "ml", f"{name}-run-1"), what="run 1")
    cluster.finish_job("ml", f"{name}-run-1", _training("1", 0.9, name))
    wait_for(lambda: _status(cluster, TP, name).get("champion"), what="champion")
    md = example("churn-deployment.yaml", name=name)
    md["spec"]["model"]["pipelineRef"]["name"] = name
    cluster.create(md)
    dm = example("churn-monitor.yaml", name=name)
    dm["spec"]["deploymentRef"]["name"] = name
    dm["spec"]["onDrift"]["retrain"] = retrain
    cluster.create(dm)
    wait_for(lambda: cluster.get(CRONJOBS, "ml", name), what=f"CronJob {name}")


def _check(cluster: Cluster, name: str, minute: int, result: dict[str, Any] | None) -> str:
    """One scheduled check: the CronJob's Job runs, the operator records its verdict."""
    job = cluster.spawn_job("ml", name, minute)
    cluster.finish_job("ml", job, result, ok=result is not None)
    wait_for(
        lambda: _status(cluster, DM, name).get("lastJob") == job,
        what=f"check {job} recorded",
    )
    return job


def test_cronjob_from_the_served_version(cluster: Cluster, operator: Operator) -> None:
    _loop(cluster, "dm1")
    cron = _obj(cluster, CRONJOBS, "dm1")
    assert cron["spec"]["schedule"] == "*/30 * * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    owner = cron["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("DriftMonitor", "dm1", True)
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["KUBELOOP_MODEL_VERSION"]["value"] == "1"
    assert env["KUBELOOP_REFERENCE_URI"]["value"] == "s3://models/dm1/versions/1"
    assert env["KUBELOOP_PAYLOAD_LOG_URI"]["value"] == "s3://logs/churn/"
    # No storage secret on the monitor or deployment: the pipeline's, by reference only.
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "s3-credentials"
    assert "value" not in env["AWS_SECRET_ACCESS_KEY"]
    labels = cron["spec"]["jobTemplate"]["metadata"]["labels"]
    assert labels["kubeloop.io/driftmonitor"] == "dm1"
    assert "app.kubernetes.io/instance" not in labels

    status = wait_for(lambda: (s := _status(cluster, DM, "dm1")).get("conditions") and s)
    ready = _cond(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Scheduled")
    assert ready["observedGeneration"] == 1 and status["observedGeneration"] == 1
    assert events(cluster, "dm1", "CronJobCreated")

    # A spec change reaches the CronJob (applied server-side by field manager kubeloop), once.
    managers = {(e["manager"], e["operation"]) for e in cron["metadata"]["managedFields"]}
    assert ("kubeloop", "Apply") in managers
    digest = cron["metadata"]["annotations"][APPLIED_ANNOTATION]
    cluster.patch(DM, "ml", "dm1", {"spec": {"schedule": "0 * * * *", "window": "1h"}})
    cron = wait_for(
        lambda: (c := _obj(cluster, CRONJOBS, "dm1"))["spec"]["schedule"] == "0 * * * *" and c,
        what="CronJob updated",
    )
    assert cron["metadata"]["annotations"][APPLIED_ANNOTATION] != digest
    rv = cron["metadata"]["resourceVersion"]
    settled(cluster, "driftmonitors", "dm1")  # nothing left to change
    assert _obj(cluster, CRONJOBS, "dm1")["metadata"]["resourceVersion"] == rv
    assert wait_for(lambda: _status(cluster, DM, "dm1").get("observedGeneration") == 2)


def test_verdicts_status_and_one_retrain_per_episode(cluster: Cluster, operator: Operator) -> None:
    _loop(cluster, "dm2")

    job = _check(cluster, "dm2", 1, _drift("Drift", share=0.5))
    status = _status(cluster, DM, "dm2")
    assert status["verdict"] == "Drift" and status["drifted"] is True
    assert status["driftShare"] == 0.5 and status["rows"] == 1234
    assert status["features"]["f000"] == {
        "test": "psi",
        "score": 0.31,
        "threshold": 0.2,
        "drifted": True,
    }
    assert _cond(status, "DriftDetected")["status"] == "True"
    assert events(cluster, "dm2", "DriftDetected")[0]["type"] == "Warning"
    # The retrain request: exactly one drift-triggered run of the pipeline.
    run2 = wait_for(lambda: cluster.get(JOBS, "ml", "dm2-run-2"), what="retrain run")
    assert run2["metadata"]["annotations"]["kubeloop.io/trigger"] == "Drift"
    annotations = _obj(cluster, TP, "dm2")["metadata"]["annotations"]
    assert annotations["kubeloop.io/retrain-reason"] == "Drift"
    request = annotations["kubeloop.io/retrain-requested-at"]
    assert request.endswith(f" dm2/{job}")
    assert status["retrainRequestedAt"] == request.split(" ")[0]

    # Same episode: more Drift checks request nothing more, even after that run finished.
    cluster.finish_job("ml", "dm2-run-2", _training("2", 0.95, "dm2"))
    # A KS check whose p-values came from the profile's sketch says so in status.
    approximate = _drift("Drift", share=0.6)
    ks = {"exact": False, "source": "profile", "reason": "source file s3://d/a.parquet is gone"}
    approximate["ksReference"] = ks
    approximate["features"]["f000"].update(test="ks", pValueExact=False)
    _check(cluster, "dm2", 2, approximate)
    status = _status(cluster, DM, "dm2")
    assert status["ksReference"] == ks and status["features"]["f000"]["pValueExact"] is False
    _check(cluster, "dm2", 3, _drift("NoData", share=0.0))
    assert "ksReference" not in _status(cluster, DM, "dm2")
    settled(cluster, "driftmonitors", "dm2")
    assert _pipeline_jobs(cluster, "dm2") == ["dm2-run-1", "dm2-run-2"]
    assert _status(cluster, DM, "dm2")["verdict"] == "NoData"
    assert "drifted" not in _status(cluster, DM, "dm2")  # no data: unknown, neither way
    assert _cond(_status(cluster, DM, "dm2"), "DriftDetected")["status"] == "True"

    # NoDrift ends the episode; the next Drift is a new episode and retrains once more.
    _check(cluster, "dm2", 4, _drift("NoDrift", share=0.0))
    status = _status(cluster, DM, "dm2")
    assert status["drifted"] is False and status.get("retrainRequestedAt") is None
    assert _cond(status, "DriftDetected")["reason"] == "NoDrift"
    assert events(cluster, "dm2", "DriftResolved")
    time.sleep(1.1)  # real time on purpose: the next Job has a later creation time (seconds)
    _check(cluster, "dm2", 5, _drift("Drift", share=0.5))
    wait_for(lambda: cluster.get(JOBS, "ml", "dm2-run-3"), what="second episode's run")
    settled(cluster, "driftmonitors", "dm2")
    assert _pipeline_jobs(cluster, "dm2") == ["dm2-run-1", "dm2-run-2", "dm2-run-3"]


def test_a_quality_issue_is_its_own_verdict_and_holds_the_drift_retrain(
    cluster: Cluster, operator: Operator
) -> None:
    _loop(cluster, "dm6")
    issue = {"feature": "f000", "check": "nullShare", "value": 0.4, "threshold": 0.1}
    broken = {
        **_drift("Drift", share=0.5),  # 40 % nulls read as drift too (the missing bin)
        "quality": {"verdict": "QualityIssue", "issues": [issue]},
        "reportUri": "s3://logs/churn/_reports/dm6/dm6-20260101T000000Z.html",
    }
    _check(cluster, "dm6", 1, broken)
    status = _status(cluster, DM, "dm6")
    assert status["quality"] == {"verdict": "QualityIssue", "issues": [issue]}
    assert status["reportUri"] == broken["reportUri"]
    condition = _cond(status, "QualityIssue")
    assert (condition["status"], condition["reason"]) == ("True", "QualityIssue")
    assert "f000 nullShare 0.4 > 0.1" in condition["message"]
    assert events(cluster, "dm6", "QualityIssue")[0]["type"] == "Warning"
    assert events(cluster, "dm6", "RetrainHeld")  # no retrain on data that looks broken
    settled(cluster, "driftmonitors", "dm6")
    assert _pipeline_jobs(cluster, "dm6") == ["dm6-run-1"]
    assert status.get("retrainRequestedAt") is None  # the episode stays armed

    # Clean data again, still drifted: the episode asks for its retrain now.
    _check(cluster, "dm6", 2, {**_drift("Drift", share=0.5), "quality": {"verdict": "OK"}})
    wait_for(lambda: cluster.get(JOBS, "ml", "dm6-run-2"), what="retrain after clean data")
    status = _status(cluster, DM, "dm6")
    assert (_cond(status, "QualityIssue")["status"], status.get("reportUri")) == ("False", None)
    assert events(cluster, "dm6", "QualityRestored")


def test_failed_check_and_bounded_features(cluster: Cluster, operator: Operator) -> None:
    _loop(cluster, "dm3", retrain=False)
    _check(cluster, "dm3", 1, None)  # the pod died without a result
    status = _status(cluster, DM, "dm3")
    assert status["verdict"] == "Failed"
    ready = _cond(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "CheckFailed")
    assert events(cluster, "dm3", "CheckFailed")[0]["type"] == "Warning"

    _check(cluster, "dm3", 2, _drift("Drift", features=200))
    status = _status(cluster, DM, "dm3")
    assert len(status["features"]) == MAX_FEATURES
    assert all(f["drifted"] for f in status["features"].values())  # drifted ones kept first
    assert _cond(status, "Ready")["status"] == "True"
    settled(cluster, "driftmonitors", "dm3")
    assert _pipeline_jobs(cluster, "dm3") == ["dm3-run-1"]  # onDrift.retrain is false


def test_missing_deployment_then_created(cluster: Cluster, operator: Operator) -> None:
    dm = example("churn-monitor.yaml", name="dm4")
    dm["spec"]["deploymentRef"]["name"] = "nowhere"
    cluster.create(dm)
    status = wait_for(lambda: (s := _status(cluster, DM, "dm4")).get("conditions") and s)
    ready = _cond(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "DeploymentNotFound")
    assert "spec.deploymentRef.name" in ready["message"]
    stalled = _cond(status, "Stalled")  # only a person can fix it: Argo CD shows Degraded
    assert (stalled["status"], stalled["reason"]) == ("True", "DeploymentNotFound")
    assert stalled["message"] == ready["message"]
    assert cluster.get(CRONJOBS, "ml", "dm4") is None
    assert events(cluster, "dm4", "DeploymentNotFound")[0]["type"] == "Warning"

    md = example("pinned-version-deployment.yaml", name="nowhere")
    md["spec"].setdefault("payloadLogging", {"enabled": False})["enabled"] = False
    md["spec"]["payloadLogging"].pop("destination", None)
    cluster.create(md)
    status = wait_for(
        lambda: (
            _cond(s := _status(cluster, DM, "dm4"), "Ready").get("reason")
            == "PayloadLoggingDisabled"
            and s
        ),
        what="PayloadLoggingDisabled",
    )
    assert "spec.payloadLogging.enabled" in _cond(status, "Ready")["message"]
    stalled = _cond(status, "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "PayloadLoggingDisabled")
    cluster.patch(
        MD,
        "ml",
        "nowhere",
        {"spec": {"payloadLogging": {"enabled": True, "destination": "s3://logs/pinned/"}}},
    )
    cron = wait_for(lambda: cluster.get(CRONJOBS, "ml", "dm4"), what="CronJob dm4")
    container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KUBELOOP_PAYLOAD_LOG_URI"] == "s3://logs/pinned/"
    wait_for(lambda: _cond(_status(cluster, DM, "dm4"), "Ready").get("status") == "True")
    assert _cond(_status(cluster, DM, "dm4"), "Stalled")["status"] == "False"


def test_invalid_spec_is_reported(cluster: Cluster, operator: Operator) -> None:
    cluster.em.admission = False
    try:
        dm = example("churn-monitor.yaml", name="dm-bad")
        dm["spec"]["tests"]["numeric"] = "bogus"
        cluster.create(dm)
    finally:
        cluster.em.admission = True
    status = wait_for(lambda: (s := _status(cluster, DM, "dm-bad")).get("conditions") and s)
    ready = _cond(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "spec.tests.numeric" in ready["message"]
    assert _cond(status, "Stalled")["status"] == "True"
    assert cluster.get(CRONJOBS, "ml", "dm-bad") is None
    # kopf's own bookkeeping (its diff-base annotation) is the last write it makes.
    obj = wait_for(
        lambda: (
            "kubeloop.io/last-handled-configuration"
            in (o := _obj(cluster, DM, "dm-bad"))["metadata"].get("annotations", {})
            and o
        )
    )
    rv = obj["metadata"]["resourceVersion"]
    settled(cluster, "driftmonitors", "dm-bad")
    assert _obj(cluster, DM, "dm-bad")["metadata"]["resourceVersion"] == rv
    assert posted(events(cluster, "dm-bad", "InvalidSpec")) == 1


@pytest.mark.parametrize("crash_after_annotation", [False, True])
def test_restart_requests_one_retrain(
    cluster: Cluster, operator: Operator, crash_after_annotation: bool
) -> None:
    """The operator is down while a Drift check finishes (and, in the second case, died after
    annotating the pipeline but before recording it): still exactly one retrain run."""
    name = f"dm5-{int(crash_after_annotation)}"
    _loop(cluster, name)
    operator.stop()
    try:
        job = cluster.spawn_job("ml", name, 7)
        cluster.finish_job("ml", job, _drift("Drift"))
        if crash_after_annotation:
            created = _obj(cluster, JOBS, job)["metadata"]["creationTimestamp"]
            annotation = {"kubeloop.io/retrain-requested-at": f"{created} {name}/{job}"}
            cluster.patch(TP, "ml", name, {"metadata": {"annotations": annotation}})
    finally:
        operator.start()
    wait_for(lambda: _status(cluster, DM, name).get("lastJob") == job, what="check recorded")
    wait_for(lambda: cluster.get(JOBS, "ml", f"{name}-run-2"), what="retrain run")
    settled(cluster, "driftmonitors", name)
    assert _pipeline_jobs(cluster, name) == [f"{name}-run-1", f"{name}-run-2"]
    assert _status(cluster, DM, name)["retrainRequestedAt"]


def _groups(url: str) -> set[str]:
    """The monitors whose group the Pushgateway holds (its /api/v1/metrics)."""
    doc = json.loads(urllib.request.urlopen(f"{url}/api/v1/metrics", timeout=5).read())
    return {
        group["labels"]["monitor"]
        for group in doc["data"]
        if group["labels"].get("job") == PUSHGATEWAY_JOB
    }


def _push(url: str, name: str) -> None:
    """What a check pushes (`kubeloop monitor`), in the group it pushes to."""
    registry = CollectorRegistry()
    Gauge("kubeloop_drift_share", "share", registry=registry).set(0.5)
    push_to_gateway(
        url, job=PUSHGATEWAY_JOB, grouping_key=pushgateway_group("ml", name), registry=registry
    )


def test_suspended_or_deleted_monitors_stop_reporting(
    cluster: Cluster, pushgateway: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Pushgateway keeps a last push forever: the operator deletes the group of a
    suspended or deleted monitor, so its drift stops alerting; others' groups stay."""
    monkeypatch.setenv("KUBELOOP_PUSHGATEWAY_URL", pushgateway)
    op = Operator(cluster.thread.url)
    op.start()
    try:
        for name in ("dm-keep", "dm-suspend", "dm-delete"):
            _loop(cluster, name, retrain=False)
            _push(pushgateway, name)
        assert _groups(pushgateway) == {"dm-keep", "dm-suspend", "dm-delete"}

        cluster.patch(DM, "ml", "dm-suspend", {"spec": {"suspend": True}})
        wait_for(lambda: "dm-suspend" not in _groups(pushgateway), what="suspended group gone")
        cluster.api_delete(DM, "ml", "dm-delete")  # as kubectl: the operator sees it
        wait_for(lambda: cluster.get(DM, "ml", "dm-delete") is None, what="dm-delete deleted")
        # The Pushgateway queues a DELETE (202) and applies it just after.
        wait_for(lambda: _groups(pushgateway) == {"dm-keep"}, what="deleted monitor's group gone")
        ready = _cond(_status(cluster, DM, "dm-suspend"), "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "Suspended")
    finally:
        op.stop()


def _degraded(verdict: str, accuracy: float) -> dict[str, Any]:
    """A check whose inputs did not drift but whose labelled accuracy is `accuracy`."""
    result = _drift("NoDrift", share=0.0)
    result["performance"] = {
        "verdict": verdict,
        "breached": ["accuracy"] if verdict == "Degraded" else [],
        "measured": {"accuracy": accuracy},
        "estimated": {"accuracy": 0.9},
        "rows": 4000,
        "labelledRows": 200,
        "coverage": 0.05,
        "duplicateLabels": 3,
        "unmatchedLabels": 7,
        "calibration": "labels",
    }
    result["predictionDrift"] = {
        "drifted": False,
        "features": {"_prediction": {"test": "chi2", "score": 0.4, "drifted": False}},
    }
    return result


def test_degraded_performance_without_drift_retrains_once(
    cluster: Cluster, operator: Operator
) -> None:
    """The label relation flipped, inputs unchanged: NoDrift, Degraded, exactly one run."""
    cluster.create(example("churn-pipeline.yaml", name="dm7"))
    wait_for(lambda: cluster.get(JOBS, "ml", "dm7-run-1"), what="run 1")
    cluster.finish_job("ml", "dm7-run-1", _training("1", 0.9, "dm7"))
    wait_for(lambda: _status(cluster, TP, "dm7").get("champion"), what="champion")
    md = example("churn-deployment.yaml", name="dm7")
    md["spec"]["model"]["pipelineRef"]["name"] = "dm7"
    cluster.create(md)
    dm = example("churn-monitor.yaml", name="dm7")
    dm["spec"]["deploymentRef"]["name"] = "dm7"
    dm["spec"]["onDrift"]["retrain"] = True
    dm["spec"]["performance"] = {
        "labels": {"uri": "s3://labels/churn/"},
        "thresholds": {"accuracy": 0.8},
        "onDegraded": {"retrain": True},
    }
    cluster.create(dm)
    wait_for(lambda: cluster.get(CRONJOBS, "ml", "dm7"), what="CronJob dm7")

    job = _check(cluster, "dm7", 1, _degraded("Degraded", 0.55))
    status = _status(cluster, DM, "dm7")
    assert status["verdict"] == "NoDrift"
    perf = status["performance"]
    assert (perf["verdict"], perf["measured"], perf["coverage"]) == (
        "Degraded",
        {"accuracy": 0.55},
        0.05,
    )
    assert (perf["duplicateLabels"], perf["unmatchedLabels"]) == (3, 7)
    assert status["predictionDrift"]["drifted"] is False
    assert _cond(status, "PerformanceDegraded")["status"] == "True"
    assert _cond(status, "DriftDetected")["status"] == "False"
    assert events(cluster, "dm7", "PerformanceDegraded")[0]["type"] == "Warning"
    run2 = wait_for(lambda: cluster.get(JOBS, "ml", "dm7-run-2"), what="retrain run")
    assert run2["metadata"]["annotations"]["kubeloop.io/trigger"] == "Degraded"
    annotations = _obj(cluster, TP, "dm7")["metadata"]["annotations"]
    assert annotations["kubeloop.io/retrain-reason"] == "Degraded"
    request = annotations["kubeloop.io/retrain-requested-at"]
    assert request.endswith(f" dm7/{job}") and perf["retrainRequestedAt"] == request.split()[0]

    # the same episode (and one without enough labels) asks for nothing more
    _check(cluster, "dm7", 2, _degraded("Degraded", 0.5))
    _check(cluster, "dm7", 3, _degraded("InsufficientLabels", 0.5))
    settled(cluster, "driftmonitors", "dm7")
    assert _pipeline_jobs(cluster, "dm7") == ["dm7-run-1", "dm7-run-2"]
    assert _status(cluster, DM, "dm7")["performance"]["retrainRequestedAt"]

    # OK ends the episode
    _check(cluster, "dm7", 4, _degraded("OK", 0.9))
    status = _status(cluster, DM, "dm7")
    assert "retrainRequestedAt" not in status["performance"]
    assert _cond(status, "PerformanceDegraded")["reason"] == "PerformanceOK"
    assert events(cluster, "dm7", "PerformanceRecovered")
