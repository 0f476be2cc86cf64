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

import asyncio
import copy
import functools
import json
import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import kopf

from kubeloop.api.deployment import ModelDeployment, ModelDeploymentSpec
from kubeloop.api.parse import SpecError, parse_resource
from kubeloop.controller import clock
from kubeloop.controller.canary_analysis import canary_traffic
from kubeloop.controller.reconciling import reconcile_object
from kubeloop.controller.runtime import runtime
from kubeloop.controller.status import invalid_spec, post_event, set_condition
from kubeloop.controller.status_write import write_status
from kubeloop.controller.watch_events import on_event
from kubeloop.decide.canary import RolloutInputs, RolloutPlan, plan_rollout
from kubeloop.decide.resolve import ModelUnavailableError, Target, resolve
from kubeloop.decide.serving import count, rolled_out, served_uri, served_version
from kubeloop.resources.common import Owner
from kubeloop.resources.serving import (
    TRACK_LABEL,
    build_hpa,
    build_network_policy,
    build_server_deployment,
    build_service,
    deployment_name,
    service_url,
    serving_selector,
)

__all__ = ["MD_LABEL", "reconcile"]

KIND = "ModelDeployment"
MD_LABEL = "kubeloop.io/modeldeployment"
# Timer period: canary step resolution and the level-triggered safety net (read at import
# because kopf takes the interval at registration).
RESYNC_SECONDS = float(os.environ.get("KUBELOOP_RESYNC_SECONDS", "30"))


def _target(spec: ModelDeploymentSpec, namespace: str) -> Target:
    """spec.model -> the version to serve (reads the pipeline it names); ModelUnavailableError
    while there is none."""
    ref = spec.model.pipeline_ref
    pipeline = None
    if ref is not None and spec.model.uri is None:
        pipeline = runtime.api.get("TrainingPipeline", namespace, ref.name)
    return resolve(spec, namespace, pipeline)


# --- writing children ------------------------------------------------------------------------


def _apply(
    manifest: dict[str, Any], observed: dict[str, Any] | None, managed_replicas: bool = True
) -> dict[str, Any]:
    """Apply a child (`Kube.apply`); `observed` is the snapshot the decisions were made on,
    returned as it is when it holds the manifest already, so status reads the same state.

    When the HPA owns the replica count the manifest carries the count observed (the built one
    at creation): an apply that left it out would remove the field kubeloop set before
    (server-side apply removes what its manager dropped), and the Deployment would fall back
    to one replica.
    """
    replicas = ((observed or {}).get("spec") or {}).get("replicas")
    if not managed_replicas and replicas is not None:
        manifest = {**manifest, "spec": {**manifest["spec"], "replicas": replicas}}
    return runtime.api.apply(manifest, observed)


# --- the reconcile ---------------------------------------------------------------------------


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
    """Write what changed, through the typed status model (`status_write`)."""
    meta = body["metadata"]
    write_status(KIND, meta["namespace"], meta["name"], before, status)


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
        target = _target(spec, namespace)
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
    status["failedRollout"] = plan.failed_rollout
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

    if rolled_out(stable):
        status["modelVersion"] = served_version(stable)
        status["modelUri"] = served_uri(stable)
    status.update(
        url=service_url(owner, spec),
        selector=",".join(f"{k}={v}" for k, v in sorted(serving_selector(owner).items())),
        replicas=count(stable, "replicas") + count(canary_dep, "replicas"),
        readyReplicas=count(stable, "readyReplicas") + count(canary_dep, "readyReplicas"),
    )
    ready = count(stable, "readyReplicas") + count(canary_dep, "readyReplicas")
    want = int(stable["spec"].get("replicas", 1))
    serving = status.get("modelVersion") or served_version(stable)
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
        message = f"keeps serving version {served_version(stable)}: {waiting.message}"
        _set(body, conditions, "Progressing", (False, waiting.reason, message))
    status.update(
        replicas=count(stable, "replicas") + count(canary_dep, "replicas"),
        readyReplicas=count(stable, "readyReplicas") + count(canary_dep, "readyReplicas"),
    )


def _plan(
    body: dict[str, Any],
    spec: ModelDeploymentSpec,
    status: dict[str, Any],
    *,
    target: Target,
    stable: dict[str, Any] | None,
    canary_dep: dict[str, Any] | None,
) -> RolloutPlan:
    """The rollout plan (kubeloop.decide.canary); the canary pods' request counters are read
    only when a step asks for them. Posts the plan's Events."""
    inputs = RolloutInputs(spec, status, target, stable, canary_dep, now=clock.now())
    plan = plan_rollout(inputs)
    if plan.needs_traffic:
        meta = body["metadata"]
        selector = {MD_LABEL: meta["name"], TRACK_LABEL: "canary"}
        pods = runtime.api.list("Pod", meta["namespace"], selector)
        plan = plan_rollout(replace(inputs, traffic=canary_traffic(pods)))
    for event in plan.events:
        _event(body, event.reason, event.message, warning=event.warning)
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


@on_event("TrainingPipeline")
async def on_pipeline_event(
    *,
    type: str | None,
    namespace: str | None,
    name: str,
    status: Mapping[str, Any],
    spec: Mapping[str, Any],
    **_: Any,
) -> None:
    """A new champion (or run) reaches the deployments that serve this pipeline. On the event
    loop: most events offer nothing new, and deciding that needs no thread (the deployments are
    read from the watch cache); a reconcile goes to a worker thread."""
    namespace = namespace or ""
    offer = "" if type == "DELETED" else _offer(status, spec)
    if _OFFERED.get((namespace, name)) == offer:
        return
    _OFFERED[(namespace, name)] = offer
    for md in runtime.api.cache.list(KIND, namespace):
        ref = ((md.get("spec") or {}).get("model") or {}).get("pipelineRef") or {}
        if ref.get("name") == name:
            call = functools.partial(reconcile, namespace, md["metadata"]["name"])
            await asyncio.get_running_loop().run_in_executor(runtime.executor, call)
