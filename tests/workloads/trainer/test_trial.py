"""Search trials and the winner's run (issue 21), trainer side: `kubeloop train` with
KUBELOOP_TRIAL trains and scores one configuration and writes no version; with
KUBELOOP_SEARCH it trains the winner and keeps the search in the manifest; a custom trainer
gets the trial's params through the SDK; `kubeloop trials` lists what the manifest holds.

Everything in this process on 1500 churn rows (`train_in_process`), real scikit-learn; the
search record the final run gets is built from the outcomes the real trials reported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from kubeloop.api.search import (
    MAX_TRIALS_PER_JOB,
    SEARCH_ENV,
    TRIAL_ENV,
    TRIALS_ENV,
    Budget,
    SearchBudget,
    SearchRecord,
    SearchTrial,
    TrialAssignment,
    TrialBatch,
    TrialBatchOutcome,
    TrialOutcome,
)
from kubeloop.api.training import TrainingPipelineSpec
from kubeloop.cli import main as kubeloop
from kubeloop.workloads.result import MAX_BYTES
from kubeloop.workloads.trainer.trial import batch_result, final_spec, sample_rows, trial_spec

from .conftest import make_spec, train_in_process, write_parquet, write_spec

PROMOTION = {"metric": "roc_auc", "minimum": 0.5}
HGB = "HistGradientBoostingClassifier"


def outcome_of(result: dict[str, Any]) -> dict[str, Any]:
    """The TrialOutcome of a trial's result (its `kind` aside)."""
    assert result["kind"] == "TrialOutcome", result
    return {k: v for k, v in result.items() if k != "kind"}


def assignment(trial: int, rung: int = 0, **fields: Any) -> TrialAssignment:
    return TrialAssignment(run_id="4", trial=trial, rung=rung, seed=100 + trial, **fields)


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Three trials (a parameter budget, a rows budget, a bad parameter), then the run that
    trains the winner: their exit codes, outcomes and the version's manifest."""
    root = tmp_path_factory.mktemp("search")
    from kubeloop.local.demo.datagen import churn_table

    data = (root / "data").as_uri() + "/"
    write_parquet(root / "data", churn_table(1500, seed=3))
    artifacts = (root / "models").as_uri() + "/"
    spec = make_spec(data, artifacts, estimator=HGB, params={"learning_rate": 0.1})
    spec["promotion"] = PROMOTION
    spec_path = write_spec(spec, root / "spec.yaml")
    trials = [
        assignment(0, params={"max_depth": 3}, budget=Budget(parameter="max_iter", value=5)),
        assignment(
            1,
            estimator="LogisticRegression",
            params={"C": 0.5},
            budget=Budget(parameter="rows", value=300),
        ),
        assignment(2, estimator="LogisticRegression", params={"C": -1.0}),
    ]
    codes, outcomes = [], []
    for trial in trials:
        result = root / f"trial-{trial.trial}.json"
        codes.append(
            train_in_process(
                ["--spec", str(spec_path), "--run-id", "4", "--result-path", str(result)],
                {"KUBELOOP_WORK_DIR": str(root / "scratch"), TRIAL_ENV: trial.to_env()},
            )
        )
        outcomes.append(json.loads(result.read_text()))
    # The same three as one Job of several trials (trialsPerJob): the bad one in the middle.
    batch_path = root / "batch.json"
    batch_code = train_in_process(
        ["--spec", str(spec_path), "--run-id", "4", "--result-path", str(batch_path)],
        {
            "KUBELOOP_WORK_DIR": str(root / "scratch"),
            TRIALS_ENV: TrialBatch(trials=[trials[0], trials[2], trials[1]]).to_env(),
        },
    )
    versions_after_trials = sorted((root / "models").glob("versions/*"))
    record = SearchRecord(
        strategy="random",
        seed=42,
        metric="roc_auc",
        trials=[
            SearchTrial(assignment=a, outcome=TrialOutcome.model_validate(outcome_of(o)))
            for a, o in zip(trials, outcomes, strict=True)
        ],
        winner=1,  # the rows-budget trial: the run refits it on every training row
        refit=True,
    )
    result = root / "run.json"
    code = train_in_process(
        ["--spec", str(spec_path), "--run-id", "4", "--result-path", str(result)],
        {"KUBELOOP_WORK_DIR": str(root / "scratch"), SEARCH_ENV: record.to_env()},
    )
    run = json.loads(result.read_text())
    manifest = json.loads((root / "models" / "versions" / "1" / "manifest.json").read_text())
    return {
        "codes": codes,
        "outcomes": outcomes,
        "batch": (batch_code, batch_path.read_bytes()),
        "versions_after_trials": versions_after_trials,
        "record": record,
        "run": (code, run),
        "manifest": manifest,
        "artifacts": artifacts,
    }


