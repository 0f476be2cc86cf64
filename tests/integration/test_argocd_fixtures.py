"""The Argo CD health fixtures (deploy/argocd/kubeloop.io/<Kind>/testdata/*.yaml) are what the
real operator writes: each test drives the operator against the emulator into one situation
and compares the object it left (spec and status) with the committed fixture.

After an intended change of a status, regenerate with
`KUBELOOP_UPDATE_GOLDEN=1 pytest tests/integration/test_argocd_fixtures.py`, read the diff,
and update the expected health in health_test.yaml where a message changed (tests/argocd).

Only the volatile parts are normalised: metadata is cut to name/namespace/generation (uids,
resourceVersions, kopf's annotations), and every timestamp reads 2026-01-01T00:00:00Z.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.integration.harness import (
    CRONJOBS,
    DM,
    JOBS,
    MD,
    TP,
    Cluster,
    Operator,
    example,
    wait_for,
)

pytestmark = pytest.mark.slow  # minutes: `make test` starts it first

ROOT = Path(__file__).resolve().parents[2]
CUSTOMIZATIONS = ROOT / "deploy" / "argocd" / "kubeloop.io"
DEPLOYS = "apps/v1/deployments"
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
_FIXED_TIME = "2026-01-01T00:00:00Z"


# --- playing the kubelet and the other controllers ---------------------------------------------


def _training(version: str, auc: float, pipeline: str) -> dict[str, Any]:
    return {
        "kind": "TrainingResult",
        "ok": True,
        "version": version,
        "uri": f"s3://models/{pipeline}/versions/{version}/",
        "metrics": {"roc_auc": auc},
    }


def _drift(verdict: str) -> dict[str, Any]:
    drifted = verdict == "Drift"
    return {
        "kind": "DriftResult",
        "verdict": verdict,
        "driftShare": 0.5 if drifted else 0.0,
        "rows": 0 if verdict == "NoData" else 1234,
        "modelVersion": "1",
        "features": {
            "tenure": {"test": "psi", "score": 0.31, "threshold": 0.2, "drifted": drifted},
            "contract": {"test": "chi2", "score": 0.2, "threshold": 0.05, "drifted": False},
        },
    }


def _status(cluster: Cluster, resource: str, name: str) -> dict[str, Any]:
    obj = cluster.get(resource, "ml", name)
    return (obj or {}).get("status") or {}


def _cond(cluster: Cluster, resource: str, name: str, type_: str) -> dict[str, Any]:
    conditions = _status(cluster, resource, name).get("conditions") or []
    return {c["type"]: c for c in conditions}.get(type_, {})


def _until(cluster: Cluster, resource: str, name: str, type_: str, reason: str) -> None:
    """Wait until the operator has written condition `type_` with `reason`."""
    wait_for(
        lambda: _cond(cluster, resource, name, type_).get("reason") == reason,
        what=f"{name}: {type_} reason {reason}",
    )


@contextmanager
def _without_admission(cluster: Cluster) -> Iterator[None]:
    """What only pydantic refuses, slipped past the CRD schema (an older CRD, a bug)."""
    cluster.em.admission = False
    try:
        yield
    finally:
        cluster.em.admission = True


def _pipeline(cluster: Cluster, name: str, **spec: Any) -> None:
    doc = example("churn-pipeline.yaml", name=name)
    doc["spec"].update(spec)
    cluster.create(doc)


def _run_started(cluster: Cluster, name: str) -> str:
    job = f"{name}-run-1"
    wait_for(lambda: cluster.get(JOBS, "ml", job), what=f"Job {job}")
    return job


def _champion(cluster: Cluster, name: str) -> None:
    _pipeline(cluster, name)
    cluster.finish_job("ml", _run_started(cluster, name), _training("1", 0.91, name))
    _until(cluster, TP, name, "Ready", "ChampionAvailable")


def _canary_md(name: str, version: int) -> dict[str, Any]:
    doc = example("churn-deployment.yaml", name=name)
    doc["spec"]["model"] = {"uri": f"s3://models/churn/versions/{version}/"}
    doc["spec"]["storageSecretRef"] = {"name": "s3-credentials"}
    doc["spec"].pop("autoscaling")
    return doc


def _canary_started(cluster: Cluster, name: str) -> None:
    """Version 1 serves; version 2 is given and its canary Deployment exists."""
    cluster.create(_canary_md(name, 1))
    cluster.roll_out_deployment("ml", name)
    wait_for(lambda: _status(cluster, MD, name).get("modelVersion") == "1", what="v1 serves")
    uri = "s3://models/churn/versions/2/"
    cluster.patch(MD, "ml", name, {"spec": {"model": {"uri": uri}}})
    wait_for(lambda: cluster.get(DEPLOYS, "ml", f"{name}-canary"), what="canary Deployment")


def _monitor(cluster: Cluster, name: str, deployment: str, **spec: Any) -> None:
    doc = example("churn-monitor.yaml", name=name)
    doc["spec"]["deploymentRef"]["name"] = deployment
    doc["spec"].update(spec)
    cluster.create(doc)


def _monitored(cluster: Cluster, name: str) -> None:
    """A pipeline with a champion, a deployment serving it, a monitor with its CronJob."""
    _champion(cluster, name)
    md = example("churn-deployment.yaml", name=name)
    md["spec"]["model"]["pipelineRef"]["name"] = name
    cluster.create(md)
    _monitor(cluster, name, name)
    wait_for(lambda: cluster.get(CRONJOBS, "ml", name), what=f"CronJob {name}")
    _until(cluster, DM, name, "Ready", "Scheduled")


def _checked(cluster: Cluster, name: str, result: dict[str, Any] | None) -> None:
    """One scheduled check ran (the CronJob's Job) and the operator recorded it."""
    job = cluster.spawn_job("ml", name, 1)
    cluster.finish_job("ml", job, result, ok=result is not None)
    wait_for(lambda: _status(cluster, DM, name).get("lastJob") == job, what=f"{job} recorded")


# --- the situations ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Situation:
    """A fixture: drive the operator into it, then wait until its status is final."""

    kind: str
    fixture: str  # file stem under testdata/
    name: str  # the object saved
    drive: Callable[[Cluster], None]

    @property
    def resource(self) -> str:
        return {"TrainingPipeline": TP, "ModelDeployment": MD, "DriftMonitor": DM}[self.kind]

    @property
    def path(self) -> Path:
        return CUSTOMIZATIONS / self.kind / "testdata" / f"{self.fixture}.yaml"


def _tp_running(c: Cluster) -> None:
    _pipeline(c, "churn-training")
    _run_started(c, "churn-training")
    _until(c, TP, "churn-training", "Running", "RunInProgress")


def _tp_healthy(c: Cluster) -> None:
    _champion(c, "churn")
    # The gate's promotion reaches the registry: its Job writes the champion alias.
    c.finish_registry_job("ml", "churn-registry-1", metrics={"roc_auc": 0.91})
    wait_for(lambda: _status(c, TP, "churn").get("aliases"), what="the aliases mirrored")


def _tp_awaiting_approval(c: Cluster) -> None:
    promotion = {**example("churn-pipeline.yaml")["spec"]["promotion"], "autoPromote": False}
    _pipeline(c, "churn-approval", promotion=promotion)
    job = _run_started(c, "churn-approval")
    c.finish_job("ml", job, _training("1", 0.91, "churn-approval"))
    _until(c, TP, "churn-approval", "Ready", "AwaitingApproval")


def _tp_rejected(c: Cluster) -> None:
    _pipeline(c, "churn-rejected")
    job = _run_started(c, "churn-rejected")
    c.finish_job("ml", job, _training("1", 0.62, "churn-rejected"))
    _until(c, TP, "churn-rejected", "Ready", "NotPromoted")


def _tp_failed(c: Cluster) -> None:
    _pipeline(c, "churn-failed")
    job = _run_started(c, "churn-failed")
    failure = {"kind": "TrainingResult", "ok": False, "message": "column 'churned' not found"}
    c.finish_job("ml", job, failure, ok=False)
    _until(c, TP, "churn-failed", "Ready", "NotPromoted")


def _tp_blocked(c: Cluster) -> None:
    _pipeline(c, "churn-blocked")
    c.block_job("ml", _run_started(c, "churn-blocked"))
    _until(c, TP, "churn-blocked", "Stalled", "RunBlocked")


def _tp_invalid(c: Cluster) -> None:
    model = {**example("churn-pipeline.yaml")["spec"]["model"], "estimator": "NotAnEstimator"}
    with _without_admission(c):
        _pipeline(c, "churn-invalid", model=model)
    _until(c, TP, "churn-invalid", "Ready", "InvalidSpec")


def _tp_suspended(c: Cluster) -> None:
    _pipeline(c, "churn-suspended", suspend=True)
    _until(c, TP, "churn-suspended", "Ready", "Suspended")
    # Ready says Suspended from the first write on; the registry read goes on meanwhile.
    wait_for(
        lambda: _status(c, TP, "churn-suspended").get("registrySync"), what="the registry read"
    )


def _md_healthy(c: Cluster) -> None:
    c.create(example("pinned-version-deployment.yaml", name="churn-serving"))
    c.roll_out_deployment("ml", "churn-serving")
    _until(c, MD, "churn-serving", "Progressing", "Complete")
    _until(c, MD, "churn-serving", "Ready", "Serving")


def _md_rolling(c: Cluster) -> None:
    c.create(example("pinned-version-deployment.yaml", name="churn-starting"))
    _until(c, MD, "churn-starting", "Ready", "PodsNotReady")
    _until(c, MD, "churn-starting", "Progressing", "RollingUpdate")


def _untrained(c: Cluster, name: str) -> None:
    """A pipeline whose first run is still training, and a deployment of its champion."""
    _pipeline(c, name)
    md = example("churn-deployment.yaml", name=name)
    md["spec"]["model"]["pipelineRef"]["name"] = name
    c.create(md)
    _until(c, MD, name, "Ready", "WaitingForModel")


def _md_waiting(c: Cluster) -> None:
    _untrained(c, "churn-untrained")


def _md_no_pipeline(c: Cluster) -> None:
    md = example("churn-deployment.yaml", name="churn-orphan")
    md["spec"]["model"]["pipelineRef"]["name"] = "churn-nowhere"
    c.create(md)
    _until(c, MD, "churn-orphan", "Stalled", "PipelineNotFound")


def _md_canary(c: Cluster) -> None:
    _canary_started(c, "churn-canary")
    wait_for(
        lambda: (
            "0/1 canary pod(s) ready"
            in _cond(c, MD, "churn-canary", "Progressing").get("message", "")
        ),
        what="canary step 1 waiting for its pod",
    )


def _md_rolled_back(c: Cluster) -> None:
    _canary_started(c, "churn-rollback")
    c.stall_deployment("ml", "churn-rollback-canary")
    _until(c, MD, "churn-rollback", "Degraded", "ProgressDeadlineExceeded")
    _until(c, MD, "churn-rollback", "Ready", "Serving")


def _md_invalid(c: Cluster) -> None:
    doc = _canary_md("churn-invalid", 1)
    doc["spec"]["rollout"]["canary"]["steps"] = [50, 10]
    with _without_admission(c):
        c.create(doc)
    _until(c, MD, "churn-invalid", "Ready", "InvalidSpec")


def _dm_healthy(c: Cluster) -> None:
    _monitored(c, "churn-watched")
    _checked(c, "churn-watched", _drift("NoDrift"))
    _until(c, DM, "churn-watched", "DriftDetected", "NoDrift")


def _dm_no_data(c: Cluster) -> None:
    _monitored(c, "churn-quiet")
    _checked(c, "churn-quiet", _drift("NoData"))


def _dm_waiting(c: Cluster) -> None:
    _untrained(c, "churn-waiting")
    _monitor(c, "churn-waiting", "churn-waiting")
    _until(c, DM, "churn-waiting", "Ready", "WaitingForModel")


def _dm_drift(c: Cluster) -> None:
    _monitored(c, "churn-drift")
    _checked(c, "churn-drift", _drift("Drift"))
    _until(c, DM, "churn-drift", "DriftDetected", "DriftDetected")
    wait_for(lambda: _status(c, DM, "churn-drift").get("retrainRequestedAt"), what="retrain")


def _dm_check_failed(c: Cluster) -> None:
    _monitored(c, "churn-broken")
    _checked(c, "churn-broken", None)
    _until(c, DM, "churn-broken", "Ready", "CheckFailed")


def _dm_no_deployment(c: Cluster) -> None:
    _monitor(c, "churn-orphan", "churn-nowhere")
    _until(c, DM, "churn-orphan", "Stalled", "DeploymentNotFound")


def _dm_no_payload_logs(c: Cluster) -> None:
    md = example("pinned-version-deployment.yaml", name="churn-unlogged")
    c.create(md)
    _monitor(c, "churn-unlogged", "churn-unlogged")
    _until(c, DM, "churn-unlogged", "Stalled", "PayloadLoggingDisabled")


def _dm_invalid(c: Cluster) -> None:
    doc = example("churn-monitor.yaml", name="churn-invalid")
    doc["spec"]["tests"]["numeric"] = "bogus"
    with _without_admission(c):
        c.create(doc)
    _until(c, DM, "churn-invalid", "Ready", "InvalidSpec")


def _dm_suspended(c: Cluster) -> None:
    md = example("pinned-version-deployment.yaml", name="churn-paused")
    md["spec"]["payloadLogging"] = {"enabled": True, "destination": "s3://logs/churn-paused/"}
    c.create(md)
    _monitor(c, "churn-paused", "churn-paused", suspend=True)
    _until(c, DM, "churn-paused", "Ready", "Suspended")


SITUATIONS = [
    Situation("TrainingPipeline", "healthy", "churn", _tp_healthy),
    Situation("TrainingPipeline", "progressing-running", "churn-training", _tp_running),
    Situation("TrainingPipeline", "degraded-rejected", "churn-rejected", _tp_rejected),
    Situation("TrainingPipeline", "degraded-failed", "churn-failed", _tp_failed),
    Situation("TrainingPipeline", "degraded-run-blocked", "churn-blocked", _tp_blocked),
    Situation("TrainingPipeline", "degraded-invalid", "churn-invalid", _tp_invalid),
    Situation("TrainingPipeline", "suspended", "churn-suspended", _tp_suspended),
    Situation(
        "TrainingPipeline", "suspended-awaiting-approval", "churn-approval", _tp_awaiting_approval
    ),
    Situation("ModelDeployment", "healthy", "churn-serving", _md_healthy),
    Situation("ModelDeployment", "progressing-rollout", "churn-starting", _md_rolling),
    Situation("ModelDeployment", "progressing-canary", "churn-canary", _md_canary),
    Situation("ModelDeployment", "progressing-waiting-for-model", "churn-untrained", _md_waiting),
    Situation("ModelDeployment", "degraded-rolled-back", "churn-rollback", _md_rolled_back),
    Situation("ModelDeployment", "degraded-pipeline-missing", "churn-orphan", _md_no_pipeline),
    Situation("ModelDeployment", "degraded-invalid", "churn-invalid", _md_invalid),
    Situation("DriftMonitor", "healthy", "churn-watched", _dm_healthy),
    Situation("DriftMonitor", "healthy-no-data", "churn-quiet", _dm_no_data),
    Situation("DriftMonitor", "progressing-waiting-for-model", "churn-waiting", _dm_waiting),
    Situation("DriftMonitor", "degraded-drift", "churn-drift", _dm_drift),
    Situation("DriftMonitor", "degraded-check-failed", "churn-broken", _dm_check_failed),
    Situation("DriftMonitor", "degraded-deployment-missing", "churn-orphan", _dm_no_deployment),
    Situation(
        "DriftMonitor", "degraded-payload-logging-off", "churn-unlogged", _dm_no_payload_logs
    ),
    Situation("DriftMonitor", "degraded-invalid", "churn-invalid", _dm_invalid),
    Situation("DriftMonitor", "suspended", "churn-paused", _dm_suspended),
]


def normalise(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as a fixture: what health reads, without what changes from run to run."""
    meta = obj["metadata"]

    def fixed(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: fixed(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fixed(v) for v in value]
        if isinstance(value, str):
            return _TIME.sub(_FIXED_TIME, value)
        return value

    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {k: meta[k] for k in ("name", "namespace", "generation")},
        "spec": obj["spec"],
        "status": fixed(obj.get("status") or {}),
    }


@pytest.mark.parametrize("situation", SITUATIONS, ids=lambda s: f"{s.kind}-{s.fixture}")
def test_fixture_is_what_the_operator_writes(
    cluster: Cluster, operator: Operator, situation: Situation
) -> None:
    situation.drive(cluster)
    obj = cluster.get(situation.resource, "ml", situation.name)
    assert obj is not None
    produced = normalise(obj)
    if os.environ.get("KUBELOOP_UPDATE_GOLDEN"):
        situation.path.parent.mkdir(exist_ok=True)
        situation.path.write_text(yaml.safe_dump(produced, sort_keys=True))
    assert situation.path.exists(), f"{situation.path} is missing: regenerate (module docstring)"
    # Compared as YAML text: a failure shows a line diff (pytest's rewriting of a deep dict
    # comparison once crashed the whole run with an AST recursion INTERNALERROR).
    committed = yaml.safe_dump(yaml.safe_load(situation.path.read_text()), sort_keys=True)
    fresh = yaml.safe_dump(produced, sort_keys=True)
    if committed != fresh:
        diff = "".join(
            difflib.unified_diff(
                committed.splitlines(keepends=True),
                fresh.splitlines(keepends=True),
                str(situation.path),
                "produced",
            )
        )
        pytest.fail(f"stale fixture: regenerate and review (module docstring)\n{diff}")


def test_every_fixture_comes_from_a_situation() -> None:
    made = {s.path for s in SITUATIONS}
    assert set(CUSTOMIZATIONS.glob("*/testdata/*.yaml")) == made
