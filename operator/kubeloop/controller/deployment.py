"""ModelDeployment: resolve the model to one immutable version, serve it (Deployment + Service +
optional HPA and NetworkPolicy), and roll new versions out in place (RollingUpdate) or as a canary.

Level-triggered: create/update/resume, a timer, any change of an owned Deployment and any change
of a TrainingPipeline call `reconcile(namespace, name)`, which reads the object, its pipeline and
its Deployments fresh, under the object's lock. What the stable Deployment serves is read from the
Deployment itself (annotation `kubeloop.io/model-version`); the canary's step and its start time
live in `status.canary`, so a restart resumes a rollout where it was, never from step 0.

Canary: `<name>-canary` runs the new version with the same serving labels, so the one Service
spreads requests over both by ready pods. The stable Deployment keeps its replicas and each step
sizes the canary for the share closest to it (kubeloop.api.canary_split); `status.canary` reports
that share as `trafficPercent` beside the declared `stepPercent`. A step moves on once the
canary is rolled out and ready,
`stepSeconds` have passed and the analysis allows it (error rate from the canary pods' own
`/metrics`; see canary_analysis). The last step (100) promotes: the stable Deployment rolls to the
new version (maxUnavailable 0) and the canary goes once that is complete. A canary whose
Deployment exceeds its progress deadline, or whose error rate exceeds `maxErrorRate`, is rolled
back: deleted, recorded in `status.failedRollout`, `Degraded=True`; that version is not retried
until the spec (other than replicas) or the resolved version changes.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import kopf

from kubeloop.api.canary_split import CanarySplit, split_step
from kubeloop.api.common import SecretReference
from kubeloop.api.deployment import (
    CanarySpec,
    ModelDeployment,
    ModelDeploymentSpec,
    stable_replica_counts,
)
from kubeloop.api.parse import SpecError, parse_resource
from kubeloop.controller import clock
from kubeloop.controller.canary_analysis import canary_traffic
from kubeloop.controller.reconciling import reconcile_object
from kubeloop.controller.runtime import runtime
from kubeloop.controller.status import (
    changed_fields,
    invalid_spec,
    now,
    post_event,
    set_condition,
)
from kubeloop.resources.common import Owner
from kubeloop.resources.serving import (
    TRACK_LABEL,
    VERSION_LABEL,
    build_hpa,
    build_network_policy,
    build_server_deployment,
    build_service,
    deployment_name,
    service_url,
    serving_selector,
)

__all__ = ["MD_LABEL", "ModelUnavailableError", "Target", "reconcile", "resolve", "version_of_uri"]

KIND = "ModelDeployment"
MD_LABEL = "kubeloop.io/modeldeployment"
# Timer period: canary step resolution and the level-triggered safety net (read at import
# because kopf takes the interval at registration).
RESYNC_SECONDS = float(os.environ.get("KUBELOOP_RESYNC_SECONDS", "30"))
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Target:
    """The concrete version to serve, and the credentials to read it with."""

    version: str
    uri: str
    secret: SecretReference | None


class ModelUnavailableError(Exception):
    """The model cannot be resolved yet; `reason` is the condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def version_of_uri(uri: str) -> str:
    """A label-safe version name for a version folder URI (`.../versions/3/` -> `3`)."""
    segment = uri.rstrip("/").rsplit("/", 1)[-1]
    if _LABEL_VALUE.match(segment):
        return segment
    return "uri-" + hashlib.sha256(uri.encode()).hexdigest()[:12]


def _known_uri(
    version: str, trained: list[dict[str, Any]], champion: Mapping[str, Any]
) -> str | None:
    """The URI status records for `version` (a run of it, or the champion), else None."""
    for run in trained:
        if str(run["modelVersion"]) == version:
            return str(run["uri"])
    if str(champion.get("version")) == version and champion.get("uri"):
        return str(champion["uri"])
    return None


