"""Harness: the real operator (kopf, in-process, in a thread) against KubeloopEmulator.

Faked: only the API server (kmock) and the Job/Pod controllers — tests play the kubelet by
writing Job status and a Pod with a termination message, as the real ones would. The registry
read before a pipeline's first run (`kubeloop registry inspect`) plays itself, with the result
of `Cluster.inspect`, by default an empty registry (a new pipeline); a test of adoption sets its
own. In a registry Job it ends at once. In the first run's Job (its init container `registry`,
`--require-empty`) a registry that holds more, or a failed read, fails the Job at once, as its
podFailurePolicy does; an empty one lets the run go on, so a test that creates a pipeline
finishes run 1 as before (`finish_job` leaves the read's result in the pod's init status).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

# KUBELOOP_RESYNC_SECONDS and KUBELOOP_METRICS_PORT are set in tests/conftest.py, before any
# test module imports the controller.
import kopf
import yaml

import kubeloop.controller  # noqa: F401  (registers the handlers)
from kubeloop.controller.runtime import runtime
from kubeloop.local.cluster.emulator import EmulatorThread
from kubeloop.workloads.registryjob import empty_registry_result, read_exit_code

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")
TP = "kubeloop.io/v1alpha1/trainingpipelines"
MD = "kubeloop.io/v1alpha1/modeldeployments"
DM = "kubeloop.io/v1alpha1/driftmonitors"
JOBS = "batch/v1/jobs"
CRONJOBS = "batch/v1/cronjobs"


class Operator:
    """Start/stop kopf in a thread; restartable (state lives only in the cluster)."""

    def __init__(self, url: str, liveness: str | None = None) -> None:
        self.url = url
        self.liveness = liveness
        self._thread: threading.Thread | None = None
        self._stop: threading.Event | None = None

    def start(self) -> None:
        os.environ["KUBELOOP_KUBE_SERVER"] = self.url
        self._stop = threading.Event()
        stop = self._stop

        def run() -> None:
            asyncio.run(
                kopf.operator(
                    clusterwide=True,
                    standalone=True,
                    stop_flag=stop,
                    liveness_endpoint=self.liveness,
                )
            )

        self._thread = threading.Thread(target=run, name="kopf", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._stop is not None and self._thread is not None:
            self._stop.set()
            self._thread.join(60)  # slow on a loaded machine: handler threads finish first
            assert not self._thread.is_alive(), "kopf did not stop"


def empty_registry(args: list[str]) -> dict[str, Any]:
    """What `kubeloop registry inspect` answers for a registry nothing was written to."""
    return empty_registry_result(args)


def registry_read(job: dict[str, Any]) -> list[str] | None:
    """The `kubeloop registry inspect` args of a first run's Job (its first init container
    `registry`), with the pipeline uid its env gives; None for any other Job."""
    template = (job.get("spec") or {}).get("template") or {}
    inits = (template.get("spec") or {}).get("initContainers") or []
    if not inits or inits[0].get("name") != "registry":
        return None
    env = {e["name"]: e.get("value") for e in inits[0].get("env") or []}
    uid = env.get("KUBELOOP_PIPELINE_UID")
    return [*inits[0].get("args", []), *(["--pipeline-uid", uid] if uid else [])]


def _read_status(read: dict[str, Any]) -> dict[str, Any]:
    """The init status the registry read of a first run's Job leaves."""
    terminated = {"exitCode": read_exit_code(read), "message": json.dumps(read)}
    return {"name": "registry", "state": {"terminated": terminated}}


