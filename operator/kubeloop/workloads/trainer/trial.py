"""A run that is part of a search (spec.search, issue 21): a trial, or the winner's final run.

A trial (env `KUBELOOP_TRIAL`, a `TrialAssignment`) trains its estimator with
`spec.model.params` overlaid by the trial's params, on its budget (an estimator parameter set
to the budget's value; `rows`: a seeded sample of that many training rows; `auto`: a miniature
of the trial, the share value/max of the training rows and, for an estimator that iterates, of
its own iterations, trees or epochs), scores it on the validation rows with every metric of
the task, writes no version and touches no alias; its result is a `TrialOutcome`. The run after the
search (env `KUBELOOP_SEARCH`, a `SearchRecord`) trains the winner's estimator and params, on
all training rows and, where the search said `refit`, on the search's budget.max
(`SearchRecord.final`); its manifest keeps the record under `search`.

A Job of several trials (spec.search.trialsPerJob > 1; env `KUBELOOP_TRIALS`, a `TrialBatch`)
reads the data once and trains its trials one after another in this process, each exactly as
a trial of its own (its spec, seed, params, budget and row sample: the same scores); a trial
that fails fails alone. Its result is a `TrialBatchOutcome`, compacted to fit the termination
message (`batch_result`).

The spec each step trains is rewritten here once (`step_spec`): the built-in trainer, the
custom trainer's prepare and publish steps all read the same overlaid `spec.model`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from kubeloop.api.estimator_params import WORK_PARAMS
from kubeloop.api.search import (
    AUTO,
    ROWS,
    SEARCH_ENV,
    TRIAL_BATCH_RESULT_KIND,
    TRIAL_ENV,
    TRIAL_RESULT_KIND,
    TRIALS_ENV,
    SearchRecord,
    TrialAssignment,
    TrialBatch,
    TrialOutcome,
)
from kubeloop.api.training import TORCH_ESTIMATOR, TrainingPipelineSpec
from kubeloop.workloads.result import MAX_BYTES
from kubeloop.workloads.trainer.context import RunContext
from kubeloop.workloads.trainer.data import TrainingData, load_training_data
from kubeloop.workloads.trainer.errors import TrainingError

if TYPE_CHECKING:
    from kubeloop.workloads.trainer.run import ModelPlan

__all__ = [
    "batch_failure",
    "batch_from_env",
    "batch_result",
    "failed_outcome",
    "final_spec",
    "from_env",
    "run_trial",
    "run_trials",
    "sample_rows",
    "step_spec",
    "succeeded_outcome",
    "trial_spec",
]

log = logging.getLogger("kubeloop.train")


def from_env(
    env: Mapping[str, str] | None = None,
) -> tuple[TrialAssignment | None, SearchRecord | None]:
    """The trial (KUBELOOP_TRIAL) or the finished search (KUBELOOP_SEARCH) of this step."""
    env = os.environ if env is None else env
    parsed: list[Any] = []
    for name, model in ((TRIAL_ENV, TrialAssignment), (SEARCH_ENV, SearchRecord)):
        raw = env.get(name)
        try:
            parsed.append(model.model_validate_json(raw) if raw else None)
        except ValidationError as exc:
            raise TrainingError("InvalidSpec", f"env {name}: {_problems(exc)}") from exc
    if parsed[0] is not None and parsed[1] is not None:
        raise TrainingError("InvalidSpec", f"env {TRIAL_ENV} and {SEARCH_ENV}: set one, not both")
    return parsed[0], parsed[1]


def batch_from_env(env: Mapping[str, str] | None = None) -> TrialBatch | None:
    """The trials of this Job (KUBELOOP_TRIALS, spec.search.trialsPerJob > 1), if any."""
    env = os.environ if env is None else env
    raw = env.get(TRIALS_ENV)
    if not raw:
        return None
    if env.get(TRIAL_ENV) or env.get(SEARCH_ENV):
        raise TrainingError("InvalidSpec", f"env {TRIALS_ENV}: set alone, not with {TRIAL_ENV}")
    try:
        return TrialBatch.from_env(raw)
    except ValidationError as exc:
        raise TrainingError("InvalidSpec", f"env {TRIALS_ENV}: {_problems(exc)}") from exc
    except ValueError as exc:  # not JSON
        raise TrainingError("InvalidSpec", f"env {TRIALS_ENV}: {exc}") from exc


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '-'}: {e['msg']}" for e in exc.errors())


def _configured(
    spec: TrainingPipelineSpec, trial: TrialAssignment, what: str
) -> TrainingPipelineSpec:
    """`spec` training the trial's estimator with its params over spec.model.params (those of
    the spec's own estimator only: another estimator would refuse them) and its budget set."""
    model = spec.model
    wire = spec.to_wire()
    if model.framework == "custom":
        if trial.estimator is not None:
            raise TrainingError(
                "InvalidSpec",
                f"{what}: estimator {trial.estimator!r}: a custom trainer (spec.trainer) "
                "searches over its params only",
            )
        base = dict(model.params)
        name = None
    else:
        name = trial.estimator or model.resolved_estimator()
        base = dict(model.params) if name == model.resolved_estimator() else {}
        framework = "torch" if name == TORCH_ESTIMATOR else "sklearn"
        wire["model"] = {**wire["model"], "framework": framework, "estimator": name}
    merged = trial.params_over(base)
    budget = trial.budget
    if budget is not None and budget.parameter == AUTO and name in WORK_PARAMS:
        # auto: the share value/max of the trial's own iterations (its value, or the default);
        # `sample_rows` gives it the same share of the rows
        param, default = WORK_PARAMS[name]
        full = merged.get(param, default)
        if isinstance(full, int) and not isinstance(full, bool) and budget.share() < 1.0:
            merged[param] = max(1, math.ceil(full * budget.share()))
    wire["model"] = {**wire["model"], "params": merged}
    try:
        return TrainingPipelineSpec.model_validate(wire)
    except ValidationError as exc:
        raise TrainingError("InvalidSpec", f"{what}: {_problems(exc)}") from exc


