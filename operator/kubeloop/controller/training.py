"""TrainingPipeline: start runs (create, spec change, manual, schedule, drift), record finished
runs from their Jobs, apply the promotion gate, move the champion.

Level-triggered: every entry point (create/update/resume, a timer, any change of an owned Job)
calls `reconcile(namespace, name)`, which reads the pipeline and its Jobs fresh, under the
pipeline's lock. The run counter and every handled trigger live in `status`; a run id is
allocated in status *before* its Job is created, and Job names are deterministic, so a restart
at any point neither duplicates a Job nor loses or double-counts a run.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from typing import Any

import kopf
from croniter import croniter

from kubeloop.api.parse import SpecError, parse_resource
from kubeloop.api.training import HIGHER_IS_BETTER, TrainingPipeline, TrainingPipelineSpec
from kubeloop.controller.runtime import runtime
from kubeloop.controller.status import (
    RUNS,
    changed_fields,
    invalid_spec,
    job_outcome,
    measured,
    now,
    pod_blocked,
    pod_result,
    post_event,
    set_condition,
    snapshot,
)
from kubeloop.resources.common import Owner
from kubeloop.resources.training import (
    RUN_ID_LABEL,
    build_headless_service,
    build_progress_role,
    build_progress_role_binding,
    build_progress_service_account,
    build_training_job,
    job_name,
)

__all__ = ["RETRAIN_ANNOTATION", "RUN_ANNOTATION", "gate", "reconcile"]

KIND = "TrainingPipeline"
RUN_ANNOTATION = "kubeloop.io/run-requested-at"
RETRAIN_ANNOTATION = "kubeloop.io/retrain-requested-at"
PIPELINE_LABEL = "kubeloop.io/trainingpipeline"
# Level-triggered safety net and cron resolution; read at import because kopf takes the
# interval at registration.
RESYNC_SECONDS = float(os.environ.get("KUBELOOP_RESYNC_SECONDS", "30"))


def gate(
    spec: TrainingPipelineSpec, metrics: dict[str, float], champion: dict[str, Any] | None
) -> tuple[bool, str]:
    """Whether a new version may become the champion, and why, in a sentence."""
    promo = spec.promotion
    if promo is None:
        return True, "no promotion gate: every successful run is promoted"
    value = metrics.get(promo.metric)
    if value is None:
        return False, f"the run reported no {promo.metric}"
    if promo.minimum is not None and value < promo.minimum:
        return False, f"{promo.metric} {value:g} is below the minimum {promo.minimum:g}"
    if promo.maximum is not None and value > promo.maximum:
        return False, f"{promo.metric} {value:g} is above the maximum {promo.maximum:g}"
    if promo.must_beat_champion and champion:
        best = champion.get("score")
        if best is None:
            best = (champion.get("metrics") or {}).get(promo.metric)
        if best is not None:
            higher = HIGHER_IS_BETTER[promo.metric]
            if (value <= best) if higher else (value >= best):
                return False, (
                    f"{promo.metric} {value:g} does not beat the champion's {best:g} "
                    f"(version {champion.get('version')})"
                )
    if not promo.auto_promote:
        return False, "the gate passed but spec.promotion.autoPromote is false"
    return True, f"{promo.metric} {value:g} passed the gate"


def _schedule_due(spec: TrainingPipelineSpec, status: dict[str, Any], created: str) -> str | None:
    """The latest cron tick not yet acted on (UTC), or None."""
    if not spec.schedule:
        return None
    since = status.get("lastScheduleTime") or created
    base = datetime.datetime.strptime(since, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    current = datetime.datetime.now(tz=datetime.UTC)
    tick = croniter(spec.schedule, base).get_next(datetime.datetime)
    if tick > current:
        return None
    latest = croniter(spec.schedule, current).get_prev(datetime.datetime)
    return str(latest.strftime("%Y-%m-%dT%H:%M:%SZ"))


def _record(
    spec: TrainingPipelineSpec,
    status: dict[str, Any],
    *,
    run: dict[str, Any],
    job: dict[str, Any] | None,
    outcome: str,
    body: dict[str, Any],
) -> None:
    """Add a finished run to status (newest first, bounded) and move the champion."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    pods = runtime.api.list("Pod", namespace, {"job-name": run["job"]}) if job else []
    result = pod_result(pods, "TrainingResult")
    record: dict[str, Any] = {
        "id": run["id"],
        "job": run["job"],
        "trigger": run.get("trigger", "Manual"),
        "startedAt": run.get("startedAt"),
        "finishedAt": now(),
    }
    if job is None:
        record.update(result="Failed", message="the run's Job disappeared before it finished")
    elif result is None or not result.get("ok"):
        why = (result or {}).get("message") or (result or {}).get("reason")
        record.update(
            result="Failed",
            message=str(why or f"the Job ended {outcome} without a training result"),
        )
    else:
        metrics = {k: float(v) for k, v in (result.get("metrics") or {}).items()}
        record.update(
            modelVersion=str(result.get("version")), uri=result.get("uri"), metrics=metrics
        )
        passed, message = gate(spec, metrics, status.get("champion"))
        record.update(result="Promoted" if passed else "Rejected", message=message)
        if passed:
            score = metrics.get(spec.promotion.metric) if spec.promotion else None
            status["champion"] = {
                "version": record["modelVersion"],
                "uri": record["uri"],
                "metrics": metrics,
                "score": score,
                "runId": run["id"],
                "promotedAt": now(),
            }
            post_event(body, "Promoted", f"version {record['modelVersion']}: {message}")
        else:
            post_event(body, "Rejected", f"version {record['modelVersion']}: {message}")
    if record["result"] == "Failed":
        post_event(body, "RunFailed", f"run {run['id']}: {record['message']}", warning=True)
    limit = spec.run_policy.history_limit
    status["runs"] = [record, *(status.get("runs") or [])][:limit]
    RUNS.labels(namespace=namespace, pipeline=name, result=record["result"]).inc()


