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
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from kubeloop.controller.kube import Refused
from kubeloop.controller.runtime import runtime
from kubeloop.controller.status import child_refused, measured

__all__ = ["SPEC_HASH_ANNOTATION", "ensure_built", "reconcile_object", "report_refused"]

SPEC_HASH_ANNOTATION = "kubeloop.io/spec-hash"


def reconcile_object(
    kind: str, namespace: str, name: str, reconcile: Callable[[str, str], None]
) -> None:
    """Run `reconcile(namespace, name)` the way every controller runs its reconciles."""

    def guarded() -> None:
        try:
            reconcile(namespace, name)
        except Refused as error:
            report_refused(kind, namespace, name, error)

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
        api.patch_status(kind, namespace, name, {"conditions": conditions})


def _spec_hash(manifest: Mapping[str, Any]) -> str:
    text = json.dumps(manifest["spec"], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ensure_built(desired: dict[str, Any]) -> str:
    """Create a long-lived child (a CronJob), or patch it when what we would build changed;
    returns the action: created, updated or unchanged.

    Changes are detected by a hash of the built spec (an annotation), not by comparing with
    the stored object, which the API server fills with defaults.
    """
    api = runtime.api
    meta = desired["metadata"]
    digest = _spec_hash(desired)
    meta.setdefault("annotations", {})[SPEC_HASH_ANNOTATION] = digest
    existing = api.get(desired["kind"], meta["namespace"], meta["name"])
    if existing is None:
        api.create(desired)
        return "created"
    annotations = existing["metadata"].get("annotations") or {}
    if annotations.get(SPEC_HASH_ANNOTATION) == digest:
        return "unchanged"
    patch = {
        "metadata": {"labels": meta["labels"], "annotations": {SPEC_HASH_ANNOTATION: digest}},
        "spec": desired["spec"],
    }
    api.patch(desired["kind"], meta["namespace"], meta["name"], patch)
    return "updated"