def resolve(spec: ModelDeploymentSpec, namespace: str) -> Target:
    """spec.model -> the version URI to serve; ModelUnavailableError while there is none."""
    ref = spec.model
    if ref.uri is not None:
        return Target(version_of_uri(ref.uri), ref.uri, spec.storage_secret_ref)
    assert ref.pipeline_ref is not None  # the model's CEL rule: exactly one of uri/pipelineRef
    name = ref.pipeline_ref.name
    pipeline = runtime.api.get("TrainingPipeline", namespace, name)
    if pipeline is None:
        raise ModelUnavailableError(
            "PipelineNotFound",
            f"spec.model.pipelineRef: TrainingPipeline {name!r} does not exist in namespace "
            f"{namespace}; create it or fix the name",
        )
    pspec = pipeline.get("spec") or {}
    pstatus = pipeline.get("status") or {}
    secret = spec.storage_secret_ref
    if secret is None and (pspec.get("storageSecretRef") or {}).get("name"):
        secret = SecretReference(name=pspec["storageSecretRef"]["name"])
    champion = pstatus.get("champion") or {}
    trained = [
        r
        for r in pstatus.get("runs") or []
        if r.get("modelVersion") and r.get("uri") and str(r["modelVersion"]).isdigit()
    ]
    wanted, what = ref.version, f"spec.model.version: {ref.version}"
    if ref.alias is not None and ref.alias != "champion":
        aliased = (pstatus.get("aliases") or {}).get(ref.alias)
        if not aliased:
            raise ModelUnavailableError(
                "WaitingForModel",
                f"TrainingPipeline {name!r} has no alias {ref.alias!r} yet (spec.model.alias); "
                f"set it with `kubectl annotate tp {name} alias.kubeloop.io/{ref.alias}=<version>`",
            )
        wanted, what = str(aliased), f"spec.model.alias: {ref.alias}"
    if wanted == "champion":
        if not champion.get("version") or not champion.get("uri"):
            raise ModelUnavailableError(
                "WaitingForModel",
                f"TrainingPipeline {name!r} has no champion yet (spec.model.version: champion)",
            )
        return Target(str(champion["version"]), str(champion["uri"]), secret)
    if wanted == "latest":
        if not trained:
            raise ModelUnavailableError(
                "WaitingForModel",
                f"TrainingPipeline {name!r} has no trained version yet (spec.model.version: "
                "latest)",
            )
        newest = max(trained, key=lambda r: int(r["modelVersion"]))
        return Target(str(newest["modelVersion"]), str(newest["uri"]), secret)
    known = _known_uri(wanted, trained, champion)
    if known is not None:
        return Target(wanted, known, secret)
    artifacts = pspec.get("artifacts")
    if not artifacts:
        raise ModelUnavailableError(
            "WaitingForModel",
            f"TrainingPipeline {name!r} has no spec.artifacts to find version {wanted} in ({what})",
        )
    # Versions are immutable folders at a fixed place: older than the run history is fine. An
    # alias names the folder as the registry writes it (its runs report the same URI), so a
    # pipeline created again, whose runs are gone, resolves an alias to the URI that serves.
    folder = f"{str(artifacts).rstrip('/')}/versions/{wanted}"
    return Target(wanted, folder if ref.alias else f"{folder}/", secret)


# --- reading children ------------------------------------------------------------------------


def _version(dep: dict[str, Any] | None) -> str | None:
    if dep is None:
        return None
    return (dep["metadata"].get("annotations") or {}).get(VERSION_LABEL)


def _uri(dep: dict[str, Any] | None) -> str | None:
    if dep is None:
        return None
    for container in dep["spec"]["template"]["spec"].get("containers") or []:
        for env in container.get("env") or []:
            if env.get("name") == "KUBELOOP_MODEL_URI":
                return str(env.get("value"))
    return None


def _count(dep: dict[str, Any] | None, field: str) -> int:
    return int(((dep or {}).get("status") or {}).get(field) or 0)


def _rolled_out(dep: dict[str, Any] | None) -> bool:
    """Every desired pod runs the current template and is ready; no old pod is left."""
    if dep is None:
        return False
    want = int(dep["spec"].get("replicas", 1))
    st = dep.get("status") or {}
    return (
        int(st.get("observedGeneration") or 0) >= int(dep["metadata"].get("generation") or 1)
        and int(st.get("updatedReplicas") or 0) >= want
        and int(st.get("readyReplicas") or 0) >= want
        and int(st.get("replicas") or 0) <= want
    )


