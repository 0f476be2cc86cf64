"""The operator stopped and restarted at the awkward moments of a training run: no duplicate Job,
no lost and no double-counted run. Each test gets a fresh API and operator (restarts are the
point, and nothing may leak from one scenario into the next)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tests.integration.harness import JOBS, TP, Cluster, Operator, example, settled, wait_for

from kubeloop.local.cluster.emulator import EmulatorThread


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with EmulatorThread() as thread:
        yield Cluster(thread)


@pytest.fixture
def operator(cluster: Cluster) -> Iterator[Operator]:
    op = Operator(cluster.thread.url)
    op.start()
    yield op
    op.stop()


def _result(version: str, auc: float) -> dict[str, Any]:
    return {
        "kind": "TrainingResult",
        "ok": True,
        "version": version,
        "uri": f"s3://models/churn/versions/{version}",
        "metrics": {"roc_auc": auc},
    }


def _status(cluster: Cluster, name: str) -> dict[str, Any]:
    obj = cluster.get(TP, "ml", name)
    assert obj is not None
    return obj.get("status") or {}


def _jobs(cluster: Cluster) -> list[str]:
    """Every Job: the runs' (run 1's reads the registry first) and the registry Jobs of their
    promotions."""
    return sorted(j["metadata"]["name"] for j in cluster.list(JOBS, "ml"))


def _settled(cluster: Cluster, name: str, runs: int) -> dict[str, Any]:
    status = wait_for(
        lambda: (
            len((s := _status(cluster, name)).get("runs") or []) == runs
            and not s.get("currentRun")
            and s
        ),
        what=f"{runs} runs recorded",
    )
    settled(cluster, "trainingpipelines", name)  # nothing more may happen
    assert _status(cluster, name)["runs"] == status["runs"]
    return status


def test_restart_mid_run_then_after_completion(cluster: Cluster, operator: Operator) -> None:
    cluster.create(example("churn-pipeline.yaml", name="idem"))
    wait_for(lambda: cluster.get(JOBS, "ml", "idem-run-1"), what="run 1")

    operator.stop()  # mid-run
    operator.start()
    settled(cluster, "trainingpipelines", "idem")
    assert _jobs(cluster) == ["idem-run-1"]  # the registry read is in it
    current = _status(cluster, "idem")["currentRun"]
    assert (current["id"], current["readsRegistry"]) == ("1", True)

    operator.stop()  # the Job completes while nobody watches
    cluster.finish_job("ml", "idem-run-1", _result("1", 0.9))
    operator.start()
    status = _settled(cluster, "idem", 1)
    assert [r["id"] for r in status["runs"]] == ["1"] and status["champion"]["version"] == "1"

    operator.stop()  # and once more after everything was recorded
    operator.start()
    status = _settled(cluster, "idem", 1)
    # The promotion's registry Job (the champion alias) too, once.
    assert _jobs(cluster) == ["idem-registry-1", "idem-run-1"]
    assert status["lastRunId"] == 1 and status["registrySync"]["inspectedAt"]


def test_crash_between_allocation_and_job_creation(cluster: Cluster, operator: Operator) -> None:
    """A run allocated in status whose Job was never created (the operator died in between)
    is resumed under its deterministic name, not started again as a new run."""
    cluster.create(example("churn-pipeline.yaml", name="alloc"))
    wait_for(lambda: cluster.get(JOBS, "ml", "alloc-run-1"), what="run 1")
    cluster.finish_job("ml", "alloc-run-1", _result("1", 0.9))
    _settled(cluster, "alloc", 1)

    operator.stop()
    run = {
        "id": "2",
        "job": "alloc-run-2",
        "trigger": "Manual",
        "generation": 1,
        "startedAt": "2026-01-01T00:00:00Z",
    }
    cluster.patch(
        TP,
        "ml",
        "alloc",
        {"status": {"currentRun": run, "lastRunId": 2, "handledRunRequest": "r1"}},
        "status",
    )
    cluster.patch(
        TP, "ml", "alloc", {"metadata": {"annotations": {"kubeloop.io/run-requested-at": "r1"}}}
    )
    operator.start()
    job = wait_for(lambda: cluster.get(JOBS, "ml", "alloc-run-2"), what="run 2 resumed")
    assert job["metadata"]["annotations"]["kubeloop.io/trigger"] == "Manual"
    settled(cluster, "trainingpipelines", "alloc")
    assert _jobs(cluster) == ["alloc-registry-1", "alloc-run-1", "alloc-run-2"]
    cluster.finish_job("ml", "alloc-run-2", _result("2", 0.95))
    status = _settled(cluster, "alloc", 2)
    assert [r["id"] for r in status["runs"]] == ["2", "1"]
    assert status["champion"]["version"] == "2" and status["lastRunId"] == 2


@pytest.mark.slow  # ~9 s of waiting for the pipeline to settle, twice
def test_crash_between_the_first_runs_allocation_and_its_job(
    cluster: Cluster, operator: Operator
) -> None:
    """Run 1 allocated to read the registry first, its Job never created: on restart the same
    Job (with its registry read) is created, no registry Job besides, and run 1 is recorded
    once with the read."""
    operator.stop()
    cluster.create(example("churn-pipeline.yaml", name="first"))
    run = {
        "id": "1",
        "job": "first-run-1",
        "trigger": "Create",
        "generation": 1,
        "startedAt": "2026-01-01T00:00:00Z",
        "readsRegistry": True,
    }
    allocated = {
        "currentRun": run,
        "lastRunId": 1,
        "lastRunGeneration": 1,
        "registrySync": {"message": "reading the registry in run 1's Job"},
    }
    cluster.patch(TP, "ml", "first", {"status": allocated}, "status")
    operator.start()
    job = wait_for(lambda: cluster.get(JOBS, "ml", "first-run-1"), what="run 1 resumed")
    assert job["spec"]["template"]["spec"]["initContainers"][0]["name"] == "registry"
    settled(cluster, "trainingpipelines", "first")
    assert _jobs(cluster) == ["first-run-1"]
    cluster.finish_job("ml", "first-run-1", _result("1", 0.9))
    status = _settled(cluster, "first", 1)
    assert [r["id"] for r in status["runs"]] == ["1"] and status["lastRunId"] == 1
    assert status["registrySync"]["inspectedAt"] and _jobs(cluster) == [
        "first-registry-1",  # the champion alias of run 1's promotion
        "first-run-1",
    ]


def test_lost_status_records_finished_jobs_once(cluster: Cluster, operator: Operator) -> None:
    """Status wiped (e.g. restored from a backup without it): finished Jobs are recorded once,
    in order, and no run is started twice for the same generation."""
    cluster.create(example("churn-pipeline.yaml", name="lost"))
    wait_for(lambda: cluster.get(JOBS, "ml", "lost-run-1"), what="run 1")
    cluster.finish_job("ml", "lost-run-1", _result("1", 0.9))
    _settled(cluster, "lost", 1)

    operator.stop()
    # The run records go, and with them the watermark of what was recorded.
    runs_only = {"runs": None, "champion": None, "currentRun": None, "lastRecordedRunId": None}
    cluster.patch(TP, "ml", "lost", {"status": runs_only}, "status")
    operator.start()
    status = _settled(cluster, "lost", 1)
    assert [r["id"] for r in status["runs"]] == ["1"]
    assert status["runs"][0]["result"] == "Promoted" and status["champion"]["version"] == "1"
    assert _jobs(cluster) == ["lost-registry-1", "lost-run-1"]
