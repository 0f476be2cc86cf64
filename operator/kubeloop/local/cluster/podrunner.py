"""The local pod runner: the Job, CronJob, Deployment and Service controllers plus a kubelet.

It watches the emulated API (level-triggered: it re-lists every `interval` seconds, like a
controller's resync, and at once when a Job changes or a Job's pod ends, as the real controllers
react to their informers' events) and runs the containers of Jobs, CronJobs and Deployments as local
processes (`kubeloop.local.cluster.podspec` says exactly how a container becomes a process).
It writes back, through the API and the status subresource, what the real controllers write:

- Job: `status.startTime/active/ready/succeeded/failed/completedIndexes/completionTime` and the
  conditions `SuccessCriteriaMet` + `Complete` or `FailureTarget` + `Failed` (reasons
  `BackoffLimitExceeded`, `DeadlineExceeded`); one Pod per attempt, labelled `job-name` /
  `batch.kubernetes.io/job-name`, owned by the Job, whose `containerStatuses[].state.terminated`
  holds the exit code and the termination message; `ttlSecondsAfterFinished` is honoured.
- CronJob: a Job per schedule tick (`concurrencyPolicy`, `suspend`, `startingDeadlineSeconds`,
  history limits) and `status.lastScheduleTime/lastSuccessfulTime/active`; `trigger()` does what
  `kubectl create job --from=cronjob/<name>` does.
- Deployment: Pods per template hash, a rolling update (`maxSurge`/`maxUnavailable`, old pods
  removed only when new ones are Ready), restarts of crashed containers with backoff, and
  `status.replicas/updatedReplicas/readyReplicas/availableReplicas/observedGeneration` with the
  `Available` and `Progressing` conditions (`ProgressDeadlineExceeded` once a rollout has not
  progressed for `progressDeadlineSeconds`).
- Service: a loopback proxy per Service port (`kubeloop.local.cluster.proxy`; per connection,
  `tcpproxy`, for gRPC ports) over the Ready pods its selector matches; its URL is annotated on
  the Service as `kubeloop.io/local-url` (and a gRPC port's as `kubeloop.io/local-grpc-address`).

Init containers run as a kubelet runs them: one after another, each to completion, before the
main container, every one a process of its own with its own log and termination message and
the pod's emptyDir volumes (the same folders). Meanwhile the pod is Pending, with
`initContainerStatuses` and the main container waiting (`PodInitializing`); the status shape is
`kubeloop.local.cluster.podstatus`. In a Job pod a failed init container fails the pod (phase
Failed, its `state.terminated` with the exit code and message; the main container never starts) and
the Job retries per `backoffLimit`; in a Deployment pod it is restarted after a backoff.
Deleting or stopping a pod terminates whichever container runs.

Fidelity limits: no scheduling, resources, node selectors, GPUs or images; every pod is on this
machine, each on its own loopback address (`kubeloop.local.cluster.podnet`: podIP 127.1.x.y,
where its declared container ports are forwarded to the process); only the first of
`spec.containers` runs (no sidecars; init containers all run, but their ports are not forwarded and
`restartPolicy: Always` sidecar init containers are run like the others, to completion);
restartPolicy OnFailure is run as Never (a new pod per retry); the Job's pod-failure backoff is
1 s instead of 10 s doubling; readiness probes run at most every 1 s; grace periods are capped
at 10 s; no ReplicaSet objects (pods are owned by the Deployment).

The parts, a module each: `kubelet` (a pod's containers as processes), `jobcontroller`,
`cronjobcontroller`, `deploymentcontroller` and `servicecontroller`; this module runs their
reconcile loop and stops them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from kubeloop.local.cluster import forkserver
from kubeloop.local.cluster.cronjobcontroller import CronJobController
from kubeloop.local.cluster.deploymentcontroller import DeploymentController, DeploymentRun
from kubeloop.local.cluster.jobcontroller import JOBS, JobController, JobRun
from kubeloop.local.cluster.kubeapi import ApiError, KubeApi
from kubeloop.local.cluster.kubelet import Kubelet
from kubeloop.local.cluster.podnet import PodNetwork
from kubeloop.local.cluster.servicecontroller import Proxy, ServiceController
from kubeloop.local.cluster.statefile import POD_MARKER

__all__ = ["PodRunner"]

log = logging.getLogger("kubeloop.local.cluster.podrunner")


class PodRunner:
    """Runs the workloads of the emulated cluster on this machine (see the module docstring).

    `workdir` holds one folder per pod (emptyDir volumes, and per container a termination
    message and a log: the main container's `log`, an init container's `log.<name>`, see
    `kubeloop.local.cluster.podspec.container_files`); `extra_env` is
    given to every process (the demo passes `KUBECONFIG` pointing at the emulator, which stands
    in for the in-cluster service-account config).
    """

    def __init__(
        self,
        api_url: str,
        workdir: Path,
        *,
        extra_env: Mapping[str, str] | None = None,
        interval: float = 0.25,
        cwd: str | None = None,
    ) -> None:
        self.api = KubeApi(api_url)
        self.workdir = workdir
        self.interval = interval
        self.network = PodNetwork()
        self.services = ServiceController(self.api)
        self.kubelet = Kubelet(
            self.api,
            workdir,
            network=self.network,
            drain=self.services.drain,
            extra_env=extra_env or {},
            cwd=cwd,
        )
        self.cronjob_controller = CronJobController(self.api)
        self.job_controller = JobController(self.api, self.kubelet, self.wake)
        self.deployment_controller = DeploymentController(self.api, self.kubelet, self._spawn)
        self._stopping = False
        self._background: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    @property
    def jobs(self) -> dict[str, JobRun]:
        """The Jobs being run, by uid."""
        return self.job_controller.jobs

    @property
    def deployments(self) -> dict[str, DeploymentRun]:
        """The Deployments being run, by uid."""
        return self.deployment_controller.deployments

    @property
    def proxies(self) -> dict[tuple[str, str, int], Proxy]:
        """The Service proxies, by namespace, name and port."""
        return self.services.proxies

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start reconciling in the background."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._task = asyncio.create_task(self._loop(), name="kubeloop-podrunner")
        self._watch_task = asyncio.create_task(self._watch_jobs(), name="kubeloop-podrunner-watch")

    async def stop(self) -> None:
        """Stop reconciling, terminate every process, close the Service proxies."""
        self._stopping = True
        for task in (self._task, self._watch_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        pods = [p for run in self.jobs.values() for p in run.pods]
        pods += [p for run in self.deployments.values() for p in run.pods]
        await asyncio.gather(*self._background, return_exceptions=True)
        await asyncio.gather(
            *(self.kubelet.kill(p, grace=5.0) for p in pods), return_exceptions=True
        )
        marker = self.kubelet.extra_env.get(POD_MARKER)
        if marker is not None:  # this cluster's own fork server (forkserver.py)
            await asyncio.to_thread(forkserver.close_shared, {POD_MARKER: marker})
        await self.services.stop()
        self.network.close()  # the pods' forwards are closed: their block is free again
        await self.api.close()

    def kill_all_now(self) -> None:
        """SIGKILL every process (last resort, e.g. from an atexit hook)."""
        pods = [p for run in self.jobs.values() for p in run.pods]
        pods += [p for run in self.deployments.values() for p in run.pods]
        for pod in pods:
            for run in pod.containers:
                if run.process is not None:
                    run.process.kill_now()

    def _spawn(self, coro: Any) -> None:
        # Keep a reference: the loop holds tasks only weakly.
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def wake(self) -> None:
        """Reconcile now (or right after the pass under way), not at the next relist."""
        self._wake.set()

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()  # a wake from here on is seen after this pass
            try:
                await self.reconcile()
            except (ApiError, aiohttp.ClientError, OSError) as exc:
                # The API may be restarting; controllers retry, so does this loop.
                log.warning("reconcile failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)

    async def _watch_jobs(self) -> None:
        """Wake the loop on every Job event: a created Job's pod starts at once. Only a wake:
        the relist still decides, so an event missed between two watches waits for it."""
        while not self._stopping:
            try:
                async for _ in self.api.watch(JOBS):
                    self.wake()
            except (ApiError, aiohttp.ClientError, OSError, ValueError) as exc:
                log.debug("job watch ended: %s", exc)
            await asyncio.sleep(self.interval)

    async def reconcile(self) -> None:
        """One pass over CronJobs, Jobs, Deployments and Services."""
        await self.cronjob_controller.reconcile()
        await self.job_controller.reconcile()
        await self.deployment_controller.reconcile()
        pods = [p for run in self.deployments.values() for p in run.pods]
        await self.services.reconcile(pods)

    async def trigger(self, namespace: str, name: str) -> dict[str, Any]:
        """Create a Job from a CronJob now (`kubectl create job --from=cronjob/<name>`)."""
        return await self.cronjob_controller.trigger(namespace, name)

    def describe_job(self, namespace: str, name: str, lines: int = 8) -> str:
        """What this runner knows of a Job's pods, for an error that waited on it: each pod's
        containers (running, exit code) and the last `lines` of each one's log."""
        runs = [
            run
            for run in self.jobs.values()
            if run.job["metadata"]["namespace"] == namespace and run.job["metadata"]["name"] == name
        ]
        if not runs:
            return f"job {namespace}/{name}: not run here (not seen, or forgotten)"
        parts = []
        for run in runs:
            parts.append(f"job {name}: finished={run.finished}, {len(run.pods)} pod(s)")
            for pod in run.pods:
                for container in pod.containers:
                    process = container.process
                    state = (
                        "not started"
                        if process is None
                        else "running"
                        if process.running
                        else f"exit {container.exit_code}"
                    )
                    parts.append(f"  pod {pod.name} container {container.name}: {state}")
                    log_path = process.log_path if process is not None else None
                    if log_path is not None and log_path.exists():
                        tail = log_path.read_text(errors="replace").splitlines()[-lines:]
                        parts.extend(f"    | {line[:300]}" for line in tail)
        return "\n".join(parts)

    def service_url(self, namespace: str, name: str) -> str | None:
        """The loopback URL of a Service's first port, once it is proxied."""
        return self.services.service_url(namespace, name)

    def grpc_address(self, namespace: str, name: str) -> str | None:
        """`host:port` of a Service's first gRPC port on loopback, once it is proxied."""
        return self.services.grpc_address(namespace, name)