def test_a_trial_trains_its_budget_scores_every_metric_and_writes_no_version(
    search: dict[str, Any],
) -> None:
    assert search["codes"][:2] == [0, 0]
    for number, outcome in enumerate(search["outcomes"][:2]):
        assert outcome["state"] == "Succeeded" and outcome["trial"] == number
        assert set(outcome["metrics"]) >= {"accuracy", "f1", "roc_auc", "log_loss"}
        assert outcome["score"] == outcome["metrics"]["roc_auc"] > 0.5
        assert outcome["cpuSeconds"] > 0  # its compute: data read, fit, scoring
        assert outcome.pop("kind") == "TrialOutcome"  # how the operator finds it in the pod
        TrialOutcome.model_validate(outcome)  # the contract's model: nothing else added
    assert search["versions_after_trials"] == []


def test_a_trial_with_a_bad_parameter_fails_like_a_run(search: dict[str, Any]) -> None:
    assert search["codes"][2] == 12  # InvalidParameter, as a run exits
    failed = search["outcomes"][2]
    assert failed["state"] == "Failed" and failed["trial"] == 2
    assert failed["message"].startswith("InvalidParameter: spec.model.params.C")


def test_a_job_of_several_trials_scores_each_as_alone_and_a_failure_fails_alone(
    search: dict[str, Any],
) -> None:
    """KUBELOOP_TRIALS: one process, the data read once, the trials in order; every score is
    the one the trial scored in a Job of its own, the bad trial in the middle fails with its
    message and the one after it still trains; the pod ends 0 (a retry would redo them all)."""
    code, raw = search["batch"]
    assert code == 0 and len(raw) <= MAX_BYTES
    result = json.loads(raw)
    assert result.pop("kind") == "TrialBatchOutcome"
    batch = TrialBatchOutcome.model_validate(result).outcomes
    alone = {o["trial"]: o for o in search["outcomes"]}
    assert [o.trial for o in batch] == [0, 2, 1]
    for got in batch:
        single = alone[got.trial]
        assert (got.state, got.score, got.message) == (
            single["state"],
            single.get("score"),
            single.get("message", ""),
        )
        assert got.metrics == {}  # the score is the gate's metric; detail stays in the pod log
    assert batch[0].cpu_seconds and batch[2].cpu_seconds and batch[0].seconds is not None
    assert search["versions_after_trials"] == []


def test_a_batch_result_fits_the_termination_message_with_every_trial_recorded() -> None:
    """The most trials a Job may carry, all scored with the longest numbers, or all failed
    with the longest messages (quotes and non-ASCII, which JSON escapes): every trial keeps
    its score, state, seconds, cpuSeconds and the head of its message, within 4096 bytes."""
    scored = [
        TrialOutcome(
            trial=90 + i,
            rung=9,
            state="Succeeded",
            score=0.1234567890123456789,
            metrics={"roc_auc": 0.1, "accuracy": 0.2, "f1": 0.3, "log_loss": 0.4},
            seconds=12345.678,
            cpu_seconds=12345.678,
        )
        for i in range(MAX_TRIALS_PER_JOB)
    ]
    failed = [
        TrialOutcome(trial=i, state="Failed", message=f'InternalError: "é" {i} ' + "x" * 1000)
        for i in range(MAX_TRIALS_PER_JOB)
    ]
    twelve = scored[:12]
    for outcomes in (scored, failed, scored[:-1] + failed[:1], twelve):
        result = batch_result(outcomes)
        text = json.dumps(result, separators=(",", ":"), sort_keys=True)
        assert len(text.encode()) <= MAX_BYTES
        back = TrialBatchOutcome.model_validate({"outcomes": result["outcomes"]}).outcomes
        assert [(o.trial, o.state, o.score, o.seconds, o.cpu_seconds) for o in back] == [
            (o.trial, o.state, o.score, o.seconds, o.cpu_seconds) for o in outcomes
        ]
        for got, given in zip(back, outcomes, strict=True):
            assert given.message.startswith(got.message) and bool(got.message) == bool(
                given.message
            )
    print(f"\nbatch result of 12 classification outcomes: {len(text.encode())} bytes")


def test_the_run_after_the_search_refits_the_winner_and_keeps_the_search(
    search: dict[str, Any],
) -> None:
    code, run = search["run"]
    assert code == 0 and run["version"] == "1", run
    manifest = search["manifest"]
    assert manifest["estimator"] == "LogisticRegression" and manifest["params"]["C"] == 0.5
    assert manifest["data"]["rows"]["train"] == 1200  # every row, not the trial's 300
    assert manifest["search"] == search["record"].to_wire()


