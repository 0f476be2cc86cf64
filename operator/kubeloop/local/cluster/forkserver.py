"""Containers started by forking a warm Python instead of starting a cold one.

A pod of `kubeloop local` is a process of this machine's Python, and most pods are Kubeloop's
own workloads (trainer, server, monitor, registry and data-check Jobs). Most of a short pod's
CPU is its start: importing NumPy, pyarrow, pydantic and scikit-learn (which pulls in SciPy)
costs 2-3 CPU-seconds on a small machine, in every pod. So, as multiprocessing's forkserver and
gunicorn's `--preload` do, one process (zygote.py) imports those once and forks a child per
container; the child takes the container's argv, environment, working directory and log, starts
its own session (the pod's process group), and runs the program as `python -m MODULE`,
`python SCRIPT` or the `kubeloop` console script would. Thread pools of the preloaded native
libraries are sized after the fork from the container's OMP_NUM_THREADS & co., as a fresh
interpreter would size them when it loads them.

What a fork cannot reproduce, it does not try (`fork_plan` returns None and the container starts
as a fresh process, as before): a program that is not this Python, interpreter options (`-c`,
`-u`, `-X`...), an environment with PYTHON* variables the interpreter reads at start (other than
PYTHONPATH, PYTHONUNBUFFERED, PYTHONDONTWRITEBYTECODE) or LD_* variables. A fork server that
cannot start, or dies, also falls back to fresh processes. KUBELOOP_LOCAL_FORKSERVER=0 turns it
off.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import json
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "PRELOAD",
    "ForkPlan",
    "ForkServer",
    "ForkedProcess",
    "close_shared",
    "fork_plan",
    "shared",
]

log = logging.getLogger("kubeloop.local")

# What Kubeloop's workloads import first; a library missing here is skipped. Not preloaded on
# purpose: prometheus_client (reads PROMETHEUS_MULTIPROC_DIR at import, which the server sets),
# grpc (not fork-safe once started), torch (only the torch workloads need it).
PRELOAD = (
    "numpy",
    "pyarrow",
    "pyarrow.parquet",
    "pyarrow.compute",
    "pydantic",
    "yaml",
    "sklearn.base",
    "sklearn.pipeline",
    "sklearn.compose",
    "sklearn.preprocessing",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "threadpoolctl",
    "uvicorn",
    "xgboost",
    # The specs' pydantic models (a quarter-second to build) and the trainer's own modules, which
    # it imports when it runs: importing them in every trial's pod cost ~0.15 s of its ~0.3 s.
    "kubeloop.api.training",
    "kubeloop.workloads.trainer.main",
    "kubeloop.workloads.trainer.run",
    "kubeloop.workloads.trainer.trial",
)
_SAFE_PYTHON_ENV = {"PYTHONPATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}
_START_TIMEOUT = 120.0  # the first spawn waits for the preload (seconds on a loaded machine)


@dataclass(frozen=True)
class ForkPlan:
    """How a forked child runs a container's command."""

    kind: str  # "module": python -m TARGET | "script": python TARGET | "kubeloop": the CLI
    target: str
    args: list[str]


def fork_plan(
    argv: Sequence[str], env: Mapping[str, str], executable: str = sys.executable
) -> ForkPlan | None:
    """The plan for running `argv` in a fork of this Python, or None when only a fresh process
    would behave the same."""
    if not argv:
        return None
    if any(
        (name.startswith("PYTHON") and name not in _SAFE_PYTHON_ENV) or name.startswith("LD_")
        for name in env
    ):
        return None
    if argv[0] == "kubeloop":
        return ForkPlan("kubeloop", "kubeloop.cli", list(argv[1:]))
    if argv[0] != executable or len(argv) < 2:
        return None
    if argv[1] == "-m":
        return ForkPlan("module", argv[2], list(argv[3:])) if len(argv) > 2 else None
    if argv[1].startswith("-") or not argv[1].endswith(".py"):
        return None
    return ForkPlan("script", argv[1], list(argv[2:]))


