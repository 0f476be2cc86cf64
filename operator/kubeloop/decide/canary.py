"""A ModelDeployment's rollout plan: a rolling update in place, or a canary that starts, holds,
steps, promotes at 100, or rolls back.

`plan_rollout` reads the target version, the status so far (status.canary holds the step and
its start, so a restart resumes a rollout where it was) and the observed Deployments, and
returns what to serve: the stable version and size, the canary's version and size, the
conditions, status.failedRollout and the Events. The canary's request counters are read only
when a step needs them: without them the plan asks for them (`needs_traffic`), and the
controller reads the canary pods' `/metrics` and plans again.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from kubeloop.api.canary_split import CanarySplit, split_step
from kubeloop.api.deployment import (
    CanaryAnalysis,
    CanarySpec,
    ModelDeploymentSpec,
    stable_replica_counts,
)
from kubeloop.decide.events import EventIntent
from kubeloop.decide.resolve import Target
from kubeloop.decide.schedule import TIME_FORMAT
from kubeloop.decide.serving import (
    count,
    deadline_exceeded,
    rolled_out,
    served_uri,
    served_version,
)

__all__ = [
    "UNREAD",
    "Analysis",
    "RolloutInputs",
    "RolloutPlan",
    "Traffic",
    "analyse",
    "plan_rollout",
    "spec_hash",
]

Condition = tuple[bool, str, str]  # status, reason, message
_NO_FAILURE: Condition = (False, "AsExpected", "no failed rollout")


class _Unread(enum.Enum):
    UNREAD = "unread"


# The canary pods' counters were not read (yet): a plan that needs them says so.
UNREAD = _Unread.UNREAD


@dataclass(frozen=True)
class Traffic:
    """Requests the scraped pods answered, and how many of them failed (HTTP 5xx)."""

    requests: float
    errors: float
    pods: int

    @property
    def error_rate(self) -> float:
        """Failed share of requests (0 without requests)."""
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class RolloutInputs:
    """What a rollout decision reads. `traffic`: the canary pods' summed counters, None when
    none could be read, UNREAD when not read."""

    spec: ModelDeploymentSpec
    status: Mapping[str, Any]
    target: Target
    stable: Mapping[str, Any] | None
    canary: Mapping[str, Any] | None
    now: datetime.datetime
    traffic: Traffic | _Unread | None = UNREAD


@dataclass(frozen=True)
class RolloutPlan:
    """What one reconcile serves: the stable version and size (`stable_replicas` None: the
    HPA decides), status.canary to write (None: no rollout) and the canary's size,
    `keep_canary` (leave the canary Deployment as it is: a promotion in progress), the
    Progressing and Degraded conditions, status.failedRollout, the Events to post.
    `needs_traffic`: nothing else holds; read the canary's counters and plan again."""

    stable_version: str
    stable_uri: str
    stable_replicas: int | None
    canary: dict[str, Any] | None = None
    canary_replicas: int = 0
    keep_canary: bool = False
    progressing: Condition = (False, "Complete", "")
    degraded: Condition = _NO_FAILURE
    failed_rollout: Mapping[str, Any] | None = None
    events: tuple[EventIntent, ...] = ()
    needs_traffic: bool = False


@dataclass(frozen=True)
class Analysis:
    """A canary step's analysis: whether the step may move on, the verdict in words, and the
    rollback (reason, message) when the canary failed it."""

    allow: bool
    verdict: str
    failure: tuple[str, str] | None = None


def spec_hash(spec: ModelDeploymentSpec) -> str:
    """The spec minus scaling: a change of it retries a rolled-back version. Fields at their
    defaults are left out, so a field added to the API does not retry every rolled-back version
    after an upgrade."""
    dumped = spec.model_dump(
        mode="json", by_alias=True, exclude={"replicas", "autoscaling"}, exclude_defaults=True
    )
    return hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()[:16]


def analyse(analysis: CanaryAnalysis, traffic: Traffic | None) -> Analysis:
    """The step's verdict from the canary's counters (None: none of its pods could be read)."""
    if traffic is None:
        if analysis.min_requests > 0:
            # The spec asks for evidence; unreadable metrics give none: hold, never guess.
            return Analysis(
                False,
                f"serving metrics unreachable: holding until the canary's "
                f"{analysis.min_requests} request(s) can be counted",
            )
        return Analysis(True, "serving metrics unreachable: steps advance on readiness only")
    need = max(analysis.min_requests, 1)
    if traffic.requests < need:
        verdict = f"canary served {traffic.requests:g} of {need} request(s) needed"
        return Analysis(analysis.min_requests == 0, verdict)
    over = f"{traffic.error_rate:.2%} over {traffic.requests:g} requests"
    if traffic.error_rate > analysis.max_error_rate:
        message = f"canary error rate {over} exceeds maxErrorRate {analysis.max_error_rate:.2%}"
        return Analysis(True, "", ("ErrorRateTooHigh", message))
    return Analysis(
        True, f"canary error rate {over} is within maxErrorRate {analysis.max_error_rate:.2%}"
    )


