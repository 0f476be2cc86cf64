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

import time
from pathlib import Path
from typing import Any

import pytest
from tests.polling import until
from tests.reliability.localloop import (
    MD,
    NAME,
    NAMESPACE,
    Traffic,
    md_status,
    model_deployment,
    service_url,
    serving,
    two_versions,
)

from kubeloop.local.cluster.kubeapi import KubeApi
from kubeloop.local.cluster.stack import LocalStack, apply_objects
from kubeloop.resources.serving import TRACK_LABEL

pytestmark = pytest.mark.slow  # minutes: `make test` starts it first

DEADLINE = 10  # spec.rollout.progressDeadlineSeconds: the smallest the API allows
ROLLOUT = {
    "strategy": "Canary",
    "canary": {"steps": [50, 100], "stepSeconds": 2},
    "progressDeadlineSeconds": DEADLINE,
}


async def test_a_corrupt_canary_is_rolled_back_and_v1_never_fails_a_request(
    tmp_path: Path,
) -> None:
    v1, v2 = two_versions(tmp_path / "models")
    model = v2 / "model.joblib"
    model.write_bytes(model.read_bytes()[:-64] + b"\0" * 64)  # sha256 no longer matches

    async with LocalStack(tmp_path / "state", operator_env={"KUBELOOP_RESYNC_SECONDS": "2"}) as (
        stack
    ):
        api = stack.api
        assert isinstance(api, KubeApi)
        await apply_objects(api, [model_deployment(f"file://{v1}", rollout=ROLLOUT)])
        await until(lambda: serving(api, "1"), 90, "v1 serving")
        traffic = Traffic(await until(lambda: service_url(api), 30, "the Service's URL"))
        traffic.start()
        try:
            await until(traffic.answered, 30, "v1 answering")
            started = time.monotonic()
            await api.patch(MD, NAMESPACE, NAME, {"spec": {"model": {"uri": f"file://{v2}"}}})

            async def canary_pods() -> list[dict[str, Any]]:
                pods = await api.list("v1/pods", NAMESPACE)
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
                failed: dict[str, Any] | None = (await md_status(api)).get("failedRollout")
                return failed

            await until(canary_pods, 60, "a canary pod")
            failed = await until(rolled_back, DEADLINE + 60, "the rollback")
            rolled_back_after = time.monotonic() - started
            await until(lambda: _no_canary(api), 60, "the canary's removal")
            status = await until(lambda: serving(api, "1"), 30, "v1 serving alone")
            count = len(traffic.answers)
            await until(lambda: traffic.answered(20, since=count), 30, "v1 still answering")
        finally:
            await traffic.stop()
        logs = (stack.state_dir / "cluster").rglob("log")
        canary_logs = [p.read_text(errors="replace") for p in logs if "-canary-" in str(p)]

    assert traffic.failures == [], traffic.failures[:5]
    assert set(traffic.answers) == {"1"}, "v2 must never answer"
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
        f"(deadline {DEADLINE} s, reason {failed['reason']}); {len(traffic.answers)} requests "
        f"answered by v1, {len(traffic.failures)} failed"
    )


async def _no_canary(api: KubeApi) -> bool:
    deployments = await api.list("apps/v1/deployments", NAMESPACE)
    return not any(d["metadata"]["name"].endswith("-canary") for d in deployments)
