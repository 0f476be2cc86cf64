"""`kubeloop local down`: stop the `up` that runs from a state dir, from another shell.

`up` is asked to stop as Ctrl-C would (SIGTERM): it stops the operator and every pod process
itself, then removes its state file — the sign `down` waits for. If it has not finished within
the timeout it is killed, and so is what it leaves: the operator and the pod processes each run
in a session of their own and would outlive it (`kubeloop.local.cluster.statefile.kill_leftovers`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from kubeloop.local.cluster.statefile import (
    ClusterState,
    kill_leftovers,
    process_alive,
    read_cluster_state,
    remove_state,
)

__all__ = ["DOWN_TIMEOUT", "stop_cluster"]

DOWN_TIMEOUT = 30.0  # `up` stops the operator (<= 10 s) and the pods (<= 5 s each, together)


def _wait(done: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(0.1)
    return done()


def stop_cluster(state_dir: Path, timeout: float = DOWN_TIMEOUT) -> tuple[int, list[str]]:
    """Stop the cluster of `state_dir`; (exit status, lines for the user)."""
    state = read_cluster_state(state_dir)
    if state is None:
        return 0, [f"no local cluster runs from {state_dir} (no {state_dir}/local.json)"]
    if not process_alive(state.pid):
        lines = [
            f"the local cluster recorded in {state_dir} (pid {state.pid}) no longer runs; "
            "removed its state file"
        ]
        killed = kill_leftovers(state_dir, state)
        if killed:
            lines.append(f"killed the processes it left running: {_pids(killed)}")
        remove_state(state_dir)
        return 0, lines

    with contextlib.suppress(ProcessLookupError):
        os.kill(state.pid, signal.SIGTERM)

    def stopped() -> bool:
        return read_cluster_state(state_dir) is None or not process_alive(state.pid)

    if _wait(stopped, timeout):
        if read_cluster_state(state_dir) is not None:  # it died without cleaning up
            kill_leftovers(state_dir, _latest(state_dir, state))
            remove_state(state_dir)
        return 0, [f"stopped the local cluster of {state_dir} (pid {state.pid}, API {state.url})"]

    latest = _latest(state_dir, state)
    with contextlib.suppress(ProcessLookupError):
        os.kill(state.pid, signal.SIGKILL)
    _wait(lambda: not process_alive(state.pid), 5.0)
    killed = kill_leftovers(state_dir, latest)
    remove_state(state_dir)
    return 1, [
        f"the local cluster of {state_dir} (pid {state.pid}) did not stop within {timeout:g} s; "
        f"killed it and the processes it left running: {_pids(killed) or 'none'}"
    ]


def _latest(state_dir: Path, state: ClusterState) -> ClusterState:
    """The state as `up` last wrote it: the operator may have been restarted (a new pid)."""
    return read_cluster_state(state_dir) or state


def _pids(pids: list[int]) -> str:
    return ", ".join(str(pid) for pid in pids)
