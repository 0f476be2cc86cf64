"""The operator process of `kubeloop local up`, kept running as a kubelet keeps a container.

On a cluster the operator is a Deployment's pod: when it dies the kubelet starts it again, with
a back-off that doubles up to a cap and starts over once the container has run for a while
(CrashLoopBackOff), while the API server and everything else carry on. `OperatorSupervisor`
does the same for the local stack: a crash is reported on the console with the tail of the
operator's log, counted, and followed by a restart; a crash loop waits ever longer between
starts, never spins. The operator's stdout and stderr are appended to one log file, with a
marker line per start so a reader sees where each life begins.

With `restart=False` (the demo, the reliability experiments) an exit is final: those runs
must see an operator crash as a failure, not have it papered over.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

__all__ = [
    "BACKOFF_CAP",
    "BACKOFF_START",
    "STABLE_AFTER",
    "OperatorSupervisor",
    "describe_exit",
    "exit_report",
    "log_tail",
    "next_backoff",
]

BACKOFF_START = 0.5  # seconds before the first restart
BACKOFF_CAP = 30.0  # the longest wait between starts of a crash-looping operator
STABLE_AFTER = 60.0  # an operator up this long counts as healthy: its next crash starts over
TAIL_LINES = 15
MARKER = "--- kubeloop local: operator "  # starts the line written before each start
STOP_GRACE = 10.0  # SIGTERM, then SIGKILL: kopf's cleanup takes a few seconds at most


def next_backoff(last_delay: float | None, uptime: float) -> float:
    """Seconds to wait before restarting an operator that exited after `uptime` seconds.

    `last_delay` is the wait before the run that just ended (None: it was the first start).
    Doubles from BACKOFF_START up to BACKOFF_CAP; an operator that stayed up STABLE_AFTER
    seconds is back to BACKOFF_START, as the kubelet resets CrashLoopBackOff.
    """
    if last_delay is None or uptime >= STABLE_AFTER:
        return BACKOFF_START
    return min(max(last_delay, BACKOFF_START) * 2, BACKOFF_CAP)


def describe_exit(returncode: int) -> str:
    """`exit code 1`, `killed by SIGKILL`: how the process ended, for a person."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def log_tail(path: Path, lines: int = TAIL_LINES) -> list[str]:
    """The last `lines` lines the latest operator wrote to its log (after the last start
    marker; [] when it wrote none or the log does not exist)."""
    try:
        with path.open("rb") as log:
            # Enough for the tail of a log of any length without reading it all.
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 64 * 1024))
            text = log.read().decode(errors="replace")
    except OSError:
        return []
    life = text.splitlines()
    starts = [i for i, line in enumerate(life) if line.startswith(MARKER)]
    if starts:
        life = life[starts[-1] + 1 :]
    return life[-lines:]


def exit_report(
    returncode: int,
    uptime: float,
    log: Path,
    tail: Sequence[str],
    *,
    restart: int | None,
    delay: float,
) -> str:
    """The console message for an operator exit: how it ended, what happens next, its log.

    `restart` is the number of the coming restart, None when there is none.
    """
    head = f"the operator exited ({describe_exit(returncode)}) after {uptime:.1f} s"
    nextly = f"restart {restart} in {delay:.1f} s" if restart is not None else "not restarted"
    lines = [f"{head}; {nextly}; its log: {log}"]
    if tail:
        lines.append(f"last {len(tail)} lines of {log.name}:")
        lines += [f"  | {line}" for line in tail]
    else:
        lines.append("it logged nothing before it exited (killed while starting up?)")
    return "\n".join(lines)


class OperatorSupervisor:
    """Start `argv` with `env`, log to `log`; restart it on exit (when `restart`) until `stop()`.

    `on_start(pid, restarts)` runs after every start (the stack rewrites its state file);
    `report(text)` gets the exit and restart messages (the console).
    """

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        log: Path,
        *,
        restart: bool = True,
        on_start: Callable[[int, int], None] | None = None,
        report: Callable[[str], None] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.log = log
        self.restart = restart
        self.on_start = on_start
        self.report = report or (lambda _text: None)
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self.started_at = 0.0
        self._stopping = asyncio.Event()
        self._spawning = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        """The running operator's pid (None between lives)."""
        return self.process.pid if self.alive and self.process is not None else None

    @property
    def alive(self) -> bool:
        """Whether an operator process runs now."""
        return self.process is not None and self.process.returncode is None

    @property
    def finished(self) -> bool:
        """The operator exited and will not be restarted."""
        return self._watcher is not None and self._watcher.done()

    async def start(self) -> None:
        """Start the first operator (OSError when it cannot be started) and begin watching."""
        await self._spawn()
        self._watcher = asyncio.create_task(self._watch(), name="operator-supervisor")

    async def _spawn(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            life = f"restart {self.restarts}" if self.restarts else "first start"
            log.write(f"{MARKER}{life} at {stamp} ---\n".encode())
            log.flush()
            # Its own session: stopping it also ends anything it started.
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        self.started_at = time.monotonic()
        if self.on_start is not None:
            self.on_start(self.process.pid, self.restarts)

    async def _watch(self) -> None:
        assert self.process is not None
        code = await self.process.wait()
        delay: float | None = None
        while not self._stopping.is_set():
            uptime = time.monotonic() - self.started_at
            delay = next_backoff(delay, uptime)
            coming = self.restarts + 1 if self.restart else None
            self.report(
                exit_report(code, uptime, self.log, log_tail(self.log), restart=coming, delay=delay)
            )
            if not self.restart:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            async with self._spawning:  # stop() never signals a process about to be replaced
                if self._stopping.is_set():
                    return
                self.restarts += 1
                try:
                    await self._spawn()
                except OSError as exc:
                    # The interpreter vanished (a venv rebuilt under us): an exit like a
                    # shell's "command not found", backed off and reported like any other.
                    self.report(f"could not start the operator: {exc}")
                    self.started_at = time.monotonic()
                    code = 127
                    continue
            assert self.process is not None
            self.report(f"operator restarted (pid {self.process.pid}, restart {self.restarts})")
            code = await self.process.wait()

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop restarting; SIGTERM the operator's group, SIGKILL after `grace` seconds."""
        self._stopping.set()
        async with self._spawning:
            process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        if self._watcher is not None:
            await self._watcher
