"""How every reconcile runs: counted and timed, coalesced per object, and a child the API
server refused reported on its owner instead of raised.

A refusal (400/403/422, `kube.Refused`) cannot be retried away: kopf's retries would only
repeat it, and a permanent error would leave the object with nothing to read. So the owner
gets Stalled=True/ChildRefused naming the refused field, one Warning Event and a log line,
and the next resync tries again, which `Kube` holds back while the same body's backoff lasts.
The controller's next complete pass sets Stalled back to False.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from kubeloop.controller.kube import Refused
from kubeloop.controller.runtime import runtime
from kubeloop.controller.status import child_refused, measured, owned_by, pod_result
from kubeloop.controller.status_write import write_status

__all__ = ["apply_observed", "job_result", "reconcile_object", "report_refused"]


def reconcile_object(
    kind: str, namespace: str, name: str, reconcile: Callable[[str, str], None]
) -> None:
    """Run `reconcile(namespace, name)` the way every controller runs its reconciles."""

    def guarded() -> None:
        try:
            reconcile(namespace, name)
        except Refused as error:
            report_refused(kind, namespace, name, error)
        finally:
            runtime.passes[kind, namespace, name] += 1

    measured(kind, namespace, lambda: runtime.coalesce(kind, namespace, name, guarded))


def report_refused(kind: str, namespace: str, name: str, error: Refused) -> None:
    """Write Stalled=True/ChildRefused on the owner (only when that changes anything)."""
    api = runtime.api
    body = api.get(kind, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return
    before = list((body.get("status") or {}).get("conditions") or [])
    conditions = copy.deepcopy(before)
    child_refused(body, conditions, error)
    if conditions != before:
        status = body.get("status") or {}
        write_status(kind, namespace, name, status, {**status, "conditions": conditions})


def job_result(
    job: Mapping[str, Any], owner: Mapping[str, str], kind: str
) -> dict[str, Any] | None:
    """The result of `kind` (`status.pod_result`) that the pods of the finished `job` left;
    `owner`: the owner label its pods carry (`{PIPELINE_LABEL: name}`), the cache's slice.

    From the cache first; read fresh when the cache has no result yet: Pods are watched apart
    from Jobs, so a Job's Complete may arrive before its pod's last state. Pods of an earlier
    Job of that name (not collected yet) do not count."""
    meta = job["metadata"]
    labels = {"job-name": meta["name"], **owner}
    uid = meta.get("uid")
    for fresh in (False, True):
        pods = runtime.api.list("Pod", meta["namespace"], labels, fresh=fresh)
        found = pod_result([p for p in pods if owned_by(p, uid)], kind)
        if found is not None:
            return found
    return None


def apply_observed(manifest: dict[str, Any]) -> str:
    """Read a long-lived child (a CronJob) and apply `manifest` to it (`Kube.apply`, which
    sends nothing when it already holds the manifest); returns what happened, for an Event:
    created, updated or unchanged."""
    api = runtime.api
    meta = manifest["metadata"]
    # From the cache when it watches the slice of the child's owner label.
    observed = api.get(manifest["kind"], meta["namespace"], meta["name"], within=meta["labels"])
    stored = api.apply(manifest, observed)
    if observed is None:
        return "created"
    version = observed["metadata"].get("resourceVersion")
    return "unchanged" if stored["metadata"].get("resourceVersion") == version else "updated"