def test_refit_takes_the_search_budget_max() -> None:
    """The winner is refit on budget.max, also when no rung reached it (here the last rung
    trained 30); a record without the budget (older manifests) takes the largest one seen."""
    spec = TrainingPipelineSpec.model_validate(
        make_spec("file:///d/", "file:///m/", estimator=HGB, params={"learning_rate": 0.2})
    )
    trials = [
        SearchTrial(assignment=assignment(t, r, budget=Budget(parameter="max_iter", value=v)))
        for t, r, v in ((0, 0, 10), (1, 0, 10), (1, 1, 30), (0, 1, 30))
    ]
    record = SearchRecord(
        strategy="halving", seed=1, metric="roc_auc", trials=trials, winner=0, refit=True,
        budget=SearchBudget(parameter="max_iter", min=10, max=270),
    )  # fmt: skip
    params = {"learning_rate": 0.2}
    assert final_spec(spec, record).model.params == {**params, "max_iter": 270}
    older = record.model_copy(update={"budget": None})
    assert final_spec(spec, older).model.params == {**params, "max_iter": 30}
    no_refit = record.model_copy(update={"refit": False})
    assert final_spec(spec, no_refit).model.params == {**params, "max_iter": 30}


@pytest.mark.parametrize(
    ("estimator", "params", "value", "trained"),
    [
        (HGB, {"max_iter": 150}, 1, {"max_iter": 17}),  # its own 150 iterations, 1/9 of them
        ("XGBClassifier", {"max_depth": 3}, 3, {"max_depth": 3, "n_estimators": 34}),  # of 100
        ("LogisticRegression", {"C": 0.5}, 1, {"C": 0.5}),  # no iterations: rows only
        (HGB, {"max_iter": 150}, 9, {"max_iter": 150}),  # the last rung: all of it
    ],
)
def test_an_auto_budget_trains_the_rungs_share_of_the_trials_own_iterations(
    estimator: str, params: dict[str, Any], value: int, trained: dict[str, Any]
) -> None:
    spec = TrainingPipelineSpec.model_validate(make_spec("file:///d/", "file:///m/"))
    budget = Budget(parameter="auto", value=value, max=9)
    trial = assignment(0, estimator=estimator, params=params, budget=budget)
    assert trial_spec(spec, trial).model.params == trained


