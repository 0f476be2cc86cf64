"""The pod runner against the real emulator over HTTP: Jobs, Indexed Jobs, CronJobs on demand,
Deployments with a rolling update behind a Service proxy. Containers are small Python programs;
every process is terminated by the fixture."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.polling import until

from kubeloop.local.cluster.emulator import EmulatorThread
from kubeloop.local.cluster.kubeapi import ApiError, KubeApi
from kubeloop.local.cluster.podrunner import PodRunner
from kubeloop.local.cluster.servicecontroller import LOCAL_URL_ANNOTATION

HERE = Path(__file__).parent
pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def cluster() -> Iterator[EmulatorThread]:
    with EmulatorThread(admission=False) as running:
        yield running


@pytest.fixture
async def runner(cluster: EmulatorThread, tmp_path: Path) -> AsyncIterator[PodRunner]:
    pod_runner = PodRunner(cluster.url, tmp_path / "pods", interval=0.1)
    await pod_runner.start()
    try:
        yield pod_runner
    finally:
        await pod_runner.stop()


@pytest.fixture
async def api(cluster: EmulatorThread) -> AsyncIterator[KubeApi]:
    async with KubeApi(cluster.url) as client:
        yield client


def job(name: str, code: str, **spec: Any) -> dict[str, Any]:
    container = {
        "name": "main",
        "image": "ghcr.io/kubeloop/kubeloop-trainer:0.1.0",
        "command": [sys.executable, "-c", code],
        "env": spec.pop("env", []),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "ml"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [container]}}}
        | spec,
    }


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == kind and cond["status"] == "True":
            return dict(cond)
    return None


async def pods_of(api: KubeApi, job_name: str) -> list[dict[str, Any]]:
    return [
        p
        for p in await api.list("v1/pods", "ml")
        if p["metadata"]["labels"].get("job-name") == job_name
    ]


WRITE_RESULT = (
    "import json, os; open(os.environ['KUBELOOP_RESULT_PATH'], 'w').write(json.dumps("
    "{'ok': True, 'secret': os.environ['AWS_SECRET_ACCESS_KEY'], "
    "'ns': os.environ['KUBELOOP_NAMESPACE'], 'scratch': os.environ['KUBELOOP_WORK_DIR']}))"
)


async def test_job_runs_to_complete_with_termination_message(
    runner: PodRunner, api: KubeApi
) -> None:
    await api.create(
        "v1/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s3", "namespace": "ml"},
            "data": {"secret": base64.b64encode(b"hunter2").decode()},
        },
    )
    manifest = job(
        "train-1",
        WRITE_RESULT,
        env=[
            {
                "name": "AWS_SECRET_ACCESS_KEY",
                "valueFrom": {"secretKeyRef": {"name": "s3", "key": "secret"}},
            },
            {
                "name": "KUBELOOP_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
            {"name": "KUBELOOP_WORK_DIR", "value": "/scratch"},
        ],
    )
    manifest["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "scratch", "mountPath": "/scratch"}
    ]
    manifest["spec"]["template"]["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    await api.create("batch/v1/jobs", manifest)

    done = await until(lambda: _get_if(api, "train-1", "Complete"))
    assert done["status"]["succeeded"] == 1
    assert done["status"]["active"] == 0
    assert done["status"]["completionTime"]
    pods = await pods_of(api, "train-1")
    assert len(pods) == 1
    pod = pods[0]
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["metadata"]["ownerReferences"][0]["uid"] == done["metadata"]["uid"]
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0
    message = json.loads(terminated["message"])
    assert message["secret"] == "hunter2"
    assert message["ns"] == "ml"
    assert message["scratch"] != "/scratch"
    assert Path(message["scratch"]).is_dir()


async def test_jobs_start_and_finish_at_their_events_not_at_the_relist(
    cluster: EmulatorThread, api: KubeApi, tmp_path: Path
) -> None:
    """The relist is only the resync: a Job is started at its watch event, and completed when
    its pod ends (with an hour's relist interval, either would otherwise wait that hour)."""
    slow = PodRunner(cluster.url, tmp_path / "pods", interval=3600)
    await slow.start()
    try:
        for name in ("first", "second"):  # the second surely after the watch started
            await api.create("batch/v1/jobs", job(name, "pass"))
            await until(lambda name=name: _get_if(api, name, "Complete"), what=f"{name} done")
    finally:
        await slow.stop()


async def test_a_running_job_whose_counts_hold_is_not_written_again(
    cluster: EmulatorThread, runner: PodRunner, api: KubeApi
) -> None:
    """Only a change of a Job's counts is written, as the real controller does (a no-op patch
    on every relist was a request per running Job and relist)."""
    patches: list[str] = []
    write = runner.job_controller.api.patch

    async def counted(resource: str, namespace: str, name: str, *args: Any, **kw: Any) -> Any:
        patches.append(name)
        return await write(resource, namespace, name, *args, **kw)

    runner.job_controller.api.patch = counted  # type: ignore[method-assign]
    await api.create("batch/v1/jobs", job("steady", "import time; time.sleep(60)"))

    async def ready() -> dict[str, Any] | None:
        obj = await api.get("batch/v1/jobs", "ml", "steady")
        return obj if ((obj or {}).get("status") or {}).get("ready") == 1 else None

    await until(ready, what="the Job's pod ready")
    written = len(patches)
    served = cluster.emulator.requests_served

    async def relisted() -> bool:  # a relist every 0.1 s: each a few requests
        return cluster.emulator.requests_served > served + 40

    await until(relisted, what="some relists")
    assert len(patches) == written, patches


async def test_a_refused_completion_write_is_written_on_the_next_pass(
    runner: PodRunner, api: KubeApi
) -> None:
    """The Job's outcome counts as written only once the API took it: a refused write (a 5xx
    of a loaded API server) was remembered as done, and the Job stayed active for good."""
    refused: list[str] = []
    write = runner.job_controller.api.patch

    async def refuse_first_outcome(
        resource: str, namespace: str, name: str, body: dict[str, Any], **kw: Any
    ) -> Any:
        outcome = "conditions" in (body.get("status") or {})
        if resource == "batch/v1/jobs" and outcome and not refused:
            refused.append(name)
            raise ApiError(500, "etcdserver: request timed out")
        return await write(resource, namespace, name, body, **kw)

    runner.job_controller.api.patch = refuse_first_outcome  # type: ignore[method-assign]
    await api.create("batch/v1/jobs", job("refused", "pass"))
    done = await until(lambda: _get_if(api, "refused", "Complete"), what="refused done")
    assert refused == ["refused"]
    assert done["status"]["succeeded"] == 1


async def test_describe_job_shows_each_container_and_its_log_tail(
    runner: PodRunner, api: KubeApi
) -> None:
    # What a timed-out wait on a Job prints (the demo's drift check): CI shows no pod logs.
    await api.create("batch/v1/jobs", job("told", "print('first'); print('last words')"))
    await until(lambda: _get_if(api, "told", "Complete"), what="told done")
    described = runner.describe_job("ml", "told", lines=1)
    assert "job told: finished=True, 1 pod(s)" in described
    assert "container main: exit 0" in described
    assert described.endswith("| last words") and "first" not in described
    assert runner.describe_job("ml", "nope") == "job ml/nope: not run here (not seen, or forgotten)"


async def _get_if(api: KubeApi, name: str, kind: str) -> dict[str, Any] | None:
    obj = await api.get("batch/v1/jobs", "ml", name)
    return obj if condition(obj, kind) else None


async def test_job_fails_after_backoff_limit(runner: PodRunner, api: KubeApi) -> None:
    code = "import sys; print('boom'); sys.exit(3)"
    manifest = job("bad", code, backoffLimit=1)
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    await api.create("batch/v1/jobs", manifest)
    failed = await until(lambda: _get_if(api, "bad", "Failed"))
    assert condition(failed, "Failed")["reason"] == "BackoffLimitExceeded"  # type: ignore[index]
    assert failed["status"]["failed"] == 2
    pods = await pods_of(api, "bad")
    assert len(pods) == 2
    for pod in pods:
        terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert terminated["exitCode"] == 3
        assert terminated["message"].strip() == "boom"  # the log tail, by the policy


async def test_indexed_job_gives_each_pod_its_index(runner: PodRunner, api: KubeApi) -> None:
    code = (
        "import os; open(os.environ['KUBELOOP_RESULT_PATH'], 'w').write("
        "os.environ['JOB_COMPLETION_INDEX'] + ' ' + os.environ['MASTER_ADDR'])"
    )
    manifest = job(
        "ddp",
        code,
        completions=3,
        parallelism=3,
        completionMode="Indexed",
        env=[{"name": "MASTER_ADDR", "value": "ddp-0.ddp"}],
    )
    manifest["spec"]["template"]["spec"]["subdomain"] = "ddp"
    await api.create("batch/v1/jobs", manifest)
    done = await until(lambda: _get_if(api, "ddp", "Complete"))
    assert done["status"]["completedIndexes"] == "0,1,2"
    messages = sorted(
        p["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
        for p in await pods_of(api, "ddp")
    )
    assert messages == ["0 127.0.0.1", "1 127.0.0.1", "2 127.0.0.1"]


async def test_cronjob_on_demand_creates_an_owned_job(runner: PodRunner, api: KubeApi) -> None:
    template = job("x", "print('checked')")["spec"]
    cronjob = await api.create(
        "batch/v1/cronjobs",
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "drift", "namespace": "ml"},
            "spec": {
                "schedule": "0 0 1 1 *",
                "jobTemplate": {"metadata": {"labels": {"app": "monitor"}}, "spec": template},
            },
        },
    )
    created = await runner.trigger("ml", "drift")
    assert created["metadata"]["name"].startswith("drift-manual-")
    assert created["metadata"]["ownerReferences"][0]["uid"] == cronjob["metadata"]["uid"]
    assert created["metadata"]["labels"] == {"app": "monitor"}
    await until(lambda: _get_if(api, created["metadata"]["name"], "Complete"))
    cj = await until(
        lambda: _cronjob_with(api, "lastSuccessfulTime"),
    )
    assert not cj["status"].get("active")


