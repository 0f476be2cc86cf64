"""What the demo shows while it runs: the three kinds' printer columns and the steps.

On a terminal, a rich live panel redrawn twice a second: `kubeloop local get tp,md,dm` output
(the CRDs' printer columns, `kubeloop.local.printer`) above the steps so far. When stdout is not
a terminal (CI, a pipe, `--plain`), plain lines instead: each step, and each resource row
whenever its printed columns change.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time
from abc import ABC, abstractmethod
from typing import Any, TextIO

from kubeloop.api.crd import KINDS
from kubeloop.local.cluster.kubeapi import KubeApi
from kubeloop.local.printer import render_table

__all__ = ["LiveView", "PlainView", "status_tables"]

NAMESPACE = "ml"
# Ages (`5s`, `2m46s`, `3h`) change every second; rows are compared without them.
_AGE = re.compile(r"(?<!\S)\d+[smhd](\d+[smh])?(?!\S)")


async def status_tables(api: KubeApi, namespace: str = NAMESPACE) -> list[tuple[str, str]]:
    """(short name, kubectl-style table) for each kind that has objects in `namespace`."""
    out = []
    for kind in KINDS:
        items: list[dict[str, Any]] = await api.list(
            f"kubeloop.io/v1alpha1/{kind.plural}", namespace
        )
        if items:
            out.append((kind.short_name, render_table(kind, items)))
    return out


class _Poller(ABC):
    """Polls the API in the background and hands the tables to `render`."""

    period = 0.5

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.api: KubeApi | None = None
        self._task: asyncio.Task[None] | None = None

    def elapsed(self) -> str:
        return f"{time.monotonic() - self.t0:6.1f}s"

    async def attach(self, api: KubeApi) -> None:
        self.api = api
        self._task = asyncio.create_task(self._poll())

    async def detach(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.api is not None:
            with contextlib.suppress(Exception):
                self.render(await status_tables(self.api))

    async def _poll(self) -> None:
        assert self.api is not None
        while True:
            with contextlib.suppress(Exception):  # the API may be busy; the next poll catches up
                self.render(await status_tables(self.api))
            await asyncio.sleep(self.period)

    @abstractmethod
    def render(self, tables: list[tuple[str, str]]) -> None:
        """Show the current tables (each view decides how)."""


class PlainView(_Poller):
    """Log lines: steps as they happen, resource rows when their columns change."""

    def __init__(self, out: TextIO | None = None) -> None:
        super().__init__()
        self.out = out or sys.stdout
        self._rows: dict[str, list[str]] = {}

    def step(self, text: str) -> None:
        print(f"{self.elapsed()}  {text}", file=self.out, flush=True)

    def render(self, tables: list[tuple[str, str]]) -> None:
        for short, table in tables:
            _, *rows = table.splitlines()
            for row in rows:
                key = f"{short}/{row.split()[0]}"
                cells = _AGE.sub("", row).split()
                if self._rows.get(key) != cells:
                    self._rows[key] = cells
                    print(f"{self.elapsed()}    {short:<3}{row}", file=self.out, flush=True)


class LiveView(_Poller):
    """A rich Live panel; use as `async with LiveView():` around the scenario."""

    def __init__(self) -> None:
        super().__init__()
        from rich.console import Console
        from rich.live import Live

        self.console = Console()
        self.live = Live(console=self.console, refresh_per_second=4, transient=False)
        self.steps: list[str] = []
        self.tables: list[tuple[str, str]] = []

    def __enter__(self) -> LiveView:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()

    def step(self, text: str) -> None:
        self.steps.append(f"{self.elapsed()}  {text}")
        self._draw()

    def render(self, tables: list[tuple[str, str]]) -> None:
        self.tables = tables
        self._draw()

    def _draw(self) -> None:
        from rich.console import Group
        from rich.panel import Panel
        from rich.text import Text

        body = "\n\n".join(table for _, table in self.tables) or "(waiting for the API)"
        steps = Text("\n".join(self.steps[-14:]))
        self.live.update(
            Group(
                Panel(Text(body), title="kubeloop local get tp,md,dm -n ml", expand=False),
                Panel(steps, title="the loop", expand=False),
            )
        )
