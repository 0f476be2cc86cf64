"""DriftMonitor: keep its CronJob in line with the deployment it watches, read each check's
verdict from the Job's pod, record it in status, and request at most one retrain per episode.

Level-triggered like the pipeline: every entry point (create/update/resume, a timer, a change of
a Job the CronJob spawned, a change of the watched ModelDeployment) calls
`reconcile(namespace, name)`, which reads everything fresh under the monitor's lock.

Drift episodes: a run of Drift verdicts is one episode. The first Drift check of an episode
(with `onDrift.retrain`) sets the pipeline's `kubeloop.io/retrain-requested-at` annotation to
`<creation time of the Job that found it> <monitor>/<job>`, then records that time in
`status.retrainRequestedAt`; a NoDrift verdict ends the episode (the field is cleared). The
value is a function of the Job, so a restart between the two writes repeats the same value and
the pipeline (which acts once per distinct value) still starts one run.

Data quality (spec.quality) is a verdict of its own: status.quality and the QualityIssue
condition. It never asks for a retrain; a broken feed holds a drift retrain of the same window.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import kopf
from pydantic import ValidationError

from kubeloop.api.common import SecretReference
from kubeloop.api.deployment import ModelDeployment
from kubeloop.api.monitor import (
    DriftMonitor,
    DriftMonitorSpec,
    FeatureDrift,
    KSReferenceStatus,
    PerformanceStatus,
    PredictionDriftStatus,
)
from kubeloop.api.parse import SpecError, parse_resource
from kubeloop.api.training import TrainingPipeline
from kubeloop.controller.pushgateway import delete_group
from kubeloop.controller.reconciling import apply_observed, job_result, reconcile_object
from kubeloop.controller.runtime import runtime
from kubeloop.controller.status import (
    DRIFT_CHECKS,
    invalid_spec,
    job_outcome,
    newest_finished,
    now,
    post_event,
    set_condition,
    snapshot,
)
from kubeloop.controller.status_write import write_status
from kubeloop.controller.training import RESYNC_SECONDS
from kubeloop.controller.watch_events import on_event
from kubeloop.decide.performance import DEGRADED_CAUSE, as_episode
from kubeloop.decide.quality import holds_retrain, quality_condition, recorded_quality
from kubeloop.decide.retrain import RetrainDecision, retrain_episode
from kubeloop.decide.triggers import RETRAIN_ANNOTATION, RETRAIN_REASON_ANNOTATION
from kubeloop.resources.common import Owner
from kubeloop.resources.monitoring import build_monitor_cronjob, reference_uri

__all__ = ["MAX_FEATURES", "MONITOR_LABEL", "reconcile"]

KIND = "DriftMonitor"
MONITOR_LABEL = "kubeloop.io/driftmonitor"
# status.features is bounded: an object must stay far below etcd's 1.5 MiB whatever the model.
MAX_FEATURES = 64
_VERDICTS = ("Drift", "NoDrift", "NoData")


class NotReadyError(Exception):
    """The monitor cannot be scheduled yet; reason (CamelCase) and a message that says why.

    `stalled`: only a person can fix it (a missing or misconfigured reference), as opposed to
    waiting for the pipeline to produce a model.
    """

    def __init__(self, reason: str, message: str, *, stalled: bool = True) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.stalled = stalled


@dataclass(frozen=True)
class Target:
    """What the CronJob needs from the watched deployment."""

    payload_log_uri: str
    model_version: str
    model_uri: str
    storage_secret: SecretReference | None
    pipeline: str | None


def _parse(obj: dict[str, Any], kind: str, name: str) -> Any:
    try:
        return parse_resource(obj)
    except SpecError as error:
        raise NotReadyError(
            f"{kind}Invalid", f"{kind} {name} has an invalid spec: {'; '.join(error.messages)}"
        ) from error


def _resolve(namespace: str, spec: DriftMonitorSpec) -> Target:
    """The deployment's payload logs, served version and credentials (or NotReadyError)."""
    api = runtime.api
    ref = spec.deployment_ref.name
    body = api.get("ModelDeployment", namespace, ref)
    if body is None:
        raise NotReadyError(
            "DeploymentNotFound",
            f"spec.deploymentRef.name: ModelDeployment {ref!r} does not exist in namespace "
            f"{namespace}; create it or fix the name",
        )
    md = _parse(body, "ModelDeployment", ref)
    assert isinstance(md, ModelDeployment)
    logging = md.spec.payload_logging
    if logging is None or not logging.enabled or not logging.destination:
        raise NotReadyError(
            "PayloadLoggingDisabled",
            f"ModelDeployment {ref!r} does not log its traffic: set its "
            "spec.payloadLogging.enabled: true and spec.payloadLogging.destination",
        )
    pipeline_ref = md.spec.model.pipeline_ref
    pipeline = None
    if pipeline_ref is not None:
        found = api.get("TrainingPipeline", namespace, pipeline_ref.name)
        if found is not None:
            parsed = _parse(found, "TrainingPipeline", pipeline_ref.name)
            assert isinstance(parsed, TrainingPipeline)
            pipeline = (found, parsed)
    served = body.get("status") or {}
    version, uri = served.get("modelVersion"), served.get("modelUri")
    if not (version and uri) and md.spec.model.uri:
        uri = str(md.spec.model.uri)
        version = uri.rstrip("/").rsplit("/", 1)[-1]
    if not (version and uri) and pipeline is not None:
        champion = (pipeline[0].get("status") or {}).get("champion") or {}
        version, uri = champion.get("version"), champion.get("uri")
    if not (version and uri):
        raise NotReadyError(
            "WaitingForModel",
            f"ModelDeployment {ref!r} serves no model version yet (its pipeline has no champion)",
            stalled=False,
        )
    secret = md.spec.storage_secret_ref
    if secret is None and pipeline is not None:
        secret = pipeline[1].spec.storage_secret_ref
    return Target(
        payload_log_uri=str(logging.destination),
        model_version=str(version),
        model_uri=str(uri),
        storage_secret=secret,
        pipeline=pipeline_ref.name if pipeline_ref is not None else None,
    )


