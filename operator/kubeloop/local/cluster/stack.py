"""The local "cluster": emulated API + the real operator process + the pod runner.

`LocalStack` starts, in this order: the emulator
(`kubeloop.local.cluster.emulator.EmulatorThread`, HTTP on loopback), `kubeloop operator` as a
child process pointed at it with `KUBELOOP_KUBE_SERVER` (exactly the operator a cluster runs,
cluster-wide; kept running by `kubeloop.local.cluster.supervisor` when `restart_operator`), and
the pod runner in the caller's event loop. The emulator's URL, this process's and the
operator's pids go to `<state_dir>/local.json` (`kubeloop.local.cluster.statefile`) so
`kubeloop local get` and `down` in another shell find them (or set `KUBELOOP_LOCAL_URL`); pods
(and `kubectl`) reach the API through `<state_dir>/kubeconfig`, written as JSON
(`write_kubeconfig`). Everything is stopped on exit, children first, and the state file removed
last. The API's objects live in this process's memory only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from kubeloop.local.cluster.emulator import RESOURCES, EmulatorThread
from kubeloop.local.cluster.kubeapi import ApiError, KubeApi
from kubeloop.local.cluster.podlogs import PodLogs
from kubeloop.local.cluster.podrunner import PodRunner
from kubeloop.local.cluster.processes import host_env
from kubeloop.local.cluster.statefile import (
    POD_MARKER,
    STATE_FILE,
    ClusterState,
    claim_state_dir,
    remove_state,
    write_state,
)
from kubeloop.local.cluster.supervisor import OperatorSupervisor

__all__ = [
    "LocalStack",
    "apply_objects",
    "load_manifests",
    "read_state",
    "resource_of",
    "write_kubeconfig",
]

_EXTRA = {"Secret": "v1/secrets", "ConfigMap": "v1/configmaps"}


def resource_of(obj: Mapping[str, Any]) -> str:
    """The `group/version/plural` of a manifest's kind."""
    kind, api_version = obj["kind"], obj["apiVersion"]
    if kind in _EXTRA:
        return _EXTRA[kind]
    for path, (known, _, _) in RESOURCES.items():
        if known == kind and path.rsplit("/", 1)[0] == api_version:
            return path
    raise ValueError(f"{api_version} {kind} is not served by the local API")


def load_manifests(paths: list[Path]) -> list[dict[str, Any]]:
    """Every YAML document of the files (folders: their *.yaml), in order."""
    out: list[dict[str, Any]] = []
    for path in paths:
        files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        for file in files:
            out += [doc for doc in yaml.safe_load_all(file.read_text()) if doc]
    return out


async def apply_objects(api: KubeApi, objects: list[dict[str, Any]]) -> list[str]:
    """Create the objects (namespaces first, as kubectl apply would need); `kind/name` lines.

    An object that exists is merge-patched (its spec, labels and annotations), like apply.
    """
    done = []
    namespaces = {o["metadata"].get("namespace") for o in objects} - {None}
    for namespace in sorted(namespaces):
        with contextlib.suppress(ApiError):
            await api.create(
                "v1/namespaces",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            )
    for obj in objects:
        resource = resource_of(obj)
        meta = obj["metadata"]
        try:
            await api.create(resource, obj)
            verb = "created"
        except ApiError as exc:
            if exc.status != 409:
                raise
            patch = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "status")}
            await api.patch(resource, meta.get("namespace"), meta["name"], patch)
            verb = "configured"
        done.append(f"{obj['kind'].lower()}/{meta['name']} {verb}")
    return done


def write_kubeconfig(path: Path, server: str) -> None:
    """A kubeconfig for the emulated API at `server`, written as JSON.

    JSON is YAML, so kubectl and the kubernetes client read it as any kubeconfig; and a pod's
    standard-library-only code (the training SDK) can read it with `json`, no YAML parser.
    """
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": server}}],
        "users": [{"name": "local", "user": {}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "local"}}],
        "current-context": "local",
    }
    path.write_text(json.dumps(config, indent=2) + "\n")


def read_state(state_dir: Path) -> dict[str, Any]:
    """The running stack's state file ({} when none)."""
    path = state_dir / STATE_FILE
    if not path.exists():
        return {}
    state: dict[str, Any] = json.loads(path.read_text())
    return state


