"""Operator kills mid-search: the real operator (`kubeloop operator`, a subprocess) is SIGKILLed
while a run's search goes through its trials, and restarted. Each trial's Job must be created
exactly once (same name, same uid from first sight to the end: never re-created, never a
second one) and every trial must reach the run's Job (KUBELOOP_SEARCH) once; the same with
several trials a Job (spec.search.trialsPerJob).

Faked: the API server (the emulator, in this process) and the Job controller (the test plays
it, finishing each trial Job with a TrialOutcome)."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from tests.integration.harness import JOBS, Cluster, wait_for
from tests.reliability import runs
from tests.reliability.operator_process import OperatorProcess, killable_operator

from kubeloop.api.search import (
    SEARCH_ENV,
    TRIALS_ANNOTATION,
    TRIALS_ENV,
    SearchRecord,
    SearchSpec,
    TrialBatch,
)
from kubeloop.decide.search import configurations

pytestmark = pytest.mark.slow  # operator restarts: seconds each

NAME = "searchkill"
TRIALS = 6
SEED = 20261130


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, OperatorProcess]]:
    with killable_operator(tmp_path_factory.mktemp("operator") / "operator.log") as running:
        yield running


def _trial_jobs(cluster: Cluster, name: str = NAME) -> dict[str, str]:
    prefix = f"{name}-run-1-t"
    return {
        j["metadata"]["name"]: j["metadata"]["uid"]
        for j in cluster.list(JOBS, "ml")
        if j["metadata"]["name"].startswith(prefix)
    }


def _search(cluster: Cluster, name: str, **more: Any) -> dict[str, Any]:
    """Create a pipeline searching TRIALS trials, two Jobs at a time; its spec.search."""
    doc = runs.pipeline(name)
    doc["spec"].pop("storageSecretRef")
    doc["spec"]["search"] = {
        "trials": TRIALS,
        "parallelism": 2,
        "seed": 3,
        "space": [{"params": {"learning_rate": {"logUniform": [0.01, 0.3]}}}],
        **more,
    }
    cluster.create(doc)
    return dict(doc["spec"]["search"])


def _env(job: dict[str, Any]) -> dict[str, Any]:
    return {
        e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
    }


def _finish(
    cluster: Cluster,
    operator: OperatorProcess,
    job: str,
    result: dict[str, Any],
    kill_in: float | None,
) -> None:
    """Finish `job` with `result`; with `kill_in`, SIGKILL the operator that many seconds
    later, while it records the outcome and starts what follows (status written, the next
    Job maybe not yet created)."""
    timer = threading.Timer(kill_in or 0.0, operator.kill_and_restart)
    if kill_in is not None:
        timer.start()
    cluster.finish_job("ml", job, result)
    if kill_in is not None:
        timer.join()


def _searched(cluster: Cluster, name: str) -> SearchRecord:
    """The finished search that the run's own Job got (KUBELOOP_SEARCH)."""
    run_job = wait_for(lambda: cluster.get(JOBS, "ml", f"{name}-run-1"), timeout=90, what="run")
    return SearchRecord.model_validate(json.loads(_env(run_job)[SEARCH_ENV]))


def test_sigkill_mid_search_runs_each_trial_once(setup: tuple[Cluster, OperatorProcess]) -> None:
    cluster, operator = setup
    rng = random.Random(SEED)
    _search(cluster, NAME)
    seen: dict[str, str] = {}
    for trial in range(TRIALS):
        name = f"{NAME}-run-1-t{trial}"
        wait_for(lambda n=name: cluster.get(JOBS, "ml", n), timeout=90, what=name)
        for job, uid in _trial_jobs(cluster).items():
            assert seen.setdefault(job, uid) == uid, f"{job} was created again"
        if trial == 0:
            operator.kill_and_restart()  # between a Job's create and its outcome
        score = round(0.7 + rng.random() * 0.2, 4)
        outcome = {"kind": "TrialOutcome", "ok": True, "trial": trial, "state": "Succeeded"}
        # Every other outcome: a kill at a seeded moment while the operator records it.
        kill_in = rng.uniform(0.0, 0.3)
        _finish(
            cluster, operator, name, {**outcome, "score": score}, kill_in if trial % 2 else None
        )
    record = _searched(cluster, NAME)
    trials = _trial_jobs(cluster)
    print(f"\nRELIABILITY search-kills: trials={TRIALS}, kills={operator.kills}, seed={SEED}")
    assert operator.kills >= 3 and operator.exits == 0
    assert len(trials) == TRIALS and all(seen[n] == u for n, u in trials.items())
    assert sorted(t.assignment.trial for t in record.trials) == list(range(TRIALS))
    best = max(record.trials, key=lambda t: t.outcome.score if t.outcome else 0)
    assert record.winner == best.assignment.trial


BATCHED = "searchbatch"


def test_sigkill_mid_search_of_batched_trials_runs_each_trial_once(
    setup: tuple[Cluster, OperatorProcess],
) -> None:
    """spec.search.trialsPerJob 2: six trials in three Jobs (two at a time), each named for
    its first trial and listing its trials; kills while a Job runs and while its outcomes are
    recorded: every Job created once, every trial recorded once, the same trials (same seed)
    and the same winner as one trial a Job would draw and crown."""
    cluster, operator = setup
    rng = random.Random(SEED + 1)
    search = _search(cluster, BATCHED, trialsPerJob=2)
    kills = operator.kills
    seen: dict[str, str] = {}
    scores: dict[int, float] = {}
    for first in range(0, TRIALS, 2):
        name = f"{BATCHED}-run-1-t{first}"
        job = wait_for(lambda n=name: cluster.get(JOBS, "ml", n), timeout=90, what=name)
        assert job["metadata"]["annotations"][TRIALS_ANNOTATION] == f"{first},{first + 1}"
        assert [t.trial for t in TrialBatch.from_env(_env(job)[TRIALS_ENV]).trials] == [
            first,
            first + 1,
        ]
        for other, uid in _trial_jobs(cluster, BATCHED).items():
            assert seen.setdefault(other, uid) == uid, f"{other} was created again"
        if first == 0:
            operator.kill_and_restart()  # between the Job's create and its outcomes
        outcomes = []
        for trial in (first, first + 1):
            scores[trial] = round(0.7 + rng.random() * 0.2, 4)
            outcomes.append({"trial": trial, "state": "Succeeded", "score": scores[trial]})
        kill_in = rng.uniform(0.0, 0.3)  # the second Job: while both trials are recorded
        result = {"kind": "TrialBatchOutcome", "outcomes": outcomes}
        _finish(cluster, operator, name, result, kill_in if first == 2 else None)
    record = _searched(cluster, BATCHED)
    jobs = _trial_jobs(cluster, BATCHED)
    print(
        f"\nRELIABILITY search-kills batched: trials={TRIALS} in {len(jobs)} Jobs "
        f"(trialsPerJob 2), kills={operator.kills - kills}, seed={SEED + 1}"
    )
    assert operator.kills - kills >= 2 and operator.exits == 0
    assert sorted(jobs) == [f"{BATCHED}-run-1-t{t}" for t in (0, 2, 4)]
    assert all(seen[n] == u for n, u in jobs.items())
    assert [t.assignment.trial for t in record.trials] == list(range(TRIALS))
    assert {t.assignment.trial: t.outcome.score for t in record.trials if t.outcome} == scores
    assert record.winner == max(scores, key=lambda t: (scores[t], -t))
    lone = configurations(SearchSpec.model_validate({**search, "trialsPerJob": 1}), 3)
    assert [t.assignment.params for t in record.trials] == [c.params for c in lone]
