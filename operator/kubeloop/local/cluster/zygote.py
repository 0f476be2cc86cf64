"""The fork server's own process: import the heavy libraries once, then fork one child per
container (see forkserver.py for why and for what it declines to fork).

    python -m kubeloop.local.cluster.zygote FD [MODULE ...]

FD is this end of a socketpair. Requests and replies are JSON lines:
    -> {"id": n, "plan": {"kind", "target", "args"}, "env": {...}, "cwd": "...", "log": "..."}
    <- {"id": n, "pid": p}              the child runs
    <- {"id": n, "error": "..."}         it could not be forked
    <- {"exit": p, "code": c}           a child ended: its code, -N when killed by signal N
The server ends when the other end closes. A child becomes what `python -m TARGET ARGS`,
`python TARGET ARGS` or the `kubeloop` console script would be, in its own session, with the
container's environment, working directory and log; it runs the program at the top of this
module's `main`, not inside the server's loop.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import importlib.machinery
import json
import os
import runpy
import selectors
import signal
import socket
import sys
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

__all__ = ["Launch", "finish", "main"]

THREAD_ENV = {
    "OMP_NUM_THREADS": "openmp",
    "OPENBLAS_NUM_THREADS": "blas",
    "MKL_NUM_THREADS": "blas",
}


@dataclass(frozen=True)
class Launch:
    """What a forked child runs."""

    kind: str  # "module" | "script" | "kubeloop"
    target: str
    args: list[str]
    env: dict[str, str]
    cwd: str
    log: str


def _preload(modules: list[str]) -> None:
    for name in modules:
        with contextlib.suppress(Exception):  # a library this environment lacks: not needed
            importlib.import_module(name)


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(json.dumps(message).encode() + b"\n")


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(sock, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})


def serve(sock: socket.socket) -> Launch | None:
    """Fork a child per request until the other end closes (None); in a child, its Launch."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # the wakeup fd does the work
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    pending = b""
    while True:
        for key, _ in selector.select():
            if key.fileobj == wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
                continue
            data = sock.recv(65536)
            if not data:
                return None
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                try:
                    pid = os.fork()
                except OSError as exc:
                    _send(sock, {"id": request["id"], "error": str(exc)})
                    continue
                if pid == 0:
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    selector.close()
                    for fd in (wake_r, wake_w):
                        os.close(fd)
                    sock.close()
                    plan = request["plan"]
                    return Launch(
                        plan["kind"],
                        plan["target"],
                        list(plan["args"]),
                        dict(request["env"]),
                        request["cwd"],
                        request["log"],
                    )
                _send(sock, {"id": request["id"], "pid": pid})
        _reap(sock)


def _python_path(env: dict[str, str], first: str, own: list[str]) -> None:
    """sys.path as the interpreter builds it for this child: `first` (the script's folder or the
    working directory), the child's PYTHONPATH, then the installation's paths."""
    base = [p for p in sys.path[1:] if p not in own]
    extra = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [first, *extra, *base]
    importlib.invalidate_caches()


def _thread_pools(env: dict[str, str]) -> None:
    """Size the preloaded native pools as the child's environment asks (the interpreter would
    have read OMP_NUM_THREADS & co. when it first loaded them); unset: one thread per core."""
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
    except ImportError:
        return
    for name, api in THREAD_ENV.items():
        value = env.get(name, "")
        limit = int(value) if value.isdigit() and int(value) > 0 else os.cpu_count() or 1
        with contextlib.suppress(Exception):
            threadpool_limits(limits=limit, user_api=api)


def run(launch: Launch, own_path: list[str]) -> int:
    """Become the container's process and run its program; its exit code."""
    os.setsid()
    log = os.open(launch.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(null)
    os.chdir(launch.cwd)
    _thread_pools(launch.env)  # first: importing threadpoolctl sets a variable of its own
    os.environ.clear()
    os.environ.update(launch.env)
    if launch.kind == "kubeloop":  # exactly the console script
        _python_path(launch.env, os.path.dirname(sys.executable), own_path)
        sys.argv = ["kubeloop", *launch.args]
        from kubeloop.cli import main as kubeloop_main

        return kubeloop_main()
    if launch.kind == "module":  # python -m TARGET: the working directory first on the path
        _python_path(launch.env, os.getcwd(), own_path)
        sys.argv = [launch.target, *launch.args]
        runpy.run_module(launch.target, run_name="__main__", alter_sys=True)
        return 0
    script = os.path.abspath(launch.target)  # python TARGET: the script's folder first
    if not os.path.isfile(script):  # the interpreter's own words and code
        print(f"{sys.executable}: can't open file {script!r}: no such file", file=sys.stderr)
        return 2
    _python_path(launch.env, os.path.dirname(script), own_path)
    sys.argv = [launch.target, *launch.args]  # argv[0] as typed, __file__ absolute
    main_module = types.ModuleType("__main__")
    main_module.__file__ = script
    main_module.__loader__ = importlib.machinery.SourceFileLoader("__main__", script)
    sys.modules["__main__"] = main_module
    with open(script, "rb") as source:
        code = compile(source.read(), script, "exec")
    exec(code, main_module.__dict__)
    return 0


def _exit_code(code: object) -> int:
    """The exit status of `sys.exit(code)`, as the interpreter computes it."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def finish(program: Callable[[], int]) -> NoReturn:
    """Run a child's program and end it as a fresh interpreter would end, without tearing down
    every preloaded module: the program's exit code (SystemExit, or 1 and the traceback for an
    uncaught exception), non-daemon threads joined, atexit handlers run, stdio flushed, then
    `os._exit`, as multiprocessing ends its forked children. The teardown it skips costs a
    third of a second and more of a short pod's life (it touches every page shared with the
    server) and no program can observe it."""
    interrupted = False
    try:
        code = program()
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except KeyboardInterrupt:
        sys.excepthook(*sys.exc_info())
        code, interrupted = 1, True
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()  # the interpreter joins the non-daemon threads first
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if interrupted:  # as CPython ends on an uncaught KeyboardInterrupt: killed by SIGINT
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code)


def main(argv: list[str]) -> int:
    """Preload, serve; in a forked child, run the container's program (and never return)."""
    own_path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    sock = socket.socket(fileno=int(argv[0]))
    _preload(argv[1:])
    launch = serve(sock)
    if launch is None:
        return 0
    finish(lambda: run(launch, own_path))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
