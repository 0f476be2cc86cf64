"""Search inside a training run: the contract between the operator and the trainer.

The operator decides which trials run (strategy, space, seed, budgets); each trial is a Job that
runs the trainer with one `TrialAssignment` (env `KUBELOOP_TRIAL`, JSON). The trainer trains that
configuration on its budget, scores it on the validation rows with the gate's metric, writes no
model version, and ends with a `TrialOutcome` as its result (termination message). With
spec.search.trialsPerJob > 1 a Job carries several trials (env `KUBELOOP_TRIALS`, a JSON list of
assignments; built-in trainers only): the trainer reads the data once, trains them one after
another, and ends with a `TrialBatchOutcome` (every trial's outcome, compacted to fit the
4096-byte termination message). When the
search is over, the run's ordinary Job trains the winner (env `KUBELOOP_SEARCH`, a
`SearchRecord`): it refits on the full training data where the trials used a smaller budget, and
the version's manifest records the whole search under `search`, so every trial's params and
scores travel with the model.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

from pydantic import Field

from kubeloop.api.common import CelRule, KubeModel
from kubeloop.api.estimator_params import AUTO, ROWS

__all__ = [
    "AUTO",
    "MAX_TRIALS_PER_JOB",
    "ROWS",
    "SEARCH_ENV",
    "TRIALS_ANNOTATION",
    "TRIALS_ENV",
    "TRIAL_BATCH_RESULT_KIND",
    "TRIAL_ENV",
    "TRIAL_RESULT_KIND",
    "Budget",
    "Candidate",
    "ParamRange",
    "SearchBest",
    "SearchBudget",
    "SearchRecord",
    "SearchSpec",
    "SearchStatus",
    "SearchSummary",
    "SearchTrial",
    "TrialAssignment",
    "TrialBatch",
    "TrialBatchOutcome",
    "TrialOutcome",
    "TrialStatus",
    "params_over",
]

TRIAL_ENV = "KUBELOOP_TRIAL"
# A Job of several trials (spec.search.trialsPerJob > 1): their assignments, a JSON list.
TRIALS_ENV = "KUBELOOP_TRIALS"
SEARCH_ENV = "KUBELOOP_SEARCH"
# The `kind` of a trial pod's result (a run's is TrainingResult): the operator picks it by it.
TRIAL_RESULT_KIND = "TrialOutcome"
TRIAL_BATCH_RESULT_KIND = "TrialBatchOutcome"
# On a Job of several trials: their numbers, comma-separated, in the order it trains them (a
# restarted operator knows every trial a Job carries from the Job alone).
TRIALS_ANNOTATION = "kubeloop.io/trials"
# The most trials one Job carries: their outcomes (score, state, seconds, cpuSeconds, message;
# no per-metric detail) must fit the 4096-byte termination message, with room for messages.
MAX_TRIALS_PER_JOB = 24


class Budget(KubeModel):
    """How much a trial may spend: a value of the estimator's budget parameter (epochs, trees,
    iterations), `rows`, the number of training rows it trains on (a seeded sample), or `auto`,
    the share value/max of the training rows and of the trial's own iterations, if any."""

    parameter: str = Field(description="An estimator parameter (e.g. max_iter), rows or auto.")
    value: int = Field(ge=1, description="The amount this trial gets.")
    max: int | None = Field(
        default=None, ge=1, description="auto: the full amount (the search's budget.max)."
    )

    def share(self) -> float:
        """auto: the share of the trial's full work it gets (1.0: all of it)."""
        return 1.0 if not self.max else min(1.0, self.value / self.max)


def params_over(
    base: dict[str, Any], params: dict[str, Any], budget: Budget | None
) -> dict[str, Any]:
    """`params` over `base`, with a named budget parameter set to the budget's value (rows and
    auto are resolved by the trainer, which knows the rows and the estimator's defaults)."""
    merged = {**base, **params}
    if budget is not None and budget.parameter not in (ROWS, AUTO):
        merged[budget.parameter] = budget.value
    return merged