async def _cronjob_with(api: KubeApi, key: str) -> dict[str, Any] | None:
    obj = await api.get("batch/v1/cronjobs", "ml", "drift")
    return obj if (obj or {}).get("status", {}).get(key) else None


def deployment(version: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "echo", "namespace": "ml"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "echo"}},
            "template": {
                "metadata": {"labels": {"app": "echo"}},
                "spec": {
                    "containers": [
                        {
                            "name": "server",
                            "image": "kubeloop-server",
                            "command": [sys.executable, str(HERE / "echo_server.py")],
                            "env": [
                                {"name": "KUBELOOP_PORT", "value": "8080"},
                                {"name": "VERSION", "value": version},
                            ],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": {
                                "httpGet": {"path": "/ready", "port": "http"},
                                "periodSeconds": 1,
                            },
                        }
                    ]
                },
            },
        },
    }


async def _deployment_ready(api: KubeApi, version: str, url: str | None = None) -> bool:
    obj = await api.get("apps/v1/deployments", "ml", "echo")
    status = (obj or {}).get("status") or {}
    return bool(
        status.get("readyReplicas") == 2
        and status.get("updatedReplicas") == 2
        and status.get("replicas") == 2
        and status.get("observedGeneration") == obj["metadata"]["generation"]  # type: ignore[index]
    )


