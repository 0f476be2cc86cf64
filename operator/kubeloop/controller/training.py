"""TrainingPipeline: start runs (create, spec change, manual, schedule, drift, new data), record
finished runs from their Jobs, apply the promotion gate, move the champion.

Level-triggered: every entry point (create/update/resume, a timer, any change of an owned Job)
calls `reconcile(namespace, name)`, which reads the pipeline and its Jobs fresh, under the
pipeline's lock. The run counter and every handled trigger live in `status`; a run id is
allocated in status *before* its Job is created, and Job names are deterministic, so a restart
at any point neither duplicates a Job nor loses or double-counts a run.

New data (spec.dataTrigger): a data-watch CronJob lists the data and leaves its fingerprint in
its pod's termination message (the operator holds no storage credentials); the newest finished
check is kept in `status.dataCheck`. A fingerprint that differs from the data the latest run
trained on (`lastRunDataFingerprint`) and from the one last acted on
(`handledDataFingerprint`, written with the run's allocation) starts one NewData run.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from kubeloop.api.parse import SpecError, parse_resource
from kubeloop.api.training import (
    RunProgress,
    TrainingPipeline,
    TrainingPipelineSpec,
)
from kubeloop.controller import adoption, clock, search
from kubeloop.controller.kube import Refused
from kubeloop.controller.promotions import (
    PROMOTE_ANNOTATION,
    allocate,
    approving,
    awaiting_approval,
    enqueue,
    reconcile_registry,
    run_verdict,
)
from kubeloop.controller.reconciling import apply_observed, job_result, reconcile_object
from kubeloop.controller.run_progress import read_progress
from kubeloop.controller.runtime import runtime
from kubeloop.controller.status import (
    CHILD_REFUSED,
    RUNS,
    child_refused,
    events_posted,
    invalid_spec,
    job_outcome,
    newest_finished,
    now,
    owned_by,
    pod_blocked,
    post_event,
    set_condition,
    snapshot,
)
from kubeloop.controller.status_write import write_status
from kubeloop.controller.watch_events import on_event
from kubeloop.decide.events import ready_event
from kubeloop.decide.gate import gate
from kubeloop.decide.triggers import RunInputs, allocation, decide_run, pending
from kubeloop.resources.common import Owner
from kubeloop.resources.datawatch import (
    DATAWATCH_LABEL,
    build_data_watch_cronjob,
    data_watch_name,
)
from kubeloop.resources.registry import REGISTRY_LABEL, with_registry_read
from kubeloop.resources.training import (
    KUEUE_QUEUE_LABEL,
    RUN_ID_LABEL,
    TRIAL_LABEL,
    TRIGGER_ANNOTATION,
    build_headless_service,
    build_training_job,
    job_name,
)

__all__ = [
    "data_check",
    "pipeline_phase",
    "progress_update",
    "reconcile",
    "recorded_up_to",
    "run_state",
    "runs_to_record",
    "stale_progress",
    "waiting_for",
]

KIND = "TrainingPipeline"
PIPELINE_LABEL = "kubeloop.io/trainingpipeline"
# Level-triggered safety net and cron resolution; read at import because kopf takes the
# interval at registration.
RESYNC_SECONDS = float(os.environ.get("KUBELOOP_RESYNC_SECONDS", "30"))


def recorded_up_to(status: Mapping[str, Any]) -> int:
    """The highest run id already recorded (the watermark).

    Runs are allocated and recorded in order, so one number says which Jobs were recorded,
    however few runs `status.runs` keeps. Without it (a status written before it existed, or
    lost) the newest run still listed stands in; with no runs either, every finished Job is
    recorded once, in order.
    """
    mark = status.get("lastRecordedRunId")
    if mark is not None:
        return int(mark)
    return max((int(r["id"]) for r in status.get("runs") or []), default=0)


def runs_to_record(
    watermark: int, last_run_id: int, outcomes: Mapping[int, str | None]
) -> list[int]:
    """The run ids to record now, ascending: the finished ones above the watermark.

    `outcomes` maps the run id of each Job seen to its outcome (None: still running). A run
    still going holds back the ones after it, so the watermark only ever passes recorded runs;
    Jobs above `last_run_id` are not ours to record (a status lost with its counter).
    """
    todo: list[int] = []
    for run_id in sorted(i for i in outcomes if watermark < i <= last_run_id):
        if outcomes[run_id] is None:
            break
        todo.append(run_id)
    return todo


def data_check(
    job: Mapping[str, Any], outcome: str, result: Mapping[str, Any] | None
) -> dict[str, Any]:
    """status.dataCheck from a finished data-watch Job and its pod's DataFingerprint result:
    the fingerprint only when the check succeeded, else why it failed."""
    # Every key, None where absent: status is merge-patched, and a failed check must not keep
    # the previous check's fingerprint.
    check: dict[str, Any] = {
        "job": job["metadata"]["name"],
        "checkedAt": (job.get("status") or {}).get("completionTime") or now(),
        "fingerprint": None,
        "files": None,
        "bytes": None,
        "message": None,
    }
    result = result or {}
    found = result.get("fingerprint")
    if outcome == "Complete" and result.get("ok") and isinstance(found, str) and found:
        files, size = result.get("files"), result.get("bytes")
        check.update(
            fingerprint=found[:128],
            files=files if isinstance(files, int) and files >= 0 else None,
            bytes=size if isinstance(size, int) and size >= 0 else None,
        )
    else:
        why = result.get("message") or f"the Job ended {outcome} without a data fingerprint"
        check["message"] = str(why)[:1024]
    return check


def stale_progress(current: Mapping[str, Any]) -> bool:
    """Whether currentRun.progress was reported by another run than the current one."""
    progress = current.get("progress")
    if not isinstance(progress, Mapping) or progress.get("runId") is None:
        return False
    return str(progress["runId"]) != str(current.get("id"))


_PROGRESS_FIELDS = frozenset(f.alias or n for n, f in RunProgress.model_fields.items())


def progress_update(current: Mapping[str, Any] | None, served: Any) -> dict[str, Any] | None:
    """status.currentRun.progress to write from what the run's pod serves, or None: leave it.

    Only the current run's own report counts (`runId` equal to currentRun.id: a pod of a
    finished run may still answer), only in RunProgress's types (fields it does not know are
    dropped, a value out of range drops the report), and only when it changed. Every field is
    given, None where the report has none, so the merge patch drops the previous report's.
    """
    if current is None or not isinstance(served, Mapping) or served.get("runId") is None:
        return None
    if str(served["runId"]) != str(current.get("id")):
        return None
    try:
        progress = RunProgress.model_validate(
            {k: v for k, v in served.items() if k in _PROGRESS_FIELDS}
        )
    except ValueError:
        return None
    if progress.to_wire() == current.get("progress"):
        return None
    return progress.model_dump(by_alias=True, mode="json")


def waiting_for(trigger: str | None, generation: int | None, run_id: str) -> str | None:
    """What waits for the run in progress to end, in a sentence (None: nothing)."""
    if trigger is None:
        return None
    what = {
        "SpecChange": f"generation {generation}",
        "Manual": "a manual run request",
        "Drift": "a retrain request",
        "Degraded": "a retrain request (performance degraded)",
        "Schedule": "a scheduled run",
        "NewData": "new training data",
    }.get(trigger, f"a {trigger} run")
    return f"{what} waits for run {run_id} to finish"


def run_state(
    current: Mapping[str, Any] | None, job: Mapping[str, Any] | None, waiting: str | None
) -> tuple[str | None, tuple[bool, str, str]]:
    """(phase, Running condition) of the run in progress; phase None when none is in progress.

    A Job created suspended (Kueue holds it until it admits the workload) is Queued, not
    training: the run is in progress (Running stays True, so Argo CD and kstatus readers keep
    seeing it progress) with reason Queued. What waits for the run to end is said in the same
    message.
    """
    if current is None:
        return None, (False, "Idle", "no run in progress")
    run_id = current["id"]
    if job is not None and (job.get("spec") or {}).get("suspend") is True:
        queue = (job["metadata"].get("labels") or {}).get(KUEUE_QUEUE_LABEL)
        by = f" (Kueue queue {queue})" if queue else ""
        phase, running = (
            "Queued",
            (
                True,
                "Queued",
                f"run {run_id} is queued: Job {current['job']} is suspended until it is "
                f"admitted{by}",
            ),
        )
    elif (current.get("search") or {}).get("finished") is False:
        trials = current["search"].get("progress", "")
        phase, running = (
            "Running",
            (True, "Searching", f"run {run_id} is searching: trials {trials}"),
        )
    else:
        phase, running = "Running", (True, "RunInProgress", f"run {run_id} is training")
    if waiting:
        running = (running[0], running[1], f"{running[2]}; {waiting}")
    return phase, running


def pipeline_phase(status: Mapping[str, Any], job: Mapping[str, Any] | None) -> str:
    """The summary phase of what `status` holds (`job`: the current run's Job, if seen).

    Every status write carries it, the intermediate ones too (an allocation written before the
    Job or registry Job it names): a reader never sees a recorded run under phase Running.
    """
    run_phase, _ = run_state(status.get("currentRun"), job, None)
    if run_phase is not None:
        return run_phase
    if awaiting_approval(status):
        return "AwaitingApproval"
    runs = status.get("runs") or []
    if not runs:
        return "Pending"
    return "Failed" if runs[0]["result"] == "Failed" else "Succeeded"


def _run_of(job: Mapping[str, Any]) -> dict[str, Any]:
    """The run a Job of ours was started for (its status entry may be gone)."""
    meta = job["metadata"]
    return {
        "id": meta["labels"][RUN_ID_LABEL],
        "job": meta["name"],
        "trigger": (meta.get("annotations") or {}).get(TRIGGER_ANNOTATION, "Manual"),
        "startedAt": (job.get("status") or {}).get("startTime") or meta.get("creationTimestamp"),
    }


def _record(
    spec: TrainingPipelineSpec,
    status: dict[str, Any],
    body: dict[str, Any],
    *,
    run: Mapping[str, Any],
    result: Mapping[str, Any] | None,
    failure: str,
    finished_at: str | None = None,
    event: bool = True,
) -> None:
    """Add a finished run to status (newest first, bounded), move the watermark and the champion.

    `result` is the TrainingResult of the run's pod; `failure` says why the run failed when it
    has none. `event` False: the caller has posted the Warning Event of this failure already.
    """
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    record: dict[str, Any] = {
        "id": str(run["id"]),
        "job": run["job"],
        "trigger": run.get("trigger", "Manual"),
        "startedAt": run.get("startedAt") or now(),
        "finishedAt": finished_at or now(),
    }
    searched = run.get("search")
    if isinstance(searched, Mapping):
        # Kept short: a finished run's trials are in its version's manifest.
        record["search"] = {k: v for k, v in searched.items() if k != "trials"}
    if result is None or not result.get("ok"):
        why = (result or {}).get("message") or (result or {}).get("reason")
        record.update(result="Failed", message=str(why or failure))
        reason = (result or {}).get("reason")
        if isinstance(reason, str) and re.fullmatch(r"[A-Z][A-Za-z0-9]{0,63}", reason):
            record["reason"] = reason  # e.g. DataValidationFailed: the Succeeded reason
        if event:
            post_event(body, "RunFailed", f"run {run['id']}: {record['message']}", warning=True)
    else:
        metrics = {k: float(v) for k, v in (result.get("metrics") or {}).items()}
        record.update(
            modelVersion=str(result.get("version")), uri=result.get("uri"), metrics=metrics
        )
        trained = result.get("dataFingerprint")
        if isinstance(trained, str) and trained:
            record["dataFingerprint"] = status["lastRunDataFingerprint"] = trained[:128]
        record.update(_champion_scores(result))
        passed, message = gate(approving(spec), result, status.get("champion"))
        verdict, message = run_verdict(
            spec, passed, message, body["metadata"]["name"], record["modelVersion"]
        )
        record.update(result=verdict, message=message)
        if verdict == "Promoted":
            score = metrics.get(spec.promotion.metric) if spec.promotion else None
            status["champion"] = {
                "version": record["modelVersion"],
                "uri": record["uri"],
                "metrics": metrics,
                "score": score,
                "runId": record["id"],
                "promotedAt": now(),
            }
            # The registry's champion alias follows, in decision order (a registry Job).
            enqueue(
                status,
                body["metadata"]["name"],
                "Gate",
                record["modelVersion"],
                by="gate",
                reason=message,
            )
        post_event(body, verdict, f"version {record['modelVersion']}: {message}")
    limit = spec.run_policy.history_limit
    status["runs"] = [record, *(status.get("runs") or [])][:limit]
    status["lastRecordedRunId"] = max(int(record["id"]), recorded_up_to(status))
    RUNS.labels(namespace=namespace, pipeline=name, result=record["result"]).inc()


def _champion_scores(result: Mapping[str, Any]) -> dict[str, Any]:
    """The run record's championVersion and championMetrics (the champion scored on this
    run's validation rows), when the run scored it."""
    out: dict[str, Any] = {}
    if result.get("championVersion") is not None:
        out["championVersion"] = str(result["championVersion"])
    scored = result.get("championMetrics")
    if isinstance(scored, Mapping):
        out["championMetrics"] = {k: float(v) for k, v in scored.items()}
    return out


def _record_job(
    spec: TrainingPipelineSpec,
    status: dict[str, Any],
    body: dict[str, Any],
    *,
    run: Mapping[str, Any],
    job: Mapping[str, Any],
    outcome: str,
) -> None:
    """Record the run of a finished Job, from the result its pod left."""
    _record(
        spec,
        status,
        body,
        run=run,
        result=job_result(job, {PIPELINE_LABEL: body["metadata"]["name"]}, "TrainingResult"),
        failure=f"the Job ended {outcome} without a training result",
        finished_at=(job.get("status") or {}).get("completionTime"),
    )


def _watch_data(spec: TrainingPipelineSpec, status: dict[str, Any], body: dict[str, Any]) -> None:
    """Keep the data-watch CronJob in line with spec.dataTrigger, and fold its newest finished
    check into status.dataCheck (once per Job)."""
    api = runtime.api
    owner = Owner.of(body)
    name = data_watch_name(owner.name)
    if spec.data_trigger is None:
        # A removed trigger's CronJob goes; status.dataCheck says that one was made.
        if status.get("dataCheck") is not None:
            api.delete("CronJob", owner.namespace, name)
            status["dataCheck"] = None
        return
    apply_observed(build_data_watch_cronjob(owner, spec, defaults=runtime.config.workloads))
    last = status.get("dataCheck") or {}
    if last.get("cronJob") != name:
        status["dataCheck"] = {**last, "cronJob": name}
    newest = newest_finished(api.list("Job", owner.namespace, {DATAWATCH_LABEL: owner.name}))
    if newest is None or newest[0]["metadata"]["name"] == last.get("job"):
        return
    job, outcome = newest
    result = job_result(job, {DATAWATCH_LABEL: owner.name}, "DataFingerprint")
    check = data_check(job, outcome, result)
    status["dataCheck"] = check = {"cronJob": name, **check}
    if check["message"]:
        post_event(
            body, "DataCheckFailed", f"check {check['job']}: {check['message']}", warning=True
        )


def _ensure_children(
    owner: Owner,
    spec: TrainingPipelineSpec,
    run: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Create the run's Job (and what it needs); returns the Job. Raises `Refused`.

    After a search (spec.search) the Job trains its winner: the finished search goes with it."""
    api = runtime.api
    run_id = int(run["id"])
    if spec.distributed.workers > 1:
        api.apply(build_headless_service(owner, spec, run_id))
    job = build_training_job(
        owner,
        spec,
        run_id=run_id,
        trigger=run["trigger"],
        generation=run.get("generation"),
        defaults=runtime.config.workloads,
        champion=champion,
        search=search.winning_search(spec, run),
    )
    if run.get("readsRegistry"):
        job = with_registry_read(job, owner, spec, run_id=run_id, defaults=runtime.config.workloads)
    return api.apply(job)


def _start(
    spec: TrainingPipelineSpec,
    status: dict[str, Any],
    body: dict[str, Any],
    run: dict[str, Any],
    conditions: list[dict[str, Any]],
) -> dict[str, Any] | None:
    """Create the Job of an allocated run; returns it, or None when the API server refused a
    child: that run is then recorded as Failed (it never started) and the pipeline is Stalled
    until a later run's Job is accepted; no request is repeated for it."""
    try:
        return _ensure_children(Owner.of(body), spec, run, status.get("champion"))
    except Refused as refused:
        posted = child_refused(body, conditions, refused)
        _record(spec, status, body, run=run, result=None, failure=refused.summary, event=not posted)
        status["currentRun"] = None
        return None


def _advance_run(
    spec: TrainingPipelineSpec,
    status: dict[str, Any],
    body: dict[str, Any],
    conditions: list[dict[str, Any]],
    persist: Callable[[], None],
) -> tuple[dict[str, Any] | None, bool]:
    """Move the current run (allocated, its Job not seen) on: its search while that goes on,
    then its Job. Returns (the Job, if created; whether the API server refused it)."""
    run = status["currentRun"]
    if search.searching(spec, run):
        selector = {PIPELINE_LABEL: body["metadata"]["name"]}
        done = search.advance(spec, status, body, selector, persist)
        if done is None:
            return None, False  # trials still to run
        run = status["currentRun"]
        if done.record is None:
            failure = done.failure or "the search failed"
            _record(spec, status, body, run=run, result=None, failure=failure, event=False)
            status["currentRun"] = None
            return None, False
    job = _start(spec, status, body, run, conditions)
    if job is not None and not _ours(job, body):
        return None, False  # an earlier pipeline's Job holds the name: wait until it is gone
    return job, job is None


def _ours(job: Mapping[str, Any], body: Mapping[str, Any]) -> bool:
    return owned_by(job, body["metadata"].get("uid"))


def _job_pods(namespace: str, name: str, run: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The pods of the Job of the run in progress (or of the registry read): why it cannot
    start, and its live progress, are read from them. None listed without such a Job. While
    the run searches, the pods of its trial Jobs (a trial that cannot start stalls it)."""
    if not run or "job" not in run:
        return []
    if (run.get("search") or {}).get("finished") is False:
        return runtime.api.list("Pod", namespace, {PIPELINE_LABEL: name, RUN_ID_LABEL: run["id"]})
    owner = REGISTRY_LABEL if "action" in run else PIPELINE_LABEL  # the registry read's pod
    return runtime.api.list("Pod", namespace, {"job-name": run["job"], owner: name})


def reconcile(namespace: str, name: str, *, full: bool = False) -> None:
    """Bring one pipeline's runs and status up to date with its Jobs and triggers.

    `full` lists all of the pipeline's Jobs (to record any a lost status never saw); otherwise
    only the current run's Job is read, which keeps a burst of events cheap. Resume and the
    resync timer reconcile fully.
    """
    reconcile_object(KIND, namespace, name, lambda ns, n: _reconcile(ns, n, full))


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
            write_status(KIND, namespace, name, status, {**status, **invalid})
        return
    assert isinstance(model, TrainingPipeline)
    spec = model.spec
    before = snapshot(status)

    def persist() -> None:
        """Write what status gained so far (an allocation, before the child it names)."""
        nonlocal before
        summarize(None)
        if status != before:
            write_status(KIND, namespace, name, before, status)
            before = snapshot(status)

    conditions: list[dict[str, Any]] = status.get("conditions") or []
    started = refused = False  # a Job accepted / a child refused in this pass
    posted = events_posted()  # an Event of this pass says why Ready moved

    def summarize(trigger: str | None, pods: list[dict[str, Any]] | None = None) -> None:
        """Phase and conditions of what status holds now (an Event on each transition); every
        write carries them, the intermediate ones too: a reader never sees a recorded run or a
        moved champion under the summary of before. `trigger`: what waits for the run; `pods`:
        those of the Job it watches, when listed already."""
        current = status.get("currentRun")
        waiting = waiting_for(trigger, generation, current["id"]) if current else None
        job = jobs.get(int(current["id"])) if current else None
        _, running = run_state(current, job, waiting)
        runs = status.get("runs") or []
        champion = status.get("champion")
        last = runs[0] if runs else None
        phase = pipeline_phase(status, job)
        awaiting = awaiting_approval(status)
        approve = (
            f"version {awaiting} passed the gate and awaits approval: `kubectl annotate tp {name} "
            f"{PROMOTE_ANNOTATION}={awaiting}`"
        )
        set_condition(conditions, "Running", *running, generation)
        reconciling = (current is not None, running[1], running[2])
        set_condition(conditions, "Reconciling", *reconciling, generation)
        stalled = {c["type"]: c for c in conditions}.get("Stalled") or {}
        # Before the first run the registry read's pod may be the one that cannot start (the
        # storage Secret missing): no run starts until it ran, so it is said the same way.
        reading_op = adoption.reading_op(status)
        if pods is None:
            pods = _job_pods(namespace, name, current or reading_op)
        blocked = pod_blocked(pods)
        if blocked:
            job_of_read = (reading_op or {}).get("job")
            what = f"run {current['id']}" if current else f"the registry read (Job {job_of_read})"
            blocked = f"{what}: {blocked}"
            if set_condition(conditions, "Stalled", True, "RunBlocked", blocked, generation):
                post_event(body, "RunBlocked", blocked, warning=True)
        # A refused child keeps the pipeline Stalled until a later run's Job is accepted.
        elif not refused and (started or stalled.get("reason") != CHILD_REFUSED):
            set_condition(
                conditions, "Stalled", False, "SpecValid", "the spec is valid", generation
            )
        if last is not None:
            ok = last["result"] != "Failed"
            set_condition(
                conditions,
                "Succeeded",
                ok,
                last.get("reason") or f"Run{last['result']}",
                f"run {last['id']}: {last.get('message', '')}",
                generation,
            )
        reading = adoption.waiting(status)
        if champion:
            ready, reason, msg = (
                True,
                adoption.ready_reason(status),
                f"version {champion['version']} is the champion",
            )
            if awaiting:
                msg = f"{msg}; {approve}"
        elif awaiting:
            ready, reason, msg = False, "AwaitingApproval", f"no champion yet: {approve}"
        elif spec.suspend:
            ready, reason, msg = False, "Suspended", "spec.suspend is true: no run starts"
        elif reading is not None:
            ready, (reason, msg) = False, reading
        elif last is not None:
            outcome = "failed" if last["result"] == "Failed" else "was not promoted"
            ready, reason = False, "NotPromoted"
            msg = f"no champion: run {last['id']} {outcome}: {last.get('message', '')}"
        else:
            ready, reason, msg = False, "NoChampion", "no run has been promoted yet"
        first = not any(c["type"] == "Ready" for c in conditions)
        changed = set_condition(conditions, "Ready", ready, reason, msg, generation)
        if ready_event(first=first, changed=changed, explained=events_posted() > posted):
            post_event(body, reason, msg)
        status.update(conditions=conditions, phase=phase, observedGeneration=generation)

    current = status.get("currentRun")
    if current is not None and "id" not in current:
        # Only a late progress report of a run already recorded: nothing is running.
        status["currentRun"] = current = None
    if current is not None and stale_progress(current):
        status["currentRun"] = current = {**current, "progress": None}
    watermark = recorded_up_to(status)
    if current is not None and int(current["id"]) <= watermark:
        status["currentRun"] = current = None  # recorded already
    # Runs between the watermark and the current one can only be Jobs a lost status forgot.
    if full or (current is not None and int(current["id"]) > watermark + 1):
        listed = api.list("Job", namespace, {PIPELINE_LABEL: name})
        # A search's trial Jobs carry their run's id too; controller/search.py reads them.
        listed = [j for j in listed if TRIAL_LABEL not in j["metadata"]["labels"]]
    else:
        within = {PIPELINE_LABEL: name}
        found = api.get("Job", namespace, current["job"], within=within) if current else None
        listed = [found] if current and found else []
    # A Job of a run id another object owns (a pipeline of this name deleted, its Jobs not yet
    # collected, whose run 1 a re-created pipeline's run 1 meets) is never ours to record: its
    # run waits until the garbage collector removes it (that deletion reconciles again).
    jobs = {int(j["metadata"]["labels"][RUN_ID_LABEL]): j for j in listed if _ours(j, body)}
    held = {int(j["metadata"]["labels"][RUN_ID_LABEL]) for j in listed if not _ours(j, body)}

    # 1. finished runs, in order, each once; the current run's Job missing -> (re)create it.
    outcomes = {run_id: job_outcome(job) for run_id, job in jobs.items()}
    last_run_id = int(status.get("lastRunId") or 0)
    for run_id in runs_to_record(watermark, last_run_id, outcomes):
        mine = current is not None and int(current["id"]) == run_id
        run = current if mine and current is not None else _run_of(jobs[run_id])
        if mine and run.get("readsRegistry"):
            # Its Job read the registry first: adopt what it found, or record the run as any.
            read = job_result(jobs[run_id], {PIPELINE_LABEL: name}, "RegistryResult")
            adopter = adoption.Adopter.of(spec, generation)
            settled = adoption.settle_read(status, run, read, adopter, now=clock.now())
            stands, reason, message, warning = settled
            post_event(body, reason, message, warning=warning)
            if not stands:
                current = None  # withdrawn: adopted, or read again after a backoff
                continue
        _record_job(spec, status, body, run=run, job=jobs[run_id], outcome=str(outcomes[run_id]))
        if mine:
            status["currentRun"] = current = None
    if current is not None and int(current["id"]) not in jobs and int(current["id"]) not in held:
        # Allocated before a crash (or the Job was deleted while running): (re)create it
        # under its deterministic name, so the run resumes instead of being lost. A run with
        # spec.search runs its trials first.
        job, refused = _advance_run(spec, status, body, conditions, persist)
        started = job is not None
        if job is not None:
            jobs[int(current["id"])] = job
        current = status.get("currentRun")

    # 2. before the first run, what the registry holds (a pipeline of this name deleted and
    # created again adopts its champion and run numbering; controller/adoption.py): the result
    # of a read queued in a registry Job.
    if adoption.inspect_pending(status):
        reconcile_registry(spec, status, body, conditions, persist)

    # 3. start a run when a trigger is pending and none is running.
    _watch_data(spec, status, body)
    annotations = body["metadata"].get("annotations") or {}
    inputs = RunInputs(
        spec=spec,
        status=status,
        annotations=annotations,
        generation=generation,
        created=body["metadata"]["creationTimestamp"],
        now=clock.now(),
        first_run=adoption.first_run(status),
        idle=not status.get("currentRun")
        and not adoption.holds_runs(status, clock.now(), foldable=spec.search is None),
    )
    decision = decide_run(inputs)
    trigger = decision.waiting
    if decision.tick:
        status["lastScheduleTime"] = decision.tick
    for event in decision.events:
        post_event(body, event.reason, event.message, warning=event.warning)
    if decision.start is None and adoption.inspect_due(status, clock.now()):
        # No run to carry the read (suspended, a search first): a registry Job reads it.
        allocate(status, name, adoption.inspect_op(f"{namespace}/{name}"))
    if decision.start is not None:
        run_id = int(status.get("lastRunId") or 0) + 1
        run = {
            "id": str(run_id),
            "job": job_name(name, run_id),
            "trigger": decision.start,
            "generation": generation,
            "startedAt": now(),
            # A merge patch over the previous run's entry: its progress must not carry over.
            "progress": None,
        }
        if adoption.inspect_pending(status):
            adoption.fold_read(status, run)  # the first run's Job reads the registry first
        status.update(
            lastRunId=run_id,
            currentRun=run,
            **allocation(spec, status, annotations, generation),
        )
        # Allocate in status first: after a crash the run is resumed, never started twice.
        persist()
        job, refused = _advance_run(spec, status, body, conditions, persist)
        if job is not None:
            started = True
            jobs[run_id] = job
            post_event(body, "RunStarted", f"run {run_id} ({decision.start}): Job {run['job']}")
        elif search.searching(spec, status.get("currentRun")):
            post_event(body, "RunStarted", f"run {run_id} ({decision.start}): search first")
        # What still waits, now that the run is allocated and its triggers handled.
        after = replace(inputs, status=status, first_run=adoption.first_run(status))
        trigger, _ = pending(after)

    # 4. alias writes: approvals, rollbacks and the gate's promotions reach the registry.
    reconcile_registry(spec, status, body, conditions, persist)

    # 5. the run's live progress, read from its pod (which has no API access to write it).
    current = status.get("currentRun")
    pods = _job_pods(namespace, name, current or adoption.reading_op(status))
    if current is not None and not search.searching(spec, current):
        progress = progress_update(current, read_progress(pods))
        if progress is not None:
            status["currentRun"] = {**current, "progress": progress}

    # 6. the summary (again: a registry result may have moved the champion).
    summarize(trigger, pods)
    if status != before:
        write_status(KIND, namespace, name, before, status)


# --- kopf wiring: thin ----------------------------------------------------------------------


def _signature(meta: Mapping[str, Any]) -> tuple[Any, str]:
    """What of a pipeline's event asks for a reconcile: its generation (spec) and annotations
    (manual runs, approvals); the operator's own status writes change neither."""
    annotations = meta.get("annotations") or {}
    return meta.get("generation"), json.dumps(annotations, sort_keys=True)


async def _reconcile_in_worker(namespace: str, name: str, *, full: bool = False) -> None:
    """`reconcile` on kopf's thread pool (it blocks on API calls). The listeners below are
    async and decide on the loop whether an event needs one: most do not (the pipeline's own
    status writes, a Job just created, a pod's progress), and those then cost no thread hop
    behind reconciles already queued on the pool."""
    call = functools.partial(reconcile, namespace, name, full=full)
    await asyncio.get_running_loop().run_in_executor(runtime.executor, call)


@on_event(KIND)
async def on_pipeline_event(
    *, type: str | None, namespace: str | None, name: str, body: Mapping[str, Any], **_: Any
) -> None:
    """A new pipeline (or one seen first after a start: fully, as a resume), a spec change or
    an annotation: reconcile. No kopf change handler: those keep their diff base in an
    annotation (a PATCH per change) and a timer puts a finalizer on every pipeline."""
    key = (KIND, namespace or "", name)
    if type == "DELETED":
        runtime.seen.pop(key, None)
        return
    signature = _signature(body.get("metadata") or {})
    seen = runtime.seen.get(key)
    if seen == signature:
        return
    await _reconcile_in_worker(key[1], name, full=seen is None)
    runtime.seen[key] = signature


def pipelines() -> list[tuple[str, str]]:
    """(namespace, name) of every pipeline the watch cache holds: what a resync goes over."""
    return runtime.api.cache.names(KIND)


def resync(namespace: str, name: str) -> None:
    """The level-triggered safety net (controller/resync.py): a full reconcile."""
    reconcile(namespace, name, full=True)


@on_event("Job", PIPELINE_LABEL)
async def on_job_event(
    *,
    type: str,
    namespace: str | None,
    labels: Mapping[str, str],
    body: Mapping[str, Any],
    **_: Any,
) -> None:
    # Only a finished or vanished Job changes anything for the pipeline, and a Job under Kueue
    # whose admission (spec.suspend turning false) moves the run from Queued to Running; the
    # ADDED event of any other Job we just created and its progress updates would only cost a
    # reconcile each.
    if type == "DELETED" or job_outcome(body) or KUEUE_QUEUE_LABEL in labels:
        await _reconcile_in_worker(namespace or "", labels[PIPELINE_LABEL])


@on_event("Job", DATAWATCH_LABEL)
async def on_data_watch_job_event(
    *,
    type: str,
    namespace: str | None,
    labels: Mapping[str, str],
    body: Mapping[str, Any],
    **_: Any,
) -> None:
    # A data check's fingerprint exists only once its Job has finished.
    if job_outcome(body):
        await _reconcile_in_worker(namespace or "", labels[DATAWATCH_LABEL])


@on_event("Job", REGISTRY_LABEL)
async def on_registry_job_event(
    *,
    type: str,
    namespace: str | None,
    labels: Mapping[str, str],
    body: Mapping[str, Any],
    **_: Any,
) -> None:
    # Only a finished or vanished registry Job moves the pipeline's queue on.
    if type == "DELETED" or job_outcome(body):
        await _reconcile_in_worker(namespace or "", labels[REGISTRY_LABEL])


# Whether each run pod was blocked when last seen: a pod's other updates need no reconcile.
_BLOCKED: dict[tuple[str, str], bool] = {}


@on_event("Pod", PIPELINE_LABEL)
async def on_pod_event(
    *,
    type: str,
    namespace: str | None,
    name: str,
    labels: Mapping[str, str],
    body: Mapping[str, Any],
    **_: Any,
) -> None:
    # A pod that cannot start (missing Secret, bad image) never finishes its Job, so no Job
    # event would tell: the pod's own events surface it (and its recovery) at once.
    key = (namespace or "", name)
    blocked = type != "DELETED" and pod_blocked([dict(body)]) is not None
    if _BLOCKED.get(key, False) != blocked:
        await _reconcile_in_worker(namespace or "", labels[PIPELINE_LABEL])
    if type == "DELETED":
        _BLOCKED.pop(key, None)
    else:
        _BLOCKED[key] = blocked