class TrialAssignment(KubeModel):
    """One configuration to train and score; identical for every retry of the trial."""

    run_id: str = Field(pattern=r"^[1-9][0-9]*$", description="The run the search belongs to.")
    trial: int = Field(ge=0, description="Trial number within the run, from 0.")
    rung: int = Field(default=0, ge=0, description="Halving rung (0 for random and grid).")
    estimator: str | None = Field(
        default=None, description="Estimator of this trial; none: spec.model.estimator."
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Parameters, over spec.model.params."
    )
    budget: Budget | None = Field(default=None, description="Smaller budget (halving).")
    seed: int = Field(description="Seed of the trial (row sample, estimator random_state).")

    def to_env(self) -> str:
        return json.dumps(self.to_wire(), sort_keys=True, separators=(",", ":"))

    def params_over(self, base: dict[str, Any]) -> dict[str, Any]:
        """The params this trial trains: its own over `base`, its named budget set."""
        return params_over(base, self.params, self.budget)


class TrialOutcome(KubeModel):
    """What a trial reports (its result, read by the operator from the termination message)."""

    trial: int = Field(ge=0, description="Trial number.")
    rung: int = Field(default=0, ge=0, description="Halving rung.")
    state: Literal["Succeeded", "Failed", "Stopped"] = Field(
        description="Succeeded (scored), Failed (see message), Stopped (halving dropped it)."
    )
    score: float | None = Field(default=None, description="The gate metric on validation rows.")
    metrics: dict[str, float] = Field(default_factory=dict, description="All metrics.")
    seconds: float | None = Field(default=None, ge=0, description="Training time.")
    cpu_seconds: float | None = Field(
        default=None,
        ge=0,
        description="CPU seconds the trial spent (data read, fit, scoring): its compute, "
        "which other work on the node inflates far less than its wall time.",
    )
    message: str = Field(default="", max_length=1024, description="Why it failed, if it did.")