def _terminated_pod(
    job: dict[str, Any],
    result: dict[str, Any] | None,
    ok: bool,
    read: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The pod a Job's run leaves: terminated, its result in the termination message, owned
    by the Job (deleting the Job takes it along, as the garbage collector does); `read`: the
    result of its registry read (init container), when it has one."""
    message = json.dumps(result) if result is not None else ""
    ns, name, uid = (job["metadata"][k] for k in ("namespace", "name", "uid"))
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid, "controller": True}
    template = (job.get("spec") or {}).get("template") or {}
    labels = dict((template.get("metadata") or {}).get("labels") or {})  # as the Job controller
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{name}-pod",
            "namespace": ns,
            "labels": {**labels, "job-name": name, "batch.kubernetes.io/job-name": name},
            "annotations": {"batch.kubernetes.io/job-completion-index": "0"},
            "ownerReferences": [owner],
        },
        "spec": {"containers": []},
        "status": {
            **({"initContainerStatuses": [_read_status(read)]} if read is not None else {}),
            "containerStatuses": [
                {
                    "name": "c",
                    "state": {"terminated": {"exitCode": 0 if ok else 1, "message": message}},
                }
            ],
        },
    }


def _job_done(ok: bool) -> dict[str, Any]:
    cond = "Complete" if ok else "Failed"
    return {
        "status": {
            "conditions": [{"type": cond, "status": "True"}],
            "succeeded" if ok else "failed": 1,
        }
    }


class Cluster:
    """Helpers over the emulator thread."""

    def __init__(self, thread: EmulatorThread) -> None:
        self.thread = thread
        self.em = thread.emulator
        # The RegistryResult of every `kubeloop registry inspect` Job, from its args; None:
        # the test finishes those Jobs itself.
        self.inspect: Callable[[list[str]], dict[str, Any]] | None = empty_registry
        self._tasks: set[asyncio.Task[None]] = set()  # kept: the loop holds tasks weakly
        # The registry read of each first run's Job, (namespace, Job) -> its result.
        self.reads: dict[tuple[str, str], dict[str, Any]] = {}
        self.em.admission_hooks.append(self._on_create)

    def _on_create(self, obj: dict[str, Any]) -> None:
        """Admission hook (on the emulator's loop): an inspect Job about to be created ends
        right after, as its pod would; a first run's read happens at once too."""
        if obj.get("kind") != "Job" or self.inspect is None:
            return
        template = (obj.get("spec") or {}).get("template") or {}
        containers = (template.get("spec") or {}).get("containers") or [{}]
        args = list(containers[0].get("args") or [])
        read = registry_read(obj)
        if args[:2] == ["registry", "inspect"] or read is not None:
            meta = obj["metadata"]
            finish = self._finish_inspect(
                meta["namespace"], meta["name"], read or args, self.inspect, run=read is not None
            )
            task = asyncio.get_running_loop().create_task(finish)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _finish_inspect(
        self,
        ns: str,
        job: str,
        args: list[str],
        inspect: Callable[[list[str]], dict[str, Any]],
        *,
        run: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(None, inspect, args)
        for _ in range(500):  # the create that admitted it is still being stored
            found = self.em.get_object(JOBS, ns, job)
            if found is not None:
                break
            await asyncio.sleep(0.01)
        else:
            return
        if (found.get("status") or {}).get("conditions"):
            return  # an earlier Job of that name, finished already
        if run:
            self.reads[ns, job] = result
            if read_exit_code(result) == 0:
                return  # the pod goes on to train: the test finishes the run
            # podFailurePolicy: the Job fails at once; the pod's main container never ran.
            pod = _terminated_pod(found, None, False, read=result)
            pod["status"]["containerStatuses"] = []
        else:
            pod = _terminated_pod(found, result, bool(result.get("ok")))
        ok = bool(result.get("ok")) and not run
        await self.em.create_object(pod)
        await self.em.patch_object(JOBS, ns, job, _job_done(ok), "status")

    def create(self, doc: dict[str, Any]) -> dict[str, Any]:
        return self.thread.call(self.em.create_object(copy.deepcopy(doc)))

    def patch(
        self, resource: str, ns: str, name: str, patch: dict[str, Any], sub: str | None = None
    ) -> dict[str, Any]:
        return self.thread.call(self.em.patch_object(resource, ns, name, patch, subresource=sub))

    def delete(self, resource: str, ns: str, name: str) -> None:
        """Delete an object; the emulator's garbage collector takes its children along."""
        self.thread.call(self.em.delete_object(resource, ns, name))

    def api_delete(self, resource: str, ns: str, name: str) -> dict[str, Any]:
        """DELETE over HTTP, as kubectl does: an object with a finalizer is only marked, and
        the operator's deletion handlers run (`delete` above bypasses them)."""
        *group_version, plural = resource.split("/")
        prefix = "apis" if len(group_version) == 2 else "api"
        url = (
            f"{self.thread.url}/{prefix}/{'/'.join(group_version)}/namespaces/{ns}/{plural}/{name}"
        )
        with urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=10) as r:
            answer: dict[str, Any] = json.load(r)
        return answer

    def get(self, resource: str, ns: str, name: str) -> dict[str, Any] | None:
        return self.thread.call(lambda: self.em.get_object(resource, ns, name))

    def list(self, resource: str, ns: str | None = None) -> list[dict[str, Any]]:
        return self.thread.call(lambda: self.em.list_objects(resource, ns))

    def finish_job(
        self,
        ns: str,
        job: str,
        result: dict[str, Any] | None,
        ok: bool = True,
        read: dict[str, Any] | None = None,
    ) -> None:
        """Play the Job controller and kubelet: a terminated Pod, then the Job condition. A
        first run's Job leaves its registry read's result too (`read`, else the one played at
        its creation, else an empty registry)."""
        found = self.get(JOBS, ns, job)
        assert found is not None, f"Job {job} does not exist"
        args = registry_read(found)
        if args is not None and read is None:
            read = self.reads.get((ns, job)) or empty_registry(args)
        self.create(_terminated_pod(found, result, ok, read=read))
        self.patch(JOBS, ns, job, _job_done(ok), "status")

    def finish_registry_job(
        self,
        ns: str,
        job: str,
        *,
        refusal: tuple[str, str] | None = None,
        metrics: dict[str, float] | None = None,
        previous: str | None = None,
    ) -> dict[str, Any]:
        """Play a registry Job's pod: the RegistryResult `kubeloop registry promote` leaves for
        the version and alias in the Job's args (`refusal`: its (reason, cause) instead, exit
        code non-zero); returns the result."""
        found = wait_for(lambda: self.get(JOBS, ns, job), what=f"registry Job {job}")
        args = found["spec"]["template"]["spec"]["containers"][0]["args"]
        flags = dict(zip(args[2::2], args[3::2], strict=True))
        version, alias = flags["--version"], flags["--alias"]
        result: dict[str, Any]
        if refusal is None:
            result = {
                "kind": "RegistryResult",
                "ok": True,
                "alias": alias,
                "version": version,
                "uri": f"{flags['--artifacts'].rstrip('/')}/versions/{version}",
                "metrics": metrics or {},
                "runId": version,
                "previous": previous,
            }
        else:
            reason, cause = refusal
            message = f"version {version} under {flags['--artifacts']} {cause}"
            result = {"kind": "RegistryResult", "ok": False, "reason": reason, "message": message}
        self.finish_job(ns, job, result, ok=refusal is None)
        return result

    def roll_out_deployment(self, ns: str, name: str) -> dict[str, Any]:
        """Play the Deployment controller: every desired pod is new and ready; returns the
        Deployment."""
        dep = wait_for(lambda: self.get("apps/v1/deployments", ns, name), what=f"Deployment {name}")
        n = dep["spec"]["replicas"]
        status = {
            "observedGeneration": dep["metadata"]["generation"],
            "replicas": n,
            "updatedReplicas": n,
            "readyReplicas": n,
            "availableReplicas": n,
            "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicas"}],
        }
        self.patch("apps/v1/deployments", ns, name, {"status": status}, "status")
        return dep

    def stall_deployment(self, ns: str, name: str) -> None:
        """Play the Deployment controller giving up: progress deadline exceeded, no pod
        ready."""
        dep = wait_for(lambda: self.get("apps/v1/deployments", ns, name), what=f"Deployment {name}")
        cond = {
            "type": "Progressing",
            "status": "False",
            "reason": "ProgressDeadlineExceeded",
            "message": f'ReplicaSet "{name}-5d9f" has timed out progressing.',
        }
        status = {
            "observedGeneration": dep["metadata"]["generation"],
            "replicas": dep["spec"]["replicas"],
            "updatedReplicas": dep["spec"]["replicas"],
            "readyReplicas": 0,
            "conditions": [cond],
        }
        self.patch("apps/v1/deployments", ns, name, {"status": status}, "status")

    def block_job(
        self,
        ns: str,
        job: str,
        reason: str = "CreateContainerConfigError",
        message: str = 'secret "s3-credentials" not found',
    ) -> str:
        """Play the Job controller and kubelet: the Job's pod (labels from its template) waits,
        as on a Secret that does not exist; returns the pod's name."""
        found = self.get(JOBS, ns, job)
        assert found is not None, f"Job {job} does not exist"
        template = found["spec"]["template"]
        labels = {**template["metadata"]["labels"], "job-name": job}
        labels["batch.kubernetes.io/job-name"] = job
        container = template["spec"]["containers"][0]
        name = f"{job}-x7k2p"
        waiting = {"waiting": {"reason": reason, "message": message}}
        self.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "spec": {"containers": [{"name": container["name"], "image": container["image"]}]},
                "status": {
                    "phase": "Pending",
                    "containerStatuses": [
                        {"name": container["name"], "ready": False, "state": waiting}
                    ],
                },
            }
        )
        return name

    def spawn_job(self, ns: str, cronjob: str, minute: int) -> str:
        """Play the CronJob controller: a Job from the jobTemplate, named `<cronjob>-<minute>`."""
        cron = self.get(CRONJOBS, ns, cronjob)
        assert cron is not None, f"CronJob {cronjob} does not exist"
        template = cron["spec"]["jobTemplate"]
        name = f"{cronjob}-{minute}"
        self.create(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {
                    "name": name,
                    "namespace": ns,
                    "labels": dict(template["metadata"]["labels"]),
                    "ownerReferences": [
                        {
                            "apiVersion": "batch/v1",
                            "kind": "CronJob",
                            "name": cronjob,
                            "uid": cron["metadata"]["uid"],
                            "controller": True,
                        }
                    ],
                },
                "spec": copy.deepcopy(template["spec"]),
            }
        )
        return name


