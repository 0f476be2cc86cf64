"""Search decisions, table-tested: draws, grid, halving rungs, what starts next, the winner."""

from __future__ import annotations

from typing import Any

import pytest
from tests.decide.tables import BASE_SPEC

from kubeloop.api.search import TrialStatus
from kubeloop.api.training import TrainingPipelineSpec
from kubeloop.decide.search import (
    Config,
    SearchPlan,
    assignment,
    batches,
    configurations,
    plan,
    record,
    rung_budgets,
    rung_sizes,
    step,
    summary,
    winner,
)

SPACE: list[dict[str, Any]] = [
    {
        "estimator": "HistGradientBoostingClassifier",
        "params": {
            "learning_rate": {"logUniform": [0.01, 0.3]},
            "max_leaf_nodes": {"integer": [15, 63]},
        },
    },
    {"estimator": "LogisticRegression", "params": {"C": {"uniform": [0.1, 10]}}},
    {"estimator": "XGBClassifier", "params": {"max_depth": {"choice": [3, 6]}}},
]


def _plan(run_id: str = "1", **search: Any) -> SearchPlan:
    spec = TrainingPipelineSpec.model_validate(
        {**BASE_SPEC, "search": {"trials": 12, "space": SPACE, **search}}
    )
    return plan(spec, run_id)


def _done(trial: int, score: float | None, rung: int = 0, state: str = "Succeeded") -> TrialStatus:
    return TrialStatus(trial=trial, rung=rung, job=f"j-t{trial}-r{rung}", state=state, score=score)  # type: ignore[arg-type]


def _running(trial: int, rung: int = 0) -> TrialStatus:
    return TrialStatus(trial=trial, rung=rung, job=f"j-t{trial}-r{rung}", state="Running")


def test_same_seed_same_trials_and_same_winner_other_seed_other_trials() -> None:
    one, again, other = _plan(seed=7), _plan(run_id="9", seed=7), _plan(seed=8)
    assert one.configs == again.configs and one.configs != other.configs
    scores = [_done(t, 0.5 + 0.01 * ((t * 7) % 12)) for t in range(12)]
    assert winner(one, scores) == winner(again, scores)
    # every draw lies in its range; the seed defaults to spec.seed
    assert _plan().seed == BASE_SPEC["seed"]
    for config in one.configs:
        if config.estimator == "HistGradientBoostingClassifier":
            assert 0.01 <= config.params["learning_rate"] <= 0.3
            assert config.params["max_leaf_nodes"] in range(15, 64)
        elif config.estimator == "LogisticRegression":
            assert 0.1 <= config.params["C"] <= 10
        else:
            assert config.params["max_depth"] in (3, 6)
    assert {c.estimator for c in one.configs} == {s["estimator"] for s in SPACE}


def test_grid_expands_every_combination_in_order_up_to_trials() -> None:
    p = _plan(
        strategy="grid",
        trials=5,
        space=[
            {"params": {"max_depth": {"choice": [3, 5]}, "max_iter": {"integer": [1, 2]}}},
            {"estimator": "LogisticRegression"},
        ],
    )
    assert p.configs == (
        Config(None, {"max_depth": 3, "max_iter": 1}),
        Config(None, {"max_depth": 3, "max_iter": 2}),
        Config(None, {"max_depth": 5, "max_iter": 1}),
        Config(None, {"max_depth": 5, "max_iter": 2}),
        Config("LogisticRegression", {}),
    )
    assert len(configurations(p.search.model_copy(update={"trials": 3}), 0)) == 3


HALVING = {"strategy": "halving", "budget": {"parameter": "rows", "min": 100, "max": 1000}}


@pytest.mark.parametrize(
    ("search", "budgets", "sizes"),
    [
        (HALVING, [100, 300, 900, 1000], [12, 4]),
        ({**HALVING, "trials": 27}, [100, 300, 900, 1000], [27, 9, 3]),
        (
            {**HALVING, "trials": 27, "reductionFactor": 2},
            [100, 200, 400, 800, 1000],
            [27, 13, 6, 3],
        ),
        ({**HALVING, "budget": {"parameter": "rows", "min": 5, "max": 5}}, [5], [12]),
        ({}, [], [12]),
    ],
)
def test_halving_rungs(search: dict[str, Any], budgets: list[int], sizes: list[int]) -> None:
    p = _plan(**search)
    assert rung_budgets(p.search) == budgets
    assert rung_sizes(p.search, len(p.configs)) == sizes


