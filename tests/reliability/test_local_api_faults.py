"""API faults under a live canary rollout and a DriftMonitor run, on `kubeloop local`.

The real operator talks to the emulated API through the fault proxy (409, in-stream 410 on
watches, 429, 500, 503, stalls, dropped connections; tests/reliability/apiproxy.py) while the
pod runner runs real `kubeloop serve` and `kubeloop monitor` processes. A client sends V2
requests through the Service the whole time. Expected: the canary goes v1 -> 50% -> 100% -> v2
with 0 failed requests and no failed rollout, the drift check triggered on demand is read into
the DriftMonitor's status (one Job, the verdict, every logged row), the operator never exits
and makes no hot loop — the same outcome as without faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from tests.polling import until
from tests.reliability.apiproxy import MAX_PEAK_PER_SECOND, WEIGHTS, ApiFaultProxy, ApiFaults
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

pytestmark = pytest.mark.slow  # minutes: `make test` starts it first

SEED = int(os.environ.get("KUBELOOP_SEED", "11"))
DM = "kubeloop.io/v1alpha1/driftmonitors"


def _reference(path: Path) -> Path:
    """Training-like rows of the four churn features (the monitor's explicit reference)."""
    rng = np.random.default_rng(3)
    n = 500
    table = pa.table(
        {
            "age": rng.uniform(18, 80, n),
            "income": rng.normal(50_000, 15_000, n),
            "visits": rng.integers(0, 30, n),
            "plan": rng.choice(["basic", "pro", "family"], n),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def _logged_rows(folder: Path) -> int:
    files = [p for p in folder.rglob("*.parquet") if p.is_file()]
    return ds.dataset(files, format="parquet").count_rows() if files else 0


def _monitor(reference: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "DriftMonitor",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "deploymentRef": {"name": NAME},
            "reference": f"file://{reference}",
            "schedule": "0 0 1 1 *",  # on demand only
            "minRows": 10,
            "onDrift": {"retrain": False},
        },
    }


async def test_canary_and_drift_check_converge_under_api_faults(tmp_path: Path) -> None:
    v1, v2 = two_versions(tmp_path / "models")
    logs = tmp_path / "logs" / NAME
    reference = _reference(tmp_path / "reference" / "train.parquet")
    faults = ApiFaults(WEIGHTS, seed=SEED, delay=1.0)
    rollout = {
        "strategy": "Canary",
        "canary": {"steps": [50, 100], "stepSeconds": 2, "analysis": {"minRequests": 5}},
    }
    logging = {"enabled": True, "sampleRate": 1.0, "destination": f"file://{logs}/"}
    states: list[tuple[Any, ...]] = []

    with contextlib.ExitStack() as exits:

        def through_faults(url: str) -> str:
            return exits.enter_context(ApiFaultProxy(url, faults)).url

        async with LocalStack(
            tmp_path / "state",
            operator_env={"KUBELOOP_RESYNC_SECONDS": "2"},
            operator_api=through_faults,
        ) as stack:
            api = stack.api
            assert isinstance(api, KubeApi) and stack.runner is not None
            started = time.monotonic()
            await apply_objects(
                api,
                [
                    model_deployment(f"file://{v1}", rollout=rollout, payloadLogging=logging),
                    _monitor(reference),
                ],
            )
            await until(lambda: serving(api, "1"), 120, "v1 serving")
            traffic = Traffic(await until(lambda: service_url(api), 60, "the Service's URL"))
            traffic.start()
            try:
                await until(traffic.answered, 30, "v1 answering")
                await api.patch(MD, NAMESPACE, NAME, {"spec": {"model": {"uri": f"file://{v2}"}}})

                async def promoted() -> dict[str, Any] | None:
                    status = await md_status(api)  # one read: the state and the answer agree
                    canary = status.get("canary") or {}
                    state = (status.get("modelVersion"), canary.get("trafficPercent"))
                    if not states or states[-1] != state:
                        states.append(state)
                    done = state == ("2", None) and int(status.get("readyReplicas") or 0)
                    return status if done else None

                status = await until(promoted, 180, "v2 promoted through the canary")
                count = len(traffic.answers)
                await until(lambda: traffic.answered(20, since=count), 30, "v2 answering")
            finally:
                await traffic.stop()
            answered = len(traffic.answers)

            async def logged() -> bool:
                return _logged_rows(logs) >= answered

            await until(logged, 60, "every answered row in the payload log")
            job = await stack.runner.trigger(NAMESPACE, NAME)
            job_name = job["metadata"]["name"]

            async def checked() -> dict[str, Any] | None:
                dm = ((await api.get(DM, NAMESPACE, NAME)) or {}).get("status") or {}
                return dm if dm.get("lastJob") == job_name and dm.get("verdict") else None

            monitor = await until(checked, 180, f"the verdict of {job_name} in the status")
            elapsed = time.monotonic() - started
            jobs = await api.list("batch/v1/jobs", NAMESPACE)
            deployments = [d["metadata"]["name"] for d in await api.list("apps/v1/deployments")]
            idle_from = len(faults.times)
            await asyncio.sleep(5)  # real time on purpose: the idle request rate
            idle_rate = (len(faults.times) - idle_from) / 5
            operator_alive = stack.operator_alive()
            log = stack.operator_log.read_text(errors="replace")

    tracebacks = log.count("Traceback (most recent call last)")
    print(
        f"\nRELIABILITY local-api-faults: requests={len(faults.times)}, faults={faults.faults} "
        f"{dict(faults.counts)}, peak_rps={faults.peak_rate():.0f}, idle_rps={idle_rate:.1f}, "
        f"V2 answered={answered} failed={len(traffic.failures)}, canary states={states}, "
        f"drift verdict={monitor['verdict']} rows={monitor.get('rows')}, "
        f"tracebacks={tracebacks}, seconds={elapsed:.0f}"
    )
    assert faults.faults > 10, "too few faults injected to prove anything"
    # The canary: through its steps to v2, nothing failed, nothing rolled back or left over.
    assert traffic.failures == [], traffic.failures[:5]
    assert {"1", "2"} <= set(traffic.answers)
    assert traffic.answers[-20:] == ["2"] * 20
    assert ("1", 50) in states and states[-1] == ("2", None), states
    assert status.get("failedRollout") is None
    assert deployments == [NAME], deployments
    # The drift check: one Job, read once into the status, over every logged row.
    assert [j["metadata"]["name"] for j in jobs] == [job_name]
    assert monitor["verdict"] == "Drift", monitor  # constant requests vs a spread reference
    assert monitor["rows"] == _logged_rows(logs) >= answered
    # The operator: alive, quiet when idle, no hot loop, no flood of tracebacks.
    assert operator_alive, "the operator exited under API faults (see its log)"
    assert faults.peak_rate() <= MAX_PEAK_PER_SECOND
    assert idle_rate <= 10, f"{idle_rate} requests/s while idle: a hot loop"
    assert tracebacks <= faults.faults, f"{tracebacks} tracebacks for {faults.faults} faults"