def finish_data_check(
    cluster: Cluster, ns: str, pipeline: str, minute: int, fingerprint: str | None
) -> str:
    """Play a data-watch CronJob tick: a Job from its template, finished with the
    DataFingerprint result `kubeloop fingerprint` leaves (None: the check failed); returns the
    Job's name."""
    job = cluster.spawn_job(ns, f"{pipeline}-datawatch", minute)
    if fingerprint is None:
        result = {"kind": "DataFingerprint", "ok": False, "reason": "DataNotFound"}
        result["message"] = "spec.data.train: no Parquet file at s3://datasets/churn/"
        cluster.finish_job(ns, job, result, ok=False)
    else:
        result = {"kind": "DataFingerprint", "ok": True, "fingerprint": fingerprint}
        cluster.finish_job(ns, job, {**result, "files": 2, "bytes": 4096})
    return job


def wait_for(fn: Callable[[], T | None], timeout: float = 60, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            if os.environ.get("KUBELOOP_TRACE_WAITS"):
                print(f"waited {timeout - (deadline - time.monotonic()):.1f}s for {what}")
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def events(cluster: Cluster, name: str, reason: str, timeout: float = 30) -> list[dict[str, Any]]:
    """The Events of `reason` on object `name` (namespace ml), once there is at least one.

    The operator posts Events from a queue (controller/events.py), so they trail the status
    the test just saw: waiting for them is the only race-free way to check one.
    """

    def found() -> list[dict[str, Any]]:
        return [
            e
            for e in cluster.list("v1/events", "ml")
            if e.get("reason") == reason and e["involvedObject"]["name"] == name
        ]

    return wait_for(found, timeout, what=f"a {reason} Event on {name}")


def posted(found: list[dict[str, Any]]) -> int:
    """How many times these Events were posted: the operator counts a repeat of one (same
    object, type, reason and message within 10 minutes) in the `count` of the Event already
    posted, as client-go does (controller/events.py)."""
    return sum(int(e.get("count") or 1) for e in found)


def training_result(version: str, auc: float) -> dict[str, Any]:
    """The TrainingResult a successful churn run's pod leaves (version `version`)."""
    return {
        "kind": "TrainingResult",
        "ok": True,
        "version": version,
        "uri": f"s3://models/churn/versions/{version}",
        "metrics": {"roc_auc": auc, "accuracy": 0.8},
    }


def pipeline_status(cluster: Cluster, name: str) -> dict[str, Any]:
    """The status of TrainingPipeline `name` in namespace ml (it must exist)."""
    obj = cluster.get(TP, "ml", name)
    assert obj is not None
    return obj.get("status") or {}


def example(file: str, **meta: Any) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "examples" / file).read_text())
    doc["metadata"].update(meta)
    return doc


