"""A corrupt model version in a live canary rollout, end to end on `kubeloop local`.

The real operator, the pod runner and real `kubeloop serve` processes: v1 serves behind the
Service while a client keeps sending V2 requests; then the ModelDeployment is pointed at v2,
whose model.joblib no longer matches its manifest's sha256. Expected: the canary pods start but
never become ready (the server refuses to load it and says why — no crash loop), the rollout
stops making progress, the Deployment reports ProgressDeadlineExceeded, the operator rolls the
canary back and records it (`failedRollout`, `Degraded`), and v1 answers every request
throughout: 0 failed.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
from tests.workloads.server.conftest import churn_version

from kubeloop.local.kubeapi import KubeApi
from kubeloop.local.podrunner import LOCAL_URL_ANNOTATION
from kubeloop.local.stack import LocalStack, apply_objects
from kubeloop.resources.serving import TRACK_LABEL

MD = "kubeloop.io/v1alpha1/modeldeployments"
DEADLINE = 10  # spec.rollout.progressDeadlineSeconds: the smallest the API allows
REQUEST = {
    "inputs": [
        {"name": "age", "shape": [1], "datatype": "FP64", "data": [34.0]},
        {"name": "income", "shape": [1], "datatype": "FP64", "data": [52000.0]},
        {"name": "visits", "shape": [1], "datatype": "INT64", "data": [3]},
        {"name": "plan", "shape": [1], "datatype": "BYTES", "data": ["basic"]},
    ]
}


def _deployment(uri: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "churn", "namespace": "ml"},
        "spec": {
            "model": {"uri": uri},
            "replicas": 1,
            "rollout": {
                "strategy": "Canary",
                "canary": {"steps": [50, 100], "stepSeconds": 2},
                "progressDeadlineSeconds": DEADLINE,
            },
        },
    }


async def _until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


async def test_a_corrupt_canary_is_rolled_back_and_v1_never_fails_a_request(
    tmp_path: Path,
) -> None:
    v1 = churn_version(tmp_path / "models" / "1", version="1")
    v2 = churn_version(tmp_path / "models" / "2", version="2")
    model = v2 / "model.joblib"
    model.write_bytes(model.read_bytes()[:-64] + b"\0" * 64)  # sha256 no longer matches

    async with LocalStack(tmp_path / "state", operator_env={"KUBELOOP_RESYNC_SECONDS": "2"}) as (
        stack
    ):
        api = stack.api
        assert isinstance(api, KubeApi)
        await apply_objects(api, [_deployment(f"file://{v1}")])

        async def serving(version: str) -> dict[str, Any] | None:
            status = ((await api.get(MD, "ml", "churn")) or {}).get("status") or {}
            ok = status.get("modelVersion") == version and int(status.get("readyReplicas") or 0)
            return status if ok and not status.get("canary") else None

        await _until(lambda: serving("1"), 90, "v1 serving")
        service = await _until(lambda: _annotated(api), 30, "the Service's loopback URL")
        url = service["metadata"]["annotations"][LOCAL_URL_ANNOTATION]

        answers: list[str] = []
        failures: list[str] = []
        stop = asyncio.Event()

        async def traffic() -> None:
            async with aiohttp.ClientSession() as session:
                while not stop.is_set():
                    try:
                        async with session.post(
                            f"{url}/v2/models/churn/infer", json=REQUEST
                        ) as response:
                            body = await response.json(content_type=None)
                            if response.status == 200:
                                answers.append(str(body.get("model_version")))
                            else:
                                failures.append(f"{response.status} {body}")
                    except aiohttp.ClientError as exc:
                        failures.append(repr(exc))
                    await asyncio.sleep(0.02)

        sender = asyncio.create_task(traffic())
        try:
            await _until(lambda: _count(answers), 30, "v1 answering")
            started = time.monotonic()
            await api.patch(MD, "ml", "churn", {"spec": {"model": {"uri": f"file://{v2}"}}})

            async def canary_pods() -> list[dict[str, Any]]:
                pods = await api.list("v1/pods", "ml")
                return [p for p in pods if p["metadata"]["labels"].get(TRACK_LABEL) == "canary"]

            seen: dict[str, tuple[bool, int]] = {}  # canary pod -> (ever ready, most restarts)

            async def rolled_back() -> dict[str, Any] | None:
                for pod in await canary_pods():
                    name = pod["metadata"]["name"]
                    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
                    ready, restarts = seen.get(name, (False, 0))
                    seen[name] = (
                        ready or bool(statuses[0].get("ready")),
                        max(restarts, int(statuses[0].get("restartCount") or 0)),
                    )
                return await _rolled_back(api)

            await _until(canary_pods, 60, "a canary pod")
            failed = await _until(rolled_back, DEADLINE + 60, "the rollback")
            rolled_back_after = time.monotonic() - started
            # The canary never served: no pod became ready, none crash-looped.
            await _until(lambda: _no_canary(api), 60, "the canary's removal")
            status = await _until(lambda: serving("1"), 30, "v1 serving alone")
            count = len(answers)
            await _until(lambda: _count(answers[count:], 20), 30, "v1 still answering")
        finally:
            stop.set()
            await sender
        log = (stack.state_dir / "cluster").rglob("log")
        canary_logs = [p.read_text(errors="replace") for p in log if "-canary-" in str(p)]

    assert failures == [], failures[:5]
    assert set(answers) == {"1"}, "v2 must never answer"
    assert failed["version"] == "2"
    assert failed["reason"] == "ProgressDeadlineExceeded", failed
    assert rolled_back_after >= DEADLINE  # not before the deadline the spec gives
    assert seen and all(not ready for ready, _ in seen.values()), seen  # never served
    assert all(restarts == 0 for _, restarts in seen.values()), seen  # and no crash loop
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and "version 2" in degraded["message"]
    # The server said why it would not serve v2 (the corrupt file), in the pod's log.
    assert canary_logs and any("sha256" in text for text in canary_logs), canary_logs[:1]
    print(
        f"RELIABILITY corrupt-canary: v2 rolled back after {rolled_back_after:.1f} s "
        f"(deadline {DEADLINE} s, reason {failed['reason']}); {len(answers)} requests answered "
        f"by v1, {len(failures)} failed"
    )


async def _annotated(api: KubeApi) -> dict[str, Any] | None:
    service = await api.get("v1/services", "ml", "churn")
    annotations = ((service or {}).get("metadata") or {}).get("annotations") or {}
    return service if LOCAL_URL_ANNOTATION in annotations else None


async def _count(answers: list[str], at_least: int = 1) -> bool:
    return len(answers) >= at_least


async def _rolled_back(api: KubeApi) -> dict[str, Any] | None:
    status = ((await api.get(MD, "ml", "churn")) or {}).get("status") or {}
    failed: dict[str, Any] | None = status.get("failedRollout")
    return failed


async def _no_canary(api: KubeApi) -> bool:
    deployments = await api.list("apps/v1/deployments", "ml")
    return not any(d["metadata"]["name"].endswith("-canary") for d in deployments)
