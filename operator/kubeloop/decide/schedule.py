"""spec.schedule: the cron tick due at a given time, and a due tick that starts no run.

Ticks are UTC (no daylight saving time: a tick is never skipped or doubled by a clock change).
The time is an argument: the controller passes its clock, the tests any instant.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from croniter import croniter

__all__ = ["TIME_FORMAT", "schedule_due", "skip_schedule"]

# RFC 3339 UTC at second precision, what the API server stores.
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def schedule_due(
    schedule: str | None, status: Mapping[str, Any], created: str, current: datetime.datetime
) -> str | None:
    """The latest cron tick at or before `current` not yet acted on (UTC), or None.

    Ticks missed while the operator was down (or a run was in progress) collapse into the
    latest one: one run, not one per tick.
    """
    if not schedule:
        return None
    since = status.get("lastScheduleTime") or created
    base = datetime.datetime.strptime(since, TIME_FORMAT).replace(tzinfo=datetime.UTC)
    tick = croniter(schedule, base).get_next(datetime.datetime)
    if tick > current:
        return None
    # get_prev is strictly before its start: from one second on, a tick at `current` itself
    # counts (cron ticks are whole minutes), rather than naming the previous, acted-on one.
    # Whole seconds first: from 10:07:59.9 one second on is 10:08:00.9, whose previous tick,
    # 10:08, has not come yet.
    whole = current.replace(microsecond=0)
    latest = croniter(schedule, whole + datetime.timedelta(seconds=1)).get_prev(datetime.datetime)
    return str(latest.strftime(TIME_FORMAT))


def skip_schedule(status: Mapping[str, Any]) -> str | None:
    """Why a due tick of spec.schedule starts no run (spec.dataTrigger.skipUnchangedSchedule),
    in a sentence; None: it runs. Only a check made since the latest run started can say that
    the data is still what the latest successful run trained on."""
    check = status.get("dataCheck") or {}
    trained = status.get("lastRunDataFingerprint")
    if not trained or check.get("fingerprint") != trained:
        return None
    runs = status.get("runs") or []
    latest = runs[0] if runs else None
    checked = str(check.get("checkedAt") or "")
    if latest is None or not checked or checked < str(latest.get("startedAt") or ""):
        return None
    return (
        f"the data is unchanged since run {latest['id']} (check {check['job']} at {checked} "
        f"found fingerprint {trained.split(':', 1)[-1][:12]}): "
        "spec.dataTrigger.skipUnchangedSchedule is true"
    )
