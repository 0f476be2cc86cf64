"""Local processes standing in for containers: start, wait, terminate, always clean up.

A container running this machine's Python is forked from a warm fork server when that behaves
the same as a fresh interpreter (forkserver.py), else started fresh. Each process gets its own
session (process group) so terminating a pod also ends whatever the container started
(torchrun workers, uvicorn workers). The environment is the container's plus the minimum a
program needs on this machine (PATH, HOME, LANG, PYTHONPATH), never the rest of the caller's
environment: a pod does not inherit the node's env either.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Any

from kubeloop.local.cluster import forkserver
from kubeloop.local.cluster.forkserver import ForkedProcess
from kubeloop.local.cluster.podspec import ProcessSpec
from kubeloop.local.cluster.statefile import POD_MARKER

__all__ = ["LocalProcess", "free_port", "host_env"]

_PASS_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "SYSTEMROOT")
MESSAGE_LIMIT = 4096  # the kubelet's cap on a termination message
FALLBACK_LINES = 80  # FallbackToLogsOnError: the last 80 lines (or 2048 bytes) of the log
FALLBACK_BYTES = 2048


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bound then released; callers use it at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def host_env() -> dict[str, str]:
    """What a process needs from this machine to run at all."""
    env = {k: os.environ[k] for k in _PASS_THROUGH if k in os.environ}
    # Workloads run from a source checkout import kubeloop from operator/.
    source_root = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source_root, env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class LocalProcess:
    """One container's process; logs go to `<log_path>`."""

    def __init__(self, spec: ProcessSpec, log_path: Path, *, hostname: str = "") -> None:
        self.spec = spec
        self.log_path = log_path
        self.hostname = hostname
        self.process: asyncio.subprocess.Process | ForkedProcess | None = None
        self.exit_code: int | None = None

    async def start(self) -> None:
        """Start the process (raises OSError when the command does not exist)."""
        env = {**host_env(), **self.spec.env}
        if self.hostname:
            env["HOSTNAME"] = self.hostname
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        plan = forkserver.fork_plan(self.spec.argv, env)
        # The marker `up` finds its pods by must be in the environment they started with.
        inherit = {POD_MARKER: env[POD_MARKER]} if POD_MARKER in env else None
        server = forkserver.shared(inherit) if plan is not None else None
        if plan is not None and server is not None:
            owned = _OwnedSpawn(server, plan, env, self.spec.cwd, self.log_path)
            spawning = asyncio.get_running_loop().run_in_executor(None, owned.run)
            try:
                self.process = await asyncio.shield(spawning)
                return
            except OSError:  # the fork server is gone: a fresh process
                pass
            except asyncio.CancelledError:
                # The pod was deleted while it started: the fork goes on in its thread, and the
                # child it makes belongs to nobody. It must not outlive the pod, also when this
                # loop is closed before the fork returns (then no loop callback would run).
                owned.disown()
                raise
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.spec.argv,
                env=env,
                cwd=self.spec.cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        """Started and not yet exited."""
        return self.process is not None and self.process.returncode is None

    async def wait(self) -> int:
        """Wait for the exit; the code follows the kubelet: 128 + signal when killed."""
        assert self.process is not None
        code = await self.process.wait()
        self.exit_code = 128 - code if code < 0 else code
        return self.exit_code

    def _signal(self, sig: int) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        _signal_pod(self.process.pid, sig)

    async def terminate(self, grace: float = 10.0) -> int | None:
        """SIGTERM the process group, SIGKILL after `grace` seconds (terminationGracePeriod)."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            self._signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), grace)
            except TimeoutError:
                self._signal(signal.SIGKILL)
                await self.process.wait()
        # Children that ignored SIGTERM after the leader exited must not outlive the pod.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return await self.wait()

    def kill_now(self) -> None:
        """SIGKILL the process group without waiting (atexit / interpreter shutdown)."""
        if self.process is None:
            return
        if self.process.returncode is None:
            _signal_pod(self.process.pid, signal.SIGKILL)
        else:  # what is left of the group after its leader exited
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def termination_message(self) -> str:
        """The message the kubelet would report: the termination file, or with
        `FallbackToLogsOnError` and a failure, the tail of the log."""
        message = ""
        with contextlib.suppress(OSError):
            message = self.spec.termination_path.read_text(errors="replace")[:MESSAGE_LIMIT]
        if (
            not message.strip()
            and self.spec.termination_policy == "FallbackToLogsOnError"
            and self.exit_code not in (None, 0)
        ):
            with contextlib.suppress(OSError):
                lines = self.log_path.read_text(errors="replace").splitlines()[-FALLBACK_LINES:]
                message = "\n".join(lines)[-FALLBACK_BYTES:]
        return message


class _OwnedSpawn:
    """A fork server spawn whose child is killed if its start is abandoned, in whichever order
    the fork's return and the abandonment come (the thread that sees the second one kills)."""

    def __init__(self, server: forkserver.ForkServer, *args: Any) -> None:
        self._server, self._args = server, args
        self._guard = threading.Lock()
        self._child: ForkedProcess | None = None
        self._abandoned = False

    def run(self) -> ForkedProcess:
        child: ForkedProcess = self._server.spawn(*self._args)
        with self._guard:
            self._child, abandoned = child, self._abandoned
        if abandoned:
            _signal_pod(child.pid, signal.SIGKILL)
        return child

    def disown(self) -> None:
        with self._guard:
            self._abandoned, child = True, self._child
        if child is not None:
            _signal_pod(child.pid, signal.SIGKILL)


def _signal_pod(pid: int, sig: int) -> None:
    """Signal the pod's process group. A forked child has none until it calls setsid, a moment
    after the fork server has already answered with its pid: then the process itself (it has
    no children yet). Only for a process not yet reaped (its pid is still its own)."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    except PermissionError:
        pass