def _ensure_cronjob(owner: Owner, spec: DriftMonitorSpec, target: Target) -> str:
    """Apply the CronJob; returns what happened: created, updated or unchanged."""
    reference = reference_uri(spec, target.model_uri)
    assert reference is not None  # the served URI is resolved before we get here
    desired = build_monitor_cronjob(
        owner,
        spec,
        payload_log_uri=target.payload_log_uri,
        reference=reference,
        model_version=target.model_version,
        defaults=runtime.config.workloads,
        storage_secret=target.storage_secret,
    )
    return apply_observed(desired)


def _features(raw: Any) -> tuple[dict[str, Any], int]:
    """Per-feature results, validated and bounded (drifted first, then by name)."""
    if not isinstance(raw, Mapping):
        return {}, 0
    valid: dict[str, dict[str, Any]] = {}
    for feature, value in raw.items():
        try:
            valid[str(feature)[:253]] = FeatureDrift.model_validate(value).to_wire()
        except ValidationError:
            continue  # one malformed entry does not hide the others
    order = sorted(valid, key=lambda f: (not valid[f]["drifted"], f))
    return {f: valid[f] for f in order[:MAX_FEATURES]}, len(valid)


def _ks_reference(raw: Any) -> dict[str, Any] | None:
    """What the check's KS test was computed against, validated (None: not a KS check)."""
    try:
        return KSReferenceStatus.model_validate(raw).to_wire() if raw else None
    except ValidationError:
        return None


def _act_on_episode(
    body: Mapping[str, Any], status: dict[str, Any], decision: RetrainDecision
) -> None:
    """Annotate the pipeline behind the deployment as decided, then remember it in `status`
    (the monitor's status for drift, its `performance` section for degradation)."""
    namespace = body["metadata"]["namespace"]
    for event in decision.events:
        post_event(body, event.reason, event.message, warning=event.warning)
    if decision.clear:
        status["retrainRequestedAt"] = None
    if decision.pipeline is None:
        return
    annotations = {
        RETRAIN_ANNOTATION: decision.request,
        RETRAIN_REASON_ANNOTATION: decision.trigger,
    }
    patch = {"metadata": {"annotations": annotations}}
    if runtime.api.patch("TrainingPipeline", namespace, decision.pipeline, patch) is None:
        post_event(
            body,
            "RetrainUnavailable",
            f"TrainingPipeline {decision.pipeline!r} not found",
            warning=True,
        )
        return
    status["retrainRequestedAt"] = decision.stamp
    post_event(body, "RetrainRequested", f"TrainingPipeline {decision.pipeline}: retrain requested")