def settled(cluster: Cluster, plural: str, name: str, passes: int = 3) -> None:
    """Wait until the operator has reconciled `name` `passes` more times: after that, whatever
    it would still change about the object has been changed (asserting "nothing more happens"
    after a count of reconciles, not after a guess of wall-clock time that a loaded machine can
    outlast)."""
    resync_requests(cluster, plural, name, passes)


KINDS = {
    "trainingpipelines": "TrainingPipeline",
    "modeldeployments": "ModelDeployment",
    "driftmonitors": "DriftMonitor",
}


def reconciles(plural: str, name: str) -> int:
    """How many reconcile passes of object `name` (of resource `plural`) the in-process operator
    has finished (the operator reads from its watch cache: the API server does not see them)."""
    kind = KINDS[plural]
    return sum(n for (k, _, o), n in runtime.passes.items() if k == kind and o == name)


def resync_requests(cluster: Cluster, plural: str, name: str, passes: int = 4) -> list[Any]:
    """The API requests made while the operator reconciled object `name` (of resource `plural`,
    e.g. "trainingpipelines") `passes` more times.

    Every request is kept meanwhile, so none of the window's is trimmed away.
    """
    em = cluster.em
    keep, em.keep_requests = em.keep_requests, None
    try:
        # By identity: kmock's request ids restart after its log was trimmed. The requests seen
        # here stay recorded (and alive) meanwhile, so no new one can take an identity of theirs.
        before = {id(r) for r in cluster.thread.call(lambda: list(em))}
        start = reconciles(plural, name)
        # A pass already running when we started may have read before the window opened.
        wait_for(
            lambda: reconciles(plural, name) >= start + passes + 1,
            what=f"{passes} reconciles of {name}",
        )
        return [r for r in cluster.thread.call(lambda: list(em)) if id(r) not in before]
    finally:
        em.keep_requests = keep
