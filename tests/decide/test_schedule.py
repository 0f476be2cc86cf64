"""spec.schedule ticks at an injected time (UTC), and ticks skipped for unchanged data."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from tests.decide.tables import NEW, OLD, check

from kubeloop.decide.schedule import schedule_due, skip_schedule

_RUN = {"id": "4", "startedAt": "2026-01-01T10:00:00Z"}


def _utc(text: str) -> datetime.datetime:
    """An instant in UTC; fractions of a second as the operator's clock has them."""
    return datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.UTC)


def _since(minute: str) -> dict[str, Any]:
    """The status of a pipeline whose last acted-on tick was at `minute` (UTC)."""
    return {"lastScheduleTime": f"{minute}:00Z"}


@pytest.mark.parametrize(
    ("schedule", "status", "current", "expected"),
    [
        (None, {}, "2026-01-01T10:05:00", None),  # no schedule: never due
        ("* * * * *", {}, "2026-01-01T10:00:30", None),  # created 10:00:10, first tick 10:01
        ("* * * * *", {}, "2026-01-01T10:01:00", "2026-01-01T10:01:00Z"),  # on the tick
        ("* * * * *", {}, "2026-01-01T10:07:42", "2026-01-01T10:07:00Z"),  # missed ticks: one run
        (
            "* * * * *",
            {"lastScheduleTime": "2026-01-01T10:07:00Z"},
            "2026-01-01T10:07:59",
            None,
        ),  # this minute's tick already acted on
        ("0 3 * * *", {}, "2026-01-02T02:59:59", None),
        ("0 3 * * *", {}, "2026-01-02T03:00:01", "2026-01-02T03:00:00Z"),
        # the operator was down for three days: the latest tick runs once, the others never
        ("0 3 * * *", _since("2026-01-01T03:00"), "2026-01-04T10:00:00", "2026-01-04T03:00:00Z"),
        ("0 3 * * *", _since("2026-01-04T03:00"), "2026-01-04T10:00:00", None),  # and once
        # a fraction of a second before a tick names the tick before it, never the coming one
        ("* * * * *", _since("2026-01-01T10:05"), "2026-01-01T10:07:59.9", "2026-01-01T10:07:00Z"),
        ("0 3 * * *", _since("2026-01-01T03:00"), "2026-01-03T02:59:59.5", "2026-01-02T03:00:00Z"),
        ("* * * * *", _since("2026-01-01T10:05"), "2026-01-01T10:07:00.25", "2026-01-01T10:07:00Z"),
        # UTC: the nights clocks change in Europe and the US have their tick, once
        ("30 2 * * *", _since("2026-03-28T02:30"), "2026-03-29T02:30:00", "2026-03-29T02:30:00Z"),
        ("30 1 * * *", _since("2026-11-01T01:30"), "2026-11-01T02:45:00", None),
        # a day of month that February lacks: no tick until March has it
        ("0 0 31 * *", _since("2026-01-31T00:00"), "2026-03-30T23:59:59", None),
        ("0 0 31 * *", _since("2026-01-31T00:00"), "2026-03-31T00:00:05", "2026-03-31T00:00:00Z"),
    ],
)  # fmt: skip
def test_schedule_due(
    schedule: str | None, status: dict[str, Any], current: str, expected: str | None
) -> None:
    assert schedule_due(schedule, status, "2026-01-01T10:00:10Z", _utc(current)) == expected


@pytest.mark.parametrize(
    ("status", "skipped"),
    [
        # the latest check, made since run 4 started, found what run 4 trained on: skip
        ({"dataCheck": check(OLD), "lastRunDataFingerprint": OLD, "runs": [_RUN]}, True),
        ({"dataCheck": check(NEW), "lastRunDataFingerprint": OLD, "runs": [_RUN]}, False),
        # a check older than the latest run cannot tell what that run found
        (
            {
                "dataCheck": check(OLD, "2026-01-01T09:59:00Z"),
                "lastRunDataFingerprint": OLD,
                "runs": [_RUN],
            },
            False,
        ),
        ({"dataCheck": check(None), "lastRunDataFingerprint": OLD, "runs": [_RUN]}, False),
        ({"dataCheck": check(OLD), "runs": [_RUN]}, False),  # nothing trained yet: run
        ({"runs": [_RUN], "lastRunDataFingerprint": OLD}, False),  # never checked
    ],
)
def test_skip_schedule(status: dict[str, Any], skipped: bool) -> None:
    why = skip_schedule(status)
    assert (why is not None) is skipped
    if why:
        assert why.startswith("the data is unchanged since run 4 (check churn-datawatch-1")
        assert "skipUnchangedSchedule" in why