def trial_spec(spec: TrainingPipelineSpec, trial: TrialAssignment) -> TrainingPipelineSpec:
    """The spec a trial trains: its estimator, params and budget over `spec.model`."""
    return _configured(spec, trial, f"trial {trial.trial} (rung {trial.rung})")


def final_spec(spec: TrainingPipelineSpec, search: SearchRecord) -> TrainingPipelineSpec:
    """The spec of the run after the search: the winner, on every training row and, with
    `refit`, on the full budget (budget.max; auto: the winner's whole configuration)."""
    try:
        final = search.final()
    except ValueError as exc:
        raise TrainingError("InvalidSpec", f"env {SEARCH_ENV}: {exc}") from exc
    return _configured(spec, final, f"search winner {final.trial}")


def step_spec(
    spec: TrainingPipelineSpec, trial: TrialAssignment | None, search: SearchRecord | None
) -> TrainingPipelineSpec:
    """The spec this step trains: a trial's, the search winner's, or `spec` itself."""
    if trial is not None:
        return trial_spec(spec, trial)
    if search is not None:
        _log_search(search, spec.model.resolved_estimator())
        return final_spec(spec, search)
    return spec


def _log_search(search: SearchRecord, default_estimator: str) -> None:
    """The search's report in the run's log: every trial, the score of each, the effect of
    each parameter (what `kubeloop trials` shows from the manifest later)."""
    from kubeloop.registrycli.trialviews import render_search_report, render_trials, trial_rows

    rows = trial_rows(search)
    log.info(
        "%s search of %d trial(s), winner trial %d%s:\n%s\n%s",
        search.strategy,
        len({t.assignment.trial for t in search.trials}),
        search.winner,
        " (refit)" if search.refit else "",
        render_trials(rows, search.metric),
        render_search_report(rows, search.metric, default_estimator),
    )


def sample_rows(data: TrainingData, trial: TrialAssignment | None) -> TrainingData:
    """The training rows a trial sees: a seeded sample of `budget.value` rows for a `rows`
    budget, of the share value/max of them for an `auto` budget; validation rows stay whole:
    every trial is scored on the same rows."""
    budget = None if trial is None else trial.budget
    if trial is None or budget is None:
        return data
    total = data.train.num_rows
    if budget.parameter == ROWS:
        size = budget.value
    elif budget.parameter == AUTO:
        size = math.ceil(total * budget.share())
    else:
        return data
    if size >= total:
        return data
    import numpy as np

    rng = np.random.default_rng(trial.seed)
    picked = np.sort(rng.choice(total, size=size, replace=False))
    log.info("trial %d: %d of %d training rows", trial.trial, len(picked), total)
    return replace(data, train=data.train.take(picked))


def succeeded_outcome(
    spec: TrainingPipelineSpec,
    trial: TrialAssignment,
    metrics: dict[str, float],
    seconds: float | None,
    cpu_seconds: float | None = None,
) -> dict[str, Any]:
    """The result of a scored trial; `score` is the gate's metric (none without a gate)."""
    metric = spec.promotion.metric if spec.promotion is not None else None
    outcome = TrialOutcome(
        trial=trial.trial,
        rung=trial.rung,
        state="Succeeded",
        score=metrics.get(metric) if metric else None,
        metrics=metrics,
        seconds=None if seconds is None else round(seconds, 3),
        cpu_seconds=None if cpu_seconds is None else round(cpu_seconds, 3),
    )
    return {"kind": TRIAL_RESULT_KIND, **outcome.to_wire()}