def _trigger(
    spec: TrainingPipelineSpec, body: dict[str, Any], status: dict[str, Any]
) -> tuple[str | None, str | None]:
    """The highest-priority pending trigger (one run satisfies all), and a due cron tick."""
    annotations = body["metadata"].get("annotations") or {}
    generation = body["metadata"].get("generation")
    tick = _schedule_due(spec, status, body["metadata"]["creationTimestamp"])
    if not status.get("lastRunId"):
        return "Create", tick
    if status.get("lastRunGeneration") != generation:
        return "SpecChange", tick
    manual = annotations.get(RUN_ANNOTATION)
    if manual and manual != status.get("handledRunRequest"):
        return "Manual", tick
    retrain = annotations.get(RETRAIN_ANNOTATION)
    if retrain and retrain != status.get("handledRetrainRequest"):
        return "Drift", tick
    return ("Schedule" if tick else None), tick


def _ensure_children(owner: Owner, spec: TrainingPipelineSpec, run: dict[str, Any]) -> None:
    api = runtime.api
    if api.get("ServiceAccount", owner.namespace, "kubeloop-trainer") is None:
        api.create(build_progress_service_account(owner.namespace))
    api.create(build_progress_role(owner))
    api.create(build_progress_role_binding(owner))
    run_id = int(run["id"])
    if spec.distributed.workers > 1:
        api.create(build_headless_service(owner, spec, run_id))
    job = build_training_job(
        owner,
        spec,
        run_id=run_id,
        trigger=run["trigger"],
        generation=run.get("generation"),
        defaults=runtime.config.workloads,
    )
    api.create(job)


def _run_blocked(namespace: str, run: dict[str, Any] | None) -> str | None:
    """Why the run in progress cannot start (its Job's pod waits on a missing Secret...)."""
    if not run or "job" not in run:
        return None
    return pod_blocked(runtime.api.list("Pod", namespace, {"job-name": run["job"]}))


def reconcile(namespace: str, name: str, *, full: bool = False) -> None:
    """Bring one pipeline's runs and status up to date with its Jobs and triggers.

    `full` lists all of the pipeline's Jobs (to record any a lost status never saw); otherwise
    only the current run's Job is read, which keeps a burst of events cheap. Resume and the
    resync timer reconcile fully.
    """
    measured(
        KIND,
        lambda: runtime.coalesce(KIND, namespace, name, lambda: _reconcile(namespace, name, full)),
    )


