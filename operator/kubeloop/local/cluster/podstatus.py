"""What the kubelet reports about a pod, from what the pod runner knows: pure functions.

`ContainerRun` is one container of a pod as the runner runs it (its process, exit code,
termination message, times); `pod_status` is the Pod's `status` the runner writes through the
status subresource, shaped as a kubelet writes it:

- `containerStatuses` (the main container) and, for a pod with init containers,
  `initContainerStatuses` (one per init container, in order), each `{name, image, ready,
  restartCount, started, state}`;
- `state` is `waiting {reason, message}` before the container starts: `PodInitializing` in a
  pod with init containers (for every container not started yet, the main one included), else
  `ContainerCreating`, and `CreateContainerConfigError` with the cause when its env cannot be
  resolved (a missing Secret); `running {startedAt}`; `terminated {exitCode, reason (Completed
  for 0, else Error), message, startedAt, finishedAt}`;
- an init container is `ready` once it has completed (exit 0); the main container is ready
  when its readiness probe says so;
- conditions `Ready` and `ContainersReady`, preceded by `Initialized` in a pod with init
  containers (False, reason `ContainersNotInitialized`, until every one has completed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubeloop.local.cluster.processes import LocalProcess

__all__ = ["ContainerRun", "container_state", "container_status", "ended_by", "pod_status"]


@dataclass
class ContainerRun:
    """One container of a pod: its spec, its process, and what the kubelet knows about it."""

    container: Mapping[str, Any] = field(default_factory=dict)
    init: bool = False
    process: LocalProcess | None = None
    restarts: int = 0
    exit_code: int | None = None
    message: str = ""
    error: str = ""  # why it cannot be created (CreateContainerConfigError)
    started_at: str | None = None
    finished_at: str | None = None

    @property
    def name(self) -> str:
        """The container's name."""
        return str(self.container.get("name", "main"))

    @property
    def completed(self) -> bool:
        """Ran to a successful end (an init container the next one may follow)."""
        return self.exit_code == 0


def ended_by(init: Sequence[ContainerRun], main: ContainerRun) -> ContainerRun | None:
    """The container whose exit ended the pod, or None while it runs.

    A failed init container ends it (restartPolicy Never: the main container never starts);
    otherwise the main container's exit does.
    """
    for run in init:
        if run.exit_code not in (None, 0):
            return run
    return main if main.exit_code is not None else None


def container_state(run: ContainerRun, *, waiting: str) -> dict[str, Any]:
    """`state` of a container; `waiting` is its reason before it starts (unless misconfigured)."""
    if run.exit_code is not None:
        return {
            "terminated": {
                "exitCode": run.exit_code,
                "reason": "Completed" if run.exit_code == 0 else "Error",
                "message": run.message,
                "startedAt": run.started_at,
                "finishedAt": run.finished_at,
            }
        }
    if run.started_at is not None:
        return {"running": {"startedAt": run.started_at}}
    reason = "CreateContainerConfigError" if run.error else waiting
    return {"waiting": {"reason": reason, "message": run.error}}


def container_status(run: ContainerRun, *, ready: bool, waiting: str) -> dict[str, Any]:
    """One entry of `containerStatuses` / `initContainerStatuses`."""
    return {
        "name": run.name,
        "image": run.container.get("image", ""),
        "ready": ready,
        "restartCount": run.restarts,
        "started": run.started_at is not None and run.exit_code is None,
        "state": container_state(run, waiting=waiting),
    }


def pod_status(
    *,
    phase: str,
    ip: str,
    start_time: str | None,
    now: str,
    main: ContainerRun,
    init: Sequence[ContainerRun] = (),
    ready: bool,
) -> dict[str, Any]:
    """The Pod's `status` (see the module docstring); `ready` is the main container's
    readiness."""
    waiting = "PodInitializing" if init else "ContainerCreating"
    flag = "True" if ready else "False"
    conditions: list[dict[str, Any]] = []
    if init:
        pending = [run.name for run in init if not run.completed]
        initialized: dict[str, Any] = {"type": "Initialized", "status": "True"}
        if pending:
            initialized = {
                "type": "Initialized",
                "status": "False",
                "reason": "ContainersNotInitialized",
                "message": f"containers with incomplete status: [{' '.join(pending)}]",
            }
        conditions.append({**initialized, "lastTransitionTime": now})
    conditions += [
        {"type": "Ready", "status": flag, "lastTransitionTime": now},
        {"type": "ContainersReady", "status": flag, "lastTransitionTime": now},
    ]
    status: dict[str, Any] = {
        "phase": phase,
        "podIP": ip,
        "hostIP": "127.0.0.1",
        "startTime": start_time,
        "conditions": conditions,
    }
    if init:
        status["initContainerStatuses"] = [
            container_status(run, ready=run.completed, waiting=waiting) for run in init
        ]
    status["containerStatuses"] = [container_status(main, ready=ready, waiting=waiting)]
    return status
