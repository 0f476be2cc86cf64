"""The Job controller and kubelet of bench/operator_bench.py's emulated cluster, played cheaply:
a finished Job is a terminated Pod carrying the workload's result in its termination message,
then the Job's `Complete` condition, as the real controllers leave them.

- registry Jobs (`kubeloop registry inspect|promote`) end right after they are created: the
  registry is empty (a new pipeline), and every alias write succeeds;
- run Jobs (`<pipeline>-run-<id>`, both operators' naming) keep running until `finish_runs`,
  which ends each with a successful TrainingResult (the gate then promotes it); a first run's
  registry read (its init container `registry`) found the registry empty.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from kubeloop.local.cluster.emulator import EmulatorThread
from kubeloop.workloads.registryjob import empty_registry_result

__all__ = ["JOBS", "JobPlayer", "is_run_job"]

JOBS = "batch/v1/jobs"


def is_run_job(name: str) -> bool:
    """Whether a Job is a training run's (`<pipeline>-run-<id>`), not a registry Job's."""
    head, _, tail = name.rpartition("-run-")
    return bool(head) and tail.isdigit()


def _registry_result(args: list[str]) -> dict[str, Any]:
    """What `kubeloop registry ...` answers: an empty registry; an alias write that succeeded."""
    if args[1] == "inspect":
        return empty_registry_result()
    flags = dict(zip(args[2::2], args[3::2], strict=False))
    version = flags.get("--version", "")
    return {
        "kind": "RegistryResult",
        "ok": True,
        "alias": flags.get("--alias"),
        "version": version,
        "uri": f"{flags.get('--artifacts', '').rstrip('/')}/versions/{version}",
        "metrics": {},
        "runId": version,
    }


def _training_result(run_id: str) -> dict[str, Any]:
    return {
        "kind": "TrainingResult",
        "ok": True,
        "version": run_id,
        "uri": f"s3://models/churn/versions/{run_id}",
        "metrics": {"roc_auc": 0.9, "accuracy": 0.8},
    }


class JobPlayer:
    """Plays the Jobs of one emulator (an admission hook on its loop)."""

    def __init__(self, thread: EmulatorThread) -> None:
        self.thread = thread
        self.em = thread.emulator
        self._tasks: set[asyncio.Task[None]] = set()  # kept: the loop holds tasks weakly
        self.em.admission_hooks.append(self._on_create)

    def _on_create(self, obj: dict[str, Any]) -> None:
        if obj.get("kind") != "Job":
            return
        containers = obj["spec"]["template"]["spec"].get("containers") or [{}]
        args = list(containers[0].get("args") or [])
        if args[:1] == ["registry"] and len(args) > 1:
            meta = obj["metadata"]
            finish = self._finish_soon(meta["namespace"], meta["name"], _registry_result(args))
            task = asyncio.get_running_loop().create_task(finish)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _finish_soon(self, ns: str, name: str, result: dict[str, Any]) -> None:
        for _ in range(500):  # the create that admitted it is still being stored
            job = self.em.get_object(JOBS, ns, name)
            if job is not None:
                await self._finish(job, result)
                return
            await asyncio.sleep(0.01)

    async def _finish(self, job: dict[str, Any], result: dict[str, Any]) -> None:
        if (job.get("status") or {}).get("conditions"):
            return  # finished already
        meta = job["metadata"]
        ns, name = meta["namespace"], meta["name"]
        template = job["spec"]["template"]
        owner = {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": meta["uid"]}
        terminated = {"exitCode": 0, "message": json.dumps(result)}
        inits = template["spec"].get("initContainers") or []
        read = [
            {
                "name": c["name"],
                "state": {
                    "terminated": {
                        "exitCode": 0,
                        "message": json.dumps(empty_registry_result(list(c.get("args") or []))),
                    }
                },
            }
            for c in inits[:1]
            if c.get("name") == "registry"
        ]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{name}-pod",
                "namespace": ns,
                "labels": {**(template.get("metadata") or {}).get("labels", {}), "job-name": name},
                "ownerReferences": [{**owner, "controller": True}],
            },
            "spec": {"containers": []},
            "status": {
                "phase": "Succeeded",
                "containerStatuses": [{"name": "c", "state": {"terminated": terminated}}],
                **({"initContainerStatuses": read} if read else {}),
            },
        }
        await self.em.create_object(pod)
        done = {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}
        await self.em.patch_object(JOBS, ns, name, {"status": done}, "status")

    def finish_runs(self, namespace: str) -> int:
        """End every run Job still running with a successful TrainingResult; returns how many."""

        async def finish_all() -> int:
            ended = 0
            for job in self.em.list_objects(JOBS, namespace):
                name = job["metadata"]["name"]
                if is_run_job(name) and not (job.get("status") or {}).get("conditions"):
                    await self._finish(job, _training_result(name.rpartition("-run-")[2]))
                    ended += 1
            return ended

        return self.thread.call(finish_all(), timeout=600)
