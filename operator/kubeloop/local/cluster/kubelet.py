"""The kubelet part of the local pod runner: a pod's containers as local processes.

Creating the Pod object, starting its containers (`podspec` says how a container becomes a
process), init containers one after another, readiness probes, the pod's address and port
forwards (`podnet`), status writes (`podstatus`), and stopping: what a kubelet does, for the Job,
Deployment and Service controllers (`jobcontroller`, `deploymentcontroller`) that own the pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import secrets as random
import shutil
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from kubeloop.local.cluster.kubeapi import ApiError, KubeApi
from kubeloop.local.cluster.podnet import PodNetwork, PortForward
from kubeloop.local.cluster.podspec import EnvError, build_process, container_files
from kubeloop.local.cluster.podstatus import ContainerRun, ended_by, pod_status
from kubeloop.local.cluster.processes import LocalProcess, free_port

__all__ = ["MAX_GRACE", "Kubelet", "PodRun", "api_now", "suffix"]

log = logging.getLogger("kubeloop.local.cluster.podrunner")

PODS, SECRETS, CONFIGMAPS = "v1/pods", "v1/secrets", "v1/configmaps"
MAX_GRACE = 10.0
PROBE_PERIOD_CAP = 1.0


def api_now() -> str:
    """The current time as the API writes it."""
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def suffix() -> str:
    """A random pod name suffix, as the controllers make them."""
    return "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))


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


class Kubelet:
    """Runs pods on this machine (see the module docstring).

    `workdir` holds one folder per pod (emptyDir volumes, and per container a termination
    message and a log, see `kubeloop.local.cluster.podspec.container_files`); `extra_env` is
    given to every process; `drain` takes a stopping pod out of every Service first.
    """

    def __init__(
        self,
        api: KubeApi,
        workdir: Path,
        *,
        network: PodNetwork,
        drain: Callable[[str], Awaitable[None]],
        extra_env: Mapping[str, str],
        cwd: str | None,
    ) -> None:
        self.api = api
        self.workdir = workdir
        self.network = network
        self.drain = drain
        self.extra_env = dict(extra_env)
        self.cwd = cwd

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

    async def create_pod(self, pod: PodRun) -> None:
        """Create the Pod object, with an address of its own, Pending."""
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
            now=api_now(),
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
            run.started_at = run.finished_at = api_now()
            return False
        run.process = process
        run.started_at = api_now()
        # An init container's ports answer while it runs (a custom training run's user code
        # serves its progress from one); the next container's forwards replace them.
        if not run.init or spec.ports:
            await self._forward_ports(pod, spec.ports)
        return True

    @staticmethod
    async def _wait_container(run: ContainerRun) -> int:
        """Wait for a started container's exit and record it as the kubelet does."""
        assert run.process is not None
        code = await run.process.wait()
        run.message = run.process.termination_message()
        run.finished_at = api_now()
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
        if pod.ip == "127.0.0.1" or pod.terminating:  # a deleted pod's address answers no more
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

    async def kill(self, pod: PodRun, grace: float = MAX_GRACE) -> None:
        """Terminate every container of the pod (SIGTERM, SIGKILL after `grace`), its task too."""
        pod.terminating = True
        pod.ready = False
        await self._terminate(pod, grace)
        await self._close_forwards(pod)
        if pod.task is not None and not pod.task.done():
            pod.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pod.task
        # A container its task was starting while the others were terminated, and the ports
        # it forwarded then.
        await self._terminate(pod, grace, only_running=True)
        await self._close_forwards(pod)

    @staticmethod
    async def _terminate(pod: PodRun, grace: float, *, only_running: bool = False) -> None:
        for run in pod.containers:
            if run.process is not None and (run.process.running or not only_running):
                await run.process.terminate(grace)

    def pod_dir(self, namespace: str, name: str) -> Path:
        """A fresh, empty folder for a pod's volumes, logs and messages."""
        path = self.workdir / "pods" / namespace / name
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    async def run_to_completion(self, pod: PodRun) -> None:
        """Run a Job pod (restartPolicy Never): init containers, then the main one, once."""
        try:
            await self._job_pod_lifecycle(pod)
        except (ApiError, aiohttp.ClientError, OSError) as exc:
            # The kubelet reports what it could not do as a failed pod; so does this.
            log.warning("pod %s failed to run: %s", pod.name, exc)
            await self._terminate(pod, 1.0)
            if not pod.done:  # the container it was at ends the pod
                current = next(c for c in pod.containers if c.exit_code is None)
                current.exit_code, current.message = 128, f"local pod runner: {exc}"
                current.finished_at = api_now()

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

    async def run_restarting(self, pod: PodRun) -> None:
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
                    # ssl=False: a kubelet's HTTPS probe does not verify the certificate either.
                    async with session.get(probe.url, ssl=False) as response:
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

    async def stop_pod(self, pod: PodRun) -> None:
        """Graceful delete: out of every Service first, drain, SIGTERM, then the Pod object."""
        if pod.terminating:
            return
        pod.terminating = True
        pod.ready = False
        with contextlib.suppress(ApiError):
            await self.api.patch(
                PODS, pod.namespace, pod.name, {"metadata": {"deletionTimestamp": api_now()}}
            )
        await self.drain(pod.name)
        grace = float(pod.pod.get("spec", {}).get("terminationGracePeriodSeconds", 30))
        await self.kill(pod, grace=min(grace, MAX_GRACE))
        with contextlib.suppress(ApiError):
            await self.api.delete(PODS, pod.namespace, pod.name)
