"""Operator kills mid-search: the real operator (`kubeloop operator`, a subprocess) is SIGKILLed
while a run's search goes through its trials, and restarted. Each trial's Job must be created
exactly once (same name, same uid from first sight to the end: never re-created, never a
second one) and every trial must reach the run's Job (KUBELOOP_SEARCH) once.

Faked: the API server (the emulator, in this process) and the Job controller (the test plays
it, finishing each trial Job with a TrialOutcome)."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator

import pytest
from tests.integration.harness import JOBS, Cluster, wait_for
from tests.reliability import runs
from tests.reliability.operator_process import OperatorProcess, killable_operator

from kubeloop.api.search import SEARCH_ENV, SearchRecord

pytestmark = pytest.mark.slow  # operator restarts: seconds each

NAME = "searchkill"
TRIALS = 6
SEED = 20261130


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, OperatorProcess]]:
    with killable_operator(tmp_path_factory.mktemp("operator") / "operator.log") as running:
        yield running


def _trial_jobs(cluster: Cluster) -> dict[str, str]:
    prefix = f"{NAME}-run-1-t"
    return {
        j["metadata"]["name"]: j["metadata"]["uid"]
        for j in cluster.list(JOBS, "ml")
        if j["metadata"]["name"].startswith(prefix)
    }


def test_sigkill_mid_search_runs_each_trial_once(setup: tuple[Cluster, OperatorProcess]) -> None:
    cluster, operator = setup
    rng = random.Random(SEED)
    doc = runs.pipeline(NAME)
    doc["spec"].pop("storageSecretRef")
    doc["spec"]["search"] = {
        "trials": TRIALS,
        "parallelism": 2,
        "seed": 3,
        "space": [{"params": {"learning_rate": {"logUniform": [0.01, 0.3]}}}],
    }
    cluster.create(doc)
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
        # Every other outcome: a kill at a seeded moment while the operator records it and
        # starts the next trial (status written, Job maybe not yet created).
        timer = threading.Timer(rng.uniform(0.0, 0.3), operator.kill_and_restart)
        if trial % 2:
            timer.start()
        cluster.finish_job("ml", name, {**outcome, "score": score})
        if trial % 2:
            timer.join()
    run_job = wait_for(lambda: cluster.get(JOBS, "ml", f"{NAME}-run-1"), timeout=90, what="run")
    env = {
        e["name"]: e.get("value")
        for e in run_job["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    record = SearchRecord.model_validate(json.loads(env[SEARCH_ENV]))
    trials = _trial_jobs(cluster)
    print(f"\nRELIABILITY search-kills: trials={TRIALS}, kills={operator.kills}, seed={SEED}")
    assert operator.kills >= 3 and operator.exits == 0
    assert len(trials) == TRIALS and all(seen[n] == u for n, u in trials.items())
    assert sorted(t.assignment.trial for t in record.trials) == list(range(TRIALS))
    best = max(record.trials, key=lambda t: t.outcome.score if t.outcome else 0)
    assert record.winner == best.assignment.trial
