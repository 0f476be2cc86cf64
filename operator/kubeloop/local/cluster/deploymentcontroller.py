"""The local Deployment controller: pods per template hash, rolled out as the real one does.

A rolling update (`maxSurge`/`maxUnavailable`, old pods removed only when new ones are Ready;
the step is the pure `rollout_plan`), restarts of crashed containers with backoff (by the
`kubelet`), and `status.replicas/updatedReplicas/readyReplicas/availableReplicas/
observedGeneration` with the `Available` and `Progressing` conditions
(`ProgressDeadlineExceeded` once a rollout has not progressed for `progressDeadlineSeconds`).
No ReplicaSet objects: pods are owned by the Deployment.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubeloop.local.cluster.kubeapi import ApiError, KubeApi
from kubeloop.local.cluster.kubelet import Kubelet, PodRun, api_now, suffix
from kubeloop.local.cluster.podspec import pod_from_template

__all__ = ["DEPLOYMENTS", "DeploymentController", "DeploymentRun", "rollout_plan"]

DEPLOYMENTS = "apps/v1/deployments"


def _resolve_count(value: Any, replicas: int, *, round_up: bool) -> int:
    if value is None:
        value = "25%"
    if isinstance(value, str) and value.endswith("%"):
        exact = replicas * int(value[:-1]) / 100
        return int(-(-exact // 1)) if round_up else int(exact)
    return int(value)


def rollout_plan(
    deployment: Mapping[str, Any], *, new: int, new_ready: int, old: int, old_ready: int
) -> tuple[int, int]:
    """(new pods to start, old pods to stop) for one step of a Deployment rollout.

    RollingUpdate: at most `replicas + maxSurge` pods exist, at least `replicas -
    maxUnavailable` are Ready; Recreate: old pods go first, new ones start when none is left.
    """
    spec = deployment.get("spec") or {}
    replicas = int(spec.get("replicas", 1))
    strategy = spec.get("strategy") or {}
    if strategy.get("type") == "Recreate":
        if old:
            return 0, old
        return max(replicas - new, 0), 0
    rolling = strategy.get("rollingUpdate") or {}
    surge = _resolve_count(rolling.get("maxSurge"), replicas, round_up=True)
    unavailable = _resolve_count(rolling.get("maxUnavailable"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1  # the API server refuses both zero; be as lenient as it is strict
    if new > replicas:  # scale down the current template
        return -(new - replicas), old
    start = max(min(replicas - new, replicas + surge - new - old), 0)
    min_ready = replicas - unavailable
    # Unready old pods can always go; ready ones only while enough pods stay Ready.
    stop = min(old, (old - old_ready) + max(new_ready + old_ready - min_ready, 0))
    if new >= replicas and new_ready >= replicas:
        stop = old
    return start, stop


def _template_hash(template: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    return digest[:10]


@dataclass
class DeploymentRun:
    """A Deployment's pods."""

    deployment: dict[str, Any]
    pods: list[PodRun] = field(default_factory=list)
    # what the rollout looked like when it last moved, and when (progressDeadlineSeconds)
    progress: tuple[Any, ...] = ()
    progress_at: float = field(default_factory=time.monotonic)


