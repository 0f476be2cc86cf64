"""`<state_dir>/local.json`: which local cluster runs from a state dir, and whether it still does.

`kubeloop local up` writes it once its API answers and rewrites it on every operator restart;
it removes it last, once everything has stopped, so a missing file means "nothing runs here".
A file whose `up` process is gone is stale (`up` was SIGKILLed, the machine rebooted): `up` and
`down` clean it, with what the dead `up` left running: its operator (own session, recorded
pid) and its pod processes (own sessions too, found by the `POD_MARKER` variable the stack puts
into every pod's environment). Other shells find the API through it (`kubeloop local get`,
`down`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "POD_MARKER",
    "STATE_FILE",
    "ClusterRunningError",
    "ClusterState",
    "claim_state_dir",
    "kill_group",
    "kill_leftovers",
    "pod_processes",
    "process_alive",
    "read_cluster_state",
    "remove_state",
    "write_state",
]

STATE_FILE = "local.json"
POD_MARKER = "KUBELOOP_LOCAL_STATE_DIR"  # in every pod's env: which state dir's pod it is


@dataclass(frozen=True)
class ClusterState:
    """What `up` records: its own pid, the API, and the operator it supervises."""

    url: str
    pid: int
    kubeconfig: str
    operator_pid: int | None = None
    operator_restarts: int = 0
    operator_log: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClusterState:
        """Parse the file's object; unknown keys are ignored (a newer `up` may add some)."""
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


class ClusterRunningError(RuntimeError):
    """A live `up` already owns the state dir."""


def _path(state_dir: Path) -> Path:
    return state_dir / STATE_FILE


def write_state(state_dir: Path, state: ClusterState) -> None:
    """Write the file atomically: a reader in another shell never sees half of it."""
    path = _path(state_dir)
    tmp = path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2) + "\n")
    tmp.replace(path)


def read_cluster_state(state_dir: Path) -> ClusterState | None:
    """The recorded cluster, or None when there is no (readable) state file."""
    try:
        data = json.loads(_path(state_dir).read_text())
        return ClusterState.from_json(data)
    except (OSError, ValueError, TypeError):
        return None


def remove_state(state_dir: Path) -> None:
    """Forget the cluster of this state dir."""
    with contextlib.suppress(OSError):
        _path(state_dir).unlink(missing_ok=True)


def _proc_field(pid: int, name: str) -> str | None:
    """/proc/<pid>/<name> (Linux), None where there is no /proc or it cannot be read."""
    try:
        return Path(f"/proc/{pid}/{name}").read_text(errors="replace")
    except OSError:
        return None


def process_alive(pid: int) -> bool:
    """Whether `pid` runs and is a kubeloop process.

    An exited child that its parent has not reaped yet (a zombie) counts as gone; a pid that the
    system has reused for another program counts as gone too, so `down` never signals a
    stranger. Without /proc (not Linux) only existence is checked.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # someone else's process: not ours, whatever reused the pid
    stat = _proc_field(pid, "stat")
    if stat is not None and stat.rpartition(")")[2].split()[:1] == ["Z"]:
        return False
    cmdline = _proc_field(pid, "cmdline")
    return cmdline is None or "kubeloop" in cmdline


def kill_group(pid: int, sig: int = signal.SIGKILL) -> bool:
    """Signal the process group led by `pid` (the operator runs in its own); whether it was
    alive. Checked with `process_alive` first, for the same reason."""
    if not process_alive(pid):
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    return True


def pod_processes(state_dir: Path) -> list[int]:
    """Pids of processes started as pods of `state_dir`'s cluster (Linux: /proc; else [])."""
    marker = f"{POD_MARKER}={state_dir.resolve()}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except (OSError, ValueError):
            continue
    return sorted(pid for pid in found if pid != os.getpid())


def kill_leftovers(state_dir: Path, state: ClusterState) -> list[int]:
    """SIGKILL what a dead `up` left behind (its operator's group, its pods); their pids.

    Only for an `up` that no longer runs: a live one stops its own processes.
    """
    killed = []
    if state.operator_pid is not None and kill_group(state.operator_pid):
        killed.append(state.operator_pid)
    for pid in pod_processes(state_dir):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


def claim_state_dir(state_dir: Path) -> ClusterState | None:
    """Make sure no live `up` uses `state_dir`; returns the stale state that was cleaned, if any.

    Raises ClusterRunningError when one runs. A stale state's orphans (its `up` was killed
    without a chance to stop them) are killed: the operator would retry a dead API forever,
    and model servers would hold their ports.
    """
    state = read_cluster_state(state_dir)
    if state is None:
        return None
    if process_alive(state.pid):
        raise ClusterRunningError(
            f"a local cluster already runs from {state_dir} (pid {state.pid}, API {state.url}): "
            f"stop it with `kubeloop local --state-dir {state_dir} down`, or pick another "
            "--state-dir"
        )
    kill_leftovers(state_dir, state)
    remove_state(state_dir)
    return state
