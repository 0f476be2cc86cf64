"""Acceptance of spec.dataTrigger on `kubeloop local`: the real operator, its data-watch
CronJob and `kubeloop fingerprint` run as a pod over file:// data. Checks over untouched data
start no run, nor do identical bytes rewritten; a new training file starts exactly one NewData
run, however often it is checked.

Checks are started on demand, as `kubectl create job --from=cronjob/...` does (a Job from the
CronJob's template), rather than on the CronJob's own schedule (yearly here).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from tests.polling import until

from kubeloop.local.cluster.kubeapi import KubeApi
from kubeloop.local.cluster.stack import LocalStack, apply_objects
from kubeloop.local.demo.datagen import churn_table

pytestmark = pytest.mark.slow  # a cluster and two training runs: `make test` starts it first

TP = "kubeloop.io/v1alpha1/trainingpipelines"
JOBS = "batch/v1/jobs"
CRONJOBS = "batch/v1/cronjobs"
NAMESPACE = "ml"
NAME = "fresh"
TIMEOUT = 240


def pipeline(root: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "TrainingPipeline",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "data": {"train": (root / "data").as_uri() + "/", "target": "churned"},
            "model": {
                "framework": "sklearn",
                "task": "classification",
                "estimator": "LogisticRegression",
                "params": {"max_iter": 200},
            },
            "artifacts": (root / "models").as_uri() + "/",
            "dataTrigger": {"schedule": "0 0 1 1 *"},
            "runPolicy": {"backoffLimit": 0},
        },
    }


async def status(api: KubeApi) -> dict[str, Any]:
    found: dict[str, Any] = ((await api.get(TP, NAMESPACE, NAME)) or {}).get("status") or {}
    return found


async def check_data(api: KubeApi, n: int) -> dict[str, Any]:
    """Run the data-watch CronJob once (a Job from its template); returns the status.dataCheck
    it left, and with it the operator's decision (both are written by the same reconcile)."""
    cron = await until(
        lambda: api.get(CRONJOBS, NAMESPACE, f"{NAME}-datawatch"), TIMEOUT, "the CronJob"
    )
    template = copy.deepcopy(cron["spec"]["jobTemplate"])
    job = f"{NAME}-datawatch-manual-{n}"
    owner = {"apiVersion": "batch/v1", "kind": "CronJob", "name": cron["metadata"]["name"]}
    owner |= {"uid": cron["metadata"]["uid"], "controller": True}
    meta = {"name": job, "namespace": NAMESPACE, "ownerReferences": [owner]}
    meta["labels"] = template["metadata"]["labels"]
    await api.create(
        JOBS, {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": template["spec"]}
    )

    async def recorded() -> dict[str, Any] | None:
        check: dict[str, Any] = (await status(api)).get("dataCheck") or {}
        return check if check.get("job") == job else None

    check = await until(recorded, TIMEOUT, f"check {job} in status.dataCheck")
    assert check.get("fingerprint"), check
    return check


async def test_only_new_training_data_starts_a_run_and_only_one(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    first = data / "part-0.parquet"
    pq.write_table(churn_table(300, seed=5), first)
    async with LocalStack(tmp_path / "state", operator_env={"KUBELOOP_RESYNC_SECONDS": "1"}) as (
        stack
    ):
        api = stack.api
        assert isinstance(api, KubeApi)
        await apply_objects(api, [pipeline(tmp_path)])

        async def recorded(run_id: str) -> dict[str, Any] | None:
            s = await status(api)
            runs = s.get("runs") or []
            return s if runs and runs[0]["id"] == run_id and not s.get("currentRun") else None

        after_create = await until(lambda: recorded("1"), TIMEOUT, "run 1 (Create) recorded")
        assert after_create["runs"][0]["result"] == "Promoted", after_create["runs"][0]
        trained = after_create["lastRunDataFingerprint"]

        # (a) Nothing written: three checks, no run.
        for n in (1, 2, 3):
            check = await check_data(api, n)
            assert check["fingerprint"] == trained
            assert (await status(api))["lastRunId"] == 1

        # (b) The same bytes written again (a later mtime): no run.
        stat = first.stat()
        first.write_bytes(first.read_bytes())
        os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
        check = await check_data(api, 4)
        assert check["fingerprint"] == trained
        assert (await status(api))["lastRunId"] == 1

        # (c) A new training file, checked twice: exactly one NewData run.
        pq.write_table(churn_table(200, seed=6), data / "part-1.parquet")
        check = await check_data(api, 5)
        assert check["fingerprint"] != trained and check["files"] == 2
        assert (await status(api))["lastRunId"] == 2
        await check_data(api, 6)
        after = await until(lambda: recorded("2"), TIMEOUT, "run 2 recorded")
        assert after["lastRunId"] == 2
        assert after["runs"][0]["trigger"] == "NewData"
        # The run trained on exactly the data the check found: nothing more is pending.
        assert after["runs"][0]["dataFingerprint"] == check["fingerprint"]
        assert after["handledDataFingerprint"] == check["fingerprint"]
        jobs = [j["metadata"]["name"] for j in await api.list(JOBS, NAMESPACE)]
        assert sorted(j for j in jobs if "-run-" in j) == [f"{NAME}-run-1", f"{NAME}-run-2"]
