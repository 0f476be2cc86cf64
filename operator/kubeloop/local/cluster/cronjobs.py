"""What the CronJob controller (and `kubectl create job --from=cronjob/x`) decides, as pure code."""

from __future__ import annotations

import copy
import datetime
import secrets as random
from collections.abc import Mapping
from typing import Any

from croniter import croniter

__all__ = ["MANUAL_ANNOTATION", "SCHEDULED_ANNOTATION", "due_time", "job_from_cronjob"]

SCHEDULED_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
MANUAL_ANNOTATION = "cronjob.kubernetes.io/instantiate"


def _parse(ts: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))


def due_time(cronjob: Mapping[str, Any], now: datetime.datetime) -> datetime.datetime | None:
    """The latest schedule time not yet run at `now`, or None (suspended or nothing due).

    Like the controller, missed ticks collapse into the most recent one; the first tick counted
    is the first after the CronJob's creation (or its `status.lastScheduleTime`), and a tick older
    than `startingDeadlineSeconds` is skipped.
    """
    spec = cronjob.get("spec") or {}
    if spec.get("suspend"):
        return None
    status = cronjob.get("status") or {}
    since_text = status.get("lastScheduleTime") or (cronjob.get("metadata") or {}).get(
        "creationTimestamp"
    )
    since = _parse(since_text) if since_text else now
    schedule = spec["schedule"]
    zone = spec.get("timeZone")
    if zone:
        import zoneinfo

        tz = zoneinfo.ZoneInfo(zone)
        since, now_local = since.astimezone(tz), now.astimezone(tz)
    else:
        now_local = now
    it = croniter(schedule, since)
    latest: datetime.datetime | None = None
    while True:
        tick = it.get_next(datetime.datetime)
        if tick > now_local:
            break
        latest = tick
    if latest is None:
        return None
    deadline = spec.get("startingDeadlineSeconds")
    if deadline is not None and (now_local - latest).total_seconds() > float(deadline):
        return None
    return latest.astimezone(datetime.UTC)


def job_from_cronjob(
    cronjob: Mapping[str, Any], *, scheduled: datetime.datetime | None = None
) -> dict[str, Any]:
    """The Job a CronJob creates: for a tick (`scheduled`), or on demand (None), like
    `kubectl create job --from=cronjob/<name>`.

    Scheduled names are `<cronjob>-<minutes since epoch>` (deterministic, so a tick runs once);
    manual ones `<cronjob>-manual-<5 chars>` with the `cronjob.kubernetes.io/instantiate: manual`
    annotation. Both carry the jobTemplate's labels/annotations and an ownerReference.
    """
    meta = cronjob.get("metadata") or {}
    template = copy.deepcopy((cronjob.get("spec") or {}).get("jobTemplate") or {})
    tmeta = template.get("metadata") or {}
    annotations = dict(tmeta.get("annotations") or {})
    if scheduled is not None:
        name = f"{meta['name']}-{int(scheduled.timestamp()) // 60}"
        annotations[SCHEDULED_ANNOTATION] = scheduled.strftime("%Y-%m-%dT%H:%M:%SZ")
    else:
        alphabet = "bcdfghjklmnpqrstvwxz2456789"
        name = f"{meta['name']}-manual-" + "".join(random.choice(alphabet) for _ in range(5))
        annotations[MANUAL_ANNOTATION] = "manual"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name[:63],
            "namespace": meta.get("namespace"),
            "labels": dict(tmeta.get("labels") or {}),
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": cronjob.get("apiVersion", "batch/v1"),
                    "kind": "CronJob",
                    "name": meta.get("name"),
                    "uid": meta.get("uid"),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": template.get("spec") or {},
    }