async def test_deployment_rolls_out_behind_service_without_failed_requests(
    runner: PodRunner, api: KubeApi
) -> None:
    await api.create("apps/v1/deployments", deployment("1"))
    await api.create(
        "v1/services",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "echo", "namespace": "ml"},
            "spec": {"selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": "http"}]},
        },
    )
    await until(lambda: _deployment_ready(api, "1"))
    old_ips = await _pods_answer_on_their_own_ip(runner, api, "1")
    service = await until(lambda: _annotated(api))
    url = service["metadata"]["annotations"][LOCAL_URL_ANNOTATION]
    assert url == runner.service_url("ml", "echo")
    assert url.startswith("http://127.0.0.1:")

    answers: list[str] = []
    failures: list[str] = []
    stop = asyncio.Event()

    async def traffic() -> None:
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                try:
                    async with session.post(url + "/v2/models/echo/infer") as response:
                        text = await response.text()
                        (answers if response.status == 200 else failures).append(text)
                except aiohttp.ClientError as exc:
                    failures.append(repr(exc))
                await asyncio.sleep(0.005)

    sender = asyncio.create_task(traffic())
    await until(lambda: _answered(answers, "1"))
    pods_before = {p["metadata"]["name"] for p in await api.list("v1/pods", "ml")}
    await api.patch("apps/v1/deployments", "ml", "echo", {"spec": deployment("2")["spec"]})
    await until(lambda: _only_new(api, pods_before))
    await until(lambda: _deployment_ready(api, "2"))
    count = len(answers)
    await until(lambda: _answered(answers[count:], "2", at_least=20))
    stop.set()
    await sender
    assert failures == []
    assert set(answers) == {"1", "2"}
    assert set(answers[count:]) == {"2"}  # old pods are out of rotation once gone
    await _pods_answer_on_their_own_ip(runner, api, "2")
    if runner.network.enabled:  # a deleted pod's address answers no more, once it has stopped
        for ip in old_ips:
            await until(lambda ip=ip: _refuses(ip, 8080), 30, f"{ip}:8080 refusing")

    await api.delete("apps/v1/deployments", "ml", "echo")
    await until(lambda: _no_processes(runner))


