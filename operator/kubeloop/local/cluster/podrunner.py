"""The local pod runner: the Job, CronJob, Deployment and Service controllers plus a kubelet.

It watches the emulated API (level-triggered: it re-lists every `interval` seconds, like a
controller's resync) and runs the containers of Jobs, CronJobs and Deployments as local
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
- Service: a loopback proxy per Service port (`kubeloop.local.cluster.proxy`) over the Ready
  pods its selector matches; its URL is annotated on the Service as `kubeloop.io/local-url`.

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
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import json
import logging
import secrets as random
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from kubeloop.local.cluster.cronjobs import due_time, job_from_cronjob
from kubeloop.local.cluster.kubeapi import ApiError, KubeApi
from kubeloop.local.cluster.podnet import PodNetwork, PortForward
from kubeloop.local.cluster.podspec import (
    EnvError,
    build_process,
    completion_indexes,
    container_files,
    pod_from_template,
)
from kubeloop.local.cluster.podstatus import ContainerRun, ended_by, pod_status
from kubeloop.local.cluster.processes import LocalProcess, free_port
from kubeloop.local.cluster.proxy import ServiceProxy

__all__ = ["LOCAL_URL_ANNOTATION", "PodRunner", "label_match", "rollout_plan"]

log = logging.getLogger("kubeloop.local.cluster.podrunner")

LOCAL_URL_ANNOTATION = "kubeloop.io/local-url"
JOBS, CRONJOBS, DEPLOYMENTS = "batch/v1/jobs", "batch/v1/cronjobs", "apps/v1/deployments"
PODS, SERVICES, SECRETS, CONFIGMAPS = "v1/pods", "v1/services", "v1/secrets", "v1/configmaps"
MAX_GRACE = 10.0
PROBE_PERIOD_CAP = 1.0


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _suffix() -> str:
    return "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))


def label_match(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether labels match a selector: a plain map (Service) or matchLabels/matchExpressions."""
    if not selector:
        return False
    if "matchLabels" in selector or "matchExpressions" in selector:
        plain = selector.get("matchLabels") or {}
        for expr in selector.get("matchExpressions") or []:
            key, op, values = expr["key"], expr["operator"], expr.get("values") or []
            if op == "In" and labels.get(key) not in values:
                return False
            if op == "NotIn" and labels.get(key) in values:
                return False
            if op == "Exists" and key not in labels:
                return False
            if op == "DoesNotExist" and key in labels:
                return False
    else:
        plain = selector
    return all(labels.get(k) == v for k, v in plain.items())


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
class PodRun:
    """One pod: its API object name, its containers, and what the kubelet knows about it.

    `init` are its init containers, run one after another before `main` (the first of
    `spec.containers`, the only one run).
    """

    name: str
    namespace: str
    pod: dict[str, Any]
    dir: Path
    index: int | None = None
    template_hash: str = ""
    ready: bool = False
    terminating: bool = False
    task: asyncio.Task[None] | None = None
    ip: str = "127.0.0.1"
    forwards: list[PortForward] = field(default_factory=list)
    main: ContainerRun = field(init=False)
    init: list[ContainerRun] = field(init=False)

    def __post_init__(self) -> None:
        spec = self.pod.get("spec") or {}
        self.main = ContainerRun((spec.get("containers") or [{}])[0])
        self.init = [ContainerRun(c, init=True) for c in spec.get("initContainers") or []]

    @property
    def containers(self) -> list[ContainerRun]:
        """Init containers in order, then the main one."""
        return [*self.init, self.main]

    @property
    def exit_code(self) -> int | None:
        """The exit code that ended the pod (a failed init container's, else the main
        container's); None while it runs."""
        ended = ended_by(self.init, self.main)
        return ended.exit_code if ended is not None else None

    @property
    def finished_at(self) -> str | None:
        """When the pod ended."""
        ended = ended_by(self.init, self.main)
        return ended.finished_at if ended is not None else None

    @property
    def done(self) -> bool:
        """The pod ran to an end (Jobs)."""
        return self.exit_code is not None


@dataclass
class JobRun:
    """A Job being run."""

    job: dict[str, Any]
    pods: list[PodRun] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    finished: bool = False
    finished_at: float | None = None