def test_random_starts_up_to_parallelism_and_fills_freed_slots() -> None:
    p = _plan(parallelism=3)
    first = step(p, [], 3)
    assert [a.trial for a in first.start] == [0, 1, 2] and not first.finished
    assert first.start[0].budget is None and first.start[0].seed == p.seed
    assert first.start[0].params == p.configs[0].params
    records = [_done(0, 0.7), _running(1), _done(2, 0.6, state="Failed")]
    assert [a.trial for a in step(p, records, 3).start] == [3, 4]
    assert step(p, [_running(t) for t in range(3)], 3).start == ()


def test_random_ends_with_the_best_ties_to_the_lower_trial_and_survives_failures() -> None:
    p = _plan(trials=4)
    records = [_done(0, 0.8), _done(1, 0.9), _done(2, 0.9), _done(3, None, state="Failed")]
    done = step(p, records, 2)
    assert done.finished and done.winner == 1 and done.start == ()
    failed = step(p, [_done(t, None, state="Failed") for t in range(4)], 2)
    assert failed.finished and failed.winner is None and failed.failure == "all 4 trials failed"


def test_lower_is_better_metrics_rank_the_other_way() -> None:
    spec = TrainingPipelineSpec.model_validate(
        {
            **BASE_SPEC,
            "promotion": {"metric": "log_loss"},
            "search": {"trials": 3, "space": SPACE},
        }
    )
    p = plan(spec, "1")
    assert winner(p, [_done(0, 0.4), _done(1, 0.3), _done(2, 0.5)]) == _done(1, 0.3)


def test_halving_promotes_the_best_third_stops_the_rest_and_ends_on_the_last_rung() -> None:
    p = _plan(trials=9, **HALVING)  # rungs of 9 and 3 trials
    rung0 = [_done(t, 0.5 + t / 100) for t in range(9)]  # 8, 7, 6 are best
    promote = step(p, rung0, 2)
    assert [(a.trial, a.rung, a.budget.value if a.budget else 0) for a in promote.start] == [
        (6, 1, 300),
        (7, 1, 300),
    ]
    assert sorted(promote.stop) == [(t, 0) for t in range(6)]
    stopped = [r.model_copy(update={"state": "Stopped"}) if r.trial < 6 else r for r in rung0]
    rung1 = [*stopped, _running(6, 1), _done(7, 0.6, 1)]
    assert [(a.trial, a.rung) for a in step(p, rung1, 2).start] == [(8, 1)]
    final = [*stopped, _done(6, 0.9, 1), _done(7, 0.6, 1), _done(8, 0.7, 1)]
    end = step(p, final, 2)
    assert end.finished and end.winner == 6  # the best on the highest rung, not on rung 0
    status = summary(p, final)
    assert (status.done, status.total, status.progress) == (12, 12, "12/12")
    assert status.best is not None and (status.best.trial, status.best.rung) == (6, 1)


def test_summary_counts_finished_trial_jobs_and_names_the_best_estimator() -> None:
    p = _plan(trials=4)
    status = summary(p, [_done(0, 0.8), _running(1)])
    assert (status.done, status.total, status.progress) == (1, 4, "1/4")
    assert status.best is not None and status.best.estimator == p.configs[0].estimator


def test_halving_never_crowns_a_trial_that_failed_on_its_larger_budget() -> None:
    p = _plan(trials=9, **HALVING)
    rung0 = [_done(t, 0.5 + t / 100, state="Stopped" if t < 6 else "Succeeded") for t in range(9)]
    rung1 = [_done(8, None, 1, "Failed"), _done(7, None, 1, "Failed"), _done(6, 0.55, 1)]
    assert step(p, [*rung0, *rung1], 2).winner == 6
    every = [_done(t, None, 1, "Failed") for t in (6, 7, 8)]
    assert step(p, [*rung0, *every], 2).winner == 5  # the best that never failed


