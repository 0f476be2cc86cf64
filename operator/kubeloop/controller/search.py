"""The search of a run (spec.search): trial Jobs before the run's own Job.

Observe → decide → act, once per reconcile of the pipeline, while the current run's search is
not finished:
- observe: the run's trial Jobs (one list) and, for each that ended, its pod's TrialOutcome;
- record: those outcomes into status.currentRun.search.trials, written before anything that
  depends on them is decided (a restarted operator finds every score it had seen);
- decide: `kubeloop.decide.search.step` (what to start, what halving drops, the winner);
- act: trials to start are recorded as Running in status first, then their Jobs are created
  under deterministic names (a create after a crash finds the Job already there: no trial runs
  twice, none is lost); Jobs of Stopped trials are deleted.
With spec.search.trialsPerJob > 1 a Job carries several trials (named for its first, its trials
in the annotation kubeloop.io/trials and in status: every entry names its Job); its pod reports
a TrialBatchOutcome, from which every trial of the Job is recorded at once.
When the search is over, the caller creates the run's Job with the finished search
(KUBELOOP_SEARCH); gate, registry and rollout then go as for any run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubeloop.api.search import (
    TRIAL_BATCH_RESULT_KIND,
    TRIAL_RESULT_KIND,
    SearchRecord,
    SearchSummary,
    TrialOutcome,
    TrialStatus,
)
from kubeloop.api.training import TrainingPipelineSpec
from kubeloop.controller.kube import Refused
from kubeloop.controller.reconciling import job_result
from kubeloop.controller.runtime import runtime
from kubeloop.controller.status import job_outcome, post_event
from kubeloop.decide.search import (
    SearchPlan,
    assignment,
    plan,
    record,
    step,
    summary,
    winner,
)
from kubeloop.resources.common import Owner
from kubeloop.resources.training import (
    RUN_ID_LABEL,
    TRIAL_LABEL,
    build_headless_service,
    build_training_job,
    trial_job_name,
)

__all__ = [
    "SearchDone",
    "advance",
    "batch_outcomes",
    "searching",
    "trial_outcome",
    "winning_search",
]

_OUTCOME_FIELDS = frozenset(f.alias or n for n, f in TrialOutcome.model_fields.items())


@dataclass(frozen=True)
class SearchDone:
    """A finished search: `record` for the run's Job, or `failure` (no trial scored)."""

    record: SearchRecord | None
    failure: str | None = None


def searching(spec: TrainingPipelineSpec, current: Mapping[str, Any] | None) -> bool:
    """Whether the current run is still in its search (its own Job waits for the winner)."""
    if current is None or spec.search is None:
        return False
    return not (current.get("search") or {}).get("finished", False)


def trial_outcome(
    entry: TrialStatus, outcome: str, result: Mapping[str, Any] | None
) -> TrialStatus:
    """The entry of a trial whose Job ended (`outcome` Complete or Failed), from the result
    its pod left (None: none)."""
    fields = {k: v for k, v in (result or {}).items() if k in _OUTCOME_FIELDS}
    try:
        reported = TrialOutcome.model_validate(fields) if result is not None else None
    except ValueError:
        reported = None
    if reported is not None and reported.state == "Succeeded" and reported.score is not None:
        return entry.model_copy(
            update={
                "state": "Succeeded",
                "score": reported.score,
                "seconds": reported.seconds,
                "cpu_seconds": reported.cpu_seconds,
            }
        )
    why = (result or {}).get("message") or (result or {}).get("reason")
    if why is None and reported is not None and reported.state == "Succeeded":
        why = "it reported no score"
    why = why or f"its Job ended {outcome} without a trial outcome"
    return entry.model_copy(update={"state": "Failed", "message": str(why)[:256]})


def batch_outcomes(
    entries: Sequence[TrialStatus], outcome: str, result: Mapping[str, Any] | None
) -> list[TrialStatus]:
    """The entries of the trials of one Job of several trials that ended (`outcome` Complete
    or Failed), from the TrialBatchOutcome its pod left (None: none): each from its own
    outcome, as `trial_outcome` reads a single trial's."""
    reported = {}
    for item in (result or {}).get("outcomes") or []:
        if isinstance(item, Mapping):
            reported[(item.get("trial"), item.get("rung", 0))] = item
    done = []
    for entry in entries:
        own = reported.get((entry.trial, entry.rung))
        if own is None and result is not None:
            own = {"message": f"its Job's outcomes have none for trial {entry.trial}"}
        done.append(trial_outcome(entry, outcome, own))
    return done