def _record(
    body: Mapping[str, Any],
    status: dict[str, Any],
    *,
    spec: DriftMonitorSpec,
    job: dict[str, Any],
    outcome: str,
    target: Target | None,
) -> None:
    """Fold one finished check into status (once: `lastJob` remembers it)."""
    name = body["metadata"]["name"]
    meta = job["metadata"]
    result = job_result(job, {MONITOR_LABEL: name}, "DriftResult")
    finished = (job.get("status") or {}).get("completionTime") or now()
    status.update(lastJob=meta["name"], lastRunTime=finished)
    verdict = (result or {}).get("verdict")
    if outcome != "Complete" or verdict not in _VERDICTS:
        status["verdict"] = "Failed"
        why = (result or {}).get("message") or f"the Job ended {outcome} without a drift result"
        post_event(body, "CheckFailed", f"check {meta['name']}: {why}", warning=True)
        DRIFT_CHECKS.labels(namespace=meta["namespace"], monitor=name, verdict="Failed").inc()
        return
    assert result is not None
    features, total = _features(result.get("features"))
    share = result.get("driftShare")
    rows = result.get("rows")
    status.update(
        verdict=verdict,
        drifted={"Drift": True, "NoDrift": False}.get(verdict),  # NoData: unknown
        driftShare=float(share) if isinstance(share, int | float) else None,
        rows=int(rows) if isinstance(rows, int) and rows >= 0 else None,
        modelVersion=str(result.get("modelVersion") or (target.model_version if target else "")),
        features=features,
        ksReference=_ks_reference(result.get("ksReference")),
        quality=recorded_quality(result.get("quality")),
        reportUri=str(result["reportUri"])[:1024] if result.get("reportUri") else None,
    )
    DRIFT_CHECKS.labels(namespace=meta["namespace"], monitor=name, verdict=verdict).inc()
    shown = f" ({len(features)} of {total} features in status)" if total > len(features) else ""
    post_event(body, "CheckCompleted", f"check {meta['name']}: {verdict}{shown}")
    decision = retrain_episode(
        verdict,
        retrain=spec.on_drift.retrain,
        requested_at=status.get("retrainRequestedAt"),
        pipeline=target.pipeline if target is not None else None,
        monitor=name,
        job=meta["name"],
        job_created=meta.get("creationTimestamp"),
        now=now(),
        broken_feed=holds_retrain(status.get("quality")),
    )
    _act_on_episode(body, status, decision)
    outputs = result.get("predictionDrift")
    try:
        status["predictionDrift"] = (
            PredictionDriftStatus.model_validate(outputs).to_wire() if outputs else None
        )
    except ValidationError:
        status["predictionDrift"] = None
    _record_performance(body, status, spec=spec, result=result, job=meta, target=target)


def _record_performance(
    body: Mapping[str, Any],
    status: dict[str, Any],
    *,
    spec: DriftMonitorSpec,
    result: Mapping[str, Any],
    job: Mapping[str, Any],
    target: Target | None,
) -> None:
    """status.performance from the check's result, and its degradation episode."""
    raw = result.get("performance")
    if spec.performance is None or not isinstance(raw, Mapping):
        status["performance"] = None
        return
    asked = (status.get("performance") or {}).get("retrainRequestedAt")
    try:
        found = PerformanceStatus.model_validate({**raw, "retrainRequestedAt": asked})
    except ValidationError as error:
        found = PerformanceStatus(verdict="Failed", message=f"unreadable result: {error}"[:1024])
    section = found.to_wire()
    decision = retrain_episode(
        as_episode(found.verdict),
        retrain=spec.performance.on_degraded.retrain,
        requested_at=asked,
        pipeline=target.pipeline if target is not None else None,
        monitor=body["metadata"]["name"],
        job=job["name"],
        job_created=job.get("creationTimestamp"),
        now=now(),
        # a broken feed degrades the model too: no retrain on that data either
        broken_feed=holds_retrain(status.get("quality")),
        cause=DEGRADED_CAUSE,
    )
    _act_on_episode(body, section, decision)
    wire = {k: v for k, v in section.items() if v is not None}
    # a merge patch keeps nested keys it does not name: name the ones that went away
    wire.update({k: None for k in status.get("performance") or {} if k not in wire})
    status["performance"] = wire
    if found.verdict == "Failed":
        post_event(body, "PerformanceCheckFailed", str(found.message), warning=True)


