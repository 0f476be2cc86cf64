"""`kubeloop local down`: stop the `up` that runs from a state dir, from another shell.

`up` is asked to stop as Ctrl-C would (SIGTERM): it stops the operator and every pod process
itself, then removes its state file — the sign `down` waits for. If it has not finished within
the timeout it is killed, with the operator's process group (which has its own session and
would outlive it). Pod processes of an `up` killed that way are not tracked in the state file
and may outlive it; that is the one case where `down` can leave processes behind, and it says so.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from kubeloop.local.statefile import (
    kill_group,
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
        if state.operator_pid is not None and kill_group(state.operator_pid):
            lines.append(f"killed its leftover operator (pid {state.operator_pid})")
        remove_state(state_dir)
        return 0, lines

    with contextlib.suppress(ProcessLookupError):
        os.kill(state.pid, signal.SIGTERM)

    def stopped() -> bool:
        return read_cluster_state(state_dir) is None or not process_alive(state.pid)

    if _wait(stopped, timeout):
        if read_cluster_state(state_dir) is not None:  # it died without cleaning up
            if state.operator_pid is not None:
                kill_group(state.operator_pid)
            remove_state(state_dir)
        return 0, [f"stopped the local cluster of {state_dir} (pid {state.pid}, API {state.url})"]

    # Re-read: the operator may have been restarted since (a new pid).
    latest = read_cluster_state(state_dir) or state
    for pid in {state.operator_pid, latest.operator_pid} - {None}:
        assert pid is not None
        kill_group(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(state.pid, signal.SIGKILL)
    _wait(lambda: not process_alive(state.pid), 5.0)
    remove_state(state_dir)
    return 1, [
        f"the local cluster of {state_dir} (pid {state.pid}) did not stop within {timeout:.0f} s; "
        "killed it and its operator. Pod processes it started may still run: see "
        f"{state_dir}/cluster/pods/"
    ]
