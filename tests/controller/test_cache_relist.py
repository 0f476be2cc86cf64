"""The watch cache checked against fresh lists (Kube.relist, Resync's sweep): an object deleted
while no watch was open (kopf reports no such deletion) leaves the cache."""

from __future__ import annotations

from typing import Any

from kubeloop.controller import kube
from kubeloop.controller.resync import Resync
from kubeloop.local.cluster.emulator import EmulatorThread

OWNER = "kubeloop.io/trainingpipeline"


def _job(name: str) -> dict[str, Any]:
    container = {"name": "c", "image": "trainer:1"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "ml", "labels": {OWNER: "churn"}},
        "spec": {"template": {"spec": {"containers": [container], "restartPolicy": "Never"}}},
    }


def test_relist_drops_a_job_deleted_while_unwatched_and_keeps_the_rest() -> None:
    with EmulatorThread() as thread:
        api = kube.connect(thread.url)
        api.cache.watch("Job", OWNER)
        for name in ("churn-run-1", "churn-run-2"):
            api.apply(_job(name))  # the server's answers fill the cache
        # Someone else deletes run 1; this operator's watch never says so.
        kube.connect(thread.url).delete("Job", "ml", "churn-run-1")
        assert len(api.list("Job", "ml", {OWNER: "churn"})) == 2  # stale until checked

        assert api.relist("Job", "ml", OWNER) == ["churn-run-1"]
        names = [j["metadata"]["name"] for j in api.list("Job", "ml", {OWNER: "churn"})]
        assert names == ["churn-run-2"]
        assert api.relist("Job", "ml", OWNER) == []  # nothing more to drop


def test_the_sweep_runs_before_a_pass_once_its_period_has_gone_by() -> None:
    now = [0.0]
    swept: list[float] = []
    reconciled: list[str] = []
    resync = Resync(
        30.0,
        lambda: [("ml", "p")],
        lambda ns, name: reconciled.append(name),
        sweep=lambda: swept.append(now[0]),
        sweep_seconds=600.0,
        clock=lambda: now[0],
    )
    for t in (30.0, 599.0, 600.0, 630.0, 1199.0, 1200.0):
        now[0] = t
        resync.pass_once()
    assert swept == [600.0, 1200.0]
    assert reconciled == ["p"] * 6


def test_a_failing_sweep_does_not_stop_the_pass() -> None:
    def broken() -> None:
        raise RuntimeError("API down")

    reconciled: list[str] = []
    resync = Resync(30.0, lambda: [("ml", "p")], lambda ns, n: reconciled.append(n), broken, 0.0)
    resync.pass_once()
    assert reconciled == ["p"]