class ForkedProcess:
    """A child of the fork server, with the part of asyncio's Process the pod runner uses."""

    def __init__(self, pid: int, exited: concurrent.futures.Future[int]) -> None:
        self.pid = pid
        self._exited = exited

    @property
    def returncode(self) -> int | None:
        """The exit code (-N: killed by signal N) once it has ended."""
        return self._exited.result() if self._exited.done() else None

    async def wait(self) -> int:
        """Wait for the exit (a cancelled wait leaves the exit to be heard by the next one)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[int] = loop.create_future()

        def resolve(code: int) -> None:
            if not waiter.done():
                waiter.set_result(code)

        def exited(future: concurrent.futures.Future[int]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(resolve, future.result())

        self._exited.add_done_callback(exited)
        return await waiter


class ForkServer:
    """The client end: starts the zygote, asks it for children, hears of their exits."""

    def __init__(
        self, preload: Sequence[str] = PRELOAD, inherit: Mapping[str, str] | None = None
    ) -> None:
        """`inherit`: variables every child must show in /proc/<pid>/environ, which is the
        environment a process was started with (a fork copies it; os.environ does not change
        it): the marker `kubeloop local` finds its pods by after a crash."""
        ours, theirs = socket.socketpair()
        env = {
            **os.environ,
            **(inherit or {}),
            **dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"), "1"),
        }
        env.pop("PYTHONSTARTUP", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kubeloop.local.cluster.zygote", str(theirs.fileno()), *preload],
            pass_fds=(theirs.fileno(),),
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        theirs.close()
        self._sock = ours
        self._ids = itertools.count(1)
        self._guard = threading.Lock()
        self._replies: dict[int, concurrent.futures.Future[dict[str, Any]]] = {}
        self._exits: dict[int, concurrent.futures.Future[int]] = {}
        self._early: dict[int, int] = {}
        self.alive = True
        threading.Thread(target=self._read, name="kubeloop-forkserver", daemon=True).start()

    def spawn(
        self, plan: ForkPlan, env: Mapping[str, str], cwd: str, log_path: Path
    ) -> ForkedProcess:
        """Fork a child running `plan`; blocks until it runs (OSError when it cannot)."""
        request_id = next(self._ids)
        reply: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        with self._guard:
            if not self.alive:
                raise OSError("the fork server has exited")
            self._replies[request_id] = reply
        message = {
            "id": request_id,
            "plan": asdict(plan),
            "env": dict(env),
            "cwd": cwd,
            "log": str(log_path),
        }
        self._sock.sendall(json.dumps(message).encode() + b"\n")
        answer = reply.result(timeout=_START_TIMEOUT)
        if "error" in answer:
            raise OSError(answer["error"])
        return ForkedProcess(answer["pid"], self._exits[answer["pid"]])

    def close(self) -> None:
        """End the zygote (its running children are the pods': the pod runner ends those)."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def _read(self) -> None:
        buffer = b""
        with contextlib.suppress(OSError):
            while chunk := self._sock.recv(65536):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    self._dispatch(json.loads(line))
        self._gone()

    def _dispatch(self, message: dict[str, Any]) -> None:
        with self._guard:
            if "exit" in message:
                self._exits.setdefault(message["exit"], concurrent.futures.Future()).set_result(
                    int(message["code"])
                )
                return
            if "pid" in message:  # before the reply is seen: an exit may follow at once
                self._exits.setdefault(message["pid"], concurrent.futures.Future())
            self._replies.pop(message["id"]).set_result(message)

    def _gone(self) -> None:
        """The zygote ended: no more spawns; children still running are watched by pid, and
        their exit code is lost (reported as killed)."""
        with self._guard:
            self.alive = False
            for reply in self._replies.values():
                reply.set_result({"error": "the fork server has exited"})
            orphans = {pid: f for pid, f in self._exits.items() if not f.done()}
        if orphans:
            log.warning("the fork server exited with %d pods running", len(orphans))
            threading.Thread(target=_watch, args=(orphans,), daemon=True).start()


def _watch(orphans: dict[int, concurrent.futures.Future[int]]) -> None:
    stop = threading.Event()
    while orphans and not stop.wait(0.5):  # polls a process that is not our child
        for pid in list(orphans):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                orphans.pop(pid).set_result(-9)
            except PermissionError:
                continue


# By the pid that started it (a fork starts its own) and the variables its children inherit.
_shared: dict[tuple[int, tuple[tuple[str, str], ...]], ForkServer] = {}
_shared_lock = threading.Lock()


def shared(inherit: Mapping[str, str] | None = None) -> ForkServer | None:
    """This process's fork server for children inheriting `inherit`, started on first use;
    None when turned off or dead."""
    if os.environ.get("KUBELOOP_LOCAL_FORKSERVER", "1") == "0":
        return None
    key = (os.getpid(), tuple(sorted((inherit or {}).items())))
    with _shared_lock:
        server = _shared.get(key)
        if server is not None:
            return server if server.alive else None  # died: fresh processes from now on
        try:
            server = ForkServer(inherit=inherit)
        except OSError as exc:
            log.warning("no fork server (%s): pods start as fresh processes", exc)
            return None
        _shared[key] = server
        return server


def close_shared(inherit: Mapping[str, str]) -> None:
    """End this process's fork server for `inherit` (a cluster stopping: `down` finds no process
    of it left); the next `shared` call starts a new one."""
    with _shared_lock:
        server = _shared.pop((os.getpid(), tuple(sorted(inherit.items()))), None)
    if server is not None:
        server.close()