def _performance_condition(
    body: Mapping[str, Any], conditions: list[dict[str, Any]], status: Mapping[str, Any]
) -> None:
    """PerformanceDegraded from the last verdict; InsufficientLabels and Failed keep it."""
    perf = status.get("performance") or {}
    verdict = perf.get("verdict")
    if verdict not in ("Degraded", "OK"):
        return
    degraded = verdict == "Degraded"
    measured = ", ".join(f"{k} {v:g}" for k, v in sorted((perf.get("measured") or {}).items()))
    detail = f"{measured or 'no metric'} on {perf.get('labelledRows', 0)} labelled rows"
    _verdict_condition(
        body,
        conditions,
        ("PerformanceDegraded", degraded),
        reasons=("PerformanceDegraded", "PerformanceOK"),
        events=("PerformanceDegraded", "PerformanceRecovered"),
        message=f"check {status.get('lastJob')}: {verdict}, {detail}",
        detail=detail,
    )


def _verdict_condition(
    body: Mapping[str, Any],
    conditions: list[dict[str, Any]],
    condition: tuple[str, bool],
    *,
    reasons: tuple[str, str],
    events: tuple[str, str],
    message: str,
    detail: str,
) -> None:
    """Set a verdict's condition (`reasons`: when true, when false) and post the Event of its
    transition (`events`: to true, a Warning; back to false)."""
    type_, on = condition
    was = {c["type"]: c["status"] for c in conditions}.get(type_)
    generation = body["metadata"].get("generation")
    set_condition(conditions, type_, on, reasons[0] if on else reasons[1], message, generation)
    if on and was != "True":
        post_event(body, events[0], detail, warning=True)
    elif not on and was == "True":
        post_event(body, events[1], detail)


def reconcile(namespace: str, name: str) -> None:
    """Bring one monitor's CronJob and status up to date."""
    reconcile_object(KIND, namespace, name, _reconcile)