class TrialBatch(KubeModel):
    """The trials of one Job (spec.search.trialsPerJob > 1), trained in order in one process."""

    trials: list[TrialAssignment] = Field(
        min_length=1, max_length=MAX_TRIALS_PER_JOB, description="The assignments, in order."
    )

    def to_env(self) -> str:
        return json.dumps([t.to_wire() for t in self.trials], sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_env(cls, raw: str) -> TrialBatch:
        """The batch of env KUBELOOP_TRIALS (a JSON list); raises ValidationError."""
        return cls.model_validate({"trials": json.loads(raw)})


class TrialBatchOutcome(KubeModel):
    """What a Job of several trials reports: every trial's outcome (the gate metric as its
    score, state, seconds, cpuSeconds, message; no per-metric detail: the termination message
    holds 4096 bytes)."""

    outcomes: list[TrialOutcome] = Field(description="One per trial of the Job, in order.")


class SearchTrial(KubeModel):
    """One trial as the run's version records it."""

    assignment: TrialAssignment
    outcome: TrialOutcome | None = None


class SearchRecord(KubeModel):
    """The finished search, handed to the run's Job and kept in the version's manifest."""

    strategy: Literal["random", "grid", "halving"]
    seed: int
    metric: str = Field(description="The objective: spec.promotion.metric.")
    greater_is_better: bool = True
    trials: list[SearchTrial] = Field(default_factory=list)
    winner: int = Field(ge=0, description="The winning trial's number.")
    refit: bool = Field(description="Whether the winner is retrained on the full budget.")
    budget: SearchBudget | None = Field(
        default=None, description="Halving: spec.search.budget (the winner is refit on its max)."
    )

    def winning(self) -> SearchTrial:
        """The winner's entry at the highest rung it reached (halving lists a trial per rung)."""
        entries = [t for t in self.trials if t.assignment.trial == self.winner]
        if not entries:
            raise ValueError(f"search winner {self.winner} is not among its trials")
        return max(entries, key=lambda t: t.assignment.rung)

    def final(self) -> TrialAssignment:
        """What the run after the search trains: the winner, on every training row and, with
        `refit`, on the full budget (budget.max; a record without it: the largest budget any
        of its trials had)."""
        winner = self.winning().assignment
        budget = winner.budget
        if budget is None or budget.parameter == ROWS:
            return winner.model_copy(update={"budget": None})  # a run trains on all rows
        if not self.refit:
            return winner
        if budget.parameter == AUTO:
            return winner.model_copy(update={"budget": None})  # all of its own work
        if self.budget is not None and self.budget.parameter == budget.parameter:
            top = self.budget.max
        else:
            top = max(
                t.assignment.budget.value
                for t in self.trials
                if t.assignment.budget is not None
                and t.assignment.budget.parameter == budget.parameter
            )
        return winner.model_copy(update={"budget": Budget(parameter=budget.parameter, value=top)})

    def to_env(self) -> str:
        return json.dumps(self.to_wire(), sort_keys=True, separators=(",", ":"))


# --- spec.search: what the user asks for -----------------------------------------------------

MAX_TRIALS = 100


def _ordered(wire: str, attr: str) -> CelRule:
    """[lo, hi] of range `wire` (ParamRange attribute `attr`) with lo <= hi."""
    return CelRule(
        cel=f"!has(self.{wire}) || self.{wire}[0] <= self.{wire}[1]",
        check=lambda r: getattr(r, attr) is None or getattr(r, attr)[0] <= getattr(r, attr)[1],
        message=f"{wire}: [lo, hi] with lo <= hi",
        field_path=f".{wire}",
    )


class ParamRange(KubeModel):
    """Where one parameter's values come from: set exactly one of choice, uniform, logUniform,
    integer."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            cel="(has(self.choice) ? 1 : 0) + (has(self.uniform) ? 1 : 0) + "
            "(has(self.logUniform) ? 1 : 0) + (has(self.integer) ? 1 : 0) == 1",
            check=lambda r: (
                sum(x is not None for x in (r.choice, r.uniform, r.log_uniform, r.integer)) == 1
            ),
            message="set exactly one of choice, uniform, logUniform, integer",
            field_path=".choice",
        ),
        _ordered("uniform", "uniform"),
        CelRule(
            cel="!has(self.logUniform) || (self.logUniform[0] > 0.0 && "
            "self.logUniform[0] <= self.logUniform[1])",
            check=lambda r: r.log_uniform is None or 0 < r.log_uniform[0] <= r.log_uniform[1],
            message="logUniform: [lo, hi] with 0 < lo <= hi (a log scale has no zero)",
            field_path=".logUniform",
        ),
        _ordered("integer", "integer"),
    )

    choice: list[Any] | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        json_schema_extra={"items": {"x-kubernetes-preserve-unknown-fields": True}},
        description="The values to pick from (any YAML value: numbers, strings, lists).",
    )
    uniform: list[float] | None = Field(
        default=None,
        min_length=2,
        max_length=2,
        description="[lo, hi]: a number drawn uniformly between them.",
    )
    log_uniform: list[float] | None = Field(
        default=None,
        min_length=2,
        max_length=2,
        description="[lo, hi], 0 < lo: a number drawn uniformly on a log scale (learning "
        "rates, regularisation strengths).",
    )
    integer: list[int] | None = Field(
        default=None,
        min_length=2,
        max_length=2,
        description="[lo, hi]: an integer from lo to hi, both included.",
    )

    def grid_values(self) -> list[Any] | None:
        """Every value of a discrete range (choice, integer), in order; None: continuous."""
        if self.choice is not None:
            return list(self.choice)
        if self.integer is not None:
            return list(range(self.integer[0], self.integer[1] + 1))
        return None


class Candidate(KubeModel):
    """One region of the space: an estimator and ranges of its parameters."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            cel="has(self.estimator) || (has(self.params) && size(self.params) > 0)",
            check=lambda c: c.estimator is not None or bool(c.params),
            message="spec.search.space: each candidate names an estimator or searches at "
            "least one parameter (else it only repeats spec.model)",
            field_path=".params",
            reason="FieldValueRequired",
        ),
    )

    estimator: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Estimator from the allow-list (it must fit spec.model.task). Default: "
        "spec.model.estimator. Not with framework custom.",
    )
    params: dict[str, ParamRange] = Field(
        default_factory=dict,
        max_length=16,
        description="Parameter name -> its range: {choice: [...]}, {uniform: [lo, hi]}, "
        "{logUniform: [lo, hi]} or {integer: [lo, hi]}. Each must be a parameter of the "
        "estimator; they apply over spec.model.params when the estimator is spec.model's, "
        "alone otherwise.",
    )