def test_a_rows_budget_is_a_seeded_sample(churn_dir: Path) -> None:
    from kubeloop.workloads.trainer.data import load_training_data

    spec = TrainingPipelineSpec.model_validate(make_spec(churn_dir.as_uri() + "/", "file:///m/"))
    data = load_training_data(spec)
    rows = assignment(0, budget=Budget(parameter="rows", value=100))
    first, again = sample_rows(data, rows), sample_rows(data, rows)
    other = sample_rows(data, rows.model_copy(update={"seed": 9}))
    assert first.train.num_rows == 100 and first.validation.equals(data.validation)
    assert first.train.equals(again.train) and not first.train.equals(other.train)
    assert sample_rows(data, assignment(0)) is data
    # auto: the rung's share of the rows, whatever the estimator (1/9, rounded up)
    auto = assignment(0, budget=Budget(parameter="auto", value=1, max=9))
    assert sample_rows(data, auto).train.num_rows == -(-data.train.num_rows // 9)
    assert sample_rows(data, auto.model_copy(update={"budget": None})) is data


def test_kubeloop_trials_lists_the_trials_of_a_version(
    search: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert kubeloop(["trials", "churn", "--artifacts", search["artifacts"], "--version", "1"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("version 1: random search, seed 42, winner trial 1 (refit)")
    lines = lines[1:]
    header = lines[0].split()
    assert header[:6] == ["TRIAL", "RUNG", "ESTIMATOR", "BUDGET", "ROC_AUC", "STATE"]
    rows = {line.split()[0]: line for line in lines[1:4]}
    assert set(rows) == {"0", "1*"} | {"2"}
    assert "LogisticRegression" in rows["1*"] and "rows=300" in rows["1*"]
    assert "Failed" in rows["2"] and "max_iter=5" in rows["0"]
    assert any(line.startswith("score per trial") for line in lines)
    assert kubeloop(["trials", "churn", "--artifacts", search["artifacts"], "-o", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [t["winner"] for t in listed["trials"]] == [False, True, False]


def test_a_custom_trainer_gets_the_trial_through_the_sdk(tmp_path: Path, churn_dir: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    import kubeloop_sdk as kl

    spec = {
        "data": {"train": churn_dir.as_uri() + "/", "target": "churned"},
        "model": {"framework": "custom", "task": "classification", "params": {"C": 1, "k": 2}},
        "trainer": {"image": "team/churn:1", "command": ["python", "train.py"]},
        "artifacts": (tmp_path / "models").as_uri() + "/",
        "promotion": PROMOTION,
        "seed": 7,
    }
    spec_path = write_spec(spec, tmp_path / "spec.yaml")
    trial = assignment(5, 1, params={"C": 0.25}, budget=Budget(parameter="rows", value=400))
    env = {
        "KUBELOOP_DIR": str(tmp_path / "pod"),
        "KUBELOOP_WORK_DIR": str(tmp_path / "scratch"),
        TRIAL_ENV: trial.to_env(),
    }
    result = tmp_path / "result.json"
    argv = ["--spec", str(spec_path), "--run-id", "4", "--result-path", str(result)]
    assert train_in_process([*argv, "--prepare"], env) == 0
    # The user's code, here in-process: the SDK reads the context the prepare step wrote.
    saved = dict(os.environ)
    os.environ[kl.CONTEXT_ENV] = str(tmp_path / "pod" / "context.json")
    try:
        ctx = kl.context()
        assert ctx.params == {"C": 0.25, "k": 2}
        assert ctx.trial == kl.Trial(
            number=5, rung=1, budget_parameter="rows", budget=400, seed=105
        )
        assert ctx.checkpoint_uri is None  # parallel trials share the run id
        table = pq.read_table(ctx.data_dir / "train.parquet")
        assert table.num_rows == 400
        names = ["tenure", "monthly_charges", "total_charges", "support_calls"]
        x = np.column_stack([table.column(n).to_numpy() for n in names])
        y = table.column(ctx.target).to_numpy()
        kl.save_model(LogisticRegression(C=ctx.params["C"]).fit(x, y), "sklearn", inputs=names)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert train_in_process([*argv, "--publish"], env) == 0
    outcome = TrialOutcome.model_validate(outcome_of(json.loads(result.read_text())))
    assert (outcome.trial, outcome.rung, outcome.state) == (5, 1, "Succeeded")
    assert outcome.score == outcome.metrics["roc_auc"]
    assert not (tmp_path / "models" / "versions").exists()
    assert not (tmp_path / "models" / "runs").exists()  # no run marker: the run's own


def test_the_report_shows_each_trial_at_its_highest_rung_and_each_parameter_by_value() -> None:
    from kubeloop.registrycli.trialviews import render_search_report, trial_rows

    def entry(trial: int, rung: int, rate: float, leaves: int, score: float) -> SearchTrial:
        params = {"learning_rate": rate, "max_leaf_nodes": leaves}
        outcome = TrialOutcome(trial=trial, rung=rung, state="Succeeded", score=score)
        return SearchTrial(assignment=assignment(trial, rung, params=params), outcome=outcome)

    trials = [entry(t, 0, 0.01 * (t + 1), 15 if t % 2 else 31, 0.70 + 0.01 * t) for t in range(6)]
    trials.append(entry(5, 1, 0.06, 31, 0.90))  # trial 5 again on a larger budget
    record = SearchRecord(
        strategy="halving", seed=1, metric="roc_auc", trials=trials, winner=5, refit=True
    )
    lines = render_search_report(trial_rows(record), "roc_auc", HGB).splitlines()
    assert lines[0].startswith("score per trial")
    assert lines[6].split()[:2] == ["5*", "r1"] and lines[6].endswith("0.9000")
    assert "effect of estimator" not in "\n".join(lines)  # one estimator: nothing to compare
    at = lines.index("effect of learning_rate (mean roc_auc of the trials with each value)")
    assert [line.split()[0] for line in lines[at + 1 : at + 4]] == [
        "0.01..0.02",
        "0.03..0.04",
        "0.05..0.06",
    ]
    at = lines.index("effect of max_leaf_nodes (mean roc_auc of the trials with each value)")
    assert [line.split()[0] for line in lines[at + 1 :]] == ["15", "31"]


def test_kubeloop_trials_shows_an_auto_budget_as_its_share() -> None:
    from kubeloop.registrycli.trialviews import trial_rows

    auto = Budget(parameter="auto", value=3, max=9)
    record = SearchRecord(
        strategy="halving", seed=1, metric="roc_auc", winner=0, refit=True,
        trials=[SearchTrial(assignment=assignment(0, budget=auto))],
    )  # fmt: skip
    assert trial_rows(record)[0]["budget"] == "auto=3/9"
