"""A ModelDeployment's rollout, table-tested: rolling update in place, canary plan from the
spec, steps on a healthy analysis, rollback on a failed one, promotion, resume after a restart.

Each row is the observed state (status, the stable and canary Deployments, the canary's
request counters) at 12:00:00 and the plan it must give.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest

from kubeloop.api.deployment import CanaryAnalysis, ModelDeploymentSpec
from kubeloop.decide.canary import (
    UNREAD,
    RolloutInputs,
    Traffic,
    analyse,
    plan_rollout,
    spec_hash,
)
from kubeloop.decide.resolve import Target
from kubeloop.resources.serving import VERSION_LABEL

NOW = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
LONG_AGO, JUST_NOW = "2026-01-01T11:00:00Z", "2026-01-01T11:59:30Z"  # stepSeconds is 60
_V = "s3://models/churn/versions/"
_CANARY = {
    "strategy": "Canary",
    "canary": {
        "steps": [25, 50, 100],
        "stepSeconds": 60,
        "analysis": {"maxErrorRate": 0.01, "minRequests": 20},
    },
}
_SPEC: dict[str, Any] = {
    "model": {"pipelineRef": {"name": "churn"}},
    "replicas": 3,
    "rollout": _CANARY,
}
_ROLLING: dict[str, Any] = {
    "model": {"pipelineRef": {"name": "churn"}, "version": "2"},
    "replicas": 3,
}
HEALTHY, FAILING, FEW = Traffic(100, 0, 1), Traffic(100, 5, 1), Traffic(10, 0, 1)


def _dep(
    version: str, replicas: int = 3, ready: int | None = None, stuck: bool = False
) -> dict[str, Any]:
    """A serving Deployment as the API server returns it: `ready` of `replicas` pods ready."""
    ready = replicas if ready is None else ready
    env = [{"name": "KUBELOOP_MODEL_URI", "value": f"{_V}{version}/"}]
    conditions = (
        [
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": "ReplicaSet has timed out progressing.",
            }
        ]
        if stuck
        else []
    )
    return {
        "metadata": {"generation": 1, "annotations": {VERSION_LABEL: version}},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"env": env}]}}},
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
            "conditions": conditions,
        },
    }


def _at(step: int, started: str, version: str = "2") -> dict[str, Any]:
    """status.canary of a rollout of `version` at `step`, started at `started`."""
    percent = [25, 50, 100][step]
    return {
        "canary": {
            "version": version,
            "uri": f"{_V}{version}/",
            "step": step,
            "stepStartedAt": started,
            "stepPercent": percent,
            "trafficPercent": percent,
        }
    }


def _failed(version: str = "2", spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """status.failedRollout of `version`, rolled back under `spec`."""
    hashed = spec_hash(ModelDeploymentSpec.model_validate(spec or _SPEC))
    return {
        "failedRollout": {
            "version": version,
            "reason": "ErrorRateTooHigh",
            "message": "canary error rate 5.00% over 100 requests exceeds maxErrorRate 1.00%",
            "specHash": hashed,
            "failedAt": LONG_AGO,
        }
    }


@dataclasses.dataclass(frozen=True)
class _Row:
    spec: dict[str, Any] = dataclasses.field(default_factory=lambda: _SPEC)
    status: dict[str, Any] = dataclasses.field(default_factory=dict)
    target: str = "2"
    stable: dict[str, Any] | None = dataclasses.field(default_factory=lambda: _dep("1"))
    canary: dict[str, Any] | None = None
    traffic: Any = UNREAD
    # the plan: the stable version, (canary step, stepPercent, trafficPercent), canary pods,
    # Progressing and Degraded reasons, status.failedRollout's reason, the Events
    serves: str = "1"
    canary_at: tuple[int, int, int] | None = None
    canary_pods: int = 0
    progressing: str = "Canary"
    degraded: str = "AsExpected"
    failed: str | None = None
    events: tuple[str, ...] = ()
    needs_traffic: bool = False


_PLANS: dict[str, _Row] = {
    "a pinned version rolls in place": _Row(spec=_ROLLING, serves="2", progressing="RollingUpdate"),
    "rolled in place": _Row(spec=_ROLLING, stable=_dep("2"), serves="2", progressing="Complete"),
    "rolling in place, stuck: the old pods keep serving": _Row(
        spec=_ROLLING, stable=_dep("2", ready=0, stuck=True), serves="2",
        progressing="ProgressDeadlineExceeded", degraded="ProgressDeadlineExceeded",
    ),
    "first deploy: the target, no canary": _Row(stable=None, serves="2", progressing="Creating"),
    "the stable Deployment gone: what status served stays, the target canaries": _Row(
        stable=None, status={"modelVersion": "1", "modelUri": f"{_V}1/"},
        canary_at=(0, 25, 25), canary_pods=1, events=("CanaryStarted",),
    ),
    "a new version: the canary plan from the spec, step 1 of 3": _Row(
        canary_at=(0, 25, 25), canary_pods=1, events=("CanaryStarted",),
    ),
    "a canary of an older rollout is not this one's: started, no analysis": _Row(
        canary=_dep("9", 1), canary_at=(0, 25, 25), canary_pods=1, events=("CanaryStarted",),
    ),
    "our canary, counters not read: the plan asks for them": _Row(
        status=_at(0, LONG_AGO), canary=_dep("2", 1), needs_traffic=True,
    ),
    "healthy and long enough: the next step": _Row(
        status=_at(0, LONG_AGO), canary=_dep("2", 1), traffic=HEALTHY,
        canary_at=(1, 50, 50), canary_pods=3, events=("CanaryStep",),
    ),
    "healthy, but the step is younger than stepSeconds: hold": _Row(
        status=_at(0, JUST_NOW), canary=_dep("2", 1), traffic=HEALTHY,
        canary_at=(0, 25, 25), canary_pods=1,
    ),
    "canary pods not ready yet: hold": _Row(
        status=_at(0, LONG_AGO), canary=_dep("2", 1, ready=0), traffic=HEALTHY,
        canary_at=(0, 25, 25), canary_pods=1,
    ),
    "too few requests for minRequests: hold": _Row(
        status=_at(0, LONG_AGO), canary=_dep("2", 1), traffic=FEW,
        canary_at=(0, 25, 25), canary_pods=1,
    ),
    "no minRequests: no requests do not hold the step": _Row(
        spec={**_SPEC, "rollout": {**_CANARY, "canary": {**_CANARY["canary"], "analysis": {}}}},
        status=_at(0, LONG_AGO), canary=_dep("2", 1), traffic=Traffic(0, 0, 1),
        canary_at=(1, 50, 50), canary_pods=3, events=("CanaryStep",),
    ),
    "metrics unreadable, minRequests set: hold, never guess": _Row(
        status=_at(0, LONG_AGO), canary=_dep("2", 1), traffic=None,
        canary_at=(0, 25, 25), canary_pods=1,
    ),
    "metrics unreadable, no minRequests: readiness decides": _Row(
        spec={**_SPEC, "rollout": {**_CANARY, "canary": {**_CANARY["canary"], "analysis": {}}}},
        status=_at(0, LONG_AGO), canary=_dep("2", 1), traffic=None,
        canary_at=(1, 50, 50), canary_pods=3, events=("CanaryStep",),
    ),
    "error rate over maxErrorRate: rolled back": _Row(
        status=_at(1, JUST_NOW), canary=_dep("2", 3), traffic=FAILING, progressing="RolledBack",
        degraded="ErrorRateTooHigh", failed="ErrorRateTooHigh", events=("RolledBack",),
    ),
    "canary pods never ready: rolled back without reading counters": _Row(
        status=_at(0, LONG_AGO), canary=_dep("2", 1, ready=0, stuck=True),
        progressing="RolledBack", degraded="ProgressDeadlineExceeded",
        failed="ProgressDeadlineExceeded", events=("RolledBack",),
    ),
    "a restart resumes the rollout at its recorded step": _Row(
        status=_at(1, JUST_NOW), canary=_dep("2", 3), traffic=HEALTHY,
        canary_at=(1, 50, 50), canary_pods=3,
    ),
    "the last step promotes: the stable Deployment takes the version": _Row(
        status=_at(1, LONG_AGO), canary=_dep("2", 3), traffic=HEALTHY, serves="2",
        canary_at=(2, 100, 100), progressing="Promoting", events=("CanaryStep",),
    ),
    "promoting: the canary serves until the stable pods are new": _Row(
        status=_at(2, JUST_NOW), stable=_dep("2", ready=1), canary=_dep("2", 3), serves="2",
        canary_at=(2, 100, 100), progressing="Promoting",
    ),
    "promoted: the canary goes": _Row(
        status=_at(2, JUST_NOW), stable=_dep("2"), canary=_dep("2", 3), serves="2",
        progressing="Complete", events=("Promoted",),
    ),
    "rolled back before: not retried under the same spec": _Row(
        status=_failed(), progressing="RolledBack", degraded="ErrorRateTooHigh",
        failed="ErrorRateTooHigh",
    ),
    "rolled back before, the spec changed since: retried": _Row(
        status=_failed(spec={**_SPEC, "replicas": 2, "batching": {"maxBatchSize": 8}}),
        canary_at=(0, 25, 25), canary_pods=1, events=("CanaryStarted",),
    ),
    "rolled back before, only replicas changed: not retried": _Row(
        status=_failed(spec={**_SPEC, "replicas": 6}), progressing="RolledBack",
        degraded="ErrorRateTooHigh", failed="ErrorRateTooHigh",
    ),
    "rolled back before, another version resolved since: it canaries": _Row(
        status=_failed(), target="3", canary_at=(0, 25, 25), canary_pods=1,
        events=("CanaryStarted",),
    ),
    "with an HPA the canary is sized beside the pods it set": _Row(
        spec={"model": {"pipelineRef": {"name": "churn"}},
              "autoscaling": {"minReplicas": 2, "maxReplicas": 6},
              "rollout": {"strategy": "Canary", "canary": {"steps": [50, 100]}}},
        stable=_dep("1", 4), canary_at=(0, 50, 50), canary_pods=4, events=("CanaryStarted",),
    ),
}  # fmt: skip


@pytest.mark.parametrize("row", list(_PLANS.values()), ids=list(_PLANS))
def test_plan_rollout(row: _Row) -> None:
    spec = ModelDeploymentSpec.model_validate(row.spec)
    target = Target(row.target, f"{_V}{row.target}/", None)
    inputs = RolloutInputs(spec, row.status, target, row.stable, row.canary, NOW, row.traffic)
    plan = plan_rollout(inputs)
    assert plan.needs_traffic is row.needs_traffic
    if row.needs_traffic:
        return
    canary = plan.canary
    at = (canary["step"], canary["stepPercent"], canary["trafficPercent"]) if canary else None
    assert (plan.stable_version, at, plan.canary_replicas) == (
        row.serves,
        row.canary_at,
        row.canary_pods,
    ), plan.progressing
    assert (plan.progressing[1], plan.degraded[1]) == (row.progressing, row.degraded)
    assert (plan.failed_rollout or {}).get("reason") == row.failed
    assert tuple(e.reason for e in plan.events) == row.events
    if canary is not None and canary["version"] == row.target:
        assert canary["uri"] == target.uri
    # stepStartedAt moves only when a step starts: the canary's first, or the next one
    if row.events in (("CanaryStarted",), ("CanaryStep",)):
        assert canary is not None and canary["stepStartedAt"] == "2026-01-01T12:00:00Z"
    if "RolledBack" in row.events:
        assert plan.events[-1].warning and plan.failed_rollout is not None
        assert plan.failed_rollout["specHash"] == spec_hash(spec)
        assert plan.failed_rollout["version"] == row.target
    # the stable Deployment keeps its size (the HPA's with autoscaling)
    assert plan.stable_replicas == (None if spec.autoscaling else spec.replicas)


@pytest.mark.parametrize(
    ("analysis", "traffic", "allow", "failure", "says"),
    [
        ({}, None, True, None, "serving metrics unreachable: steps advance on readiness only"),
        ({"minRequests": 5}, None, False, None, "holding until the canary's 5 request(s)"),
        ({"minRequests": 5}, Traffic(4, 0, 2), False, None, "canary served 4 of 5 request(s)"),
        ({}, Traffic(0, 0, 1), True, None, "canary served 0 of 1 request(s) needed"),
        (
            {"maxErrorRate": 0.05},
            Traffic(100, 5, 2),
            True,
            None,
            "canary error rate 5.00% over 100 requests is within maxErrorRate 5.00%",
        ),
        (
            {"maxErrorRate": 0.05},
            Traffic(100, 6, 2),
            True,
            "ErrorRateTooHigh",
            "canary error rate 6.00% over 100 requests exceeds maxErrorRate 5.00%",
        ),
    ],
)
def test_analyse(
    analysis: dict[str, Any],
    traffic: Traffic | None,
    allow: bool,
    failure: str | None,
    says: str,
) -> None:
    verdict = analyse(CanaryAnalysis.model_validate(analysis), traffic)
    assert (verdict.allow, verdict.failure[0] if verdict.failure else None) == (allow, failure)
    assert says in (verdict.failure[1] if verdict.failure else verdict.verdict)
