"""The operator supervisor of `kubeloop local up`: the back-off decision, the exit message, and
the restart loop run on real (tiny) processes — a crash loop backs off instead of spinning."""

from __future__ import annotations

import itertools
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from tests.polling import until

from kubeloop.local.cluster.supervisor import (
    BACKOFF_CAP,
    BACKOFF_START,
    STABLE_AFTER,
    OperatorSupervisor,
    exit_report,
    log_tail,
    next_backoff,
)

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("last_delay", "uptime", "expected"),
    [
        (None, 0.0, BACKOFF_START),  # the first exit: restart soon
        (None, 3600.0, BACKOFF_START),
        (BACKOFF_START, 0.1, 2 * BACKOFF_START),  # a crash loop doubles...
        (1.0, 5.0, 2.0),
        (8.0, STABLE_AFTER - 0.1, 16.0),
        (16.0, 1.0, BACKOFF_CAP),  # ...up to the cap
        (BACKOFF_CAP, 1.0, BACKOFF_CAP),
        (BACKOFF_CAP, STABLE_AFTER, BACKOFF_START),  # up long enough: healthy, start over
        (8.0, 600.0, BACKOFF_START),
        (0.0, 0.0, 2 * BACKOFF_START),  # never below the floor, so never a hot loop
    ],
)
def test_backoff_doubles_to_a_cap_and_resets_after_a_stable_run(
    last_delay: float | None, uptime: float, expected: float
) -> None:
    assert next_backoff(last_delay, uptime) == expected


def test_the_exit_message_names_the_log_and_its_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "operator.log"
    log.write_text(
        "--- kubeloop local: operator first start at T ---\nold life\n"
        "--- kubeloop local: operator restart 1 at T ---\n"
        + "".join(f"line {i}\n" for i in range(40))
    )
    tail = log_tail(log, 3)
    assert tail == ["line 37", "line 38", "line 39"]
    text = exit_report(-signal.SIGKILL, 4.25, log, tail, restart=2, delay=1.0)
    assert text.splitlines() == [
        f"the operator exited (killed by SIGKILL) after 4.2 s; restart 2 in 1.0 s; its log: {log}",
        "last 3 lines of operator.log:",
        "  | line 37",
        "  | line 38",
        "  | line 39",
    ]


def test_the_exit_message_says_when_the_operator_logged_nothing(tmp_path: Path) -> None:
    log = tmp_path / "operator.log"
    log.write_text("a previous life\n--- kubeloop local: operator restart 3 at T ---\n")
    assert log_tail(log) == []  # the previous life's lines are not this crash's
    assert log_tail(tmp_path / "missing.log") == []
    text = exit_report(1, 0.2, log, [], restart=None, delay=0.5)
    assert text.splitlines() == [
        f"the operator exited (exit code 1) after 0.2 s; not restarted; its log: {log}",
        "it logged nothing before it exited (killed while starting up?)",
    ]


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


async def test_a_crash_loop_is_restarted_with_growing_waits_and_reported(tmp_path: Path) -> None:
    log = tmp_path / "operator.log"
    starts: list[tuple[float, int, int]] = []
    reports: list[str] = []
    supervisor = OperatorSupervisor(
        _python("import sys; print('boom: bad config', flush=True); sys.exit(3)"),
        dict(os.environ),
        log,
        on_start=lambda pid, restarts: starts.append((time.monotonic(), pid, restarts)),
        report=reports.append,
    )
    await supervisor.start()
    try:

        async def three_restarts() -> bool:
            return supervisor.restarts >= 3

        await until(three_restarts, timeout=30, what="three restarts")
    finally:
        await supervisor.stop()
    assert [r for _, _, r in starts[:4]] == [0, 1, 2, 3]
    assert len({pid for _, pid, _ in starts}) == len(starts)  # a new process each time
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(starts)]
    # 0.5, 1, 2 s between starts (plus start-up time): backed off, not a hot loop.
    for gap, wait in zip(gaps, (0.5, 1.0, 2.0), strict=False):
        assert gap >= wait
    exits = [r for r in reports if r.startswith("the operator exited")]
    assert exits[0].splitlines()[0].startswith("the operator exited (exit code 3) after ")
    assert "restart 1 in 0.5 s" in exits[0] and "restart 2 in 1.0 s" in exits[1]
    assert "  | boom: bad config" in exits[0]
    assert any(r.startswith("operator restarted (pid ") for r in reports)
    text = log.read_text()
    assert text.count("boom: bad config") >= 3  # the fourth may be stopped before it prints
    assert "--- kubeloop local: operator restart 3 at " in text


async def test_without_restart_an_exit_is_final(tmp_path: Path) -> None:
    reports: list[str] = []
    supervisor = OperatorSupervisor(
        _python("raise SystemExit(2)"),
        dict(os.environ),
        tmp_path / "operator.log",
        restart=False,
        report=reports.append,
    )
    await supervisor.start()

    async def finished() -> bool:
        return supervisor.finished

    await until(finished, timeout=30, what="the supervisor to give up")
    assert not supervisor.alive and supervisor.restarts == 0
    assert "(exit code 2)" in reports[0] and "not restarted" in reports[0]
    await supervisor.stop()


async def test_stop_ends_a_running_operator_and_restarts_nothing(tmp_path: Path) -> None:
    reports: list[str] = []
    supervisor = OperatorSupervisor(
        _python("import time; print('up', flush=True); time.sleep(60)"),
        dict(os.environ),
        tmp_path / "operator.log",
        report=reports.append,
    )
    await supervisor.start()
    pid = supervisor.pid
    assert pid is not None
    await supervisor.stop(grace=5)
    assert not supervisor.alive and supervisor.finished
    assert supervisor.restarts == 0 and reports == []  # a requested stop is no crash
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
