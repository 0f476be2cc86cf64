"""The real operator (`kubeloop operator`) as a subprocess against an API URL: killable with
SIGKILL, and restarted when it exits on its own, as the kubelet restarts a container
(restartPolicy Always); its output goes to one log file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.integration.harness import Cluster

from kubeloop.local.cluster.emulator import EmulatorThread


class OperatorProcess:
    """`kubeloop operator` against the emulator; `kills` by us, `exits` on its own."""

    def __init__(
        self, url: str, log: Path, env: dict[str, str] | None = None, liveness: str = ""
    ) -> None:
        self.url = url
        self.log = log
        self.env = env or {}
        self.liveness = liveness
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0
        self.exits = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)

    def _spawn(self) -> None:
        env = {
            **os.environ,
            "KUBELOOP_KUBE_SERVER": self.url,
            "KUBELOOP_METRICS_PORT": "0",
            "KUBELOOP_RESYNC_SECONDS": "0.5",
            **self.env,
        }
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kubeloop.cli", "operator", "--liveness", self.liveness],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def start(self) -> None:
        with self._lock:
            self._spawn()
        self._supervisor.start()

    def _supervise(self) -> None:
        while not self._stopping.wait(0.2):
            with self._lock:
                if self.proc is not None and self.proc.poll() is not None:
                    self.exits += 1
                    self._spawn()

    def kill_and_restart(self) -> None:
        self.kill(restart=True)

    def kill(self, restart: bool = False) -> None:
        """SIGKILL; without `restart`, the process stays gone (a pod deleted with its node)."""
        with self._lock:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.kills += 1
            self.proc = None
            if restart:
                self._spawn()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()


@contextmanager
def killable_operator(log: Path) -> Iterator[tuple[Cluster, OperatorProcess]]:
    """An emulator and the real operator against it (stopped at the end), for kill tests."""
    with EmulatorThread() as thread:
        operator = OperatorProcess(thread.url, log)
        operator.start()
        try:
            yield Cluster(thread), operator
        finally:
            operator.stop()
