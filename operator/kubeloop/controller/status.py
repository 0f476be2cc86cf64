"""Conditions by the Kubernetes API conventions, results from termination messages, metrics."""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

import kopf
from prometheus_client import Counter, Histogram

from kubeloop.controller import clock
from kubeloop.controller.kube import Refused
from kubeloop.resources.training import USER_CONTAINER

__all__ = [
    "CHILD_REFUSED",
    "DRIFT_CHECKS",
    "RECONCILES",
    "RECONCILE_SECONDS",
    "RUNS",
    "child_refused",
    "invalid_spec",
    "job_outcome",
    "newest_finished",
    "now",
    "pod_blocked",
    "pod_result",
    "post_event",
    "set_condition",
    "snapshot",
    "user_code_failure",
]

log = logging.getLogger("kubeloop.operator")
CHILD_REFUSED = "ChildRefused"
# Every series carries the object's namespace: a team's alert or panel selects its own, and
# objects are named within a namespace (a series keyed by name alone would add up two
# same-named objects of different namespaces).
RECONCILES = Counter(
    "kubeloop_reconcile_total",
    "Reconciles by namespace, kind and result.",
    ["namespace", "kind", "result"],
)
RECONCILE_SECONDS = Histogram(
    "kubeloop_reconcile_duration_seconds",
    "Reconcile duration by namespace and kind.",
    ["namespace", "kind"],
)
RUNS = Counter(
    "kubeloop_training_runs_total",
    "Finished training runs, by pipeline and result.",
    ["namespace", "pipeline", "result"],
)
DRIFT_CHECKS = Counter(
    "kubeloop_drift_checks_total",
    "Drift checks whose result the operator recorded, by monitor and verdict.",
    ["namespace", "monitor", "verdict"],
)


def now() -> str:
    """RFC 3339 UTC, second precision (what the API server stores)."""
    return clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(  # noqa: PLR0917 (positional by design: called as one line everywhere)
    conditions: list[dict[str, Any]],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    generation: int | None,
) -> bool:
    """Set a condition in place; lastTransitionTime moves only when the status flips.

    Returns True when the status or the reason changed (a transition worth an Event).
    """
    value = "True" if status else "False"
    for cond in conditions:
        if cond["type"] == type_:
            flipped = bool(cond["status"] != value)
            changed = flipped or cond.get("reason") != reason
            if flipped:
                cond["lastTransitionTime"] = now()
            cond.update(status=value, reason=reason, message=message[:1024])
            cond["observedGeneration"] = generation
            return changed
    conditions.append(
        {
            "type": type_,
            "status": value,
            "reason": reason,
            "message": message[:1024],
            "lastTransitionTime": now(),
            "observedGeneration": generation,
        }
    )
    return True


def job_outcome(job: Mapping[str, Any]) -> str | None:
    """'Complete' or 'Failed' once the Job controller says so, else None."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return str(cond["type"])
    return None


def newest_finished(jobs: list[dict[str, Any]]) -> tuple[dict[str, Any], str] | None:
    """The most recently created finished Job of a CronJob's, with its outcome (None: none
    has finished)."""
    finished = [(j, o) for j in jobs if (o := job_outcome(j))]
    if not finished:
        return None
    return max(
        finished,
        key=lambda jo: (
            jo[0]["metadata"].get("creationTimestamp") or "",
            jo[0]["metadata"]["name"],
        ),
    )


def pod_result(pods: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    """The JSON result a workload wrote to its termination message, from the Job's pods.

    Pod 0 of an Indexed Job (rank 0 writes) is preferred; otherwise the newest pod with one.
    A custom training pod (docs/byo.md) also has init containers: Kubeloop's `prepare` writes
    a result when it fails; when the user's code fails, nothing of Kubeloop runs after it, so
    its exit code and last words make the result (`UserCodeFailed`).
    """

    def index(pod: dict[str, Any]) -> str:
        annotations = pod.get("metadata", {}).get("annotations") or {}
        return str(annotations.get("batch.kubernetes.io/job-completion-index", "0"))

    newest_first = sorted(
        pods, key=lambda p: p.get("metadata", {}).get("creationTimestamp") or "", reverse=True
    )
    ordered = sorted(newest_first, key=lambda p: index(p) != "0")
    for pod in ordered:
        status = pod.get("status", {})
        for container in [
            *(status.get("containerStatuses") or []),
            *(status.get("initContainerStatuses") or []),
        ]:
            message = ((container.get("state") or {}).get("terminated") or {}).get("message")
            if not message:
                continue
            try:
                result = json.loads(message)
            except ValueError:
                continue  # FallbackToLogsOnError: the log tail, not a result
            if isinstance(result, dict) and result.get("kind") == kind:
                return result
    for pod in ordered:
        failed = user_code_failure(pod)
        if failed is not None:
            return {"kind": kind, "ok": False, "reason": "UserCodeFailed", "message": failed}
    return None


_TAIL = 600


def user_code_failure(pod: Mapping[str, Any]) -> str | None:
    """How the user's code (the `trainer` init container) ended, when it failed."""
    for container in (pod.get("status") or {}).get("initContainerStatuses") or []:
        if container.get("name") != USER_CONTAINER:
            continue
        terminated = (container.get("state") or {}).get("terminated") or {}
        code = terminated.get("exitCode")
        if code in (None, 0):
            return None
        why = terminated.get("reason") or "Error"
        tail = str(terminated.get("message") or "").strip()[-_TAIL:]
        signal = f" (signal {code - 128})" if isinstance(code, int) and code > 128 else ""
        return f"your training code exited with code {code}{signal} ({why})" + (
            f"; its last output: {tail}" if tail else ""
        )
    return None


