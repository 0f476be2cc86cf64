"""The local Job controller: pods per Job until it completes or fails, and its status.

`status.startTime/active/ready/succeeded/failed/completedIndexes/completionTime` and the
conditions `SuccessCriteriaMet` + `Complete` or `FailureTarget` + `Failed` (reasons
`BackoffLimitExceeded`, `DeadlineExceeded`, `PodFailurePolicy`), as the real controller writes
them; one Pod per attempt (run by the `kubelet`), `ttlSecondsAfterFinished` and
`podFailurePolicy` (`podfailure`: FailJob, Ignore, Count on exit codes) honoured.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubeloop.local.cluster.kubeapi import ApiError, KubeApi
from kubeloop.local.cluster.kubelet import Kubelet, PodRun, api_now, suffix
from kubeloop.local.cluster.podfailure import match_pod_failure
from kubeloop.local.cluster.podspec import completion_indexes, pod_from_template

__all__ = ["JOBS", "JobController", "JobRun"]

JOBS = "batch/v1/jobs"

log = logging.getLogger(__name__)


@dataclass
class JobRun:
    """A Job being run."""

    job: dict[str, Any]
    pods: list[PodRun] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    finished: bool = False  # its outcome is written
    policy_message: str = ""  # the podFailurePolicy rule that failed it


class JobController:
    """Runs the Jobs of the emulated cluster, keyed by uid in `jobs`."""

    def __init__(
        self, api: KubeApi, kubelet: Kubelet, wake: Callable[[], None] = lambda: None
    ) -> None:
        self.api = api
        self.kubelet = kubelet
        self.jobs: dict[str, JobRun] = {}
        # Called when a pod of a Job ends: its Job's status is due now, not at the next relist
        # (as the real controller reacts to its pod informer's event).
        self.wake = wake

    async def reconcile(self) -> None:
        """One pass over the Jobs: start, step, finish, expire and forget them."""
        jobs = await self.api.list(JOBS)
        seen = set()
        for job in jobs:
            uid = job["metadata"]["uid"]
            seen.add(uid)
            run = self.jobs.get(uid)
            if run is None:
                conditions = (job.get("status") or {}).get("conditions") or []
                if any(c.get("type") in ("Complete", "Failed") for c in conditions):
                    await self._job_ttl(job)
                    continue
                if (job.get("spec") or {}).get("suspend"):
                    continue
                run = JobRun(job)
                self.jobs[uid] = run
                await self.api.patch(
                    JOBS,
                    job["metadata"]["namespace"],
                    job["metadata"]["name"],
                    {"status": {"startTime": api_now(), "active": 0}},
                    subresource="status",
                )
            run.job = job
            if run.finished:
                await self._job_ttl(job)
                continue
            await self._step_job(run)
        for uid in list(self.jobs):
            if uid not in seen:  # deleted (or garbage-collected): its pods go with it
                run = self.jobs.pop(uid)
                await asyncio.gather(
                    *(self.kubelet.kill(p) for p in run.pods), return_exceptions=True
                )

    async def _job_ttl(self, job: dict[str, Any]) -> None:
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        done = (job.get("status") or {}).get("completionTime") or next(
            (
                c.get("lastTransitionTime")
                for c in (job.get("status") or {}).get("conditions") or []
                if c.get("type") == "Failed"
            ),
            None,
        )
        if ttl is None or done is None:
            return
        finished = datetime.datetime.fromisoformat(done.replace("Z", "+00:00"))
        if (datetime.datetime.now(tz=datetime.UTC) - finished).total_seconds() >= ttl:
            await self.api.delete(JOBS, job["metadata"]["namespace"], job["metadata"]["name"])
            self.jobs.pop(job["metadata"]["uid"], None)

    async def _step_job(self, run: JobRun) -> None:
        job = run.job
        spec = job.get("spec") or {}
        meta = job["metadata"]
        indexes = completion_indexes(job)
        indexed = spec.get("completionMode") == "Indexed"
        backoff = int(spec.get("backoffLimit", 6))
        parallelism = int(spec.get("parallelism", 1) or 1)
        succeeded = [p for p in run.pods if p.done and p.exit_code == 0]
        failed = [p for p in run.pods if p.done and p.exit_code != 0]
        active = [p for p in run.pods if not p.done]

        reason = ""
        policy = spec.get("podFailurePolicy")
        matches = {p.name: match_pod_failure(policy, _exits(p)) for p in failed}
        actions = {name: found.action if found else "Count" for name, found in matches.items()}
        counted = [p for p in failed if actions[p.name] != "Ignore"]
        if len(counted) > backoff:
            reason = "BackoffLimitExceeded"
        fail_job = next((p for p in failed if actions[p.name] == "FailJob"), None)
        if fail_job is not None:
            found = matches[fail_job.name]
            assert found is not None
            reason = "PodFailurePolicy"
            run.policy_message = found.message(f"{fail_job.namespace}/{fail_job.name}")
        deadline = spec.get("activeDeadlineSeconds")
        if deadline is not None and time.monotonic() - run.started > float(deadline):
            reason = "DeadlineExceeded"
        if indexed:
            done_indexes = {p.index for p in succeeded}
            todo = [i for i in indexes if i not in done_indexes]
        else:
            todo = [None] * max(len(indexes) - len(succeeded), 0)
        complete = not todo and not reason

        if reason or complete:
            await asyncio.gather(*(self.kubelet.kill(p) for p in active), return_exceptions=True)
            await self._finish_job(run, succeeded, failed, reason)
            return

        running_indexes = {p.index for p in active}
        recent_failure = max((p.finished_at or "" for p in failed), default="")
        can_start = parallelism - len(active)
        for index in todo:
            if can_start <= 0:
                break
            if indexed and index in running_indexes:
                continue
            if not indexed and len(active) >= len(todo):
                break
            # A retry waits a little (the controller's backoff is 10 s doubling).
            if counted and recent_failure and recent_failure >= api_now():
                break
            pod = self._job_pod(run, index)
            run.pods.append(pod)
            active.append(pod)
            can_start -= 1
            await self.kubelet.create_pod(pod)
            pod.task = asyncio.create_task(self.kubelet.run_to_completion(pod))
            pod.task.add_done_callback(lambda _: self.wake())
        ready = sum(1 for p in active if p.main.process is not None and p.main.process.running)
        counts = {
            "active": len(active),
            "ready": ready,
            "succeeded": len(succeeded),
            "failed": len(failed),
            **self._indexes(run, indexed),
        }
        observed = run.job.get("status") or {}
        if any(observed.get(key) != value for key, value in counts.items()):
            # only a change is written, as the real controller does: a no-op patch was a
            # request (and its admission and store work) per running Job and relist
            await self._patch_job(meta, counts)

    def _indexes(self, run: JobRun, indexed: bool) -> dict[str, Any]:
        if not indexed:
            return {}
        done = sorted(
            {p.index for p in run.pods if p.done and p.exit_code == 0 and p.index is not None}
        )
        return {"completedIndexes": ",".join(str(i) for i in done)} if done else {}

    def _job_pod(self, run: JobRun, index: int | None) -> PodRun:
        meta = run.job["metadata"]
        namespace = meta["namespace"]
        name = (
            f"{meta['name']}-{index}-{suffix()}"
            if index is not None
            else (f"{meta['name']}-{suffix()}")
        )
        labels = {
            "batch.kubernetes.io/job-name": meta["name"],
            "job-name": meta["name"],
            "batch.kubernetes.io/controller-uid": meta["uid"],
            "controller-uid": meta["uid"],
        }
        annotations = {}
        if index is not None:
            labels["batch.kubernetes.io/job-completion-index"] = str(index)
            annotations["batch.kubernetes.io/job-completion-index"] = str(index)
        template = (run.job.get("spec") or {}).get("template") or {}
        pod = pod_from_template(
            template,
            name=name,
            namespace=namespace,
            owner=run.job,
            labels=labels,
            annotations=annotations,
        )
        if index is not None and pod["spec"].get("subdomain"):
            pod["spec"].setdefault("hostname", f"{meta['name']}-{index}")
        return PodRun(name, namespace, pod, self.kubelet.pod_dir(namespace, name), index=index)

    async def _patch_job(self, meta: Mapping[str, Any], status: dict[str, Any]) -> bool:
        """Write the Job's status; False when the API refused it (the next pass tries again)."""
        try:
            await self.api.patch(
                JOBS, meta["namespace"], meta["name"], {"status": status}, subresource="status"
            )
        except ApiError as exc:
            log.warning("job %s/%s: status not written: %s", meta["namespace"], meta["name"], exc)
            return False
        return True

    async def _finish_job(
        self, run: JobRun, succeeded: list[PodRun], failed: list[PodRun], reason: str
    ) -> None:
        now = api_now()
        indexed = (run.job.get("spec") or {}).get("completionMode") == "Indexed"
        failed = [p for p in run.pods if p.done and p.exit_code != 0]
        if reason:
            message = {
                "BackoffLimitExceeded": "Job has reached the specified backoff limit",
                "DeadlineExceeded": "Job was active longer than specified deadline",
                "PodFailurePolicy": run.policy_message,
            }[reason]
            conditions = [
                {
                    "type": "FailureTarget",
                    "status": "True",
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": now,
                    "lastProbeTime": now,
                },
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": now,
                    "lastProbeTime": now,
                },
            ]
            extra: dict[str, Any] = {}
        else:
            conditions = [
                {
                    "type": "SuccessCriteriaMet",
                    "status": "True",
                    "reason": "CompletionsReached",
                    "message": "Reached expected number of succeeded pods",
                    "lastTransitionTime": now,
                    "lastProbeTime": now,
                },
                {
                    "type": "Complete",
                    "status": "True",
                    "reason": "CompletionsReached",
                    "message": "Reached expected number of succeeded pods",
                    "lastTransitionTime": now,
                    "lastProbeTime": now,
                },
            ]
            extra = {"completionTime": now}
        # Finished once the API holds it: a refused write is tried again on the next pass
        # (the pods are done, so the same outcome), never lost.
        run.finished = await self._patch_job(
            run.job["metadata"],
            {
                "active": 0,
                "ready": 0,
                "succeeded": len(succeeded),
                "failed": len(failed),
                "conditions": conditions,
                **extra,
                **self._indexes(run, indexed),
            },
        )


def _exits(pod: PodRun) -> list[tuple[str, int | None]]:
    return [(c.name, c.exit_code) for c in pod.containers]
