"""`subprocess.Popen`'s surface over a child of `kubeloop local`'s fork server.

The server tests start `kubeloop serve` dozens of times; each fresh interpreter spends 2-3
CPU-seconds importing scikit-learn and friends before it serves. Forked from the fork server
that `kubeloop local` starts its pods from (kubeloop/local/cluster/forkserver.py), a server is
the same `kubeloop.cli` main with the same argv, environment and log, ready in a fraction of that.
Only for tests that look at the server from outside (HTTP, gRPC, signals, exit codes); a test
about what a process imports starts a fresh one.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from kubeloop.local.cluster.forkserver import ForkedProcess, fork_plan, shared

__all__ = ["ForkedPopen", "popen"]


class ForkedPopen:
    """poll/wait/terminate/kill/send_signal/returncode/pid of a forked child."""

    def __init__(self, child: ForkedProcess) -> None:
        self._child = child
        self.pid = child.pid

    @property
    def returncode(self) -> int | None:
        return self._child.returncode

    def poll(self) -> int | None:
        return self._child.returncode

    def wait(self, timeout: float | None = None) -> int:
        try:
            return self._child.wait_blocking(timeout)
        except TimeoutError:
            raise subprocess.TimeoutExpired("forked", timeout or 0) from None

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def popen(
    argv: Sequence[str], env: Mapping[str, str], log_path: Path
) -> ForkedPopen | subprocess.Popen[str]:
    """`argv` forked from the fork server when that is the same as a fresh process, else a
    fresh one; output (stdout and stderr) appended to `log_path`."""
    plan = fork_plan(argv, env)
    server = shared() if plan is not None else None
    if plan is not None and server is not None:
        try:
            return ForkedPopen(server.spawn(plan, env, os.getcwd(), log_path))
        except OSError:
            pass  # the fork server is gone: a fresh process
    with log_path.open("a") as handle:
        return subprocess.Popen(
            list(argv), env=dict(env), stdout=handle, stderr=subprocess.STDOUT, text=True
        )
