"""API request budget of the operator core (issue 17): it observes from watch-fed caches, so a
new TrainingPipeline costs only its writes up to its first Job (its first run's, which reads
the registry first: one Job, not a registry Job and then the run's), and a resync of an idle
pipeline costs no request at all. Counted by a proxy in front of the emulated API (every
request but the watches), with the operator in-process.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator

import pytest
from tests.integration.harness import JOBS, Cluster, Operator, reconciles, wait_for
from tests.reliability import runs
from tests.reliability.apiproxy import ApiFaultProxy, ApiFaults

from kubeloop.controller.events import recorder
from kubeloop.local.cluster.emulator import EmulatorThread

# Up to a new pipeline's first Job (run 1's, its registry read folded in, as in
# bench/operator_bench.py): the run's allocation in status and the Job (no Event: the Ready
# condition's first value is no transition).
FIRST_JOB_BUDGET = 2
# The whole pass that starts it: those two and the RunStarted Event. (Before the read was
# folded into run 1's Job this was 2 up to a registry Job, then 7 on to the run's Job.)
RUN_JOB_BUDGET = 3


@pytest.fixture(scope="module")
def counted() -> Iterator[tuple[Cluster, ApiFaults]]:
    faults = ApiFaults({"ok": 1.0})
    with EmulatorThread() as thread, ApiFaultProxy(thread.url, faults) as proxy:
        operator = Operator(proxy.url)
        operator.start()
        try:
            yield Cluster(thread), faults
        finally:
            operator.stop()


# What kopf lists as it starts (it watches only the kinds it has handlers for).
KOPF_LISTS = {"customresourcedefinitions", "deployments", "driftmonitors", "modeldeployments"}


def _listed(requests: list[tuple[str, str]]) -> set[str]:
    """The resources listed cluster-wide (a GET of a collection outside any namespace)."""
    paths = [path.split("?")[0] for method, path in requests if method == "GET"]
    return {p.rsplit("/", 1)[-1] for p in paths if "/namespaces/" not in p}


def _table(requests: list[tuple[str, str]]) -> dict[str, int]:
    """Requests by verb and resource (names and queries dropped)."""
    out: collections.Counter[str] = collections.Counter()
    for method, path in requests:
        parts = path.split("?")[0].split("/")
        resource = parts[parts.index("namespaces") + 2] if "namespaces" in parts else parts[-1]
        sub = parts[-1] if parts[-1] in ("status",) else ""
        out[f"{method} {resource}{'/' + sub if sub else ''}"] += 1
    return dict(sorted(out.items()))


@pytest.mark.slow  # ~3 s of work, but the proxy's watch relays take ~10 s to close
def test_a_new_pipeline_costs_its_writes_and_an_idle_resync_costs_nothing(
    counted: tuple[Cluster, ApiFaults],
) -> None:
    cluster, faults = counted
    # A first pipeline: the watches and the operator's start are behind us. Pipelines are
    # reconciled as soon as the informers have listed them; kopf's own start (its discovery,
    # its lists of the kinds it has handlers for) may still be going on: waited for too.
    cluster.create(runs.pipeline("warm"))
    wait_for(lambda: cluster.get(JOBS, "ml", "warm-run-1"), what="warm-run-1")
    wait_for(lambda: _listed(faults.requests) >= KOPF_LISTS, what="kopf's lists")
    assert recorder.flush(10)  # warm's Events are sent from a queue: none in p1's windows

    start = len(faults.requests)
    first_job: list[int] = []

    def on_create(obj: dict[str, object]) -> None:  # the emulator admits p1's first Job
        meta = obj.get("metadata")
        if obj.get("kind") == "Job" and isinstance(meta, dict) and meta["name"] == "p1-run-1":
            first_job.append(len(faults.requests))

    cluster.em.admission_hooks.append(on_create)
    cluster.create(runs.pipeline("p1"))
    wait_for(lambda: cluster.get(JOBS, "ml", "p1-run-1"), what="p1-run-1")
    to_first_job = faults.requests[start : first_job[0]]

    # The pass that created p1-run-1 may still be running, and its Events queued: the idle
    # window starts after the next pass has finished and every Event was sent.
    passes = reconciles("trainingpipelines", "p1") + 1
    wait_for(lambda: reconciles("trainingpipelines", "p1") >= passes, what="p1 settled")
    assert recorder.flush(10)
    idle_from = len(faults.requests)
    to_run_job = faults.requests[start:idle_from]
    # Four resync passes of both pipelines, all idle: nothing to change, nothing to read.
    wait_for(lambda: reconciles("trainingpipelines", "p1") >= passes + 4, what="4 resyncs")
    idle = faults.requests[idle_from:]
    print(
        f"\nRELIABILITY request-budget: to_first_job={len(to_first_job)} "
        f"{_table(to_first_job)}, to_run_job={len(to_run_job)} {_table(to_run_job)}, "
        f"idle_4_resyncs={len(idle)} {_table(idle)}"
    )
    assert len(to_first_job) <= FIRST_JOB_BUDGET, _table(to_first_job)
    assert len(to_run_job) <= RUN_JOB_BUDGET, _table(to_run_job)
    gets = [path for method, path in to_run_job if method == "GET"]
    assert all("/pods?" in p for p in gets) and len(gets) <= 1, gets
    assert idle == [], _table(idle)
