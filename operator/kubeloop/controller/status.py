"""Conditions by the Kubernetes API conventions, results from termination messages, metrics."""

from __future__ import annotations

import datetime
import json
from typing import Any

from prometheus_client import Counter, Histogram

__all__ = [
    "RECONCILES",
    "RECONCILE_SECONDS",
    "RUNS",
    "now",
    "pod_result",
    "set_condition",
]

RECONCILES = Counter(
    "kubeloop_reconcile_total", "Reconciles by kind and result.", ["kind", "result"]
)
RECONCILE_SECONDS = Histogram(
    "kubeloop_reconcile_duration_seconds", "Reconcile duration by kind.", ["kind"]
)
RUNS = Counter("kubeloop_training_runs_total", "Finished training runs.", ["pipeline", "result"])


def now() -> str:
    """RFC 3339 UTC, second precision (what the API server stores)."""
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    generation: int | None,
) -> bool:
    """Set a condition in place; lastTransitionTime moves only when the status flips.

    Returns True when the status changed (a transition worth an Event).
    """
    value = "True" if status else "False"
    for cond in conditions:
        if cond["type"] == type_:
            changed = bool(cond["status"] != value)
            if changed:
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


def pod_result(pods: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    """The JSON result a workload wrote to its termination message, from the Job's pods.

    Pod 0 of an Indexed Job (rank 0 writes) is preferred; otherwise the newest pod with one.
    """

    def index(pod: dict[str, Any]) -> str:
        annotations = pod.get("metadata", {}).get("annotations") or {}
        return str(annotations.get("batch.kubernetes.io/job-completion-index", "0"))

    newest_first = sorted(
        pods, key=lambda p: p.get("metadata", {}).get("creationTimestamp") or "", reverse=True
    )
    ordered = sorted(newest_first, key=lambda p: index(p) != "0")
    for pod in ordered:
        for status in pod.get("status", {}).get("containerStatuses") or []:
            message = (status.get("state", {}).get("terminated") or {}).get("message")
            if not message:
                continue
            try:
                result = json.loads(message)
            except ValueError:
                continue  # FallbackToLogsOnError: the log tail, not a result
            if isinstance(result, dict) and result.get("kind") == kind:
                return result
    return None