def _reconcile(namespace: str, name: str) -> None:
    api = runtime.api
    body = api.get(KIND, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return
    status: dict[str, Any] = dict(body.get("status") or {})
    before = snapshot(status)
    generation = body["metadata"].get("generation")
    try:
        model = parse_resource(body)
    except SpecError as error:
        invalid = invalid_spec(body, status, error.messages)
        if any(status.get(k) != v for k, v in invalid.items()):
            write_status(KIND, namespace, name, status, {**status, **invalid})
        return
    assert isinstance(model, DriftMonitor)
    spec = model.spec
    owner = Owner.of(body)

    target: Target | None = None
    stalled: NotReadyError | None = None
    try:
        target = _resolve(namespace, spec)
        action = _ensure_cronjob(owner, spec, target)
        ready, reason = True, "Scheduled"
        message = (
            f"CronJob {name} checks {spec.deployment_ref.name} (version {target.model_version}) "
            f"on {spec.schedule!r}"
        )
        if spec.suspend:
            ready, reason, message = False, "Suspended", "spec.suspend is true: no check runs"
            # Its last metrics would alert for as long as it stays suspended.
            delete_group(runtime.config.workloads.pushgateway_url, namespace, name)
        if action != "unchanged":
            post_event(body, f"CronJob{action.capitalize()}", message)
    except NotReadyError as not_ready:
        ready, reason, message = False, not_ready.reason, not_ready.message
        stalled = not_ready if not_ready.stalled else None

    jobs = api.list("Job", namespace, {MONITOR_LABEL: name})
    newest = newest_finished(jobs)
    if newest is not None and newest[0]["metadata"]["name"] != status.get("lastJob"):
        _record(body, status, spec=spec, job=newest[0], outcome=newest[1], target=target)

    conditions: list[dict[str, Any]] = status.get("conditions") or []
    verdict = status.get("verdict")
    if ready and verdict == "Failed":
        ready, reason = False, "CheckFailed"
        message = f"the last check ({status.get('lastJob')}) produced no verdict; see its pod"
    if set_condition(conditions, "Ready", ready, reason, message, generation) and not ready:
        post_event(body, reason, message, warning=reason not in ("Suspended", "WaitingForModel"))
    if stalled is not None:
        set_condition(conditions, "Stalled", True, stalled.reason, stalled.message, generation)
    else:
        set_condition(conditions, "Stalled", False, "SpecValid", "the spec is valid", generation)
    if verdict in ("Drift", "NoDrift"):  # NoData says nothing about drift: keep the condition
        drifted = verdict == "Drift"
        share = status.get("driftShare")
        detail = f"drift share {share:g}" if isinstance(share, float) else "no drift share"
        version = status.get("modelVersion")
        _verdict_condition(
            body,
            conditions,
            ("DriftDetected", drifted),
            reasons=("DriftDetected", "NoDrift"),
            events=("DriftDetected", "DriftResolved"),
            message=f"check {status.get('lastJob')}: {verdict}, {detail}",
            detail=f"{detail} (version {version})",
        )
    _performance_condition(body, conditions, status)
    _set_quality_condition(body, status, conditions, generation)
    status.update(conditions=conditions, observedGeneration=generation)
    if status != before:
        write_status(KIND, namespace, name, before, status)


def _set_quality_condition(
    body: Mapping[str, Any],
    status: dict[str, Any],
    conditions: list[dict[str, Any]],
    generation: int | None,
) -> None:
    """The QualityIssue condition from status.quality, with an Event when it turns."""
    wanted = quality_condition(status.get("quality"), status.get("lastJob"))
    if wanted is None:
        return
    issue, reason, message = wanted
    was = {c["type"]: c["status"] for c in conditions}.get("QualityIssue")
    set_condition(conditions, "QualityIssue", issue, reason, message, generation)
    if issue and was != "True":
        post_event(body, "QualityIssue", message, warning=True)
    elif not issue and was == "True":
        post_event(body, "QualityRestored", message)


# --- kopf wiring: thin ----------------------------------------------------------------------

_GROUP = ("kubeloop.io", "v1alpha1")


def monitors_of(namespace: str, deployment: str) -> list[str]:
    """The monitors (from the watch cache) that watch a deployment, so that its changes (a
    new version) reach them at once."""
    return [
        str(dm["metadata"]["name"])
        for dm in runtime.api.cache.list("DriftMonitor", namespace)
        if ((dm.get("spec") or {}).get("deploymentRef") or {}).get("name") == deployment
    ]


@kopf.on.resume(*_GROUP, "driftmonitors")
@kopf.on.create(*_GROUP, "driftmonitors")
@kopf.on.update(*_GROUP, "driftmonitors", field="spec")
def on_change(*, namespace: str | None, name: str, **_: Any) -> None:
    reconcile(namespace or "", name)


@kopf.on.delete(*_GROUP, "driftmonitors")
def on_delete(*, namespace: str | None, name: str, **_: Any) -> None:
    """A deleted monitor's metrics stop: its Pushgateway group goes (never holds the delete)."""
    delete_group(runtime.config.workloads.pushgateway_url, namespace or "", name)


@kopf.timer(*_GROUP, "driftmonitors", interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)
def on_timer(*, namespace: str | None, name: str, **_: Any) -> None:
    reconcile(namespace or "", name)


@on_event("Job", MONITOR_LABEL)
def on_job_event(
    *,
    type: str,
    namespace: str | None,
    labels: Mapping[str, str],
    body: Mapping[str, Any],
    **_: Any,
) -> None:
    if type == "DELETED" or job_outcome(body):  # a check's verdict exists only then
        reconcile(namespace or "", labels[MONITOR_LABEL])


# What a monitor reads from a deployment, per deployment: its other changes (replica counts,
# canary steps) would otherwise wake every monitor on each status patch.
_SEEN: dict[tuple[str, str], str] = {}


@on_event("ModelDeployment")
def on_deployment_event(
    *, type: str, namespace: str | None, name: str, body: Mapping[str, Any], **_: Any
) -> None:
    key = (namespace or "", name)
    monitors = monitors_of(*key)
    if not monitors:
        return
    spec, status = body.get("spec") or {}, body.get("status") or {}
    seen = json.dumps(
        [
            type == "DELETED",
            status.get("modelVersion"),
            status.get("modelUri"),
            spec.get("model"),
            spec.get("payloadLogging"),
            spec.get("storageSecretRef"),
        ],
        sort_keys=True,
        default=str,
    )
    if _SEEN.get(key) == seen:
        return
    if type == "DELETED":  # forget it: a deployment re-created under the name starts afresh
        _SEEN.pop(key, None)
    else:
        _SEEN[key] = seen
    for monitor in monitors:
        reconcile(key[0], monitor)