def _deadline_exceeded(dep: dict[str, Any] | None) -> str | None:
    """The Deployment controller's verdict that a rollout is stuck, as a message."""
    for cond in ((dep or {}).get("status") or {}).get("conditions") or []:
        if (
            cond.get("type") == "Progressing"
            and cond.get("status") == "False"
            and cond.get("reason") == "ProgressDeadlineExceeded"
        ):
            return str(cond.get("message") or "the Deployment exceeded its progress deadline")
    return None


def _subset(want: Any, have: Any) -> bool:
    """Whether `have` already holds everything in `want` (server-side defaults allowed)."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(_subset(v, have.get(k)) for k, v in want.items())
    if isinstance(want, list):
        return (
            isinstance(have, list)
            and len(want) == len(have)
            and all(_subset(w, h) for w, h in zip(want, have, strict=True))
        )
    return bool(want == have)


def _apply(
    manifest: dict[str, Any], existing: dict[str, Any] | None, managed_replicas: bool = True
) -> dict[str, Any]:
    """Create the child, or merge-patch `existing` back to the manifest where it differs.

    `existing` is the snapshot the decisions were made on, so status reads the same state.
    """
    api = runtime.api
    meta = manifest["metadata"]
    if existing is None:
        return api.create(manifest)
    desired: dict[str, Any] = {
        "metadata": {k: meta[k] for k in ("labels", "annotations", "ownerReferences") if k in meta},
        "spec": copy.deepcopy(manifest["spec"]),
    }
    if not managed_replicas:  # the HPA owns the replica count
        desired["spec"].pop("replicas", None)
    if _subset(desired, existing):
        return existing
    patched = api.patch(manifest["kind"], meta["namespace"], meta["name"], desired)
    return patched if patched is not None else api.create(manifest)


def _spec_hash(spec: ModelDeploymentSpec) -> str:
    """The spec minus scaling: a change of it retries a rolled-back version. Fields at their
    defaults are left out, so a field added to the API does not retry every rolled-back version
    after an upgrade."""
    dumped = spec.model_dump(
        mode="json", by_alias=True, exclude={"replicas", "autoscaling"}, exclude_defaults=True
    )
    return hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()[:16]


def _elapsed(since: str | None) -> float:
    if not since:
        return float("inf")
    started = datetime.datetime.strptime(since, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    return (clock.now() - started).total_seconds()


# --- the reconcile ---------------------------------------------------------------------------


@dataclass
class _Plan:
    """What one reconcile decided: the stable version and sizes, the canary, the conditions."""

    stable_version: str
    stable_uri: str
    stable_replicas: int | None  # None: the HPA decides
    canary: dict[str, Any] | None = None  # status.canary to write (None: no rollout)
    canary_replicas: int = 0
    keep_canary: bool = False  # keep the canary Deployment as it is (promotion in progress)
    progressing: tuple[bool, str, str] = (False, "Complete", "")
    degraded: tuple[bool, str, str] = (False, "AsExpected", "no failed rollout")


def reconcile(namespace: str, name: str) -> None:
    """Bring one ModelDeployment's children and status up to date."""
    # A burst of triggers costs at most two passes and holds one worker thread.
    reconcile_object(KIND, namespace, name, _reconcile)


def _event(body: dict[str, Any], reason: str, message: str, warning: bool = False) -> None:
    post_event(body, reason, message, warning=warning)


def _set(
    body: dict[str, Any],
    conditions: list[dict[str, Any]],
    type_: str,
    value: tuple[bool, str, str],
    warn_when: bool | None = None,
) -> None:
    """Set a condition; an Event on every transition (a warning when status == warn_when)."""
    status, reason, message = value
    generation = body["metadata"].get("generation")
    if set_condition(conditions, type_, status, reason, message, generation):
        _event(body, reason, f"{type_}={status}: {message}", warning=status is warn_when)


def _write(body: dict[str, Any], before: dict[str, Any], status: dict[str, Any]) -> None:
    """Patch only the status fields that changed (removed ones become null)."""
    patch = changed_fields(before, status)
    if patch:
        meta = body["metadata"]
        runtime.api.patch_status(KIND, meta["namespace"], meta["name"], patch)