class LocalStack:
    """Emulator + operator + pod runner; `async with LocalStack(dir) as stack: ...`."""

    def __init__(
        self,
        state_dir: Path,
        *,
        operator_env: Mapping[str, str] | None = None,
        workload_env: Mapping[str, str] | None = None,
        resync_seconds: float = 2.0,
        operator_api: Callable[[str], str] | None = None,
        restart_operator: bool = False,
        report: Callable[[str], None] | None = None,
    ) -> None:
        """`operator_api` maps the emulator's URL to the one the operator is given (the
        reliability tests put a fault-injecting proxy between them); the pod runner and the
        caller always talk to the emulator directly. `restart_operator`: restart the operator
        when it exits, with back-off (`kubeloop local up`); otherwise an exit is final, for runs
        that must notice it. `report` gets the operator's exit and restart messages."""
        self.state_dir = state_dir.resolve()
        self.operator_api = operator_api
        self.operator_env = dict(operator_env or {})
        self.workload_env = dict(workload_env or {})
        self.resync_seconds = resync_seconds
        self.restart_operator = restart_operator
        self.report = report
        self.cluster = EmulatorThread()
        self.operator: OperatorSupervisor | None = None
        self.replaced: ClusterState | None = None
        self.runner: PodRunner | None = None
        self.api: KubeApi | None = None

    @property
    def url(self) -> str:
        """The emulated API's URL."""
        return self.cluster.url

    @property
    def operator_log(self) -> Path:
        """Where the operator's output goes."""
        return self.state_dir / "operator.log"

    async def __aenter__(self) -> LocalStack:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # Raises while another stack runs from this dir: two would share pods/ and its logs.
        self.replaced = claim_state_dir(self.state_dir)
        self.cluster.__enter__()
        try:
            await self._start()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def _start(self) -> None:
        kubeconfig = self.state_dir / "kubeconfig"
        write_kubeconfig(kubeconfig, self.url)
        env = {
            **host_env(),
            "KUBELOOP_KUBE_SERVER": self.operator_api(self.url) if self.operator_api else self.url,
            "KUBELOOP_METRICS_PORT": "0",
            "KUBELOOP_RESYNC_SECONDS": str(self.resync_seconds),
            **self.operator_env,
        }
        self.operator = OperatorSupervisor(
            [sys.executable, "-m", "kubeloop.cli", "operator", "--liveness", ""],
            env,
            self.operator_log,
            restart=self.restart_operator,
            on_start=self._record,
            report=self.report,
        )
        await self.operator.start()
        # Pods reach the API through a kubeconfig (the stand-in for in-cluster config).
        self.runner = PodRunner(
            self.url,
            self.state_dir / "cluster",
            extra_env={
                "KUBECONFIG": str(kubeconfig),
                POD_MARKER: str(self.state_dir),  # finds them if `up` dies without stopping them
                **self.workload_env,
            },
            interval=0.5,  # a controller-like resync; 4 Hz cost a third of a core when idle
            cwd=os.getcwd(),
        )
        # `kubectl logs` reads what the runner captured, through the API as on a cluster.
        self.cluster.emulator.pod_logs = PodLogs(self.runner.workdir)
        await self.runner.start()
        self.api = KubeApi(self.url)
        self._record()

    def _record(self, *_: int) -> None:
        """(Re)write the state file: at start, and on each operator start (its pid changes)."""
        if self.api is None:
            return  # the first operator start comes before the API client: written once ready
        operator = self.operator
        write_state(
            self.state_dir,
            ClusterState(
                url=self.url,
                pid=os.getpid(),
                kubeconfig=str(self.state_dir / "kubeconfig"),
                operator_pid=operator.pid if operator is not None else None,
                operator_restarts=operator.restarts if operator is not None else 0,
                operator_log=str(self.operator_log),
            ),
        )

    def operator_alive(self) -> bool:
        """Whether an operator process runs now (between restarts it does not)."""
        return self.operator is not None and self.operator.alive

    async def __aexit__(self, *exc: object) -> None:
        # Both at once: each waits out grace periods. The runner stops reconciling first thing,
        # so nothing the operator still writes meanwhile starts a process.
        stops = []
        if self.operator is not None:
            stops.append(self.operator.stop())
        if self.runner is not None:
            stops.append(self.runner.stop())
        await asyncio.gather(*stops)
        if self.api is not None:
            await self.api.close()
        self.cluster.__exit__(None, None, None)
        # Last: `kubeloop local down` waits for the file to go as the sign that all has stopped.
        remove_state(self.state_dir)