def _reconcile(namespace: str, name: str, full: bool) -> None:
    api = runtime.api
    body = api.get(KIND, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return
    status: dict[str, Any] = dict(body.get("status") or {})
    generation = body["metadata"].get("generation")
    try:
        model = parse_resource(body)
    except SpecError as error:
        # No exception: a spec that cannot run waits for a new generation, not for retries.
        invalid = {**invalid_spec(body, status, error.messages), "phase": "Invalid"}
        if any(status.get(k) != v for k, v in invalid.items()):
            api.patch_status(KIND, namespace, name, invalid)
        return
    assert isinstance(model, TrainingPipeline)
    spec = model.spec
    owner = Owner.of(body)
    before = snapshot(status)

    recorded = {r["id"] for r in status.get("runs") or []}
    current = status.get("currentRun")
    if current is not None and "id" not in current:
        # Only a late progress report of a run already recorded: nothing is running.
        status["currentRun"] = current = None
    if full:
        listed = api.list("Job", namespace, {PIPELINE_LABEL: name})
        jobs = {j["metadata"]["name"]: j for j in listed}
    else:
        found = api.get("Job", namespace, current["job"]) if current else None
        jobs = {found["metadata"]["name"]: found} if found else {}

    # 1. the run in progress: finished -> record it; Job missing -> (re)create it.
    if current and current["id"] not in recorded:
        job = jobs.get(current["job"])
        outcome = job_outcome(job) if job else None
        if job is None:
            # Allocated before a crash (or the Job was deleted while running): (re)create it
            # under its deterministic name, so the run resumes instead of being lost.
            _ensure_children(owner, spec, current)
        elif outcome:
            _record(spec, status, run=current, job=job, outcome=outcome, body=body)
            status["currentRun"] = None
    elif current:
        status["currentRun"] = None
    # Older Jobs of ours never recorded (e.g. status lost): record them in order, once.
    for job_name_, job in sorted(
        jobs.items(), key=lambda kv: int(kv[1]["metadata"]["labels"][RUN_ID_LABEL])
    ):
        run_id = job["metadata"]["labels"][RUN_ID_LABEL]
        active = status.get("currentRun") and status["currentRun"]["id"] == run_id
        if run_id in {r["id"] for r in status.get("runs") or []} or active:
            continue
        outcome = job_outcome(job)
        if outcome and int(run_id) <= int(status.get("lastRunId") or 0):
            annotations = job["metadata"].get("annotations") or {}
            run = {
                "id": run_id,
                "job": job_name_,
                "trigger": annotations.get("kubeloop.io/trigger", "Manual"),
            }
            _record(spec, status, run=run, job=job, outcome=outcome, body=body)

    # 2. start a run when a trigger is pending and none is running.
    trigger, tick = _trigger(spec, body, status)
    if trigger and not status.get("currentRun") and not spec.suspend:
        run_id = int(status.get("lastRunId") or 0) + 1
        run = {
            "id": str(run_id),
            "job": job_name(name, run_id),
            "trigger": trigger,
            "generation": generation,
            "startedAt": now(),
        }
        annotations = body["metadata"].get("annotations") or {}
        status.update(
            lastRunId=run_id,
            currentRun=run,
            lastRunGeneration=generation,
            handledRunRequest=annotations.get(RUN_ANNOTATION),
            handledRetrainRequest=annotations.get(RETRAIN_ANNOTATION),
        )
        if tick:
            status["lastScheduleTime"] = tick
        # Allocate in status first: after a crash the run is resumed, never started twice.
        api.patch_status(KIND, namespace, name, changed_fields(before, status))
        before = snapshot(status)
        _ensure_children(owner, spec, run)
        post_event(body, "RunStarted", f"run {run_id} ({trigger}): Job {run['job']}")

    # 3. summary conditions.
    conditions = status.get("conditions") or []
    running = bool(status.get("currentRun"))
    runs = status.get("runs") or []
    champion = status.get("champion")
    last = runs[0] if runs else None
    if running:
        phase = "Running"
    elif last is None:
        phase = "Pending"
    else:
        phase = "Failed" if last["result"] == "Failed" else "Succeeded"
    run_msg = f"run {status['currentRun']['id']} is training" if running else "no run in progress"
    set_condition(
        conditions, "Running", running, "RunInProgress" if running else "Idle", run_msg, generation
    )
    set_condition(
        conditions,
        "Reconciling",
        running,
        "RunInProgress" if running else "Idle",
        run_msg,
        generation,
    )
    blocked = _run_blocked(namespace, status.get("currentRun"))
    if blocked:
        blocked = f"run {status['currentRun']['id']}: {blocked}"
        if set_condition(conditions, "Stalled", True, "RunBlocked", blocked, generation):
            post_event(body, "RunBlocked", blocked, warning=True)
    else:
        set_condition(conditions, "Stalled", False, "SpecValid", "the spec is valid", generation)
    if last is not None:
        ok = last["result"] != "Failed"
        set_condition(
            conditions,
            "Succeeded",
            ok,
            f"Run{last['result']}",
            f"run {last['id']}: {last.get('message', '')}",
            generation,
        )
    if champion:
        ready, reason, msg = (
            True,
            "ChampionAvailable",
            f"version {champion['version']} is the champion",
        )
    elif spec.suspend:
        ready, reason, msg = False, "Suspended", "spec.suspend is true: no run starts"
    elif last is not None:
        outcome = "failed" if last["result"] == "Failed" else "was not promoted"
        ready, reason = False, "NotPromoted"
        msg = f"no champion: run {last['id']} {outcome}: {last.get('message', '')}"
    else:
        ready, reason, msg = False, "NoChampion", "no run has been promoted yet"
    if set_condition(conditions, "Ready", ready, reason, msg, generation):
        post_event(body, reason, msg)
    status.update(conditions=conditions, phase=phase, observedGeneration=generation)
    if status != before:
        api.patch_status(KIND, namespace, name, changed_fields(before, status))


# --- kopf wiring: thin ----------------------------------------------------------------------


@kopf.on.resume("kubeloop.io", "v1alpha1", "trainingpipelines")
def on_resume(*, namespace: str | None, name: str, **_: Any) -> None:
    reconcile(namespace or "", name, full=True)


@kopf.on.create("kubeloop.io", "v1alpha1", "trainingpipelines")
@kopf.on.update("kubeloop.io", "v1alpha1", "trainingpipelines", field="spec")
@kopf.on.update("kubeloop.io", "v1alpha1", "trainingpipelines", field="metadata.annotations")
def on_change(*, namespace: str | None, name: str, **_: Any) -> None:
    reconcile(namespace or "", name)


@kopf.timer(
    "kubeloop.io",
    "v1alpha1",
    "trainingpipelines",
    interval=RESYNC_SECONDS,
    initial_delay=RESYNC_SECONDS,
)
def on_timer(*, namespace: str | None, name: str, **_: Any) -> None:
    reconcile(namespace or "", name, full=True)


@kopf.on.event("batch", "v1", "jobs", labels={PIPELINE_LABEL: kopf.PRESENT})
def on_job_event(
    *, type: str, namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> None:
    # Only a finished or vanished Job changes anything for the pipeline; the ADDED event of a
    # Job we just created and its progress updates would only cost a reconcile each.
    if type == "DELETED" or job_outcome(body):
        reconcile(namespace or "", labels[PIPELINE_LABEL])


# Whether each run pod was blocked when last seen: a pod's other updates need no reconcile.
_BLOCKED: dict[tuple[str, str], bool] = {}


@kopf.on.event("v1", "pods", labels={PIPELINE_LABEL: kopf.PRESENT})
def on_pod_event(
    *,
    type: str,
    namespace: str | None,
    name: str,
    labels: Mapping[str, str],
    body: kopf.Body,
    **_: Any,
) -> None:
    # A pod that cannot start (missing Secret, bad image) never finishes its Job, so no Job
    # event would tell: the pod's own events surface it (and its recovery) at once.
    key = (namespace or "", name)
    blocked = type != "DELETED" and pod_blocked([dict(body)]) is not None
    if _BLOCKED.get(key, False) != blocked:
        reconcile(namespace or "", labels[PIPELINE_LABEL])
    if type == "DELETED":
        _BLOCKED.pop(key, None)
    else:
        _BLOCKED[key] = blocked