@dataclass
class DeploymentRun:
    """A Deployment's pods."""

    deployment: dict[str, Any]
    pods: list[PodRun] = field(default_factory=list)
    # what the rollout looked like when it last moved, and when (progressDeadlineSeconds)
    progress: tuple[Any, ...] = ()
    progress_at: float = field(default_factory=time.monotonic)


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
        self.extra_env = dict(extra_env or {})
        self.interval = interval
        self.cwd = cwd
        self.jobs: dict[str, JobRun] = {}
        self.deployments: dict[str, DeploymentRun] = {}
        self.proxies: dict[tuple[str, str, int], ServiceProxy] = {}
        self._service_ports: dict[tuple[str, str, int], int] = {}
        self.network = PodNetwork()
        self._stopping = False
        self._background: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self.errors: list[str] = []

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start reconciling in the background."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._task = asyncio.create_task(self._loop(), name="kubeloop-podrunner")

    async def stop(self) -> None:
        """Stop reconciling, terminate every process, close the Service proxies."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        pods = [p for run in self.jobs.values() for p in run.pods]
        pods += [p for run in self.deployments.values() for p in run.pods]
        await asyncio.gather(*self._background, return_exceptions=True)
        await asyncio.gather(*(self._kill(p, grace=5.0) for p in pods), return_exceptions=True)
        for proxy in self.proxies.values():
            await proxy.stop()
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

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                await self.reconcile()
            except (ApiError, aiohttp.ClientError, OSError) as exc:
                # The API may be restarting; controllers retry, so does this loop.
                log.warning("reconcile failed: %s", exc)
            await asyncio.sleep(self.interval)

    async def reconcile(self) -> None:
        """One pass over CronJobs, Jobs, Deployments and Services."""
        await self._reconcile_cronjobs()
        await self._reconcile_jobs()
        await self._reconcile_deployments()
        await self._reconcile_services()

    # -- shared kubelet part -----------------------------------------------------------------

    async def _lookups(
        self, namespace: str
    ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        found: list[dict[str, dict[str, Any]]] = []
        for resource in (SECRETS, CONFIGMAPS):
            try:
                items = await self.api.list(resource, namespace)
            except ApiError as exc:
                # kmock answers 404 for a kind no object of which was ever stored: none exist.
                if exc.status != 404:
                    raise
                items = []
            found.append({item["metadata"]["name"]: item for item in items})
        return found[0], found[1]

    async def _create_pod(self, pod: PodRun) -> None:
        pod.pod.setdefault("status", {})
        pod.pod["spec"].setdefault("nodeName", "localhost")
        pod.pod["spec"].setdefault("serviceAccountName", "default")
        pod.ip = self.network.allocate()
        created = await self.api.create(PODS, pod.pod)
        pod.pod = created
        await self._pod_status(pod, "Pending")

    async def _pod_status(self, pod: PodRun, phase: str) -> None:
        status = pod_status(
            phase=phase,
            ip=pod.ip,
            start_time=pod.pod["metadata"].get("creationTimestamp"),
            now=_now(),
            main=pod.main,
            init=pod.init,
            ready=pod.ready and not pod.terminating,
        )
        with contextlib.suppress(ApiError):
            await self.api.patch(
                PODS, pod.namespace, pod.name, {"status": status}, subresource="status"
            )

    async def _start_container(self, pod: PodRun, run: ContainerRun) -> bool:
        """Resolve env and start a container; False when config is missing (`run.error`), it
        cannot start (`run.exit_code` 128), or the pod is being stopped."""
        if not run.container:
            run.error = "pod has no containers"
            return False
        secrets, cms = await self._lookups(pod.namespace)
        if pod.terminating:  # killed meanwhile: start nothing more
            return False
        # Downward API values come from the pod as the API stored it.
        view = {**pod.pod, "status": {"podIP": pod.ip, "hostIP": "127.0.0.1"}}
        try:
            spec = build_process(
                view,
                run.container,
                secrets=secrets,
                config_maps=cms,
                pod_dir=pod.dir,
                free_port=free_port,
                extra_env=self.extra_env,
                cwd=self.cwd,
                init=run.init,
            )
        except EnvError as exc:
            if not run.error:
                run.error = str(exc)
                await self._pod_status(pod, "Pending")
            return False
        run.error = ""
        process = LocalProcess(
            spec, container_files(pod.dir, run.name, init=run.init).log, hostname=pod.name
        )
        try:
            await process.start()
        except OSError as exc:
            run.error = f"cannot start {spec.argv[0]!r}: {exc.strerror or exc}"
            run.exit_code, run.message = 128, run.error
            run.started_at = run.finished_at = _now()
            return False
        run.process = process
        run.started_at = _now()
        if not run.init:
            await self._forward_ports(pod, spec.ports)
        return True

    @staticmethod
    async def _wait_container(run: ContainerRun) -> int:
        """Wait for a started container's exit and record it as the kubelet does."""
        assert run.process is not None
        code = await run.process.wait()
        run.message = run.process.termination_message()
        run.finished_at = _now()
        run.exit_code = code
        return code

    async def _run_init_containers(self, pod: PodRun, *, restart: bool) -> bool:
        """Run the init containers one after another, each to completion, before the main one.

        True when all completed. A failed one fails the pod (phase Failed, False returned)
        unless `restart` (restartPolicy Always): then it is started again after a backoff, the
        pod staying Pending. False too when the pod is stopped meanwhile.
        """
        for run in pod.init:
            backoff = 1.0
            while not run.completed:
                if pod.terminating:
                    return False
                if await self._start_container(pod, run):
                    await self._pod_status(pod, "Pending")
                    await self._wait_container(run)
                elif run.exit_code is None:  # the kubelet retries missing Secrets/ConfigMaps
                    await asyncio.sleep(1.0)
                    continue
                if run.completed:
                    break
                if not restart:
                    await self._pod_status(pod, "Failed")
                    return False
                log.warning(
                    "pod %s: init container %s exited with %s; restarting",
                    pod.name,
                    run.name,
                    run.exit_code,
                )
                await self._pod_status(pod, "Pending")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30)
                run.restarts += 1
                run.exit_code, run.message, run.started_at, run.finished_at = None, "", None, None
        return not pod.terminating

    async def _forward_ports(self, pod: PodRun, ports: Mapping[int, int]) -> None:
        """Make `podIP:containerPort` reach the process, as in a cluster (`podnet`)."""
        await self._close_forwards(pod)
        if pod.ip == "127.0.0.1":
            return
        for container_port, local_port in ports.items():
            forward = PortForward(pod.ip, container_port, local_port)
            try:
                await forward.start()
            except OSError as exc:
                log.warning(
                    "pod %s: cannot listen on %s:%s: %s", pod.name, pod.ip, container_port, exc
                )
                continue
            pod.forwards.append(forward)

    @staticmethod
    async def _close_forwards(pod: PodRun) -> None:
        forwards, pod.forwards = pod.forwards, []
        for forward in forwards:
            await forward.close()

    async def _kill(self, pod: PodRun, grace: float = MAX_GRACE) -> None:
        pod.terminating = True
        pod.ready = False
        await self._terminate(pod, grace)
        await self._close_forwards(pod)
        if pod.task is not None and not pod.task.done():
            pod.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pod.task
        # A container its task was starting while the others were terminated.
        await self._terminate(pod, grace, only_running=True)

    @staticmethod
    async def _terminate(pod: PodRun, grace: float, *, only_running: bool = False) -> None:
        for run in pod.containers:
            if run.process is not None and (run.process.running or not only_running):
                await run.process.terminate(grace)

    def _pod_dir(self, namespace: str, name: str) -> Path:
        path = self.workdir / "pods" / namespace / name
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    # -- Jobs --------------------------------------------------------------------------------

    async def _reconcile_jobs(self) -> None:
        jobs = await self.api.list(JOBS)
        seen = set()
        for job in jobs:
            uid = job["metadata"]["uid"]
            seen.add(uid)
            run = self.jobs.get(uid)
            if run is None:
                conditions = (job.get("status") or {}).get("conditions") or []
                if any(c.get("type") in ("Complete", "Failed") for c in conditions):
                    await self._job_ttl(job)
                    continue
                if (job.get("spec") or {}).get("suspend"):
                    continue
                run = JobRun(job)
                self.jobs[uid] = run
                await self.api.patch(
                    JOBS,
                    job["metadata"]["namespace"],
                    job["metadata"]["name"],
                    {"status": {"startTime": _now(), "active": 0}},
                    subresource="status",
                )
            run.job = job
            if run.finished:
                await self._job_ttl(job)
                continue
            await self._step_job(run)
        for uid in list(self.jobs):
            if uid not in seen:  # deleted (or garbage-collected): its pods go with it
                run = self.jobs.pop(uid)
                await asyncio.gather(*(self._kill(p) for p in run.pods), return_exceptions=True)

    async def _job_ttl(self, job: dict[str, Any]) -> None:
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        done = (job.get("status") or {}).get("completionTime") or next(
            (
                c.get("lastTransitionTime")
                for c in (job.get("status") or {}).get("conditions") or []
                if c.get("type") == "Failed"
            ),
            None,
        )
        if ttl is None or done is None:
            return
        finished = datetime.datetime.fromisoformat(done.replace("Z", "+00:00"))
        if (datetime.datetime.now(tz=datetime.UTC) - finished).total_seconds() >= ttl:
            await self.api.delete(JOBS, job["metadata"]["namespace"], job["metadata"]["name"])
            self.jobs.pop(job["metadata"]["uid"], None)

    async def _step_job(self, run: JobRun) -> None:
        job = run.job
        spec = job.get("spec") or {}
        meta = job["metadata"]
        indexes = completion_indexes(job)
        indexed = spec.get("completionMode") == "Indexed"
        backoff = int(spec.get("backoffLimit", 6))
        parallelism = int(spec.get("parallelism", 1) or 1)
        succeeded = [p for p in run.pods if p.done and p.exit_code == 0]
        failed = [p for p in run.pods if p.done and p.exit_code != 0]
        active = [p for p in run.pods if not p.done]

        reason = ""
        if len(failed) > backoff:
            reason = "BackoffLimitExceeded"
        deadline = spec.get("activeDeadlineSeconds")
        if deadline is not None and time.monotonic() - run.started > float(deadline):
            reason = "DeadlineExceeded"
        if indexed:
            done_indexes = {p.index for p in succeeded}
            todo = [i for i in indexes if i not in done_indexes]
        else:
            todo = [None] * max(len(indexes) - len(succeeded), 0)
        complete = not todo and not reason

        if reason or complete:
            await asyncio.gather(*(self._kill(p) for p in active), return_exceptions=True)
            await self._finish_job(run, succeeded, failed, reason)
            return

        running_indexes = {p.index for p in active}
        recent_failure = max((p.finished_at or "" for p in failed), default="")
        can_start = parallelism - len(active)
        for index in todo:
            if can_start <= 0:
                break
            if indexed and index in running_indexes:
                continue
            if not indexed and len(active) >= len(todo):
                break
            # A retry waits a little (the controller's backoff is 10 s doubling).
            if failed and recent_failure and recent_failure >= _now():
                break
            pod = self._job_pod(run, index)
            run.pods.append(pod)
            active.append(pod)
            can_start -= 1
            await self._create_pod(pod)
            pod.task = asyncio.create_task(self._run_job_pod(run, pod))
        ready = sum(1 for p in active if p.main.process is not None and p.main.process.running)
        await self._patch_job(
            meta,
            {
                "active": len(active),
                "ready": ready,
                "succeeded": len(succeeded),
                "failed": len(failed),
                **self._indexes(run, indexed),
            },
        )

    def _indexes(self, run: JobRun, indexed: bool) -> dict[str, Any]:
        if not indexed:
            return {}
        done = sorted(
            {p.index for p in run.pods if p.done and p.exit_code == 0 and p.index is not None}
        )
        return {"completedIndexes": ",".join(str(i) for i in done)} if done else {}

    def _job_pod(self, run: JobRun, index: int | None) -> PodRun:
        meta = run.job["metadata"]
        namespace = meta["namespace"]
        name = (
            f"{meta['name']}-{index}-{_suffix()}"
            if index is not None
            else (f"{meta['name']}-{_suffix()}")
        )
        labels = {
            "batch.kubernetes.io/job-name": meta["name"],
            "job-name": meta["name"],
            "batch.kubernetes.io/controller-uid": meta["uid"],
            "controller-uid": meta["uid"],
        }
        annotations = {}
        if index is not None:
            labels["batch.kubernetes.io/job-completion-index"] = str(index)
            annotations["batch.kubernetes.io/job-completion-index"] = str(index)
        template = (run.job.get("spec") or {}).get("template") or {}
        pod = pod_from_template(
            template,
            name=name,
            namespace=namespace,
            owner=run.job,
            labels=labels,
            annotations=annotations,
        )
        if index is not None and pod["spec"].get("subdomain"):
            pod["spec"].setdefault("hostname", f"{meta['name']}-{index}")
        return PodRun(name, namespace, pod, self._pod_dir(namespace, name), index=index)

    async def _run_job_pod(self, run: JobRun, pod: PodRun) -> None:
        try:
            await self._job_pod_lifecycle(pod)
        except (ApiError, aiohttp.ClientError, OSError) as exc:
            # The kubelet reports what it could not do as a failed pod; so does this.
            log.warning("pod %s failed to run: %s", pod.name, exc)
            await self._terminate(pod, 1.0)
            if not pod.done:  # the container it was at ends the pod
                current = next(c for c in pod.containers if c.exit_code is None)
                current.exit_code, current.message = 128, f"local pod runner: {exc}"
                current.finished_at = _now()

    async def _job_pod_lifecycle(self, pod: PodRun) -> None:
        # restartPolicy OnFailure is run as Never: a failed init container fails the pod.
        if not await self._run_init_containers(pod, restart=False):
            return
        while not await self._start_container(pod, pod.main):
            if pod.main.exit_code is not None:  # the command itself cannot start
                await self._pod_status(pod, "Failed")
                return
            await asyncio.sleep(1.0)  # the kubelet retries missing Secrets/ConfigMaps
        await self._pod_status(pod, "Running")
        code = await self._wait_container(pod.main)
        await self._pod_status(pod, "Succeeded" if code == 0 else "Failed")

    async def _patch_job(self, meta: Mapping[str, Any], status: dict[str, Any]) -> None:
        with contextlib.suppress(ApiError):
            await self.api.patch(
                JOBS, meta["namespace"], meta["name"], {"status": status}, subresource="status"
            )

    async def _finish_job(
        self, run: JobRun, succeeded: list[PodRun], failed: list[PodRun], reason: str
    ) -> None:
        run.finished = True
        run.finished_at = time.monotonic()
        now = _now()
        indexed = (run.job.get("spec") or {}).get("completionMode") == "Indexed"
        failed = [p for p in run.pods if p.done and p.exit_code != 0]
        if reason:
            message = {
                "BackoffLimitExceeded": "Job has reached the specified backoff limit",
                "DeadlineExceeded": "Job was active longer than specified deadline",
            }[reason]
            conditions = [
                {
                    "type": "FailureTarget",
                    "status": "True",
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": now,
                    "lastProbeTime": now,
                },
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": now,
                    "lastProbeTime": now,
                },
            ]
            extra: dict[str, Any] = {}
        else:
            conditions = [
                {
                    "type": "SuccessCriteriaMet",
                    "status": "True",
                    "reason": "CompletionsReached",
                    "message": "Reached expected number of succeeded pods",
                    "lastTransitionTime": now,
                    "lastProbeTime": now,
                },
                {
                    "type": "Complete",
                    "status": "True",
                    "reason": "CompletionsReached",
                    "message": "Reached expected number of succeeded pods",
                    "lastTransitionTime": now,
                    "lastProbeTime": now,
                },
            ]
            extra = {"completionTime": now}
        await self._patch_job(
            run.job["metadata"],
            {
                "active": 0,
                "ready": 0,
                "succeeded": len(succeeded),
                "failed": len(failed),
                "conditions": conditions,
                **extra,
                **self._indexes(run, indexed),
            },
        )

    # -- CronJobs ----------------------------------------------------------------------------

    async def trigger(self, namespace: str, name: str) -> dict[str, Any]:
        """Create a Job from a CronJob now (`kubectl create job --from=cronjob/<name>`)."""
        cronjob = await self.api.get(CRONJOBS, namespace, name)
        if cronjob is None:
            raise ApiError(404, f"cronjob {namespace}/{name} not found")
        return await self.api.create(JOBS, job_from_cronjob(cronjob))

    async def _reconcile_cronjobs(self) -> None:
        now = datetime.datetime.now(tz=datetime.UTC)
        jobs = await self.api.list(JOBS)
        for cronjob in await self.api.list(CRONJOBS):
            meta, spec = cronjob["metadata"], cronjob.get("spec") or {}
            owned = [
                j
                for j in jobs
                if any(
                    o.get("uid") == meta["uid"] for o in j["metadata"].get("ownerReferences") or []
                )
            ]

            def finished(j: dict[str, Any], kind: str | None = None) -> bool:
                conds = (j.get("status") or {}).get("conditions") or []
                kinds = (kind,) if kind else ("Complete", "Failed")
                return any(c.get("type") in kinds and c.get("status") == "True" for c in conds)

            active = [j for j in owned if not finished(j)]
            status: dict[str, Any] = {
                "active": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": j["metadata"]["name"],
                        "namespace": meta["namespace"],
                        "uid": j["metadata"]["uid"],
                    }
                    for j in active
                ]
                or None,
            }
            successes = sorted(
                (j.get("status") or {}).get("completionTime", "")
                for j in owned
                if finished(j, "Complete")
            )
            if successes:
                status["lastSuccessfulTime"] = successes[-1]
            due = due_time(cronjob, now)
            if due is not None:
                policy = spec.get("concurrencyPolicy", "Allow")
                if policy == "Forbid" and active:
                    due = None
                elif policy == "Replace":
                    for j in active:
                        await self.api.delete(JOBS, meta["namespace"], j["metadata"]["name"])
            if due is not None:
                job = job_from_cronjob(cronjob, scheduled=due)
                try:
                    await self.api.create(JOBS, job)
                except ApiError as exc:
                    if exc.status != 409:
                        raise
                status["lastScheduleTime"] = due.strftime("%Y-%m-%dT%H:%M:%SZ")
            previous = cronjob.get("status") or {}
            if any(previous.get(k) != v for k, v in status.items()):
                # Only on change: every write is a watch event the operator has to process.
                await self.api.patch(
                    CRONJOBS,
                    meta["namespace"],
                    meta["name"],
                    {"status": status},
                    subresource="status",
                )
            await self._cronjob_history(cronjob, owned, finished)

    async def _cronjob_history(
        self, cronjob: dict[str, Any], owned: list[dict[str, Any]], finished: Any
    ) -> None:
        spec = cronjob.get("spec") or {}
        for kind, limit in (
            ("Complete", int(spec.get("successfulJobsHistoryLimit", 3))),
            ("Failed", int(spec.get("failedJobsHistoryLimit", 1))),
        ):
            done = sorted(
                (j for j in owned if finished(j, kind)),
                key=lambda j: j["metadata"].get("creationTimestamp", ""),
            )
            for j in done[: max(len(done) - limit, 0)]:
                await self.api.delete(JOBS, j["metadata"]["namespace"], j["metadata"]["name"])

    # -- Deployments -------------------------------------------------------------------------

    async def _reconcile_deployments(self) -> None:
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
                await asyncio.gather(*(self._stop_pod(p) for p in run.pods), return_exceptions=True)

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
                self._spawn(self._stop_pod(pod))
        for _ in range(max(start, 0)):
            pod = self._deployment_pod(run, current)
            run.pods.append(pod)
            await self._create_pod(pod)
            pod.task = asyncio.create_task(self._run_server_pod(pod))
        for pod in sorted(old, key=lambda p: p.ready)[:stop]:
            self._spawn(self._stop_pod(pod))
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
        now = _now()
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
        name = f"{meta['name']}-{template_hash[:10]}-{_suffix()}"
        template = (run.deployment.get("spec") or {}).get("template") or {}
        pod = pod_from_template(
            template,
            name=name,
            namespace=namespace,
            owner=run.deployment,
            labels={"pod-template-hash": template_hash},
        )
        return PodRun(
            name, namespace, pod, self._pod_dir(namespace, name), template_hash=template_hash
        )

    async def _run_server_pod(self, pod: PodRun) -> None:
        """Init containers, then start, probe, and restart on crash (restartPolicy Always)
        until stopped."""
        if not await self._run_init_containers(pod, restart=True):
            return
        main = pod.main
        backoff = 1.0
        while not pod.terminating:
            if not await self._start_container(pod, main):
                if main.exit_code is not None:
                    main.exit_code = None
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30)
                    continue
                await asyncio.sleep(1.0)
                continue
            await self._pod_status(pod, "Running")
            assert main.process is not None
            probe_task = asyncio.create_task(self._probe_loop(pod))
            code = await main.process.wait()
            probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probe_task
            pod.ready = False
            if pod.terminating:
                return
            main.restarts += 1
            log.warning(
                "pod %s exited with %s; restarting (log: %s)",
                pod.name,
                code,
                container_files(pod.dir, main.name).log,
            )
            await self._pod_status(pod, "Running")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30)

    async def _probe_loop(self, pod: PodRun) -> None:
        process = pod.main.process
        assert process is not None
        probe = process.spec.readiness
        if probe is None:
            pod.ready = True
            await self._pod_status(pod, "Running")
            return
        await asyncio.sleep(probe.initial_delay_seconds)
        failures = 0
        period = min(probe.period_seconds, PROBE_PERIOD_CAP)
        timeout = aiohttp.ClientTimeout(total=max(probe.timeout_seconds, 0.5))
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while process.running and not pod.terminating:
                try:
                    async with session.get(probe.url) as response:
                        ok = 200 <= response.status < 400
                except (aiohttp.ClientError, TimeoutError, OSError):
                    ok = False
                failures = 0 if ok else failures + 1
                was = pod.ready
                if ok:
                    pod.ready = True
                elif failures >= probe.failure_threshold:
                    pod.ready = False
                if was != pod.ready:
                    await self._pod_status(pod, "Running")
                # Before the first success, probe fast so a new replica joins quickly.
                await asyncio.sleep(period if pod.ready else min(period, 0.2))

    async def _stop_pod(self, pod: PodRun) -> None:
        """Graceful delete: out of every Service first, drain, SIGTERM, then the Pod object."""
        if pod.terminating:
            return
        pod.terminating = True
        pod.ready = False
        with contextlib.suppress(ApiError):
            await self.api.patch(
                PODS, pod.namespace, pod.name, {"metadata": {"deletionTimestamp": _now()}}
            )
        await asyncio.gather(*(proxy.drain(pod.name) for proxy in self.proxies.values()))
        grace = float(pod.pod.get("spec", {}).get("terminationGracePeriodSeconds", 30))
        await self._kill(pod, grace=min(grace, MAX_GRACE))
        with contextlib.suppress(ApiError):
            await self.api.delete(PODS, pod.namespace, pod.name)

    # -- Services ----------------------------------------------------------------------------

    async def _reconcile_services(self) -> None:
        wanted: set[tuple[str, str, int]] = set()
        pods = [p for run in self.deployments.values() for p in run.pods]
        for service in await self.api.list(SERVICES):
            meta, spec = service["metadata"], service.get("spec") or {}
            selector = spec.get("selector")
            if not selector or spec.get("clusterIP") == "None":
                continue  # headless: DNS only, nothing to proxy
            urls = []
            for port in spec.get("ports") or []:
                key = (meta["namespace"], meta["name"], int(port["port"]))
                wanted.add(key)
                proxy = self.proxies.get(key)
                if proxy is None:
                    proxy = ServiceProxy(
                        f"{meta['namespace']}/{meta['name']}", self._service_ports.get(key, 0)
                    )
                    await proxy.start()
                    self._service_ports[key] = proxy.port
                    self.proxies[key] = proxy
                urls.append(proxy.url)
                target = port.get("targetPort", port["port"])
                endpoints = {}
                for pod in pods:
                    if pod.namespace != meta["namespace"] or not pod.ready or pod.terminating:
                        continue
                    if not label_match(selector, pod.pod["metadata"].get("labels") or {}):
                        continue
                    assert pod.main.process is not None
                    spec_ = pod.main.process.spec
                    local = (
                        spec_.named_ports.get(target)
                        if isinstance(target, str) and not target.isdigit()
                        else spec_.ports.get(int(target))
                    )
                    if local is not None:
                        endpoints[pod.name] = local
                proxy.set_endpoints(endpoints)
            annotations = meta.get("annotations") or {}
            if urls and annotations.get(LOCAL_URL_ANNOTATION) != urls[0]:
                await self.api.patch(
                    SERVICES,
                    meta["namespace"],
                    meta["name"],
                    {"metadata": {"annotations": {LOCAL_URL_ANNOTATION: urls[0]}}},
                )
        for key in list(self.proxies):
            if key not in wanted:
                await self.proxies.pop(key).stop()

    def service_url(self, namespace: str, name: str) -> str | None:
        """The loopback URL of a Service's first port, once it is proxied."""
        for (ns, svc, _), proxy in self.proxies.items():
            if (ns, svc) == (namespace, name):
                return proxy.url
        return None