def plan_rollout(inputs: RolloutInputs) -> RolloutPlan:
    """Decide versions and sizes from the observed children and status.canary."""
    spec, status, target, stable = inputs.spec, inputs.status, inputs.target, inputs.stable
    full: int | None = None if spec.autoscaling is not None else spec.replicas
    if stable is None:
        # First deploy (or the stable Deployment was deleted): serve what status says was
        # serving, else the target; a different target then rolls out as usual.
        version = status.get("modelVersion") or target.version
        uri = status.get("modelUri") or target.uri
        if version == target.version:
            uri = target.uri
        stable_version, stable_uri = str(version), str(uri)
    else:
        stable_version, stable_uri = str(served_version(stable)), str(served_uri(stable))

    canary_spec = spec.rollout.canary
    if spec.rollout.strategy != "Canary" or canary_spec is None:
        return _rolling(target, stable, stable_version, full)
    if stable_version == target.version:
        return _settle(inputs, full)
    failed = status.get("failedRollout") or {}
    if failed.get("version") == target.version and failed.get("specHash") == spec_hash(spec):
        why = _rolled_back(target.version, str(failed.get("message")))
        return RolloutPlan(
            stable_version,
            stable_uri,
            full,
            degraded=(True, str(failed.get("reason")), why),
            progressing=(False, "RolledBack", f"version {stable_version} keeps serving"),
            failed_rollout=status.get("failedRollout"),
        )
    return _canary_step(inputs, canary_spec, stable_version, stable_uri)


def _rolling(
    target: Target, stable: Mapping[str, Any] | None, stable_version: str, full: int | None
) -> RolloutPlan:
    """RollingUpdate: the stable Deployment takes the target in place (maxUnavailable 0)."""
    if stable_version == target.version and rolled_out(stable):
        done = (False, "Complete", f"version {target.version} is rolled out")
        return RolloutPlan(target.version, target.uri, full, progressing=done)
    stuck = deadline_exceeded(stable)
    if stuck and stable_version == target.version:
        why = f"version {target.version} does not become ready; the old pods keep serving: {stuck}"
        return RolloutPlan(
            target.version,
            target.uri,
            full,
            progressing=(False, "ProgressDeadlineExceeded", stuck),
            degraded=(True, "ProgressDeadlineExceeded", why),
        )
    message = f"rolling update to version {target.version} (maxUnavailable 0)"
    return RolloutPlan(
        target.version, target.uri, full, progressing=(True, "RollingUpdate", message)
    )


def _rolled_back(version: str, why: str) -> str:
    """The Degraded message of a rolled-back version: the same from the rollback on, so a
    resync that finds nothing new writes nothing new."""
    return (
        f"version {version} was rolled back: {why.rstrip('.')}; it is retried when the spec "
        "changes or another version is resolved"
    )


def _settle(inputs: RolloutInputs, full: int | None) -> RolloutPlan:
    """The stable Deployment has the target: finish a promotion, else nothing to roll out."""
    target, stable, canary_dep = inputs.target, inputs.stable, inputs.canary
    plan = RolloutPlan(target.version, target.uri, full)
    state = inputs.status.get("canary")
    if canary_dep is not None and not rolled_out(stable):
        # Promotion: the canary keeps serving until the stable pods all run the new version.
        promoting = (
            True,
            "Promoting",
            f"stable Deployment rolling to version {target.version}; the canary goes after",
        )
        canary = state or {
            "version": served_version(canary_dep),
            "uri": served_uri(canary_dep),
            "trafficPercent": 100,
            "stepPercent": 100,
            "step": 0,
        }
        return replace(plan, canary=dict(canary), keep_canary=True, progressing=promoting)
    events: tuple[EventIntent, ...] = ()
    if state and state.get("version") == target.version:
        events = (EventIntent("Promoted", f"version {target.version} serves all traffic"),)
    if rolled_out(stable):
        progressing = (False, "Complete", f"version {target.version} is rolled out")
    else:
        progressing = (True, "Creating", f"version {target.version}: pods are starting")
    return replace(plan, progressing=progressing, events=events)


def _stable_pods(spec: ModelDeploymentSpec, stable: Mapping[str, Any] | None) -> int:
    """The stable pods a canary is sized beside: spec.replicas, or with an HPA the count it
    set (minReplicas until the Deployment exists)."""
    auto = spec.autoscaling
    if auto is None:
        return spec.replicas
    if stable is None:
        return auto.min_replicas
    return int(stable["spec"].get("replicas", auto.min_replicas))


def _served(split: CanarySplit) -> str:
    return f"{split.share}% served by {split.canary} canary beside {split.stable} stable pod(s)"


