"""Promotions through the registry: the approval and rollback annotations, the queue of registry
Jobs, and what their results do to a TrainingPipeline's status.

The operator holds no object-store credentials: every alias write it decides runs as a registry
Job (`kubeloop registry promote`, resources/registry.py) whose result comes back in the
termination message. The rules (the training controller's, see its module docstring):

- A write is allocated in `status.registryQueue` (id from `lastRegistryOpId`, Job name
  `<pipeline>-registry-<id>`) and that status is written *before* its Job is created, so a
  restart neither loses nor duplicates one: the head of the queue without a Job gets its Job
  under its deterministic name.
- One registry Job at a time per pipeline: alias writes land in decision order.
- Named aliases (`alias.kubeloop.io/<alias>: "<version>"`, e.g. production) are requested,
  checked and written the same way, with `--alias <alias>`; they never move the champion.
- An annotation value is handled once (`handledPromoteRequest`, `handledRollbackRequest`,
  `handledAliasRequests`).
  What status already shows wrong (not a number, a version this pipeline never recorded, a
  rollback to a version not older than the champion) is refused without a Job; the Job checks
  the rest (the version exists, verifies, belongs to this pipeline).
- The gate's promotion moves `status.champion` at once (its version was just published and
  checksummed by its own run); an approval or rollback moves it when its Job succeeded.
- The queue also carries the read of the registry before a pipeline's first run (action
  Inspect, controller/adoption.py): it comes first, so every alias write lands after it.
- A Job under an op's name that another object owns (an earlier pipeline of this name, deleted
  and not yet collected) is not ours: its result is never read; the op waits until it is gone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from kubeloop.api.training import TrainingPipelineSpec
from kubeloop.controller import adoption, clock
from kubeloop.controller.reconciling import job_result
from kubeloop.controller.runtime import runtime
from kubeloop.controller.status import job_outcome, now, owned_by, post_event, set_condition
from kubeloop.resources.common import Owner
from kubeloop.resources.registry import REGISTRY_LABEL, build_registry_job, registry_job_name

__all__ = [
    "ALIAS_ANNOTATION_PREFIX",
    "CHAMPION",
    "PROMOTE_ANNOTATION",
    "REFUSED",
    "ROLLBACK_ANNOTATION",
    "allocate",
    "apply_result",
    "approving",
    "awaiting_approval",
    "check_alias",
    "check_request",
    "enqueue",
    "known_versions",
    "queue_full",
    "reconcile_registry",
    "run_verdict",
]

PROMOTE_ANNOTATION = "kubeloop.io/promote"
ROLLBACK_ANNOTATION = "kubeloop.io/rollback-to"
ALIAS_ANNOTATION_PREFIX = "alias.kubeloop.io/"
ALIAS = "Alias"  # the action of a named alias's write
CHAMPION = "champion"
REFUSED = "PromotionRefused"  # the condition type
HISTORY_LIMIT = 20  # status.promotions: the registry keeps the whole history
QUEUE_LIMIT = 20
_BY = {
    "Promote": f"annotation {PROMOTE_ANNOTATION}",
    "Rollback": f"annotation {ROLLBACK_ANNOTATION}",
}
_HANDLED = {"Promote": "handledPromoteRequest", "Rollback": "handledRollbackRequest"}
_ANNOTATION = {"Promote": PROMOTE_ANNOTATION, "Rollback": ROLLBACK_ANNOTATION}
# The registry's own rule for alias names (registry._ALIAS).
_ALIAS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _annotation_of(op: Mapping[str, Any]) -> str:
    """The annotation that asked for an alias write (none for the gate's)."""
    if op["action"] == ALIAS:
        return f"{ALIAS_ANNOTATION_PREFIX}{op['alias']}"
    return _ANNOTATION.get(str(op["action"]), "the gate")


# --- decisions (pure) ------------------------------------------------------------------------


def approving(spec: TrainingPipelineSpec) -> TrainingPipelineSpec:
    """The spec the gate judges a run by: with `autoPromote: false` the gate still says whether
    the run passed, and `run_verdict` turns a pass into AwaitingApproval."""
    promo = spec.promotion
    if promo is None or promo.auto_promote:
        return spec
    return spec.model_copy(update={"promotion": promo.model_copy(update={"auto_promote": True})})


def run_verdict(
    spec: TrainingPipelineSpec, passed: bool, message: str, pipeline: str, version: str
) -> tuple[str, str]:
    """(result, message) of a successful run from the gate's verdict on `approving(spec)`."""
    if not passed:
        return "Rejected", message
    if spec.promotion is not None and not spec.promotion.auto_promote:
        return "AwaitingApproval", (
            f"{message}; spec.promotion.autoPromote is false: approve it with "
            f"`kubectl annotate tp {pipeline} {PROMOTE_ANNOTATION}={version}`"
        )
    return "Promoted", message


def awaiting_approval(status: Mapping[str, Any]) -> str | None:
    """The version of the latest run when it waits for approval (not promoted since)."""
    runs = status.get("runs") or []
    if not runs or runs[0].get("result") != "AwaitingApproval":
        return None
    version = str(runs[0].get("modelVersion"))
    if str((status.get("champion") or {}).get("version")) == version:
        return None
    queued = {str(op.get("version")) for op in status.get("registryQueue") or []}
    return None if version in queued else version


def known_versions(status: Mapping[str, Any]) -> set[int]:
    """The versions this pipeline's status shows it made or promoted."""
    found = [r.get("modelVersion") for r in status.get("runs") or []]
    found.append((status.get("champion") or {}).get("version"))
    found += [p.get("version") for p in status.get("promotions") or []]
    found += list((status.get("aliases") or {}).values())
    # Adopted from the registry (a pipeline created again): its newest version stands for the
    # older ones, which left status with the object.
    found.append((status.get("registrySync") or {}).get("latestVersion"))
    return {int(v) for v in found if v is not None and str(v).isdigit()}


def check_request(
    action: str, value: str, status: Mapping[str, Any], annotation: str | None = None
) -> tuple[str, str] | None:
    """Why status alone refuses an annotation's request, as (reason, message); None: ask the
    registry Job (it checks that the version exists, verifies and is this pipeline's).
    `annotation`: the key that asked (a named alias's; the action's own by default)."""
    said = f"{annotation or _ANNOTATION[action]}={value}"
    if not value.isdigit() or int(value) < 1:
        return "InvalidVersion", f"{said}: the value must be a version number, e.g. 3"
    version = int(value)
    champion = (status.get("champion") or {}).get("version")
    known = known_versions(status)
    if action == "Rollback":
        if champion is None:
            return "NoChampion", f"{said}: there is no champion to roll back from"
        if version >= int(champion):
            return "NotOlder", (
                f"{said}: version {version} is not older than the champion, version "
                f"{champion}; {PROMOTE_ANNOTATION} moves the champion forward"
            )
        return None
    if action == "Promote" and champion is not None and version == int(champion):
        return "AlreadyChampion", f"{said}: version {version} is already the champion"
    # Older versions may have left status.runs (historyLimit): those the Job checks.
    if version not in known and version > max(known, default=0):
        listed = ", ".join(str(v) for v in sorted(known)) or "none yet"
        return "VersionNotFound", (
            f"{said}: this pipeline recorded no version {version} (its versions: {listed})"
        )
    return None


def check_alias(key: str, value: str, status: Mapping[str, Any]) -> tuple[str, str] | None:
    """Why status alone refuses `alias.kubeloop.io/<alias>: <value>`, as (reason, message);
    None: ask the registry Job, as for a promotion."""
    alias = key.removeprefix(ALIAS_ANNOTATION_PREFIX)
    if alias == CHAMPION:
        return "InvalidAlias", (
            f"{key}={value}: the champion moves by {PROMOTE_ANNOTATION} (or "
            f"{ROLLBACK_ANNOTATION}), which the gate's comparisons follow"
        )
    if not _ALIAS_NAME.match(alias) or alias == "latest" or alias.isdigit():
        return "InvalidAlias", (
            f"{key}={value}: an alias is lowercase letters, digits and '-' (at most 63), "
            "not 'latest' or a number, e.g. alias.kubeloop.io/production"
        )
    return check_request(ALIAS, value, status, annotation=key)


def allocate(status: dict[str, Any], pipeline: str, op: dict[str, Any]) -> dict[str, Any]:
    """Give a registry operation its id and Job name and queue it last; returns the op."""
    op_id = int(status.get("lastRegistryOpId") or 0) + 1
    op = {**op, "id": str(op_id), "job": registry_job_name(pipeline, op_id)}
    op.setdefault("requestedAt", now())
    status["lastRegistryOpId"] = op_id
    status["registryQueue"] = [*(status.get("registryQueue") or []), op]
    return op


def enqueue(
    status: dict[str, Any],
    pipeline: str,
    action: str,
    version: str,
    *,
    by: str,
    reason: str,
    alias: str = CHAMPION,
) -> dict[str, Any]:
    """Allocate an alias write (of `champion` unless told) in status; returns the op. A full
    queue (its Jobs do not finish) folds a new gate promotion into the last queued one."""
    queue: list[dict[str, Any]] = list(status.get("registryQueue") or [])
    op: dict[str, Any] = {
        "action": action,
        "version": str(version),
        "alias": alias,
        "by": by[:256],
        "reason": reason[:1024],
        "requestedAt": now(),
    }
    if len(queue) >= QUEUE_LIMIT and len(queue) > 1 and queue[-1]["action"] == "Gate":
        op.update(id=queue[-1]["id"], job=queue[-1]["job"])  # its Job is not created yet
        queue[-1] = op
        status["registryQueue"] = queue
        return op
    return allocate(status, pipeline, op)


def apply_result(
    spec: TrainingPipelineSpec,
    status: dict[str, Any],
    op: Mapping[str, Any],
    result: Mapping[str, Any] | None,
) -> tuple[str, str, bool]:
    """What a registry Job's result does to status (the op is still queued, first): returns
    the Event (reason, message, warning). A later queued write of the same alias wins: its
    decision came after this one's."""
    version, alias, action = str(op["version"]), str(op["alias"]), str(op["action"])
    if not result or not result.get("ok"):
        why = (result or {}).get("reason") or "NoResult"
        cause = (result or {}).get("message") or "the registry Job ended without a result"
        if action == "Gate":
            return "AliasNotWritten", f"alias {alias} -> version {version}: {cause}", True
        return why, f"{_annotation_of(op)}={version} refused: {cause}", True
    aliases = dict(status.get("aliases") or {})
    previous = result.get("previous")
    aliases[alias] = version
    status["aliases"] = aliases
    entry = {"version": version, "alias": alias, "by": op["by"]}
    if previous is not None:
        entry["previous"] = str(previous)
    entry.update(reason=op.get("reason") or "", at=now())
    status["promotions"] = [entry, *(status.get("promotions") or [])][:HISTORY_LIMIT]
    later = [o for o in (status.get("registryQueue") or [])[1:] if o.get("alias") == alias]
    if action != "Gate" and alias == CHAMPION and not later:
        metrics = {k: float(v) for k, v in (result.get("metrics") or {}).items()}
        score = metrics.get(spec.promotion.metric) if spec.promotion else None
        status["champion"] = {
            "version": version,
            "uri": result.get("uri"),
            "metrics": metrics,
            "score": score,
            "runId": str(result["runId"]) if result.get("runId") is not None else None,
            "promotedAt": now(),
        }
    if action == "Gate":
        return "AliasWritten", f"alias {alias} -> version {version} (gate)", False
    if action == ALIAS:
        was = f" (was version {previous})" if previous is not None else ""
        return "AliasSet", f"alias {alias} -> version {version}{was} by {_annotation_of(op)}", False
    verb = "promoted" if action == "Promote" else "rolled back to"
    reason = "Promoted" if action == "Promote" else "RolledBack"
    was = f" (was version {previous})" if previous is not None else ""
    return reason, f"{verb} version {version}{was} by {_ANNOTATION[action]}", False


# --- acting ----------------------------------------------------------------------------------


def _requests(
    status: dict[str, Any],
    body: dict[str, Any],
    conditions: list[dict[str, Any]],
) -> None:
    """Take the new values of the promote and rollback annotations: refuse or enqueue each."""
    annotations = body["metadata"].get("annotations") or {}
    name = body["metadata"]["name"]
    generation = body["metadata"].get("generation")
    for action in ("Promote", "Rollback"):
        value = annotations.get(_ANNOTATION[action])
        if not value:
            # Removed: the same value annotated again is a new request (a retry).
            status.pop(_HANDLED[action], None)
            continue
        if value == status.get(_HANDLED[action]):
            continue
        status[_HANDLED[action]] = value
        refusal = check_request(action, value, status) or queue_full(
            status, f"{_ANNOTATION[action]}={value}"
        )
        if refusal is not None:
            _refuse(body, conditions, generation, *refusal)
            continue
        reason = f"requested by the annotation {_ANNOTATION[action]}={value} on {name}"
        champion = (status.get("champion") or {}).get("version")
        if action == "Rollback":
            reason = f"rolled back from version {champion}; {reason}"
        enqueue(status, name, action, value, by=_BY[action], reason=reason)
    _alias_requests(status, body, conditions)


def _alias_requests(
    status: dict[str, Any],
    body: dict[str, Any],
    conditions: list[dict[str, Any]],
) -> None:
    """Take the new values of `alias.kubeloop.io/<alias>` annotations: refuse or enqueue each.
    A removed annotation is forgotten (the same value again is a new request); the alias stays
    where it points: the registry keeps it."""
    annotations = body["metadata"].get("annotations") or {}
    name = body["metadata"]["name"]
    generation = body["metadata"].get("generation")
    handled: dict[str, str] = {}
    before = status.get("handledAliasRequests") or {}
    for key, value in sorted(annotations.items()):
        if not key.startswith(ALIAS_ANNOTATION_PREFIX) or not value:
            continue
        alias = key.removeprefix(ALIAS_ANNOTATION_PREFIX)
        handled[alias] = value
        if before.get(alias) == value:
            continue
        refusal = check_alias(key, value, status) or queue_full(status, f"{key}={value}")
        if refusal is not None:
            _refuse(body, conditions, generation, *refusal)
            continue
        reason = f"requested by the annotation {key}={value} on {name}"
        enqueue(status, name, ALIAS, value, by=f"annotation {key}", reason=reason, alias=alias)
    if handled or before:
        status["handledAliasRequests"] = handled


def queue_full(status: Mapping[str, Any], annotation: str) -> tuple[str, str] | None:
    """The refusal of an annotation while QUEUE_LIMIT registry writes already wait."""
    if len(status.get("registryQueue") or []) < QUEUE_LIMIT:
        return None
    busy = f"{QUEUE_LIMIT} registry writes are waiting; annotate again once they are done"
    return ("RegistryBusy", f"{annotation}: {busy}")


def _refuse(
    body: dict[str, Any],
    conditions: list[dict[str, Any]],
    generation: int | None,
    reason: str,
    message: str,
) -> None:
    set_condition(conditions, REFUSED, True, reason, message, generation)
    post_event(body, REFUSED, message, warning=True)


def reconcile_registry(
    spec: TrainingPipelineSpec,
    status: dict[str, Any],
    body: dict[str, Any],
    conditions: list[dict[str, Any]],
    persist: Callable[[], None],
) -> None:
    """Handle new annotation requests, record the finished registry Job, start the next.

    `persist` writes what status gained so far: called before any Job is created.
    """
    api = runtime.api
    namespace = body["metadata"]["namespace"]
    generation = body["metadata"].get("generation")
    _requests(status, body, conditions)
    while status.get("registryQueue"):
        op = status["registryQueue"][0]
        owner = {REGISTRY_LABEL: body["metadata"]["name"]}
        job = api.get("Job", namespace, op["job"], within=owner)
        if job is None:
            persist()  # allocated in status first: a restart creates this Job, not another
            api.apply(
                build_registry_job(Owner.of(body), spec, op, defaults=runtime.config.workloads)
            )
            return
        if not owned_by(job, body["metadata"].get("uid")):
            return  # an earlier pipeline's; its deletion (garbage collection) reconciles again
        outcome = job_outcome(job)
        if outcome is None:
            return
        result = job_result(job, owner, "RegistryResult")
        if op["action"] == adoption.INSPECT:
            status["registryQueue"] = status["registryQueue"][1:]
            reason, message, warning = adoption.apply_inspect(
                status, result, adoption.Adopter.of(spec, generation), now=clock.now()
            )
            post_event(body, reason, message, warning=warning)
            continue
        reason, message, warning = apply_result(spec, status, op, result)
        status["registryQueue"] = status["registryQueue"][1:]
        if op["action"] != "Gate" and warning:
            _refuse(body, conditions, generation, reason, message)
            continue
        if op["action"] != "Gate":  # a request that went through clears an earlier refusal
            set_condition(conditions, REFUSED, False, reason, message, generation)
        post_event(body, reason, message, warning=warning)
