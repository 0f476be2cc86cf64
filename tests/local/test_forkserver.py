"""The fork server that starts `kubeloop local`'s Python containers (forkserver.py, zygote.py):
what it forks and what it leaves to a fresh process, and that a forked child is the process a
fresh `python` would be: argv, environment, working directory, path, log, session, exit code."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubeloop.local.cluster import forkserver
from kubeloop.local.cluster.forkserver import ForkedProcess, ForkPlan, ForkServer, fork_plan
from kubeloop.local.cluster.podspec import ProcessSpec
from kubeloop.local.cluster.processes import LocalProcess
from kubeloop.local.cluster.statefile import POD_MARKER

PY = sys.executable


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["kubeloop", "train"], {}, ForkPlan("kubeloop", "kubeloop.cli", ["train"])),
        ([PY, "-m", "kubeloop.cli", "serve"], {}, ForkPlan("module", "kubeloop.cli", ["serve"])),
        ([PY, "train.py", "--epochs", "2"], {}, ForkPlan("script", "train.py", ["--epochs", "2"])),
        (
            [PY, "-m", "torch.distributed.run"],
            {"PYTHONPATH": "/w"},
            ForkPlan("module", "torch.distributed.run", []),
        ),
        ([PY, "-m"], {}, None),  # python's own usage error: a fresh process says it
        ([PY, "-c", "print(1)"], {}, None),  # interpreter options
        ([PY, "-u", "train.py"], {}, None),
        ([PY], {}, None),
        (["/usr/bin/python2", "train.py"], {}, None),  # another interpreter
        (["bash", "-c", "true"], {}, None),  # not Python
        ([PY, "train.py"], {"PYTHONHASHSEED": "0"}, None),  # read at interpreter start
        ([PY, "train.py"], {"PYTHONOPTIMIZE": "1"}, None),
        ([PY, "train.py"], {"LD_PRELOAD": "/x.so"}, None),
        (
            [PY, "train.py"],
            {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"},
            ForkPlan("script", "train.py", []),
        ),
        ([PY, "data.csv"], {}, None),
        ([], {}, None),
    ],
)
def test_fork_plan(argv: list[str], env: dict[str, str], expected: ForkPlan | None) -> None:
    assert fork_plan(argv, env, executable=PY) == expected


@pytest.fixture(scope="module")
def server() -> Iterator[ForkServer]:
    fork_server = ForkServer(preload=("json",))
    yield fork_server
    fork_server.close()
    assert fork_server.process.returncode == 0


PROBE = """
import json, os, sys
print(json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "path0": sys.path[0],
                  "path1": sys.path[1], "env": dict(os.environ), "sid": os.getsid(0),
                  "pid": os.getpid(), "main": __name__}), flush=True)
if sys.argv[1:] == ["wait"]:
    sys.stdin.read()  # /dev/null: returns at once, then waits for a signal
    import signal; signal.pause()
sys.exit(int(sys.argv[1]) if sys.argv[1:] else 0)
"""


def _probe(log: Path) -> dict[str, object]:
    record: dict[str, object] = json.loads(log.read_text().splitlines()[0])
    return record


async def test_a_forked_script_is_the_process_a_fresh_python_would_be(
    server: ForkServer, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    (work / "code").mkdir(parents=True)
    (work / "code" / "probe.py").write_text(PROBE)
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": "/extra/lib", "CUSTOM": "yes"}
    child = server.spawn(
        ForkPlan("script", "code/probe.py", ["7"]), env, str(work), tmp_path / "log"
    )
    assert await child.wait() == 7
    assert child.returncode == 7
    seen = _probe(tmp_path / "log")
    assert seen["argv"] == ["code/probe.py", "7"]
    assert seen["cwd"] == str(work)
    assert seen["path0"] == str(work / "code") and seen["path1"] == "/extra/lib"
    assert seen["env"] == env  # the container's environment, nothing of the server's
    assert seen["sid"] == seen["pid"] == child.pid  # its own session: the pod's process group
    assert seen["main"] == "__main__"


async def test_a_forked_module_signals_and_missing_scripts(
    server: ForkServer, tmp_path: Path
) -> None:
    (tmp_path / "probemod.py").write_text(PROBE)
    env = {"PATH": os.environ["PATH"]}
    child = server.spawn(
        ForkPlan("module", "probemod", ["wait"]), env, str(tmp_path), tmp_path / "m.log"
    )
    for _ in range(200):  # until it has started and written its line
        if (tmp_path / "m.log").exists() and (tmp_path / "m.log").read_text():
            break
        await asyncio.sleep(0.05)
    seen = _probe(tmp_path / "m.log")
    assert seen["path0"] == str(tmp_path) and seen["argv"][0].endswith("probemod.py")  # type: ignore[index]
    os.killpg(child.pid, signal.SIGTERM)
    assert await child.wait() == -signal.SIGTERM
    missing = server.spawn(
        ForkPlan("script", "nope.py", []), env, str(tmp_path), tmp_path / "n.log"
    )
    assert await missing.wait() == 2
    assert "can't open file" in (tmp_path / "n.log").read_text()
    crash = tmp_path / "crash.py"
    crash.write_text("raise RuntimeError('boom')\n")
    failed = server.spawn(
        ForkPlan("script", str(crash), []), env, str(tmp_path), tmp_path / "c.log"
    )
    assert await failed.wait() == 1
    assert "RuntimeError: boom" in (tmp_path / "c.log").read_text()


async def test_a_forked_child_ends_as_the_interpreter_would(
    server: ForkServer, tmp_path: Path
) -> None:
    """The child skips the interpreter's module teardown (os._exit), nothing a program sees:
    its non-daemon threads joined, then its atexit handlers, its buffered output flushed, its
    exit code."""
    script = tmp_path / "ending.py"
    script.write_text(
        "import atexit, sys, threading, time\n"
        "atexit.register(print, 'atexit ran')\n"
        "threading.Thread(target=lambda: (time.sleep(0.2), print('thread ran'))).start()\n"
        "print('buffered', end=' ')\n"
        "sys.exit(3)\n"
    )
    env = {"PATH": os.environ["PATH"]}
    child = server.spawn(
        ForkPlan("script", str(script), []), env, str(tmp_path), tmp_path / "e.log"
    )
    assert await child.wait() == 3
    assert (tmp_path / "e.log").read_text() == "buffered thread ran\natexit ran\n"


async def test_a_cancelled_wait_does_not_lose_the_exit(server: ForkServer, tmp_path: Path) -> None:
    """The pod runner cancels waits (a pod deleted, a probe loop stopped): the exit stays there
    for the next wait, and the server goes on hearing exits."""
    script = tmp_path / "slow.py"
    script.write_text("import sys; sys.stdin.read(); import time; time.sleep(0.5)\n")
    env = {"PATH": os.environ["PATH"]}
    child = server.spawn(
        ForkPlan("script", str(script), []), env, str(tmp_path), tmp_path / "s.log"
    )
    waiting = asyncio.ensure_future(child.wait())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await child.wait() == 0
    again = server.spawn(
        ForkPlan("script", str(script), []), env, str(tmp_path), tmp_path / "t.log"
    )
    assert await again.wait() == 0


@dataclass
class _HeldStart:
    """A pod whose start is held inside the fork server's spawn until `release` is set."""

    marker: dict[str, str]
    spec: ProcessSpec
    entered: threading.Event
    release: threading.Event
    spawned: concurrent.futures.Future[ForkedProcess]

    def start(self, log: Path) -> asyncio.Future[None]:
        return asyncio.ensure_future(LocalProcess(self.spec, log).start())