def _records(current: Mapping[str, Any]) -> list[TrialStatus]:
    trials = (current.get("search") or {}).get("trials") or []
    return [TrialStatus.model_validate(t) for t in trials]


def winning_search(spec: TrainingPipelineSpec, current: Mapping[str, Any]) -> SearchRecord | None:
    """The finished search of the current run, for its Job (None: the run has no search)."""
    if spec.search is None or not current.get("search"):
        return None
    p = plan(spec, str(current["id"]))
    records = _records(current)
    best = winner(p, records)
    return None if best is None else record(p, records, best.trial)


class _Search:
    """One pass over the current run's search; `persist` writes status as it stands."""

    def __init__(
        self,
        spec: TrainingPipelineSpec,
        status: dict[str, Any],
        body: dict[str, Any],
        selector: dict[str, str],
        persist: Callable[[], None],
    ) -> None:
        self.spec, self.status, self.body, self.persist = spec, status, body, persist
        self.owner = Owner.of(body)
        self.current: dict[str, Any] = status["currentRun"]
        self.plan: SearchPlan = plan(spec, str(self.current["id"]))
        self.records = _records(self.current)
        self.selector = {**selector, RUN_ID_LABEL: str(self.current["id"])}
        self.jobs: dict[str, dict[str, Any]] = {}

    def write(self, finished: bool = False) -> None:
        """Fold the records into status.currentRun.search (and its summary into status.search,
        which outlives the run: the printer column) and write status."""
        search = summary(self.plan, self.records).model_copy(update={"finished": finished})
        self.current = {**self.current, "search": search.to_wire()}
        self.status["currentRun"] = self.current
        self.status["search"] = SearchSummary(
            run_id=str(self.current["id"]),
            progress=search.progress,
            finished=finished,
            best=search.best,
        ).to_wire()
        self.persist()

    def observe(self) -> None:
        """Record every trial whose Job ended; re-create a running trial's vanished Job."""
        api, ns = runtime.api, self.owner.namespace
        self.jobs = jobs = {j["metadata"]["name"]: j for j in api.list("Job", ns, self.selector)}
        running: dict[str, list[int]] = {}  # Job -> the indexes of its trials' entries
        for i, entry in enumerate(self.records):
            if entry.state == "Running":
                running.setdefault(entry.job, []).append(i)
        changed = False
        for name, at in running.items():
            job = jobs.get(name)
            if job is None:  # deleted while running: resume it, with every trial it carried
                self.create([(self.records[i].trial, self.records[i].rung) for i in at])
                continue
            outcome = job_outcome(job)
            if outcome is None:
                continue
            entries = [self.records[i] for i in at]
            if self.batched:
                ended = batch_outcomes(
                    entries, outcome, job_result(job, self.selector, TRIAL_BATCH_RESULT_KIND)
                )
            else:
                result = job_result(job, self.selector, TRIAL_RESULT_KIND)
                ended = [trial_outcome(entries[0], outcome, result)]
            for i, entry in zip(at, ended, strict=True):
                self.records[i] = entry
            changed = True
        if changed:
            self.write()  # the scores, before anything is decided from them

    def create(self, trials: Sequence[tuple[int, int]]) -> str | None:
        """Create the Job of `trials` ((trial, rung) pairs; more than one: trialsPerJob > 1)
        and its Service (distributed); the refusal's reason, if refused."""
        name = self.job_name(*trials[0])
        run_id = int(self.current["id"])
        assigned = [assignment(self.plan, trial, rung) for trial, rung in trials]
        try:
            if self.spec.distributed.workers > 1:
                runtime.api.apply(build_headless_service(self.owner, self.spec, run_id, name))
            runtime.api.apply(
                build_training_job(
                    self.owner,
                    self.spec,
                    run_id=run_id,
                    trigger=self.current.get("trigger", "Manual"),
                    generation=self.current.get("generation"),
                    defaults=runtime.config.workloads,
                    trial=None if self.batched else assigned[0],
                    batch=assigned if self.batched else (),
                    trial_name=name,
                )
            )
        except Refused as refused:
            return refused.summary
        return None

    @property
    def batched(self) -> bool:
        """Whether Jobs carry a list of trials (KUBELOOP_TRIALS, a TrialBatchOutcome)."""
        return self.plan.search.trials_per_job > 1

    def job_name(self, trial: int, rung: int) -> str:
        halving = self.plan.search.strategy == "halving"
        return trial_job_name(self.owner.name, self.current["id"], trial, rung, halving)

    def act(self) -> SearchDone | None:
        """Start, stop or finish, as the decision says; a SearchDone when it is over."""
        parallelism = self.plan.search.parallelism
        decision = step(self.plan, self.records, parallelism)
        if decision.stop:
            stopping = set(decision.stop)
            for i, entry in enumerate(self.records):
                if (entry.trial, entry.rung) in stopping:
                    self.records[i] = entry.model_copy(update={"state": "Stopped"})
            self.write()
            for entry in self.records:
                job = self.jobs.get(entry.job)
                if (entry.trial, entry.rung) in stopping and job and not job_outcome(job):
                    # A Stopped trial's Job that still runs would only spend its budget; a
                    # finished one stays (its logs), until ttlSecondsAfterFinished.
                    runtime.api.delete("Job", self.owner.namespace, entry.job)
        if decision.jobs:
            new = [
                [TrialStatus(trial=a.trial, rung=a.rung, job=self.job_name(job[0].trial, a.rung),
                             state="Running") for a in job]
                for job in decision.jobs
            ]  # fmt: skip
            self.records.extend(entry for job in new for entry in job)
            self.write()  # recorded first: a crash before the create re-creates, never twice
            refused = False
            for entries in new:
                why = self.create([(e.trial, e.rung) for e in entries])
                if why is not None:
                    refused = True
                    for entry in entries:
                        at = self.records.index(entry)
                        self.records[at] = entry.model_copy(
                            update={"state": "Failed", "message": why[:256]}
                        )
            if refused:
                self.write()
            return None
        if not decision.finished:
            return None
        self.write(finished=True)
        run_id = self.current["id"]
        if decision.winner is None:
            why = f"search: {decision.failure}"
            post_event(self.body, "SearchFailed", f"run {run_id}: {why}", warning=True)
            return SearchDone(record=None, failure=why)
        done = winning_search(self.spec, self.current)
        assert done is not None
        best = done.winning()
        post_event(
            self.body,
            "SearchFinished",
            f"run {run_id}: trial {best.assignment.trial} won "
            f"({self.plan.metric} {best.outcome.score if best.outcome else None}) of "
            f"{len(self.plan.configs)}; Job {self.current['job']} trains it",
        )
        return SearchDone(record=done)


