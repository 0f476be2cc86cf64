"""Search inside a training run: the contract between the operator and the trainer.

The operator decides which trials run (strategy, space, seed, budgets); each trial is a Job that
runs the trainer with one `TrialAssignment` (env `KUBELOOP_TRIAL`, JSON). The trainer trains that
configuration on its budget, scores it on the validation rows with the gate's metric, writes no
model version, and ends with a `TrialOutcome` as its result (termination message). When the
search is over, the run's ordinary Job trains the winner (env `KUBELOOP_SEARCH`, a
`SearchRecord`): it refits on the full training data where the trials used a smaller budget, and
the version's manifest records the whole search under `search`, so every trial's params and
scores travel with the model.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from kubeloop.api.common import KubeModel

__all__ = [
    "SEARCH_ENV",
    "TRIAL_ENV",
    "Budget",
    "SearchRecord",
    "SearchTrial",
    "TrialAssignment",
    "TrialOutcome",
]

TRIAL_ENV = "KUBELOOP_TRIAL"
SEARCH_ENV = "KUBELOOP_SEARCH"


class Budget(KubeModel):
    """How much a trial may spend: a value of the estimator's budget parameter (epochs, trees,
    iterations), or `rows`, the number of training rows it trains on (a seeded sample)."""

    parameter: str = Field(description="An estimator parameter (e.g. max_iter), or rows.")
    value: int = Field(ge=1, description="The amount this trial gets.")


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
    message: str = Field(default="", max_length=1024, description="Why it failed, if it did.")


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

    def winning(self) -> SearchTrial:
        """The winner's entry at the highest rung it reached (halving lists a trial per rung)."""
        entries = [t for t in self.trials if t.assignment.trial == self.winner]
        if not entries:
            raise ValueError(f"search winner {self.winner} is not among its trials")
        return max(entries, key=lambda t: t.assignment.rung)

    def to_env(self) -> str:
        return json.dumps(self.to_wire(), sort_keys=True, separators=(",", ":"))