def test_an_auto_budget_gives_each_rung_its_share_and_the_record_keeps_the_budget() -> None:
    """budget auto: a rung's Budget carries budget.max (the trainer trains value/max of the
    rows and of the trial's own iterations); the finished record keeps spec.search.budget, so
    the winner's refit knows budget.max whichever rung the search ended on."""
    p = _plan(trials=9, strategy="halving", budget={"parameter": "auto", "min": 1, "max": 27})
    assert rung_budgets(p.search) == [1, 3, 9, 27] and rung_sizes(p.search, 9) == [9, 3]
    first = step(p, [], 9).start
    assert {(a.budget.parameter, a.budget.value, a.budget.max) for a in first if a.budget} == {
        ("auto", 1, 27)
    }
    assert first[0].budget is not None and first[0].budget.share() == pytest.approx(1 / 27)
    won = record(p, [_done(t, 0.5 + t / 100) for t in range(9)], 8)
    assert won.budget == p.search.budget and won.refit
    assert won.final().budget is None  # auto: the winner's whole configuration, every row


@pytest.mark.parametrize(
    ("trials", "per_job", "free", "jobs"),
    [
        (range(5), 1, 2, [[0], [1]]),
        (range(24), 12, 2, [list(range(12)), list(range(12, 24))]),
        (range(7), 3, 5, [[0, 1, 2], [3, 4, 5], [6]]),  # the last Job takes what is left
        (range(7), 3, 0, []),
        (range(7), 3, -1, []),  # more Jobs running than parallelism (it was lowered)
        ([2, 5, 9, 11], 3, 2, [[2, 5, 9], [11]]),  # a rung's promoted trials, in order
        ([], 4, 2, []),
    ],
)
def test_batches_cut_the_trials_in_order_into_at_most_free_jobs(
    trials: Any, per_job: int, free: int, jobs: list[list[int]]
) -> None:
    assert batches(list(trials), per_job, free) == jobs


def _in(job: str, *trials: int, rung: int = 0, state: str = "Running") -> list[TrialStatus]:
    return [
        TrialStatus(
            trial=t,
            rung=rung,
            job=job,
            state=state,
            score=None if state == "Running" else 0.5 + t / 100,
        )  # type: ignore[arg-type]
        for t in trials
    ]


@pytest.mark.parametrize(
    ("records", "jobs"),
    [
        ([], [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]),
        # one Job of five running: parallelism counts Jobs, not trials
        (_in("a", 0, 1, 2, 3, 4), [[5, 6, 7, 8, 9]]),
        (_in("a", 0, 1, 2, 3, 4) + _in("b", 5, 6, 7, 8, 9), []),
        # the first Job ended (whichever did first): the next Job is cut from the front again
        (_in("a", 0, 1, 2, 3, 4, state="Succeeded") + _in("b", 5, 6, 7, 8, 9), [[10, 11]]),
        (_in("b", 5, 6, 7, 8, 9, state="Succeeded") + _in("a", 0, 1, 2, 3, 4), [[10, 11]]),
    ],
)
def test_random_starts_jobs_of_trials_per_job_at_most_parallelism_running(
    records: list[TrialStatus], jobs: list[list[int]]
) -> None:
    p = _plan(trialsPerJob=5)
    decision = step(p, records, 2)
    assert [[a.trial for a in job] for job in decision.jobs] == jobs
    assert decision.start == tuple(a for job in decision.jobs for a in job)
    # each trial of a Job trains exactly what it would train alone
    assert all(a == assignment(p, a.trial, 0) for a in decision.start)


def test_halving_batches_each_rung_and_promotes_as_one_trial_per_job_does() -> None:
    p = _plan(trials=9, trialsPerJob=4, **HALVING)  # rungs of 9 and 3 trials
    single = _plan(trials=9, **HALVING)
    assert [[a.trial for a in job] for job in step(p, [], 2).jobs] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    rung0 = _in("a", 0, 1, 2, 3, state="Succeeded") + _in("b", 4, 5, 6, 7, state="Succeeded")
    rung0 += _in("c", 8, state="Succeeded")  # 8, 7, 6 are best
    promote = step(p, rung0, 2)
    assert [[(a.trial, a.rung) for a in job] for job in promote.jobs] == [[(6, 1), (7, 1), (8, 1)]]
    assert sorted(promote.stop) == sorted(step(single, rung0, 2).stop)
    assert promote.start == step(single, rung0, 3).start  # the same promotions, one Job
    final = [*rung0, *_in("d", 6, 7, 8, rung=1, state="Succeeded")]
    end = step(p, final, 2)
    assert end.finished and end.winner == 8
    assert (summary(p, final).done, summary(p, final).total) == (12, 12)
