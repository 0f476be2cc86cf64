"""A run with spec.search against the emulator: trial Jobs (at most `parallelism` at a time),
their outcomes in status, the Trials column, and the run's Job handed the winner; the operator
stopped mid-search and started again carries on without creating any trial Job twice.

The test plays the trainer: each trial Job ends with the TrialOutcome its pod would leave."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.integration.harness import (
    JOBS,
    TP,
    Cluster,
    Operator,
    events,
    example,
    pipeline_status,
    training_result,
    wait_for,
)

from kubeloop.api.search import SEARCH_ENV, TRIAL_ENV, SearchRecord, TrialAssignment

pytestmark = pytest.mark.slow  # an operator against the emulator: seconds

SEARCH = {
    "strategy": "random",
    "trials": 3,
    "parallelism": 2,
    "seed": 7,
    "space": [
        {"params": {"learning_rate": {"logUniform": [0.01, 0.3]}}},
        {"estimator": "LogisticRegression", "params": {"C": {"logUniform": [0.01, 10]}}},
    ],
}
SCORES = {0: 0.81, 1: 0.93, 2: 0.88}


def _trial_jobs(cluster: Cluster, name: str) -> dict[str, dict[str, Any]]:
    return {
        j["metadata"]["name"]: j
        for j in cluster.list(JOBS, "ml")
        if j["metadata"]["name"].startswith(f"{name}-run-1-t")
    }


def _env(job: dict[str, Any]) -> dict[str, str]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container["env"]}


def _outcome(trial: int) -> dict[str, Any]:
    return {
        "kind": "TrialOutcome",
        "ok": True,
        "trial": trial,
        "state": "Succeeded",
        "score": SCORES[trial],
        "metrics": {"roc_auc": SCORES[trial]},
        "seconds": 1.5,
        "cpuSeconds": 1.25,
    }


def test_search_runs_trials_then_the_winner_and_survives_a_restart(
    cluster: Cluster, operator: Operator
) -> None:
    doc = example("churn-pipeline.yaml", name="srch")
    doc["spec"].pop("schedule")
    doc["spec"]["search"] = SEARCH
    cluster.create(doc)
    first = wait_for(lambda: len(j := _trial_jobs(cluster, "srch")) == 2 and j, what="2 trials")
    assert sorted(first) == ["srch-run-1-t0", "srch-run-1-t1"]  # parallelism 2 of 3
    job = first["srch-run-1-t0"]
    trial = TrialAssignment.model_validate_json(_env(job)[TRIAL_ENV])
    assert (trial.run_id, trial.trial, trial.seed) == ("1", 0, 7)
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["containers"][0]["resources"]["limits"]["cpu"] == "2"
    assert job["metadata"]["labels"]["kubeloop.io/trial"] == "0"
    status = wait_for(
        lambda: (
            ((s := pipeline_status(cluster, "srch")).get("currentRun") or {}).get("search") and s
        ),
        what="search in status",
    )
    assert status["currentRun"]["search"]["progress"] == "0/3"
    assert status["phase"] == "Running" and cluster.get(JOBS, "ml", "srch-run-1") is None
    uids = {n: j["metadata"]["uid"] for n, j in first.items()}

    # The operator goes away mid-search; a trial ends meanwhile; it comes back.
    operator.stop()
    cluster.finish_job("ml", "srch-run-1-t0", _outcome(0))
    operator.start()
    wait_for(lambda: cluster.get(JOBS, "ml", "srch-run-1-t2"), what="trial 2")
    cluster.finish_job("ml", "srch-run-1-t1", _outcome(1))
    cluster.finish_job("ml", "srch-run-1-t2", _outcome(2))

    run_job = wait_for(lambda: cluster.get(JOBS, "ml", "srch-run-1"), what="the run's Job")
    record = SearchRecord.model_validate(json.loads(_env(run_job)[SEARCH_ENV]))
    assert record.winner == 1 and record.metric == "roc_auc" and not record.refit
    assert [t.outcome.score for t in record.trials if t.outcome] == [0.81, 0.93, 0.88]
    # each trial's compute travels from its pod's result to status and the record
    assert {t.outcome.cpu_seconds for t in record.trials if t.outcome} == {1.25}
    jobs = _trial_jobs(cluster, "srch")
    assert len(jobs) == 3 and all(jobs[n]["metadata"]["uid"] == u for n, u in uids.items())
    search = pipeline_status(cluster, "srch")["currentRun"]["search"]
    assert search["finished"] and search["progress"] == "3/3"
    assert search["best"] == {
        "trial": 1,
        "rung": 0,
        "score": 0.93,
        "estimator": record.trials[1].assignment.estimator or "HistGradientBoostingClassifier",
    }
    assert events(cluster, "srch", "SearchFinished")

    # Gate, version and champion go as for any run.
    cluster.finish_job("ml", "srch-run-1", training_result("1", 0.93))
    status = wait_for(
        lambda: (s := pipeline_status(cluster, "srch")).get("champion") and s, what="champion"
    )
    assert status["champion"]["version"] == "1" and status["runs"][0]["result"] == "Promoted"
    assert (
        status["runs"][0]["search"]["best"]["trial"] == 1
        and "trials" not in status["runs"][0]["search"]
    )
    # The run has ended (no currentRun): the Trials column (status.search) still shows it.
    assert status.get("currentRun") is None
    assert status["search"] == {
        "runId": "1",
        "progress": "3/3",
        "finished": True,
        "best": search["best"],
    }

    # spec.search removed: the next run searches nothing, and the Trials column is cleared.
    cluster.patch(TP, "ml", "srch", {"spec": {"search": None}})
    wait_for(lambda: cluster.get(JOBS, "ml", "srch-run-2"), what="run 2 (no search)")
    assert "search" not in pipeline_status(cluster, "srch")


def test_a_spec_edit_mid_search_ends_the_run_stops_its_trials_and_searches_again(
    cluster: Cluster, operator: Operator
) -> None:
    doc = example("churn-pipeline.yaml", name="srch2")
    doc["spec"].pop("schedule")
    doc["spec"]["search"] = {**SEARCH, "trials": 2}
    cluster.create(doc)
    wait_for(lambda: cluster.get(JOBS, "ml", "srch2-run-1-t1"), what="run 1's trials")
    cluster.finish_job("ml", "srch2-run-1-t0", _outcome(0))
    cluster.patch(TP, "ml", "srch2", {"spec": {"search": {"seed": 8}}})
    wait_for(lambda: cluster.get(JOBS, "ml", "srch2-run-2-t1"), what="run 2's trials")
    status = pipeline_status(cluster, "srch2")
    assert (
        status["runs"][0]["result"] == "Failed" and "spec changed" in status["runs"][0]["message"]
    )
    assert status["currentRun"]["trigger"] == "SpecChange"
    # the unfinished trial of run 1 was stopped; the finished one keeps its Job (and logs)
    wait_for(lambda: cluster.get(JOBS, "ml", "srch2-run-1-t1") is None, what="t1 deleted")
    assert cluster.get(JOBS, "ml", "srch2-run-1-t0") is not None
    assert events(cluster, "srch2", "SearchFailed")
