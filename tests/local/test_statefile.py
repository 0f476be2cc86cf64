"""The state file of `kubeloop local up` and what `up`/`down` make of it: a live cluster is
refused a second `up`, a stale one (its `up` was killed) is cleaned, `down` with nothing running
says so. The processes are real ones standing in for `up` and its operator."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kubeloop.local.cluster.down import stop_cluster
from kubeloop.local.cluster.statefile import (
    POD_MARKER,
    ClusterRunningError,
    ClusterState,
    claim_state_dir,
    process_alive,
    read_cluster_state,
    write_state,
)

pytestmark = pytest.mark.timeout(60)


def _until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _started(argv: list[str], *, session: bool = False) -> subprocess.Popen[bytes]:
    """Popen, returned once the child runs `argv` (until exec its command line is ours)."""
    process = subprocess.Popen(argv, start_new_session=session)
    cmdline = Path(f"/proc/{process.pid}/cmdline")
    _until(lambda: cmdline.read_bytes().split(b"\0")[-2:-1] == [argv[-1].encode()])
    return process


def _sleeper(*, session: bool = False) -> subprocess.Popen[bytes]:
    # "kubeloop" in its command line: process_alive only trusts pids of kubeloop processes.
    return _started(
        [sys.executable, "-c", "import time; time.sleep(120)", "kubeloop-stand-in"],
        session=session,
    )


def _pod(state_dir: Path) -> subprocess.Popen[bytes]:
    """A process with a pod's environment, in its own session as the pod runner starts them."""
    env = {**os.environ, POD_MARKER: str(state_dir.resolve())}
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "a-pod"],
        env=env,
        start_new_session=True,
    )
    environ = Path(f"/proc/{process.pid}/environ")
    _until(lambda: POD_MARKER.encode() in environ.read_bytes())
    return process


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.kill()
        process.wait()


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _state(pid: int, operator_pid: int | None = None) -> ClusterState:
    return ClusterState(
        url="http://127.0.0.1:1", pid=pid, kubeconfig="kc", operator_pid=operator_pid
    )


def test_the_state_file_round_trips_and_tolerates_unknown_keys(tmp_path: Path) -> None:
    assert read_cluster_state(tmp_path) is None
    write_state(tmp_path, _state(123, 456))
    assert read_cluster_state(tmp_path) == _state(123, 456)
    (tmp_path / "local.json").write_text('{"url": "u", "pid": 1, "kubeconfig": "k", "new": 1}')
    assert read_cluster_state(tmp_path) == ClusterState(url="u", pid=1, kubeconfig="k")
    (tmp_path / "local.json").write_text("{half")
    assert read_cluster_state(tmp_path) is None
    assert [p.name for p in tmp_path.iterdir()] == ["local.json"]  # no temporary file left


def test_a_zombie_or_a_foreign_process_does_not_count_as_alive(
    sleepers: list[subprocess.Popen[bytes]],
) -> None:
    zombie = subprocess.Popen([sys.executable, "-c", "pass", "kubeloop"])
    sleepers.append(zombie)
    stranger = _started([sys.executable, "-c", "import time; time.sleep(120)"])
    sleepers.append(stranger)
    live = _sleeper()
    sleepers.append(live)
    assert process_alive(live.pid)
    assert not process_alive(stranger.pid)  # a reused pid: never signalled
    assert not process_alive(_dead_pid())
    # Exited but not reaped (Popen.poll would reap it): wait for /proc to say so.
    _until(lambda: Path(f"/proc/{zombie.pid}/stat").read_text().split(") ")[1][0] == "Z")
    assert not process_alive(zombie.pid)


def test_up_refuses_a_state_dir_whose_cluster_runs(
    tmp_path: Path, sleepers: list[subprocess.Popen[bytes]]
) -> None:
    up = _sleeper()
    sleepers.append(up)
    write_state(tmp_path, _state(up.pid))
    with pytest.raises(ClusterRunningError, match=r"kubeloop local --state-dir .* down"):
        claim_state_dir(tmp_path)
    assert read_cluster_state(tmp_path) == _state(up.pid)  # left alone


def test_up_cleans_a_stale_state_and_what_its_up_left_running(
    tmp_path: Path, sleepers: list[subprocess.Popen[bytes]]
) -> None:
    operator = _sleeper(session=True)
    pod = _pod(tmp_path)
    other_clusters_pod = _pod(tmp_path / "elsewhere")
    sleepers += [operator, pod, other_clusters_pod]
    write_state(tmp_path, _state(_dead_pid(), operator.pid))
    replaced = claim_state_dir(tmp_path)
    assert replaced is not None and replaced.operator_pid == operator.pid
    assert read_cluster_state(tmp_path) is None
    assert operator.wait(timeout=10) < 0  # killed
    assert pod.wait(timeout=10) < 0
    assert other_clusters_pod.poll() is None


def test_down_with_nothing_running_says_so(tmp_path: Path) -> None:
    code, lines = stop_cluster(tmp_path)
    assert code == 0
    assert lines == [f"no local cluster runs from {tmp_path} (no {tmp_path}/local.json)"]


def test_down_of_a_killed_up_removes_its_state(
    tmp_path: Path, sleepers: list[subprocess.Popen[bytes]]
) -> None:
    operator = _sleeper(session=True)
    pod = _pod(tmp_path)
    sleepers += [operator, pod]
    dead = _dead_pid()
    write_state(tmp_path, _state(dead, operator.pid))
    code, lines = stop_cluster(tmp_path)
    assert code == 0
    assert lines == [
        f"the local cluster recorded in {tmp_path} (pid {dead}) no longer runs; "
        "removed its state file",
        f"killed the processes it left running: {operator.pid}, {pod.pid}",
    ]
    assert read_cluster_state(tmp_path) is None
    assert operator.wait(timeout=10) < 0
    assert pod.wait(timeout=10) < 0


def test_down_kills_an_up_that_does_not_stop_in_time_and_what_it_left(
    tmp_path: Path, sleepers: list[subprocess.Popen[bytes]]
) -> None:
    deaf_up = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('deaf', flush=True); time.sleep(120)",
            "kubeloop-up-stand-in",
        ],
        stdout=subprocess.PIPE,
    )
    assert deaf_up.stdout is not None and deaf_up.stdout.readline() == b"deaf\n"
    operator = _sleeper(session=True)
    pod = _pod(tmp_path)
    sleepers += [deaf_up, operator, pod]
    write_state(tmp_path, _state(deaf_up.pid, operator.pid))
    code, lines = stop_cluster(tmp_path, timeout=0.5)
    assert code == 1
    assert lines == [
        f"the local cluster of {tmp_path} (pid {deaf_up.pid}) did not stop within 0.5 s; "
        f"killed it and the processes it left running: {operator.pid}, {pod.pid}"
    ]
    assert deaf_up.wait(timeout=10) == -signal.SIGKILL
    assert operator.wait(timeout=10) < 0 and pod.wait(timeout=10) < 0
    assert read_cluster_state(tmp_path) is None