class SearchBudget(KubeModel):
    """The budget successive halving grows: `auto` (a share of the training rows and of each
    trial's own iterations), an estimator parameter that counts work (trees, iterations,
    epochs) or `rows`, the number of training rows."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            cel="self.min <= self.max",
            check=lambda b: b.min <= b.max,
            message="spec.search.budget.min must not exceed spec.search.budget.max",
            field_path=".min",
        ),
    )

    parameter: str = Field(
        min_length=1,
        max_length=64,
        description="auto (recommended): each rung trains a miniature of every trial, the "
        "share budget/max of the training rows (a seeded sample) and, for an estimator that "
        "iterates, of its own iterations, trees or epochs (max_iter of HistGradientBoosting, "
        "n_estimators of XGBoost, LightGBM, forests and GradientBoosting, epochs of "
        "TabularMLP: the trial's own value, searched or default); on the last rung "
        "(budget.max) every trial trains its whole configuration. Not with framework custom. "
        "Or one parameter for every candidate, set to the rung's budget: max_iter "
        "(HistGradientBoosting, LogisticRegression), n_estimators (forests, GradientBoosting, "
        "XGBoost, LightGBM), epochs (TabularMLP), a parameter your custom code reads; or rows "
        "(a seeded sample of that many training rows).",
    )
    min: int = Field(ge=1, description="The budget of the first rung (auto: a share min/max).")
    max: int = Field(
        ge=1,
        description="The largest budget a rung gets (budget.min times a power of "
        "reductionFactor, capped here). The winner is refit on every training row with the "
        "budget max (auto: its whole configuration).",
    )


class SearchSpec(KubeModel):
    """Try several estimators and parameter sets in one run; the best trial (by
    spec.promotion.metric on the validation rows) becomes the run's version."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            cel="self.strategy != 'grid' || self.space.all(c, !has(c.params) || "
            "c.params.all(k, !has(c.params[k].uniform) && !has(c.params[k].logUniform)))",
            check=lambda s: (
                s.strategy != "grid"
                or all(r.grid_values() is not None for c in s.space for r in c.params.values())
            ),
            message="spec.search.space: strategy grid takes only choice and integer ranges "
            "(a continuous range has no grid): use choice, or strategy random",
            field_path=".space",
        ),
        CelRule(
            cel="self.strategy != 'halving' || has(self.budget)",
            check=lambda s: s.strategy != "halving" or s.budget is not None,
            message="spec.search.budget: strategy halving needs a budget to grow "
            "({parameter: auto | max_iter | n_estimators | epochs | rows, min, max})",
            field_path=".budget",
            reason="FieldValueRequired",
        ),
        CelRule(
            cel="!has(self.budget) || self.strategy == 'halving'",
            check=lambda s: s.budget is None or s.strategy == "halving",
            message="spec.search.budget: only strategy halving uses a budget; remove it",
            field_path=".budget",
            reason="FieldValueForbidden",
        ),
    )

    strategy: Literal["random", "grid", "halving"] = Field(
        default="random",
        description="random (trials drawn from the space), grid (every combination of the "
        "choice and integer ranges, in order, up to `trials`) or halving (successive halving: "
        "`trials` draws on budget.min, the best 1/reductionFactor of each rung promoted to a "
        "budget reductionFactor times larger, up to budget.max).",
    )
    trials: int = Field(
        ge=1,
        le=MAX_TRIALS,
        description="How many configurations to try (halving: how many start on the first rung).",
    )
    parallelism: int = Field(
        default=2,
        ge=1,
        le=32,
        description="Trial Jobs running at once (each gets spec.resources).",
    )
    trials_per_job: int = Field(
        default=1,
        ge=1,
        le=MAX_TRIALS_PER_JOB,
        description="Trials one Job trains, one after another in one process that reads the "
        "data once (default 1: a Job per trial). Raise it for fast trials, where a pod's "
        "start, imports and data read (seconds in a cluster) outweigh a sub-second fit: e.g. "
        "24 trials, parallelism 2, trialsPerJob 12 run as two pods. The trade-off: a pod's "
        "failure retries its whole batch, and progress moves a batch at a time. Built-in "
        "trainers only (framework custom trains one trial per process).",
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=2**31 - 1,
        description="Seed of the draws: the same seed draws the same trials. Default: spec.seed.",
    )
    reduction_factor: int = Field(
        default=3, ge=2, le=10, description="Halving: keep the best 1/this of each rung."
    )
    budget: SearchBudget | None = Field(default=None, description="Halving's budget.")
    space: list[Candidate] = Field(
        min_length=1,
        max_length=16,
        description="The candidates: each an estimator (default spec.model.estimator) and "
        "ranges of its parameters. The objective is spec.promotion.metric.",
    )