def _elapsed(since: str | None, now: datetime.datetime) -> float:
    if not since:
        return float("inf")
    started = datetime.datetime.strptime(since, TIME_FORMAT).replace(tzinfo=datetime.UTC)
    return (now - started).total_seconds()


def _canary_step(
    inputs: RolloutInputs, canary_spec: CanarySpec, stable_version: str, stable_uri: str
) -> RolloutPlan:
    """A canary of the target: start, hold, step, promote at 100, or roll back."""
    spec, target, canary_dep = inputs.spec, inputs.target, inputs.canary
    stamp = inputs.now.strftime(TIME_FORMAT)
    steps = canary_spec.steps
    most = stable_replica_counts(spec)[-1]
    stable_pods = _stable_pods(spec, inputs.stable)
    # The stable Deployment keeps its replicas (the HPA's with autoscaling): pods are added.
    stable_replicas = None if spec.autoscaling is not None else spec.replicas
    events: list[EventIntent] = []

    def split(index: int) -> CanarySplit | None:
        """Pods for a step before the last (which promotes instead)."""
        return split_step(stable_pods, steps[index], most) if steps[index] < 100 else None

    state = inputs.status.get("canary")
    if not state or state.get("version") != target.version:
        state = {"version": target.version, "uri": target.uri, "step": 0, "stepStartedAt": stamp}
        first = split(0)
        served = f" ({_served(first)})" if first else ""
        events.append(
            EventIntent("CanaryStarted", f"version {target.version}: {steps[0]}% step{served}")
        )
    step = min(int(state.get("step") or 0), len(steps) - 1)
    ours = canary_dep is not None and served_version(canary_dep) == target.version

    # Failure checks first: a stuck canary or too many errors roll back at once.
    stuck = deadline_exceeded(canary_dep) if ours else None
    if stuck:
        never = f"the canary pods never became ready: {stuck}"
        analysis = Analysis(True, "", ("ProgressDeadlineExceeded", never))
    elif ours:
        if inputs.traffic is UNREAD:
            return RolloutPlan(stable_version, stable_uri, stable_replicas, needs_traffic=True)
        analysis = analyse(canary_spec.analysis, inputs.traffic)
    else:
        analysis = Analysis(True, "serving metrics unreachable: steps advance on readiness only")
    if analysis.failure is not None:
        reason, message = analysis.failure
        failed = {
            "version": target.version,
            "reason": reason,
            "message": message,
            "specHash": spec_hash(spec),
            "failedAt": stamp,
        }
        events.append(
            EventIntent(
                "RolledBack", f"version {target.version} rolled back: {message}", warning=True
            )
        )
        return RolloutPlan(
            stable_version,
            stable_uri,
            stable_replicas,
            degraded=(True, reason, _rolled_back(target.version, message)),
            progressing=(False, "RolledBack", f"version {stable_version} keeps serving"),
            failed_rollout=failed,
            events=tuple(events),
        )

    # Move on once this step's canary is rolled out and ready, long enough, and allowed.
    verdict = analysis.verdict
    current = split(step)
    wanted = current.canary if current else 0
    ready = ours and rolled_out(canary_dep) and count(canary_dep, "readyReplicas") >= wanted
    if (
        ready
        and analysis.allow
        and step < len(steps) - 1
        and _elapsed(state.get("stepStartedAt"), inputs.now) >= canary_spec.step_seconds
    ):
        step += 1
        current = split(step)
        state = {**state, "step": step, "stepStartedAt": stamp}
        served = f", {_served(current)}" if current else ""
        events.append(
            EventIntent(
                "CanaryStep",
                f"version {target.version}: step {step + 1}/{len(steps)}, {steps[step]}% step"
                f"{served} ({verdict})",
            )
        )
    percent = steps[step]
    # What the canary really gets (its share of pods), beside what the spec declared.
    state = {**state, "stepPercent": percent, "trafficPercent": current.share if current else 100}
    plan = RolloutPlan(
        stable_version, stable_uri, stable_replicas, canary=state, events=tuple(events)
    )
    if current is None:
        # Promote: the stable Deployment takes the new version (zero downtime); _settle
        # removes the canary once the stable pods are all new.
        promoting = (True, "Promoting", f"version {target.version}: promoting ({verdict})")
        return replace(
            plan,
            stable_version=target.version,
            stable_uri=str(state["uri"]),
            keep_canary=True,
            progressing=promoting,
        )
    ready_pods = count(canary_dep, "readyReplicas") if ours else 0
    progressing = (
        True,
        "Canary",
        f"version {target.version}: step {step + 1}/{len(steps)}, {percent}% step, "
        f"{_served(current)}; {ready_pods}/{current.canary} canary pod(s) ready; {verdict}",
    )
    return replace(plan, canary_replicas=current.canary, progressing=progressing)
