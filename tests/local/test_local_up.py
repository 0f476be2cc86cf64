"""`kubeloop local up` behaves like a cluster when its operator dies, and `down` stops it all.

Run as a user runs it: `kubeloop local up -f examples/local/` as a subprocess in a folder of its
own (the example's file:// URIs are relative to it), then from "another shell" the operator is
SIGKILLed while run 1's Job runs. The API must keep answering, a new operator must be up within
10 s, the run must finish with exactly one Job, and `kubeloop local down` must leave no process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.polling import until

from kubeloop.local.cluster.kubeapi import KubeApi
from kubeloop.local.cluster.statefile import (
    ClusterState,
    pod_processes,
    process_alive,
    read_cluster_state,
)
from kubeloop.local.demo.datagen import write_demo_data

ROOT = Path(__file__).resolve().parents[2]
TP = "kubeloop.io/v1alpha1/trainingpipelines"

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]  # slow: `make test` starts it first


def _kubeloop(*args: str) -> list[str]:
    return [sys.executable, "-m", "kubeloop.cli", *args]


def _env() -> dict[str, str]:
    paths = [str(ROOT / "operator"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def _descendants(pid: int) -> set[int]:
    """Every process below `pid` (from /proc: pods run in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return True
    return state == "Z"


class Up:
    """The `up` subprocess, its state dir and console output."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.state_dir = folder / "state"
        self.console = folder / "up.console"
        with self.console.open("wb") as out:
            self.process = subprocess.Popen(
                _kubeloop(
                    "local",
                    "--state-dir",
                    str(self.state_dir),
                    "up",
                    "-f",
                    str(ROOT / "examples/local"),
                ),
                cwd=folder,
                env=_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def state(self) -> ClusterState | None:
        return read_cluster_state(self.state_dir)

    def explain(self) -> str:
        log = self.state_dir / "operator.log"
        tail = log.read_text(errors="replace").splitlines()[-40:] if log.exists() else []
        return f"console:\n{self.console.read_text()}\noperator.log tail:\n" + "\n".join(tail)


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    write_demo_data(tmp_path / ".demo" / "data", rows=2000)
    running = Up(tmp_path)
    yield running
    if running.process.poll() is None:  # the test failed before `down`
        print(running.explain())
        running.process.send_signal(signal.SIGTERM)
        try:
            running.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            running.process.kill()
            running.process.wait()


async def _wait_state(up: Up) -> ClusterState:
    async def ready() -> ClusterState | None:
        assert up.process.poll() is None, up.explain()
        return up.state()

    state: ClusterState = await until(ready, timeout=120, what="`up` to write its state file")
    return state


async def test_the_operator_is_restarted_and_the_run_finishes_with_one_job(up: Up) -> None:
    state = await _wait_state(up)
    assert state.operator_pid is not None and state.operator_restarts == 0
    async with KubeApi(state.url) as api:

        async def a_job() -> list[dict[str, Any]]:
            # Run Jobs (run 1's reads the registry first); a registry Job is no run.
            jobs = await api.list("batch/v1/jobs", "ml")
            return [j for j in jobs if "kubeloop.io/registry-for" not in j["metadata"]["labels"]]

        jobs = await until(a_job, timeout=240, what="run 1's Job")
        assert [j["metadata"]["name"] for j in jobs] == ["churn-run-1"]

        killed = state.operator_pid
        os.kill(killed, signal.SIGKILL)
        t0 = time.monotonic()
        # The cluster stays up: the API answers with everything it had.
        assert await api.get(TP, "ml", "churn") is not None

        async def restarted() -> ClusterState | None:
            assert up.process.poll() is None, "`up` exited with its operator\n" + up.explain()
            latest = up.state()
            if latest and latest.operator_pid not in (None, killed):
                assert latest.operator_pid is not None
                return latest if process_alive(latest.operator_pid) else None
            return None

        latest = await until(restarted, timeout=10, what="a new operator within 10 s")
        assert time.monotonic() - t0 < 10
        assert latest.operator_restarts == 1 and latest.url == state.url
        assert _gone(killed)

        async def run_done() -> list[dict[str, Any]] | None:
            pipeline = await api.get(TP, "ml", "churn")
            assert pipeline is not None
            runs: list[dict[str, Any]] = pipeline.get("status", {}).get("runs", [])
            return runs if runs and all(r.get("result") for r in runs) else None

        runs = await until(run_done, timeout=300, what="run 1 to finish", interval=0.5)
        assert [(r["id"], r["result"]) for r in runs] == [("1", "Promoted")], up.explain()
        jobs = await api.list("batch/v1/jobs", "ml")
        # No duplicate run; the registry Job (the champion alias) is no run.
        runs_jobs = [j for j in jobs if "kubeloop.io/registry-for" not in j["metadata"]["labels"]]
        assert [j["metadata"]["name"] for j in runs_jobs] == ["churn-run-1"]

    console = up.console.read_text()
    assert "the operator exited (killed by SIGKILL)" in console
    assert f"its log: {up.state_dir.resolve() / 'operator.log'}" in console
    assert "operator restarted (pid " in console
    log = (up.state_dir / "operator.log").read_text()
    restart = log.index("--- kubeloop local: operator restart 1 at ")
    assert "Activity 'startup' succeeded" in log[restart:]  # the new operator logs there too

    # `down` from another shell: `up` and everything below it stop, the state file goes.
    async def pods_running() -> set[int]:
        # Found by the marker in their environment, as `up`/`down` find a dead `up`'s pods.
        return set(pod_processes(up.state_dir))

    # The champion's model servers start now; they run until `down`.
    pods = await until(pods_running, timeout=120, what="pod processes of this cluster")
    below = _descendants(up.process.pid)  # after `pods`: model servers do not exit meanwhile
    assert latest.operator_pid in below and pods <= below
    down = subprocess.run(
        _kubeloop("local", "--state-dir", str(up.state_dir), "down"),
        cwd=up.folder,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert down.returncode == 0, down.stderr
    assert down.stdout.startswith(f"stopped the local cluster of {up.state_dir}")
    assert up.process.wait(timeout=30) == 0
    assert up.state() is None
    left = sorted(pid for pid in below if not _gone(pid))
    assert not left, f"processes left after down: {left}"
    assert pod_processes(up.state_dir) == []

    again = subprocess.run(
        _kubeloop("local", "--state-dir", str(up.state_dir), "down"),
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 0
    assert (
        again.stdout.strip()
        == f"no local cluster runs from {up.state_dir} (no {up.state_dir}/local.json)"
    )
