"""The local CronJob controller: a Job per schedule tick, its status and history limits.

`concurrencyPolicy`, `suspend`, `startingDeadlineSeconds` (the decisions are pure functions in
`cronjobs`) and `status.lastScheduleTime/lastSuccessfulTime/active`; `trigger()` does what
`kubectl create job --from=cronjob/<name>` does.
"""

from __future__ import annotations

import datetime
from typing import Any

from kubeloop.local.cluster.cronjobs import due_time, job_from_cronjob
from kubeloop.local.cluster.jobcontroller import JOBS
from kubeloop.local.cluster.kubeapi import ApiError, KubeApi

__all__ = ["CRONJOBS", "CronJobController"]

CRONJOBS = "batch/v1/cronjobs"


class CronJobController:
    """Creates the Jobs of the emulated cluster's CronJobs (the Job controller runs them)."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api

    async def trigger(self, namespace: str, name: str) -> dict[str, Any]:
        """Create a Job from a CronJob now (`kubectl create job --from=cronjob/<name>`)."""
        cronjob = await self.api.get(CRONJOBS, namespace, name)
        if cronjob is None:
            raise ApiError(404, f"cronjob {namespace}/{name} not found")
        return await self.api.create(JOBS, job_from_cronjob(cronjob))

    async def reconcile(self) -> None:
        """One pass over the CronJobs: due Jobs created, status and history kept."""
        now = datetime.datetime.now(tz=datetime.UTC)
        jobs = await self.api.list(JOBS)
        for cronjob in await self.api.list(CRONJOBS):
            meta, spec = cronjob["metadata"], cronjob.get("spec") or {}
            owned = [
                j
                for j in jobs
                if any(
                    o.get("uid") == meta["uid"] for o in j["metadata"].get("ownerReferences") or []
                )
            ]

            def finished(j: dict[str, Any], kind: str | None = None) -> bool:
                conds = (j.get("status") or {}).get("conditions") or []
                kinds = (kind,) if kind else ("Complete", "Failed")
                return any(c.get("type") in kinds and c.get("status") == "True" for c in conds)

            active = [j for j in owned if not finished(j)]
            status: dict[str, Any] = {
                "active": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": j["metadata"]["name"],
                        "namespace": meta["namespace"],
                        "uid": j["metadata"]["uid"],
                    }
                    for j in active
                ]
                or None,
            }
            successes = sorted(
                (j.get("status") or {}).get("completionTime", "")
                for j in owned
                if finished(j, "Complete")
            )
            if successes:
                status["lastSuccessfulTime"] = successes[-1]
            due = due_time(cronjob, now)
            if due is not None:
                policy = spec.get("concurrencyPolicy", "Allow")
                if policy == "Forbid" and active:
                    due = None
                elif policy == "Replace":
                    for j in active:
                        await self.api.delete(JOBS, meta["namespace"], j["metadata"]["name"])
            if due is not None:
                job = job_from_cronjob(cronjob, scheduled=due)
                try:
                    await self.api.create(JOBS, job)
                except ApiError as exc:
                    if exc.status != 409:
                        raise
                status["lastScheduleTime"] = due.strftime("%Y-%m-%dT%H:%M:%SZ")
            previous = cronjob.get("status") or {}
            if any(previous.get(k) != v for k, v in status.items()):
                # Only on change: every write is a watch event the operator has to process.
                await self.api.patch(
                    CRONJOBS,
                    meta["namespace"],
                    meta["name"],
                    {"status": status},
                    subresource="status",
                )
            await self._cronjob_history(cronjob, owned, finished)

    async def _cronjob_history(
        self, cronjob: dict[str, Any], owned: list[dict[str, Any]], finished: Any
    ) -> None:
        spec = cronjob.get("spec") or {}
        for kind, limit in (
            ("Complete", int(spec.get("successfulJobsHistoryLimit", 3))),
            ("Failed", int(spec.get("failedJobsHistoryLimit", 1))),
        ):
            done = sorted(
                (j for j in owned if finished(j, kind)),
                key=lambda j: j["metadata"].get("creationTimestamp", ""),
            )
            for j in done[: max(len(done) - limit, 0)]:
                await self.api.delete(JOBS, j["metadata"]["namespace"], j["metadata"]["name"])