class DeploymentController:
    """Runs the Deployments of the emulated cluster, keyed by uid in `deployments`; `spawn`
    runs a pod's graceful stop in the background."""

    def __init__(
        self,
        api: KubeApi,
        kubelet: Kubelet,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self.api = api
        self.kubelet = kubelet
        self.spawn = spawn
        self.deployments: dict[str, DeploymentRun] = {}

    async def reconcile(self) -> None:
        """One pass over the Deployments: a rollout step each, the pods of deleted ones stopped."""
        seen = set()
        for deployment in await self.api.list(DEPLOYMENTS):
            uid = deployment["metadata"]["uid"]
            seen.add(uid)
            run = self.deployments.setdefault(uid, DeploymentRun(deployment))
            run.deployment = deployment
            await self._step_deployment(run)
        for uid in list(self.deployments):
            if uid not in seen:
                run = self.deployments.pop(uid)
                await asyncio.gather(
                    *(self.kubelet.stop_pod(p) for p in run.pods), return_exceptions=True
                )

    async def _step_deployment(self, run: DeploymentRun) -> None:
        deployment = run.deployment
        meta, spec = deployment["metadata"], deployment.get("spec") or {}
        template = spec.get("template") or {}
        current = _template_hash(template)
        live = [p for p in run.pods if not p.terminating]
        new = [p for p in live if p.template_hash == current]
        old = [p for p in live if p.template_hash != current]
        start, stop = (
            rollout_plan(
                deployment,
                new=len(new),
                new_ready=sum(p.ready for p in new),
                old=len(old),
                old_ready=sum(p.ready for p in old),
            )
            if not spec.get("paused")
            else (0, 0)
        )
        if start < 0:  # scale down: the newest pods go first, as the ReplicaSet does
            for pod in new[start:]:
                self.spawn(self.kubelet.stop_pod(pod))
        for _ in range(max(start, 0)):
            pod = self._deployment_pod(run, current)
            run.pods.append(pod)
            await self.kubelet.create_pod(pod)
            pod.task = asyncio.create_task(self.kubelet.run_restarting(pod))
        for pod in sorted(old, key=lambda p: p.ready)[:stop]:
            self.spawn(self.kubelet.stop_pod(pod))
        run.pods = [
            p for p in run.pods if not (p.terminating and p.task is not None and p.task.done())
        ]
        live = [p for p in run.pods if not p.terminating]
        new = [p for p in live if p.template_hash == current]
        replicas = int(spec.get("replicas", 1))
        ready = sum(p.ready for p in live)
        updated_ready = sum(p.ready for p in new)
        unavailable_allowed = _resolve_count(
            ((spec.get("strategy") or {}).get("rollingUpdate") or {}).get("maxUnavailable"),
            replicas,
            round_up=False,
        )
        available = ready >= replicas - unavailable_allowed
        complete = updated_ready >= replicas and len(live) == replicas
        progressing = self._progressing(run, (current, replicas, len(new), updated_ready), complete)
        now = api_now()
        status = {
            "observedGeneration": meta.get("generation", 1),
            "replicas": len(live),
            "updatedReplicas": len(new),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": max(replicas - ready, 0),
            "conditions": [
                {
                    "type": "Available",
                    "status": "True" if available else "False",
                    "reason": "MinimumReplicasAvailable"
                    if available
                    else "MinimumReplicasUnavailable",
                    "lastUpdateTime": now,
                    "lastTransitionTime": now,
                },
                {
                    "type": "Progressing",
                    **progressing,
                    "lastUpdateTime": now,
                    "lastTransitionTime": now,
                },
            ],
        }
        previous = deployment.get("status") or {}
        if any(previous.get(k) != v for k, v in status.items() if k != "conditions") or [
            (c["type"], c["status"], c["reason"]) for c in previous.get("conditions") or []
        ] != [(c["type"], c["status"], c["reason"]) for c in status["conditions"]]:
            with contextlib.suppress(ApiError):
                await self.api.patch(
                    DEPLOYMENTS,
                    meta["namespace"],
                    meta["name"],
                    {"status": status},
                    subresource="status",
                )

    @staticmethod
    def _progressing(
        run: DeploymentRun, state: tuple[str, int, int, int], complete: bool
    ) -> dict[str, str]:
        """The Progressing condition. `state` is (template hash, replicas, new pods, new pods
        ready): progress is any change of it; none for `progressDeadlineSeconds` is
        ProgressDeadlineExceeded, as the Deployment controller reports a rollout whose pods
        never become ready."""
        if state != run.progress:
            run.progress, run.progress_at = state, time.monotonic()
        if complete:
            return {"status": "True", "reason": "NewReplicaSetAvailable"}
        spec = run.deployment.get("spec") or {}
        deadline = float(spec.get("progressDeadlineSeconds", 600))
        if time.monotonic() - run.progress_at > deadline:
            name = f"{run.deployment['metadata']['name']}-{state[0][:10]}"
            return {
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": f'ReplicaSet "{name}" has timed out progressing.',
            }
        return {"status": "True", "reason": "ReplicaSetUpdated"}

    def _deployment_pod(self, run: DeploymentRun, template_hash: str) -> PodRun:
        meta = run.deployment["metadata"]
        namespace = meta["namespace"]
        name = f"{meta['name']}-{template_hash[:10]}-{suffix()}"
        template = (run.deployment.get("spec") or {}).get("template") or {}
        pod = pod_from_template(
            template,
            name=name,
            namespace=namespace,
            owner=run.deployment,
            labels={"pod-template-hash": template_hash},
        )
        return PodRun(
            name, namespace, pod, self.kubelet.pod_dir(namespace, name), template_hash=template_hash
        )