async def _pods_answer_on_their_own_ip(runner: PodRunner, api: KubeApi, version: str) -> list[str]:
    # As in a cluster, podIP:containerPort reaches the pod (the canary analysis scrapes there).
    pods = await api.list("v1/pods", "ml")
    ips = [p["status"]["podIP"] for p in pods]
    if (
        not runner.network.enabled
    ):  # a system that binds only 127.0.0.1 (kubeloop.local.cluster.podnet)
        assert set(ips) == {"127.0.0.1"}
        return ips
    assert len(set(ips)) == len(ips) == 2
    assert all(ip.startswith("127.") and ip != "127.0.0.1" for ip in ips)
    async with aiohttp.ClientSession() as session:
        for ip in ips:
            async with session.get(f"http://{ip}:8080/anything") as response:
                assert response.status == 200
                assert await response.text() == version
    return ips


async def _annotated(api: KubeApi) -> dict[str, Any] | None:
    svc = await api.get("v1/services", "ml", "echo")
    return (
        svc if LOCAL_URL_ANNOTATION in ((svc or {})["metadata"].get("annotations") or {}) else None
    )


async def _answered(answers: list[str], version: str, at_least: int = 1) -> bool:
    return answers.count(version) >= at_least


async def _only_new(api: KubeApi, before: set[str]) -> bool:
    names = {p["metadata"]["name"] for p in await api.list("v1/pods", "ml")}
    return len(names) == 2 and not names & before