# --- status.currentRun.search: what the operator records ---------------------------------------


class TrialStatus(KubeModel):
    """One trial on one rung, as far as the operator knows."""

    trial: int = Field(ge=0, description="Trial number.")
    rung: int = Field(default=0, ge=0, description="Halving rung.")
    job: str = Field(description="Its Job (with trialsPerJob > 1: shared with its batch).")
    state: Literal["Running", "Succeeded", "Failed", "Stopped"] = Field(
        description="Running (its Job exists), Succeeded, Failed or Stopped (halving dropped it)."
    )
    score: float | None = Field(default=None, description="The gate metric it scored.")
    seconds: float | None = Field(default=None, ge=0, description="Its training time.")
    cpu_seconds: float | None = Field(
        default=None, ge=0, description="Its CPU seconds (data read, fit, scoring)."
    )
    message: str = Field(default="", max_length=256, description="Why it failed.")


class SearchBest(KubeModel):
    """The best trial so far (on the highest rung any trial finished)."""

    trial: int = Field(ge=0, description="Trial number.")
    rung: int = Field(default=0, ge=0, description="Its rung.")
    score: float = Field(description="Its value of spec.promotion.metric.")
    estimator: str | None = Field(default=None, description="Its estimator.")


class SearchSummary(KubeModel):
    """The latest run's search, kept when the run ends (status.search: the printer column)."""

    run_id: str = Field(pattern=r"^[1-9][0-9]*$", description="The run it belongs to.")
    progress: str = Field(default="", description="Trials done/planned.")
    finished: bool = Field(default=False, description="The search is over.")
    best: SearchBest | None = Field(default=None, description="Its best trial.")


class SearchStatus(KubeModel):
    """The search of the run in progress."""

    strategy: Literal["random", "grid", "halving"] = Field(description="spec.search.strategy.")
    seed: int = Field(description="The seed the trials were drawn with.")
    done: int = Field(default=0, ge=0, description="Trials finished (halving: per rung).")
    total: int = Field(ge=0, description="Trials planned (halving: over all rungs).")
    progress: str = Field(default="", description="done/total, for the printer column.")
    best: SearchBest | None = Field(default=None, description="The best trial so far.")
    finished: bool = Field(
        default=False, description="The search is over; the run's Job trains the winner."
    )
    trials: list[TrialStatus] = Field(
        default_factory=list,
        max_length=2 * MAX_TRIALS,
        description="Every trial (on each rung), in the order started: what a restarted "
        "operator resumes from.",
    )


SearchRecord.model_rebuild()  # its budget (SearchBudget) is defined after it
