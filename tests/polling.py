"""Waiting in async tests: poll a check until it holds, or fail saying what never happened."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def until(
    check: Callable[[], Awaitable[Any]],
    timeout: float = 30.0,
    what: str = "the condition",
    interval: float = 0.1,
) -> Any:
    """Await `check` every `interval` s until it returns something truthy (returned); fail
    after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(interval)  # real time on purpose: the poll interval
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
