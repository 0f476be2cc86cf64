"""The operator's wall clock, read in one place.

Cron ticks, canary step durations and status timestamps all ask `now()`. Tests that would
otherwise wait for a real minute boundary move this clock instead (`shifted`), in the same
process as the operator under test; nothing in production moves it.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterator

__all__ = ["now", "shifted"]

_offset = datetime.timedelta()


def now() -> datetime.datetime:
    """The current time, UTC (plus the offset a test set with `shifted`)."""
    return datetime.datetime.now(tz=datetime.UTC) + _offset


@contextlib.contextmanager
def shifted(seconds: float) -> Iterator[None]:
    """Run the block with the clock `seconds` ahead of real time (tests only)."""
    global _offset  # noqa: PLW0603 (one process-wide clock, as the operator has one)
    before = _offset
    _offset = before + datetime.timedelta(seconds=seconds)
    try:
        yield
    finally:
        _offset = before