def _held_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> _HeldStart:
    marker = {name: str(tmp_path)}  # a fork server of the test's own
    server = forkserver.shared(marker)
    assert server is not None
    held = _HeldStart(
        marker,
        ProcessSpec(
            argv=[sys.executable, str(tmp_path / "pod.py")],
            env={POD_MARKER: str(tmp_path)},
            cwd=str(tmp_path),
            termination_path=tmp_path / "termination",
        ),
        threading.Event(),
        threading.Event(),
        concurrent.futures.Future(),
    )
    (tmp_path / "pod.py").write_text("import signal; signal.pause()\n")
    real_spawn = server.spawn

    def spawn(*args: Any) -> ForkedProcess:
        held.entered.set()
        held.release.wait(30)  # the start is cancelled meanwhile
        child = real_spawn(*args)
        held.spawned.set_result(child)
        return child

    monkeypatch.setattr(server, "spawn", spawn)
    monkeypatch.setattr(forkserver, "shared", lambda inherit=None: server if inherit else None)
    return held


async def test_a_start_cancelled_while_forking_leaves_no_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pod deleted while its process starts: the fork finishes in its thread after the start
    was cancelled, and the child it made (nobody's) is killed, not left running."""
    held = _held_start(tmp_path, monkeypatch, "KUBELOOP_TEST_CANCELLED_START")
    starting = held.start(tmp_path / "pod.log")
    assert await asyncio.to_thread(held.entered.wait, 30)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    held.release.set()
    child = await asyncio.wrap_future(held.spawned)
    assert await asyncio.wait_for(child.wait(), 30) == -signal.SIGKILL
    forkserver.close_shared(held.marker)


def test_a_cancelled_start_is_killed_also_when_its_loop_closed_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same, when the loop that cancelled the start is closed before the fork returns (a
    test's loop at its end; the pod runner at `down`): no loop callback can run then."""
    held = _held_start(tmp_path, monkeypatch, "KUBELOOP_TEST_CLOSED_LOOP")

    async def start_and_cancel() -> None:
        starting = held.start(tmp_path / "pod.log")
        assert await asyncio.to_thread(held.entered.wait, 30)
        starting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await starting

    loop = asyncio.new_event_loop()
    loop.run_until_complete(start_and_cancel())
    loop.close()  # does not wait for the spawning thread
    held.release.set()
    child = held.spawned.result(30)
    exited: concurrent.futures.Future[int] = concurrent.futures.Future()
    threading.Thread(target=lambda: exited.set_result(asyncio.run(child.wait()))).start()
    assert exited.result(30) == -signal.SIGKILL
    forkserver.close_shared(held.marker)


def test_the_preload_imports_nothing_a_pod_must_import_itself() -> None:
    """prometheus_client reads PROMETHEUS_MULTIPROC_DIR at import (the model server sets it),
    grpc is not fork-safe once started, torch only the torch workloads need: none of them may
    come in with the preload, directly or through a preloaded Kubeloop module."""
    script = (
        "import importlib, sys\n"
        "from kubeloop.local.cluster.forkserver import PRELOAD\n"
        "for m in PRELOAD:\n"
        "    importlib.import_module(m)\n"
        "print(sorted(m for m in ('prometheus_client', 'grpc', 'torch') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