# Container waiting reasons that waiting does not cure: a missing Secret/ConfigMap (or key), a
# container the runtime refuses, an image that cannot be pulled. ContainerCreating and
# PodInitializing are on their way; a pod that cannot be scheduled may get a node later.
_BLOCKED_REASONS = frozenset(
    {
        "CreateContainerConfigError",
        "CreateContainerError",
        "ErrImageNeverPull",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
    }
)


def pod_blocked(pods: list[dict[str, Any]]) -> str | None:
    """Why a Job's pod cannot start, as the kubelet says it (first pod by name), else None.

    A Job whose pod waits on a missing Secret never finishes: without this, its run would
    show as in progress forever.
    """
    for pod in sorted(pods, key=lambda p: str(p.get("metadata", {}).get("name", ""))):
        status = pod.get("status") or {}
        containers = [*(status.get("initContainerStatuses") or [])]
        containers += status.get("containerStatuses") or []
        for container in containers:
            waiting = (container.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason in _BLOCKED_REASONS:
                why = f": {waiting['message']}" if waiting.get("message") else ""
                return f"pod {pod['metadata']['name']} cannot start: {reason}{why}"
    return None


def post_event(
    body: Mapping[str, Any], reason: str, message: str, *, warning: bool = False
) -> None:
    """An Event on the object (queued by kopf; only from inside a handler), and the same line
    in the operator's log (a warning for a Warning Event), so the log tells what happened to
    which object without `kubectl get events`.

    Messages are built from our own status and the workloads' results, never from Secrets.
    """
    obj = kopf.Body(cast(Any, body))
    kopf.event(obj, type="Warning" if warning else "Normal", reason=reason, message=message[:1024])
    meta = body.get("metadata") or {}
    log.log(
        logging.WARNING if warning else logging.INFO,
        "%s %s/%s: %s: %s",
        body.get("kind", "object"),
        meta.get("namespace"),
        meta.get("name"),
        reason,
        message,
        # Fields of the line for `--log-format json` (the text format shows them in the line).
        extra={
            "object": {
                "kind": body.get("kind"),
                "namespace": meta.get("namespace"),
                "name": meta.get("name"),
            },
            "reason": reason,
        },
    )


def snapshot(status: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy to diff against later (conditions are mutated in place)."""
    return copy.deepcopy(dict(status))


def invalid_spec(
    body: Mapping[str, Any], status: Mapping[str, Any], messages: list[str]
) -> dict[str, Any]:
    """The status patch of a spec that cannot run: Ready=False/InvalidSpec, Stalled=True.

    The Event goes out once per transition, so an invalid object is not a retry storm.
    """
    generation = body["metadata"].get("generation")
    conditions = copy.deepcopy(list(status.get("conditions") or []))
    message = "; ".join(messages)
    changed = set_condition(conditions, "Ready", False, "InvalidSpec", message, generation)
    set_condition(conditions, "Stalled", True, "InvalidSpec", message, generation)
    if changed:
        post_event(body, "InvalidSpec", message, warning=True)
    return {"conditions": conditions, "observedGeneration": generation}


def child_refused(
    body: Mapping[str, Any], conditions: list[dict[str, Any]], error: Refused
) -> bool:
    """Stalled=True, reason ChildRefused, with the API server's sentence (it names the field).

    A Warning Event goes out when the condition turns to ChildRefused, not on every refusal
    seen again; returns whether it did.
    """
    generation = body["metadata"].get("generation")
    message = error.summary
    unnamed = [f for f in error.fields if f not in error.message]
    if unnamed:
        message += f" (field {', '.join(unnamed)})"
    changed = set_condition(conditions, "Stalled", True, CHILD_REFUSED, message, generation)
    if changed:
        post_event(body, CHILD_REFUSED, message, warning=True)
    return changed


def measured(kind: str, namespace: str, reconcile: Callable[[], None]) -> None:
    """Run one reconcile, counted by result and timed (`kubeloop_reconcile_*` metrics)."""
    start = time.monotonic()
    result = "ok"
    try:
        reconcile()
    except Exception:
        result = "error"
        raise
    finally:
        RECONCILES.labels(namespace=namespace, kind=kind, result=result).inc()
        RECONCILE_SECONDS.labels(namespace=namespace, kind=kind).observe(time.monotonic() - start)


def owned_by(child: Mapping[str, Any], uid: str | None) -> bool:
    """Whether `child` is the object `uid`'s (a deleted pipeline's Job, or a deleted Job's pod,
    may outlive its owner a while: the garbage collector removes it shortly)."""
    owners = child.get("metadata", {}).get("ownerReferences") or []
    return uid is None or not owners or any(o.get("uid") == uid for o in owners)
