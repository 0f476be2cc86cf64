"""The Pod status the pod runner writes, as pure functions: the shape of a pod without init
containers (unchanged), and of one with init containers while they run, after one failed, and
once they all completed."""

from __future__ import annotations

from typing import Any

import pytest

from kubeloop.local.cluster.podstatus import ContainerRun, ended_by, pod_status

NOW = "2026-01-01T00:00:00Z"
T1, T2 = "2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z"
MAIN = {"name": "publish", "image": "kubeloop-trainer:1"}


def _status(main: ContainerRun, init: list[ContainerRun], **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"phase": "Pending", "ip": "127.1.0.2", "start_time": T1, "ready": False}
    return pod_status(now=NOW, main=main, init=init, **(base | kw))


def test_a_pod_without_init_containers_keeps_its_shape() -> None:
    status = _status(ContainerRun(MAIN, started_at=T1), [], phase="Running", ready=True)
    assert status == {
        "phase": "Running",
        "podIP": "127.1.0.2",
        "hostIP": "127.0.0.1",
        "startTime": T1,
        "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": NOW},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": NOW},
        ],
        "containerStatuses": [
            {
                "name": "publish",
                "image": "kubeloop-trainer:1",
                "ready": True,
                "restartCount": 0,
                "started": True,
                "state": {"running": {"startedAt": T1}},
            }
        ],
    }
    created = _status(ContainerRun(MAIN), [])
    assert created["containerStatuses"][0]["state"] == {
        "waiting": {"reason": "ContainerCreating", "message": ""}
    }
    blocked = _status(ContainerRun(MAIN, error="secret 's3' not found"), [])
    assert blocked["containerStatuses"][0]["state"] == {
        "waiting": {"reason": "CreateContainerConfigError", "message": "secret 's3' not found"}
    }


def _init(name: str, **kw: Any) -> ContainerRun:
    return ContainerRun({"name": name, "image": f"{name}:1"}, init=True, **kw)


WAITING = {"waiting": {"reason": "PodInitializing", "message": ""}}


@pytest.mark.parametrize(
    ("init", "states", "ready", "initialized"),
    [
        (  # the first init container runs
            [_init("prepare", started_at=T1), _init("trainer")],
            [{"running": {"startedAt": T1}}, WAITING],
            [False, False],
            "containers with incomplete status: [prepare trainer]",
        ),
        (  # the second one failed: its exit code and message
            [
                _init("prepare", started_at=T1, finished_at=T1, exit_code=0),
                _init("trainer", started_at=T1, finished_at=T2, exit_code=3, message="boom"),
            ],
            [
                {
                    "terminated": {
                        "exitCode": 0,
                        "reason": "Completed",
                        "message": "",
                        "startedAt": T1,
                        "finishedAt": T1,
                    }
                },
                {
                    "terminated": {
                        "exitCode": 3,
                        "reason": "Error",
                        "message": "boom",
                        "startedAt": T1,
                        "finishedAt": T2,
                    }
                },
            ],
            [True, False],
            "containers with incomplete status: [trainer]",
        ),
        (  # the second one cannot be created (a missing Secret)
            [
                _init("prepare", started_at=T1, finished_at=T1, exit_code=0),
                _init("trainer", error="secret 's3' not found"),
            ],
            [
                {
                    "terminated": {
                        "exitCode": 0,
                        "reason": "Completed",
                        "message": "",
                        "startedAt": T1,
                        "finishedAt": T1,
                    }
                },
                {
                    "waiting": {
                        "reason": "CreateContainerConfigError",
                        "message": "secret 's3' not found",
                    }
                },
            ],
            [True, False],
            "containers with incomplete status: [trainer]",
        ),
    ],
)
def test_init_container_statuses_while_initializing(
    init: list[ContainerRun],
    states: list[dict[str, Any]],
    ready: list[bool],
    initialized: str,
) -> None:
    status = _status(ContainerRun(MAIN), init)
    assert [s["name"] for s in status["initContainerStatuses"]] == ["prepare", "trainer"]
    assert [s["image"] for s in status["initContainerStatuses"]] == ["prepare:1", "trainer:1"]
    assert [s["state"] for s in status["initContainerStatuses"]] == states
    assert [s["ready"] for s in status["initContainerStatuses"]] == ready
    assert [s["restartCount"] for s in status["initContainerStatuses"]] == [0, 0]
    assert status["containerStatuses"][0]["state"] == WAITING  # the main container waits
    assert status["conditions"][0] == {
        "type": "Initialized",
        "status": "False",
        "reason": "ContainersNotInitialized",
        "message": initialized,
        "lastTransitionTime": NOW,
    }


def test_once_init_containers_completed_the_main_container_runs() -> None:
    done = [_init(n, started_at=T1, finished_at=T1, exit_code=0) for n in ("prepare", "trainer")]
    status = _status(ContainerRun(MAIN, started_at=T2), done, phase="Running")
    assert status["conditions"][0] == {
        "type": "Initialized",
        "status": "True",
        "lastTransitionTime": NOW,
    }
    assert all(s["ready"] for s in status["initContainerStatuses"])
    assert status["containerStatuses"][0]["state"] == {"running": {"startedAt": T2}}


@pytest.mark.parametrize(
    ("init_codes", "main_code", "ended"),
    [
        ([None, None], None, None),
        ([0, None], None, None),
        ([0, 3], None, "trainer"),  # a failed init container ends the pod
        ([0, 0], None, None),
        ([0, 0], 0, "publish"),
        ([0, 0], 2, "publish"),
    ],
)
def test_which_container_ended_the_pod(
    init_codes: list[int | None], main_code: int | None, ended: str | None
) -> None:
    init = [_init(n, exit_code=c) for n, c in zip(("prepare", "trainer"), init_codes, strict=True)]
    run = ended_by(init, ContainerRun(MAIN, exit_code=main_code))
    assert (run.name if run else None) == ended