def failed_outcome(trial: TrialAssignment, reason: str, message: str) -> dict[str, Any]:
    """The result of a trial that could not train or score."""
    text = f"{reason}: {message}"
    outcome = TrialOutcome(trial=trial.trial, rung=trial.rung, state="Failed", message=text[:1024])
    return {"kind": TRIAL_RESULT_KIND, **outcome.to_wire()}


def batch_failure(batch: TrialBatch, reason: str, message: str) -> dict[str, Any]:
    """The result of a Job of several trials that could not start any (e.g. its data)."""
    failed = [failed_outcome(t, reason, message) for t in batch.trials]
    return batch_result([_outcome(f) for f in failed])


def batch_result(outcomes: Sequence[TrialOutcome]) -> dict[str, Any]:
    """The result of a Job of several trials: each outcome without its per-metric detail
    (the score is the gate's metric) and, where the JSON would pass MAX_BYTES (the termination
    message), with its message shortened until it fits; every trial keeps its number, rung,
    state, score, seconds and cpuSeconds (MAX_TRIALS_PER_JOB is sized for it)."""
    cap = max((len(o.message) for o in outcomes), default=0)
    while True:
        slim = [
            {
                k: v
                for k, v in o.model_copy(update={"message": o.message[:cap]}).to_wire().items()
                if k != "metrics" and v != ""
            }
            for o in outcomes
        ]
        result = {"kind": TRIAL_BATCH_RESULT_KIND, "outcomes": slim}
        size = len(json.dumps(result, separators=(",", ":"), sort_keys=True).encode())
        if size <= MAX_BYTES or cap == 0:
            return result
        cap = cap // 2 if cap > 16 else 0


def _fit(
    spec: TrainingPipelineSpec,
    ctx: RunContext,
    trial: TrialAssignment,
    data: TrainingData,
    *,
    plan: ModelPlan,
    cpu_before: float,
) -> dict[str, Any]:
    """Train and score `trial` (`spec` from `trial_spec`, `plan` its plan_model) on its
    sample of `data`; its CPU seconds are its own plus `cpu_before` (its data read)."""
    from kubeloop.workloads.trainer.run import fit_model

    cpu = time.process_time()  # its compute: (data read,) fit and scoring
    rows = sample_rows(data, trial)
    started = time.monotonic()  # its training time: fit and score, not the data read
    # No checkpoints: the run's own would be mixed with this trial's (same run id).
    trained = fit_model(spec, ctx, rows, plan, checkpoints=None)
    seconds = time.monotonic() - started
    spent = cpu_before + time.process_time() - cpu
    return succeeded_outcome(spec, trial, trained.metrics, seconds, spent)


def run_trial(spec: TrainingPipelineSpec, ctx: RunContext) -> dict[str, Any]:
    """Train and score one trial of the built-in trainer (`spec` from `trial_spec`)."""
    from kubeloop.workloads.trainer.run import plan_model

    trial = ctx.trial
    if trial is None:
        raise ValueError("run_trial needs ctx.trial")
    plan = plan_model(spec)  # imports the estimator's library: the pod's start, not the trial
    cpu = time.process_time()  # its compute: data read, fit and scoring
    ctx.progress.report({"phase": "reading", "percent": 0})
    data = load_training_data(spec)
    return _fit(spec, ctx, trial, data, plan=plan, cpu_before=time.process_time() - cpu)


def run_trials(spec: TrainingPipelineSpec, ctx: RunContext, batch: TrialBatch) -> dict[str, Any]:
    """Train and score the trials of one Job in order in this process (`spec`: the
    pipeline's): the data is read once, each trial trains as `run_trial` would train it alone
    (its own spec, seed, params, budget and row sample: the same scores); a trial that fails
    is Failed with its message and the next one goes on. Each trial's cpuSeconds includes an
    equal share of the one data read."""
    from kubeloop.workloads.trainer.run import plan_model

    cpu = time.process_time()
    ctx.progress.report({"phase": "reading", "percent": 0})
    data = load_training_data(spec)
    read_share = (time.process_time() - cpu) / len(batch.trials)
    outcomes = []
    for trial in batch.trials:
        try:
            configured = trial_spec(spec, trial)
            plan = plan_model(configured)
            result = _fit(
                configured, replace(ctx, trial=trial), trial, data, plan=plan, cpu_before=read_share
            )
        except TrainingError as exc:
            log.error("trial %d: %s: %s", trial.trial, exc.reason, exc.message)
            result = failed_outcome(trial, exc.reason, exc.message)
        except Exception as exc:  # one trial's bug or bad params must not lose the others
            log.error("trial %d failed:\n%s", trial.trial, traceback.format_exc())
            result = failed_outcome(trial, "InternalError", f"{type(exc).__name__}: {exc}")
        outcomes.append(_outcome(result))
    return batch_result(outcomes)


def _outcome(result: Mapping[str, Any]) -> TrialOutcome:
    return TrialOutcome.model_validate({k: v for k, v in result.items() if k != "kind"})
