"""`kubeloop local demo` (`make demo`): the scenario with a live view, a summary and a report.

The steps are in `kubeloop.local.demo.scenario` (the end-to-end test runs the same function); this
module only chooses the view (rich on a terminal, plain lines otherwise), prints the summary
and writes `<state_dir>/report.html`.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from kubeloop.local.demo.liveview import LiveView, PlainView
from kubeloop.local.demo.report import render_summary, write_html
from kubeloop.local.demo.scenario import DemoError, DemoResult, Observer, run_scenario

__all__ = ["finish", "run_demo"]


def finish(result: DemoResult) -> str:
    """Write the HTML report next to the state and return the summary text."""
    result.report = result.state_dir / "report.html"
    write_html(result, result.report)
    return render_summary(result)


async def _cancellable(state_dir: Path, view: Observer) -> DemoResult:
    # SIGTERM (e.g. `timeout`) and SIGINT cancel the scenario, so the stack still stops its
    # operator and pod processes (they run in their own sessions and would outlive us).
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    return await run_scenario(state_dir, view)


def run_demo(state_dir: Path, *, live: bool = True) -> int:
    """Run the whole loop; 0 when every step happened, 1 (with the failed step named) if not."""
    use_rich = live and sys.stdout.isatty()
    view: Observer
    try:
        if use_rich:
            with LiveView() as rich_view:
                view = rich_view
                result = asyncio.run(_cancellable(state_dir, view))
        else:
            view = PlainView()
            result = asyncio.run(_cancellable(state_dir, view))
    except DemoError as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        print(
            f"logs: {state_dir / 'operator.log'}, pods under {state_dir / 'cluster' / 'pods'}",
            file=sys.stderr,
        )
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\ninterrupted; the local cluster was stopped", file=sys.stderr)
        return 130
    print()
    print(finish(result))
    return 0
