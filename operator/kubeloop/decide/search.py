"""Search inside a run (spec.search): which trials exist, which to start next, which halving
drops, and which one wins — pure functions of the spec and the trials recorded in status.

Every answer is recomputed from (spec.search, the seed, status.currentRun.search.trials): the
draws come from a seeded generator, so the same seed gives the same trials in any process, and
an operator restarted mid-search derives the same plan and carries on where status left it.

Successive halving (Jamieson & Talwalkar 2016), synchronous: rung 0 trains `trials` draws on
budget.min; when every trial of a rung has ended, the best 1/reductionFactor of them (at least
two, else the search ends) go on to the next rung with a budget reductionFactor times larger
(capped at budget.max); the others are Stopped there.

Jobs: the trials to start are grouped in order (trial number) into Jobs of up to
spec.search.trialsPerJob, at most `parallelism` Jobs running at once. The groups follow from
the records alone: a rung's trials are started from the front of its waiting list, so the
same seed cuts the same Jobs whatever order earlier Jobs ended in.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from kubeloop.api.search import (
    AUTO,
    Budget,
    ParamRange,
    SearchBest,
    SearchRecord,
    SearchSpec,
    SearchStatus,
    SearchTrial,
    TrialAssignment,
    TrialOutcome,
    TrialStatus,
)
from kubeloop.api.training import HIGHER_IS_BETTER, TrainingPipelineSpec

__all__ = [
    "Config",
    "SearchPlan",
    "SearchStep",
    "assignment",
    "batches",
    "configurations",
    "plan",
    "record",
    "rung_budgets",
    "rung_sizes",
    "step",
    "summary",
    "winner",
]


@dataclass(frozen=True)
class Config:
    """One point of the space: an estimator (None: spec.model's) and its drawn params."""

    estimator: str | None
    params: dict[str, Any]


@dataclass(frozen=True)
class SearchPlan:
    """What a run's search is, fixed at its start: everything `step` needs besides records."""

    run_id: str
    search: SearchSpec
    seed: int
    default_estimator: str | None
    greater_is_better: bool
    metric: str
    configs: tuple[Config, ...]


@dataclass(frozen=True)
class SearchStep:
    """What to do now: Jobs to start (each its trials, in order), entries to mark Stopped
    (their Jobs, if running, go), and whether the search is over (with its winner, or why it
    failed)."""

    jobs: tuple[tuple[TrialAssignment, ...], ...] = ()
    stop: tuple[tuple[int, int], ...] = ()
    finished: bool = False
    winner: int | None = None
    failure: str | None = None

    @property
    def start(self) -> tuple[TrialAssignment, ...]:
        """Every trial to start, over all its Jobs."""
        return tuple(a for job in self.jobs for a in job)


def plan(spec: TrainingPipelineSpec, run_id: str) -> SearchPlan:
    """The search of run `run_id` of a pipeline whose spec has spec.search."""
    search = spec.search
    assert search is not None and spec.promotion is not None  # admission: search needs a gate
    seed = spec.seed if search.seed is None else search.seed
    estimator = None if spec.model.framework == "custom" else spec.model.resolved_estimator()
    metric = spec.promotion.metric
    return SearchPlan(
        run_id=run_id,
        search=search,
        seed=seed,
        default_estimator=estimator,
        greater_is_better=HIGHER_IS_BETTER[metric],
        metric=metric,
        configs=tuple(configurations(search, seed)),
    )


def _round(value: float) -> float:
    # Six significant digits: the same trial reads the same in status, manifests and YAML.
    return float(f"{value:.6g}")


def _draw(rng: random.Random, space: ParamRange) -> Any:
    if space.choice is not None:
        return space.choice[rng.randrange(len(space.choice))]
    if space.integer is not None:
        return rng.randint(space.integer[0], space.integer[1])
    if space.uniform is not None:
        return _round(rng.uniform(space.uniform[0], space.uniform[1]))
    assert space.log_uniform is not None
    lo, hi = space.log_uniform
    return _round(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _grid(search: SearchSpec) -> Iterator[Config]:
    for cand in search.space:
        names = sorted(cand.params)
        values = [cand.params[n].grid_values() or [] for n in names]
        for combo in itertools.product(*values):
            yield Config(cand.estimator, dict(zip(names, combo, strict=True)))


def configurations(search: SearchSpec, seed: int) -> list[Config]:
    """The trials' configurations, trial number = index: grid combinations in order (at most
    `trials`), else `trials` draws of a `random.Random(seed)` (a candidate, then each of its
    params in name order): the same seed gives the same list."""
    if search.strategy == "grid":
        return list(itertools.islice(_grid(search), search.trials))
    rng = random.Random(seed)
    configs = []
    for _ in range(search.trials):
        cand = search.space[rng.randrange(len(search.space))]
        params = {name: _draw(rng, cand.params[name]) for name in sorted(cand.params)}
        configs.append(Config(cand.estimator, params))
    return configs


def rung_budgets(search: SearchSpec) -> list[int]:
    """Halving: the budget of each rung, budget.min times reductionFactor**rung, the last one
    budget.max. Other strategies: no rungs of budget (an empty list)."""
    if search.strategy != "halving" or search.budget is None:
        return []
    budgets, value = [], search.budget.min
    while value < search.budget.max:
        budgets.append(value)
        value *= search.reduction_factor
    return [*budgets, search.budget.max]


def rung_sizes(search: SearchSpec, trials: int) -> list[int]:
    """How many trials each rung runs: `trials`, then 1/reductionFactor of the rung before,
    as long as budgets remain and at least two are left to compare (one is the winner)."""
    budgets = rung_budgets(search)
    if not budgets:
        return [trials]
    sizes = [trials]
    while len(sizes) < len(budgets) and sizes[-1] // search.reduction_factor >= 2:
        sizes.append(sizes[-1] // search.reduction_factor)
    return sizes


def assignment(p: SearchPlan, trial: int, rung: int) -> TrialAssignment:
    """What trial `trial` trains on `rung` (halving: with that rung's budget)."""
    config = p.configs[trial]
    budgets = rung_budgets(p.search)
    budget = None
    if budgets:
        spent = p.search.budget
        assert spent is not None
        top = spent.max if spent.parameter == AUTO else None  # auto: a share value/max
        budget = Budget(parameter=spent.parameter, value=budgets[rung], max=top)
    return TrialAssignment(
        run_id=p.run_id,
        trial=trial,
        rung=rung,
        estimator=config.estimator,
        params=dict(config.params),
        budget=budget,
        seed=p.seed,
    )


def batches(trials: Sequence[int], per_job: int, free: int) -> list[list[int]]:
    """`trials` (in the order given) cut into Jobs of up to `per_job`, the first `free` of
    them: the Jobs that may start now."""
    cut = [list(trials[i : i + per_job]) for i in range(0, len(trials), per_job)]
    return cut[: max(0, free)]


def _jobs(
    p: SearchPlan, trials: Sequence[int], rung: int, free: int
) -> tuple[tuple[TrialAssignment, ...], ...]:
    return tuple(
        tuple(assignment(p, t, rung) for t in job)
        for job in batches(trials, p.search.trials_per_job, free)
    )


def _scored(records: Sequence[TrialStatus], rung: int) -> list[TrialStatus]:
    return [r for r in records if r.rung == rung and r.score is not None and r.state != "Failed"]


def _ranked(p: SearchPlan, entries: Sequence[TrialStatus]) -> list[TrialStatus]:
    """Best first; ties go to the lower trial number (deterministic)."""
    sign = -1.0 if p.greater_is_better else 1.0
    return sorted(entries, key=lambda r: (sign * float(r.score or 0.0), r.trial))


def _members(p: SearchPlan, records: Sequence[TrialStatus], rung: int) -> list[int]:
    """The trials of `rung`: all configurations on rung 0, else the best of the rung before."""
    if rung == 0:
        return list(range(len(p.configs)))
    keep = rung_sizes(p.search, len(p.configs))[rung]
    return sorted(r.trial for r in _ranked(p, _scored(records, rung - 1))[:keep])


def winner(p: SearchPlan, records: Sequence[TrialStatus]) -> TrialStatus | None:
    """The best scored entry on the highest rung where any trial scored (None: none did); a
    trial that failed on a higher rung (its larger budget) is not a winner."""
    failed_on: dict[int, int] = {}  # trial -> the highest rung it failed on
    for r in records:
        if r.state == "Failed":
            failed_on[r.trial] = max(failed_on.get(r.trial, -1), r.rung)
    rungs = sorted({r.rung for r in records if r.score is not None and r.state != "Failed"})
    for rung in reversed(rungs):
        entries = [r for r in _scored(records, rung) if failed_on.get(r.trial, -1) < rung]
        if entries:
            return _ranked(p, entries)[0]
    return None


def step(p: SearchPlan, records: Sequence[TrialStatus], parallelism: int) -> SearchStep:
    """What to do next, given every trial recorded so far (`records`, any order);
    `parallelism`: the most Jobs running at once."""
    seen = {(r.trial, r.rung): r for r in records}
    rung = max((r.rung for r in records), default=0)
    members = _members(p, records, rung)
    running = len({r.job for r in records if r.state == "Running"})  # Jobs, not trials
    waiting = [t for t in members if (t, rung) not in seen]
    if waiting or running:
        return SearchStep(jobs=_jobs(p, waiting, rung, parallelism - running))
    # The rung is over: promote its best to the next one, or end the search.
    sizes = rung_sizes(p.search, len(p.configs))
    scored = _scored(records, rung)
    if rung + 1 < len(sizes) and scored:
        promoted = set(_members(p, records, rung + 1))
        stop = tuple(
            (r.trial, rung) for r in scored if r.trial not in promoted and r.state != "Stopped"
        )
        return SearchStep(jobs=_jobs(p, sorted(promoted), rung + 1, parallelism), stop=stop)
    best = winner(p, records)
    if best is None:
        failed = sum(1 for r in records if r.state == "Failed")
        return SearchStep(finished=True, failure=f"all {failed} trials failed")
    return SearchStep(finished=True, winner=best.trial)


def summary(p: SearchPlan, records: Sequence[TrialStatus]) -> SearchStatus:
    """status.currentRun.search for `records` (finished: set by the caller)."""
    total = sum(rung_sizes(p.search, len(p.configs)))
    done = sum(1 for r in records if r.state != "Running")
    best = winner(p, records)
    return SearchStatus(
        strategy=p.search.strategy,
        seed=p.seed,
        done=done,
        total=total,
        progress=f"{done}/{total}",
        best=None
        if best is None
        else SearchBest(
            trial=best.trial,
            rung=best.rung,
            score=float(best.score or 0.0),
            estimator=p.configs[best.trial].estimator or p.default_estimator,
        ),
        trials=list(records),
    )


def record(p: SearchPlan, records: Sequence[TrialStatus], won: int) -> SearchRecord:
    """The finished search, for the run's Job (KUBELOOP_SEARCH) and the version's manifest."""
    trials = [
        SearchTrial(
            assignment=assignment(p, r.trial, r.rung),
            outcome=TrialOutcome(
                trial=r.trial,
                rung=r.rung,
                state="Failed" if r.state == "Running" else r.state,
                score=r.score,
                seconds=r.seconds,
                cpu_seconds=r.cpu_seconds,
                message=r.message,
            ),
        )
        for r in sorted(records, key=lambda r: (r.rung, r.trial))
    ]
    return SearchRecord(
        strategy=p.search.strategy,
        seed=p.seed,
        metric=p.metric,
        greater_is_better=p.greater_is_better,
        trials=trials,
        winner=won,
        refit=p.search.strategy == "halving",
        budget=p.search.budget,
    )