def _reconcile(namespace: str, name: str) -> None:
    api = runtime.api
    body = api.get(KIND, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return
    before = copy.deepcopy(body.get("status") or {})
    status: dict[str, Any] = copy.deepcopy(before)
    conditions: list[dict[str, Any]] = status.setdefault("conditions", [])
    generation = body["metadata"].get("generation")
    try:
        model = parse_resource(body)
    except SpecError as error:
        # No exception: a spec that cannot run waits for a new generation, not for retries.
        status.update(invalid_spec(body, status, error.messages))
        _write(body, before, status)
        return
    assert isinstance(model, ModelDeployment)
    spec = model.spec
    owner = Owner.of(body)
    status["observedGeneration"] = generation

    stable = api.get("Deployment", namespace, deployment_name(owner, "stable"))
    canary_dep = api.get("Deployment", namespace, deployment_name(owner, "canary"))
    try:
        target = resolve(spec, namespace)
    except ModelUnavailableError as waiting:
        # A missing pipeline needs a person (create it or fix the name): Stalled, as a
        # DriftMonitor's missing deployment is; waiting for a first champion is not.
        stalled = waiting.reason == "PipelineNotFound"
        set_condition(
            conditions,
            "Stalled",
            stalled,
            waiting.reason if stalled else "SpecValid",
            waiting.message if stalled else "the spec is valid",
            generation,
        )
        _waiting(body, status, stable, canary_dep, waiting)
        _write(body, before, status)
        return
    set_condition(conditions, "Stalled", False, "SpecValid", "the spec is valid", generation)

    spec = spec.model_copy(update={"storage_secret_ref": target.secret})
    _apply(build_service(owner), api.get("Service", namespace, name))
    hpa = build_hpa(owner, spec)
    current_hpa = api.get("HorizontalPodAutoscaler", namespace, name)
    if hpa is not None:
        _apply(hpa, current_hpa)
    elif current_hpa is not None:
        api.delete("HorizontalPodAutoscaler", namespace, name)
    # Literal kinds, as for the HPA: the chart's RBAC audit reads them from these calls.
    policy = build_network_policy(owner, spec, runtime.config.workloads.serving_peers)
    current_policy = api.get("NetworkPolicy", namespace, name)
    if policy is not None:
        _apply(policy, current_policy)
    elif current_policy is not None:
        api.delete("NetworkPolicy", namespace, name)

    plan = _plan(body, spec, status, target=target, stable=stable, canary_dep=canary_dep)
    defaults = runtime.config.workloads
    stable = _apply(
        build_server_deployment(
            owner,
            spec,
            model_uri=plan.stable_uri,
            model_version=plan.stable_version,
            defaults=defaults,
            replicas=plan.stable_replicas,
        ),
        stable,
        managed_replicas=spec.autoscaling is None,
    )
    if plan.canary is not None and not plan.keep_canary:
        canary_dep = _apply(
            build_server_deployment(
                owner,
                spec,
                model_uri=plan.canary["uri"],
                model_version=plan.canary["version"],
                defaults=defaults,
                track="canary",
                replicas=plan.canary_replicas,
            ),
            canary_dep,
        )
    elif plan.canary is None and canary_dep is not None:
        api.delete("Deployment", namespace, deployment_name(owner, "canary"))
        canary_dep = None
    status["canary"] = plan.canary

    if _rolled_out(stable):
        status["modelVersion"] = _version(stable)
        status["modelUri"] = _uri(stable)
    status.update(
        url=service_url(owner, spec),
        selector=",".join(f"{k}={v}" for k, v in sorted(serving_selector(owner).items())),
        replicas=_count(stable, "replicas") + _count(canary_dep, "replicas"),
        readyReplicas=_count(stable, "readyReplicas") + _count(canary_dep, "readyReplicas"),
    )
    ready = _count(stable, "readyReplicas") + _count(canary_dep, "readyReplicas")
    want = int(stable["spec"].get("replicas", 1))
    serving = status.get("modelVersion") or _version(stable)
    if ready > 0 or want == 0:
        ready_value = (True, "Serving", f"version {serving}: {ready} pod(s) ready")
    else:
        ready_value = (False, "PodsNotReady", f"version {serving}: no pod is ready yet")
    _set(body, conditions, "Ready", ready_value, warn_when=False)
    _set(body, conditions, "Progressing", plan.progressing)
    _set(body, conditions, "Degraded", plan.degraded, warn_when=True)
    _write(body, before, status)


def _waiting(
    body: dict[str, Any],
    status: dict[str, Any],
    stable: dict[str, Any] | None,
    canary_dep: dict[str, Any] | None,
    waiting: ModelUnavailableError,
) -> None:
    """No model to serve: wait without children, or keep serving what already runs."""
    conditions = status["conditions"]
    if stable is None:
        # A missing pipeline warns (as a DriftMonitor's missing deployment does); waiting for
        # a first champion is normal.
        warn = False if waiting.reason == "PipelineNotFound" else None
        _set(body, conditions, "Ready", (False, waiting.reason, waiting.message), warn_when=warn)
        _set(body, conditions, "Progressing", (False, waiting.reason, waiting.message))
    else:
        message = f"keeps serving version {_version(stable)}: {waiting.message}"
        _set(body, conditions, "Progressing", (False, waiting.reason, message))
    status.update(
        replicas=_count(stable, "replicas") + _count(canary_dep, "replicas"),
        readyReplicas=_count(stable, "readyReplicas") + _count(canary_dep, "readyReplicas"),
    )


def _plan(
    body: dict[str, Any],
    spec: ModelDeploymentSpec,
    status: dict[str, Any],
    *,
    target: Target,
    stable: dict[str, Any] | None,
    canary_dep: dict[str, Any] | None,
) -> _Plan:
    """Decide versions and sizes from the observed children and status.canary."""
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
        stable_version, stable_uri = str(_version(stable)), str(_uri(stable))

    canary_spec = spec.rollout.canary
    if spec.rollout.strategy != "Canary" or canary_spec is None:
        plan = _Plan(target.version, target.uri, full)
        stuck = _deadline_exceeded(stable)
        if stable_version != target.version or not _rolled_out(stable):
            message = f"rolling update to version {target.version} (maxUnavailable 0)"
            plan.progressing = (True, "RollingUpdate", message)
            if stuck and stable_version == target.version:
                plan.progressing = (False, "ProgressDeadlineExceeded", stuck)
                plan.degraded = (
                    True,
                    "ProgressDeadlineExceeded",
                    f"version {target.version} does not become ready; the old pods keep "
                    f"serving: {stuck}",
                )
        else:
            plan.progressing = (False, "Complete", f"version {target.version} is rolled out")
        status["failedRollout"] = None
        return plan

    if stable_version == target.version:
        return _settle(body, status, target, stable=stable, canary_dep=canary_dep, full=full)
    failed = status.get("failedRollout") or {}
    if failed.get("version") == target.version and failed.get("specHash") == _spec_hash(spec):
        plan = _Plan(stable_version, stable_uri, full)
        plan.degraded = (
            True,
            str(failed.get("reason")),
            _rolled_back(target.version, str(failed.get("message"))),
        )
        plan.progressing = (False, "RolledBack", f"version {stable_version} keeps serving")
        return plan
    status["failedRollout"] = None
    return _canary_step(
        body,
        spec,
        status,
        canary_spec=canary_spec,
        target=target,
        stable_version=stable_version,
        stable_uri=stable_uri,
        canary_dep=canary_dep,
        stable_pods=_stable_pods(spec, stable),
    )


def _rolled_back(version: str, why: str) -> str:
    """The Degraded message of a rolled-back version: the same from the rollback on, so a
    resync that finds nothing new writes nothing new."""
    return (
        f"version {version} was rolled back: {why.rstrip('.')}; it is retried when the spec "
        "changes or another version is resolved"
    )


def _settle(
    body: dict[str, Any],
    status: dict[str, Any],
    target: Target,
    *,
    stable: dict[str, Any] | None,
    canary_dep: dict[str, Any] | None,
    full: int | None,
) -> _Plan:
    """The stable Deployment has the target: finish a promotion, else nothing to roll out."""
    plan = _Plan(target.version, target.uri, full)
    status["failedRollout"] = None
    state = status.get("canary")
    if canary_dep is not None and not _rolled_out(stable):
        # Promotion: the canary keeps serving until the stable pods all run the new version.
        plan.canary = state or {
            "version": _version(canary_dep),
            "uri": _uri(canary_dep),
            "trafficPercent": 100,
            "stepPercent": 100,
            "step": 0,
        }
        plan.keep_canary = True
        plan.progressing = (
            True,
            "Promoting",
            f"stable Deployment rolling to version {target.version}; the canary goes after",
        )
        return plan
    if state and state.get("version") == target.version:
        _event(body, "Promoted", f"version {target.version} serves all traffic")
    if _rolled_out(stable):
        plan.progressing = (False, "Complete", f"version {target.version} is rolled out")
    else:
        plan.progressing = (True, "Creating", f"version {target.version}: pods are starting")
    return plan


def _stable_pods(spec: ModelDeploymentSpec, stable: dict[str, Any] | None) -> int:
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


def _canary_step(
    body: dict[str, Any],
    spec: ModelDeploymentSpec,
    status: dict[str, Any],
    *,
    canary_spec: CanarySpec,
    target: Target,
    stable_version: str,
    stable_uri: str,
    canary_dep: dict[str, Any] | None,
    stable_pods: int,
) -> _Plan:
    """A canary of the target: start, hold, step, promote at 100, or roll back."""
    hpa = spec.autoscaling is not None
    steps = canary_spec.steps
    most = stable_replica_counts(spec)[-1]

    def split(index: int) -> CanarySplit | None:
        """Pods for a step before the last (which promotes instead)."""
        return split_step(stable_pods, steps[index], most) if steps[index] < 100 else None

    state = status.get("canary")
    if not state or state.get("version") != target.version:
        state = {"version": target.version, "uri": target.uri, "step": 0, "stepStartedAt": now()}
        first = split(0)
        served = f" ({_served(first)})" if first else ""
        _event(body, "CanaryStarted", f"version {target.version}: {steps[0]}% step{served}")
    step = min(int(state.get("step") or 0), len(steps) - 1)
    ours = canary_dep is not None and _version(canary_dep) == target.version

    # Failure checks first: a stuck canary or too many errors roll back at once.
    failure: tuple[str, str] | None = None
    stuck = _deadline_exceeded(canary_dep) if ours else None
    if stuck:
        failure = ("ProgressDeadlineExceeded", f"the canary pods never became ready: {stuck}")
    analysis = canary_spec.analysis
    verdict = "serving metrics unreachable: steps advance on readiness only"
    allow = True
    if ours and failure is None:
        pods = runtime.api.list(
            "Pod",
            body["metadata"]["namespace"],
            {MD_LABEL: body["metadata"]["name"], TRACK_LABEL: "canary"},
        )
        traffic = canary_traffic(pods)
        if traffic is None and analysis.min_requests > 0:
            # The spec asks for evidence; unreadable metrics give none: hold, never guess.
            verdict = (
                f"serving metrics unreachable: holding until the canary's {analysis.min_requests}"
                " request(s) can be counted"
            )
            allow = False
        elif traffic is not None:
            need = max(analysis.min_requests, 1)
            if traffic.requests < need:
                verdict = f"canary served {traffic.requests:g} of {need} request(s) needed"
                allow = analysis.min_requests == 0
            elif traffic.error_rate > analysis.max_error_rate:
                failure = (
                    "ErrorRateTooHigh",
                    f"canary error rate {traffic.error_rate:.2%} over "
                    f"{traffic.requests:g} requests exceeds maxErrorRate "
                    f"{analysis.max_error_rate:.2%}",
                )
            else:
                verdict = (
                    f"canary error rate {traffic.error_rate:.2%} over {traffic.requests:g} "
                    f"requests is within maxErrorRate {analysis.max_error_rate:.2%}"
                )
    if failure is not None:
        reason, message = failure
        status["failedRollout"] = {
            "version": target.version,
            "reason": reason,
            "message": message,
            "specHash": _spec_hash(spec),
            "failedAt": now(),
        }
        _event(body, "RolledBack", f"version {target.version} rolled back: {message}", warning=True)
        plan = _Plan(stable_version, stable_uri, None if hpa else spec.replicas)
        plan.degraded = (True, reason, _rolled_back(target.version, message))
        plan.progressing = (False, "RolledBack", f"version {stable_version} keeps serving")
        return plan

    # Move on once this step's canary is rolled out and ready, long enough, and allowed.
    current = split(step)
    wanted = current.canary if current else 0
    ready = ours and _rolled_out(canary_dep) and _count(canary_dep, "readyReplicas") >= wanted
    if (
        ready
        and allow
        and step < len(steps) - 1
        and _elapsed(state.get("stepStartedAt")) >= canary_spec.step_seconds
    ):
        step += 1
        current = split(step)
        state = {**state, "step": step, "stepStartedAt": now()}
        served = f", {_served(current)}" if current else ""
        _event(
            body,
            "CanaryStep",
            f"version {target.version}: step {step + 1}/{len(steps)}, {steps[step]}% step"
            f"{served} ({verdict})",
        )
    percent = steps[step]
    # What the canary really gets (its share of pods), beside what the spec declared.
    state = {
        **state,
        "stepPercent": percent,
        "trafficPercent": current.share if current else 100,
    }
    # The stable Deployment keeps its replicas (the HPA's with autoscaling): pods are added.
    plan = _Plan(stable_version, stable_uri, None if hpa else spec.replicas, canary=state)
    plan.degraded = (False, "AsExpected", "no failed rollout")
    if current is None:
        # Promote: the stable Deployment takes the new version (zero downtime); _settle
        # removes the canary once the stable pods are all new.
        plan.stable_version, plan.stable_uri = target.version, str(state["uri"])
        plan.keep_canary = True
        plan.progressing = (True, "Promoting", f"version {target.version}: promoting ({verdict})")
        return plan
    plan.canary_replicas = current.canary
    ready_pods = _count(canary_dep, "readyReplicas") if ours else 0
    plan.progressing = (
        True,
        "Canary",
        f"version {target.version}: step {step + 1}/{len(steps)}, {percent}% step, "
        f"{_served(current)}; {ready_pods}/{current.canary} canary pod(s) ready; {verdict}",
    )
    return plan


# --- kopf wiring: thin ----------------------------------------------------------------------


@kopf.on.resume("kubeloop.io", "v1alpha1", "modeldeployments")
@kopf.on.create("kubeloop.io", "v1alpha1", "modeldeployments")
@kopf.on.update("kubeloop.io", "v1alpha1", "modeldeployments", field="spec")
def on_change(*, namespace: str | None, name: str, **_: Any) -> None:
    reconcile(namespace or "", name)


@kopf.timer("kubeloop.io", "v1alpha1", "modeldeployments", interval=RESYNC_SECONDS)
def on_timer(*, namespace: str | None, name: str, **_: Any) -> None:
    reconcile(namespace or "", name)


@kopf.on.event("apps", "v1", "deployments", labels={MD_LABEL: kopf.PRESENT})
def on_deployment_event(*, namespace: str | None, labels: Mapping[str, str], **_: Any) -> None:
    reconcile(namespace or "", labels[MD_LABEL])


# What each pipeline last offered (champion, trained versions): events that change neither
# (progress, kopf's own annotations) need no reconcile. Only an optimisation: the timer still
# reconciles every deployment, so a lost entry (restart) costs nothing but one extra pass.
_OFFERED: dict[tuple[str, str], str] = {}


def _offer(status: Mapping[str, Any] | None, spec: Mapping[str, Any] | None) -> str:
    status, spec = status or {}, spec or {}
    runs = [(r.get("modelVersion"), r.get("uri")) for r in status.get("runs") or []]
    offer = [status.get("champion"), runs, spec.get("artifacts"), spec.get("storageSecretRef")]
    return json.dumps(offer, sort_keys=True, default=str)


@kopf.on.event("kubeloop.io", "v1alpha1", "trainingpipelines")
def on_pipeline_event(
    *,
    type: str | None,
    namespace: str | None,
    name: str,
    status: Mapping[str, Any],
    spec: Mapping[str, Any],
    **_: Any,
) -> None:
    """A new champion (or run) reaches the deployments that serve this pipeline."""
    namespace = namespace or ""
    offer = "" if type == "DELETED" else _offer(status, spec)
    if _OFFERED.get((namespace, name)) == offer:
        return
    _OFFERED[(namespace, name)] = offer
    for md in runtime.api.list(KIND, namespace):
        ref = ((md.get("spec") or {}).get("model") or {}).get("pipelineRef") or {}
        if ref.get("name") == name:
            reconcile(namespace, md["metadata"]["name"])