def _stop_running(namespace: str, selector: dict[str, str], current: Mapping[str, Any]) -> None:
    """Delete the trial Jobs of an abandoned search that still run (they would only spend
    their budget on trials no one reads)."""
    jobs = runtime.api.list("Job", namespace, {**selector, RUN_ID_LABEL: str(current["id"])})
    for job in jobs:
        if TRIAL_LABEL in job["metadata"].get("labels", {}) and not job_outcome(job):
            runtime.api.delete("Job", namespace, job["metadata"]["name"])


def advance(
    spec: TrainingPipelineSpec,
    status: dict[str, Any],
    body: dict[str, Any],
    selector: dict[str, str],
    persist: Callable[[], None],
) -> SearchDone | None:
    """Move the current run's search on (status.currentRun is set and `searching`); a
    SearchDone once it is over. `selector`: the labels of the pipeline's Jobs."""
    trained = status.get("lastRunSpecHash")
    if trained is not None and trained != spec.run_hash():
        # The trials drawn so far came from the spec as it was: the run ends, and the edit
        # starts its own (SpecChange) run with a search of the new spec.
        why = "search: the spec changed during the search; a run of the new spec follows"
        post_event(body, "SearchFailed", f"run {status['currentRun']['id']}: {why}", warning=True)
        _stop_running(body["metadata"]["namespace"], selector, status["currentRun"])
        return SearchDone(record=None, failure=why)
    search = _Search(spec, status, body, selector, persist)
    if not search.current.get("search"):
        search.write()
        strategy = search.plan.search.strategy
        per_job = search.plan.search.trials_per_job
        post_event(
            body,
            "SearchStarted",
            f"run {search.current['id']}: {strategy} search of "
            f"{summary(search.plan, []).total} trials, {search.plan.search.parallelism}"
            f"{f' Jobs of up to {per_job} trials' if per_job > 1 else ''} at a time",
        )
    search.observe()
    return search.act()