async def _refuses(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return True
    writer.close()
    return False


async def _no_processes(runner: PodRunner) -> bool:
    return not runner.deployments


# -- init containers ---------------------------------------------------------------------------

SHARED = "/kubeloop"


def init_job(name: str, init: list[tuple[str, str]], main: str, **spec: Any) -> dict[str, Any]:
    """A Job whose pod runs `init` (name, code) containers then `main`, as `python -c`, all
    with the emptyDir `work` at /kubeloop (the custom-trainer pod's layout)."""

    def container(cname: str, code: str) -> dict[str, Any]:
        return {
            "name": cname,
            "image": f"registry.example.com/{cname}:1",
            "command": ["python", "-c", code],
            "env": [{"name": "SHARED", "value": SHARED}],
            "volumeMounts": [{"name": "work", "mountPath": SHARED}],
        }

    manifest = job(name, main, **spec)
    pod_spec = manifest["spec"]["template"]["spec"]
    pod_spec["initContainers"] = [container(cname, code) for cname, code in init]
    pod_spec["containers"] = [container("publish", main)]
    pod_spec["volumes"] = [{"name": "work", "emptyDir": {}}]
    return manifest


async def _pod_with(api: KubeApi, job_name: str, check: Any) -> dict[str, Any] | None:
    for pod in await pods_of(api, job_name):
        if check(pod.get("status") or {}):
            return pod
    return None


def _state(status: dict[str, Any], which: str, index: int = 0) -> dict[str, Any]:
    return dict(status[which][index]["state"])


async def test_init_containers_run_in_order_on_a_shared_empty_dir(
    runner: PodRunner, api: KubeApi
) -> None:
    prepare = (
        "import os; open(os.environ['SHARED'] + '/data', 'w').write('rows');"
        "open(os.environ['KUBELOOP_RESULT_PATH'], 'w').write('prepared'); print('prepare log')"
    )
    # Reads what `prepare` wrote: it fails unless the init containers ran in order.
    trainer = (
        "import os; d = os.environ['SHARED'];"
        "open(d + '/model', 'w').write(open(d + '/data').read() + '+model')"
    )
    publish = (
        "import os; open(os.environ['KUBELOOP_RESULT_PATH'], 'w').write("
        "open(os.environ['SHARED'] + '/model').read())"
    )
    await api.create(
        "batch/v1/jobs", init_job("byo", [("prepare", prepare), ("trainer", trainer)], publish)
    )
    await until(lambda: _get_if(api, "byo", "Complete"), what="the Job to complete")
    (pod,) = await pods_of(api, "byo")
    status = pod["status"]
    assert status["phase"] == "Succeeded"
    assert [s["name"] for s in status["initContainerStatuses"]] == ["prepare", "trainer"]
    for init in status["initContainerStatuses"]:
        assert init["ready"] is True
        assert init["restartCount"] == 0
        assert init["image"] == f"registry.example.com/{init['name']}:1"
        assert init["state"]["terminated"]["exitCode"] == 0
        assert init["state"]["terminated"]["reason"] == "Completed"
    # Each container has its own termination message (and log); the main one's is the result.
    assert _state(status, "initContainerStatuses")["terminated"]["message"] == "prepared"
    assert _state(status, "initContainerStatuses", 1)["terminated"]["message"] == ""
    assert _state(status, "containerStatuses")["terminated"]["message"] == "rows+model"
    assert [c["type"] for c in status["conditions"]] == ["Initialized", "Ready", "ContainersReady"]
    assert status["conditions"][0]["status"] == "True"
    pod_dir = runner.workdir / "pods" / "ml" / pod["metadata"]["name"]
    assert (pod_dir / "log.prepare").read_text().strip() == "prepare log"
    assert (pod_dir / "log").exists()


async def test_pod_is_pending_with_init_statuses_while_an_init_container_runs(
    runner: PodRunner, api: KubeApi, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    wait_for_gate = f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.05)"
    await api.create(
        "batch/v1/jobs",
        init_job("slow", [("prepare", wait_for_gate), ("trainer", "pass")], "pass"),
    )

    def prepare_running(status: dict[str, Any]) -> bool:
        return bool(status.get("initContainerStatuses")) and "running" in _state(
            status, "initContainerStatuses"
        )

    pod = await until(lambda: _pod_with(api, "slow", prepare_running), what="prepare to run")
    status = pod["status"]
    assert status["phase"] == "Pending"
    assert status["initContainerStatuses"][0]["started"] is True
    assert status["initContainerStatuses"][0]["ready"] is False
    assert _state(status, "initContainerStatuses", 1) == {
        "waiting": {"reason": "PodInitializing", "message": ""}
    }
    assert _state(status, "containerStatuses") == {
        "waiting": {"reason": "PodInitializing", "message": ""}
    }
    initialized = status["conditions"][0]
    assert initialized["type"] == "Initialized"
    assert initialized["status"] == "False"
    assert initialized["message"] == "containers with incomplete status: [prepare trainer]"
    job_status = (await api.get("batch/v1/jobs", "ml", "slow"))["status"]  # type: ignore[index]
    assert job_status["active"] == 1
    assert job_status["ready"] == 0  # a pod in init is not ready
    gate.touch()
    await until(lambda: _get_if(api, "slow", "Complete"), what="the Job to complete")


async def test_a_failed_init_container_fails_the_pod_and_the_job_retries(
    runner: PodRunner, api: KubeApi, tmp_path: Path
) -> None:
    marker = tmp_path / "main-ran"
    manifest = init_job(
        "badinit",
        [("prepare", "pass"), ("trainer", "import sys; print('init boom'); sys.exit(3)")],
        f"open({str(marker)!r}, 'w').write('ran')",
        backoffLimit=1,
    )
    trainer = manifest["spec"]["template"]["spec"]["initContainers"][1]
    trainer["terminationMessagePolicy"] = "FallbackToLogsOnError"
    await api.create("batch/v1/jobs", manifest)
    failed = await until(lambda: _get_if(api, "badinit", "Failed"), what="the Job to fail")
    assert condition(failed, "Failed")["reason"] == "BackoffLimitExceeded"  # type: ignore[index]
    assert failed["status"]["failed"] == 2
    pods = await pods_of(api, "badinit")
    assert len(pods) == 2  # backoffLimit 1: one retry
    for pod in pods:
        status = pod["status"]
        assert status["phase"] == "Failed"
        assert _state(status, "initContainerStatuses")["terminated"]["reason"] == "Completed"
        terminated = _state(status, "initContainerStatuses", 1)["terminated"]
        assert terminated["exitCode"] == 3
        assert terminated["reason"] == "Error"
        assert terminated["message"].strip() == "init boom"  # the log tail, by the policy
        assert terminated["startedAt"] and terminated["finishedAt"]
        assert status["initContainerStatuses"][1]["ready"] is False
        assert _state(status, "containerStatuses") == {
            "waiting": {"reason": "PodInitializing", "message": ""}
        }
        assert status["conditions"][0]["status"] == "False"  # Initialized
    assert not marker.exists()  # the main container never ran


async def test_pod_failure_policy_fails_the_job_at_an_init_containers_exit_code(
    runner: PodRunner, api: KubeApi
) -> None:
    """A first run's registry read (init container `registry`) exiting 60: FailJob, no retry
    despite backoffLimit, the condition naming the rule, as the real controller has it."""
    manifest = init_job(
        "readfirst", [("registry", "import sys; sys.exit(60)"), ("trainer", "pass")], "pass",
        backoffLimit=3,
    )  # fmt: skip
    rule = {
        "action": "FailJob",
        "onExitCodes": {"containerName": "registry", "operator": "In", "values": [60, 61]},
    }
    manifest["spec"]["podFailurePolicy"] = {"rules": [rule]}
    await api.create("batch/v1/jobs", manifest)
    failed = await until(lambda: _get_if(api, "readfirst", "Failed"), what="the Job to fail")
    found = condition(failed, "Failed")
    assert found is not None and found["reason"] == "PodFailurePolicy"
    (pod,) = await pods_of(api, "readfirst")  # no retry
    assert found["message"] == (
        f"Container registry for pod ml/{pod['metadata']['name']} failed with exit code 60 "
        "matching FailJob rule at index 0"
    )


async def test_deleting_a_job_kills_its_running_init_container(
    runner: PodRunner, api: KubeApi, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    forever = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "while True: time.sleep(0.05)"
    )
    await api.create("batch/v1/jobs", init_job("stuck", [("prepare", forever)], "pass"))
    await until(lambda: _exists(pid_file), what="the init container to start")
    pid = int(pid_file.read_text())
    await api.delete("batch/v1/jobs", "ml", "stuck")
    await until(lambda: _gone(pid), what=f"init container process {pid} to end")
    assert not runner.jobs


async def _exists(path: Path) -> bool:
    return path.exists() and path.read_text() != ""


async def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_deployment_restarts_a_failed_init_container_then_serves(
    runner: PodRunner, api: KubeApi
) -> None:
    manifest = deployment("1")
    manifest["spec"]["replicas"] = 1
    pod_spec = manifest["spec"]["template"]["spec"]
    # Fails on its first run, succeeds on the second (restartPolicy Always restarts it).
    flaky = (
        "import os, sys; p = os.environ['SHARED'] + '/tries'; n = len(open(p).read()) "
        "if os.path.exists(p) else 0; open(p, 'a').write('x'); sys.exit(0 if n else 1)"
    )
    pod_spec["initContainers"] = [
        {
            "name": "warmup",
            "image": "busybox",
            "command": ["python", "-c", flaky],
            "env": [{"name": "SHARED", "value": SHARED}],
            "volumeMounts": [{"name": "work", "mountPath": SHARED}],
        }
    ]
    pod_spec["volumes"] = [{"name": "work", "emptyDir": {}}]
    await api.create("apps/v1/deployments", manifest)

    async def ready_pod() -> dict[str, Any] | None:
        for pod in await api.list("v1/pods", "ml"):
            status = pod.get("status") or {}
            if status.get("phase") == "Running" and status["containerStatuses"][0]["ready"]:
                return pod
        return None

    pod = await until(ready_pod, what="the pod to serve")
    init = pod["status"]["initContainerStatuses"][0]
    assert init["restartCount"] == 1
    assert init["state"]["terminated"]["exitCode"] == 0
    await api.delete("apps/v1/deployments", "ml", "echo")
    await until(lambda: _no_processes(runner))


# -- a gRPC Service port -----------------------------------------------------------------------


async def test_the_model_servers_grpc_port_is_routed_by_the_service(
    runner: PodRunner, api: KubeApi, tmp_path: Path
) -> None:
    """The Deployment and Service the operator builds for a ModelDeployment: the Service's
    `grpc` port (HTTP/2, which the HTTP/1 proxy cannot carry) reaches the server's V2 gRPC
    endpoint through the per-connection proxy, as tritonclient's gRPC client dials it."""
    import numpy as np
    import tritonclient.grpc as triton_grpc
    from tests.workloads.server.conftest import churn_version

    from kubeloop.api.deployment import ModelDeploymentSpec
    from kubeloop.local.cluster.servicecontroller import LOCAL_GRPC_ANNOTATION
    from kubeloop.resources.common import Owner, WorkloadDefaults
    from kubeloop.resources.serving import build_server_deployment, build_service

    uri = churn_version(tmp_path / "models" / "versions" / "3").as_uri()
    spec = ModelDeploymentSpec.model_validate({"model": {"uri": uri}, "replicas": 1})
    owner = Owner("kubeloop.io/v1alpha1", "ModelDeployment", "churn", "ml", "uid-1")
    deployment = build_server_deployment(
        owner, spec, model_uri=uri, model_version="3", defaults=WorkloadDefaults()
    )
    service = build_service(owner)
    for child in (deployment, service):
        child["metadata"].pop("ownerReferences")  # no ModelDeployment in this emulator
    await api.create("apps/v1/deployments", deployment)
    await api.create("v1/services", service)

    async def grpc_address() -> str | None:
        svc = await api.get("v1/services", "ml", "churn")
        annotations = (svc or {}).get("metadata", {}).get("annotations") or {}
        ready = await api.get("apps/v1/deployments", "ml", "churn")
        if ((ready or {}).get("status") or {}).get("readyReplicas") != 1:
            return None
        return annotations.get(LOCAL_GRPC_ANNOTATION)

    address = await until(grpc_address, 60, "the Service's gRPC address")
    assert address == runner.grpc_address("ml", "churn")
    assert str(runner.service_url("ml", "churn")).startswith("http://")  # REST: the HTTP proxy

    def infer() -> list[str]:
        client = triton_grpc.InferenceServerClient(url=address)
        assert client.is_model_ready("churn", "3")
        inputs = []
        columns = {"age": [30.0, 75.0], "income": [4e4, 6e4], "visits": [2.0, 20.0]}
        for name, values in columns.items():
            tensor = triton_grpc.InferInput(name, [2], "FP64")
            tensor.set_data_from_numpy(np.array(values))
            inputs.append(tensor)
        plan = triton_grpc.InferInput("plan", [2], "BYTES")
        plan.set_data_from_numpy(np.array(["basic", "max"], dtype=object))
        result = client.infer("churn", [*inputs, plan])
        return [v.decode() for v in result.as_numpy("predict").tolist()]

    labels = await asyncio.get_running_loop().run_in_executor(None, infer)
    assert set(labels) <= {"yes", "no"} and len(labels) == 2
    (pod,) = [p["metadata"]["name"] for p in await api.list("v1/pods", "ml")]
    proxy = runner.proxies[("ml", "churn", 8081)]
    assert proxy.served() == {pod: 1}  # one HTTP/2 connection carried every call

    await api.delete("apps/v1/deployments", "ml", "churn")
    await until(lambda: _no_processes(runner))
