"""Search benchmark (issue 21): a random search through Kubeloop's trial mode against
scikit-learn's RandomizedSearchCV, and successive halving against that random search, side by
side in one run on the same data and the same space.

What is compared (20,000 churn rows from the demo's generator, one seeded 80/20 split):

- **Random search, Kubeloop vs RandomizedSearchCV(n_jobs=2).** 24 configurations over
  HistGradientBoosting, XGBoost and LogisticRegression. Kubeloop: every trial is
  `kubeloop train` with KUBELOOP_TRIAL (the trainer's real trial mode: it reads the Parquet
  data, fits, scores every metric, reports a TrialOutcome), two at a time in two warm worker
  processes (as `kubeloop local` starts pods from a warm fork server), then the winner's run
  with KUBELOOP_SEARCH publishes a version. scikit-learn: RandomizedSearchCV over the same
  preprocessing and estimators, scored on the same validation rows (PredefinedSplit), refit
  on the best. Both draw their configurations with scikit-learn's ParameterSampler from the
  same distributions and seed, so both try the same 24 configurations (checked). Reported:
  wall time ratio (Kubeloop / scikit-learn; target <= 1.5) and best-score delta (target
  within 0.005).
- **Halving vs random.** The same 24 configurations by successive halving as the operator
  decides it (`kubeloop.decide.search`: spec.search halving, reduction factor 3, its rung
  budgets and sizes, promotions and winner; 24 trials, the best 8, the best 2), each rung's
  trials through the same trial mode. Two budgets side by side: `auto` (1/9, 1/3, all of each
  trial: that share of the training rows and of its own iterations or trees) and `rows`
  (1/9, 1/3, all of the training rows). Reported: the winner's score against the random
  search's best (target within 0.005) and the trials' total CPU seconds (data read, fit,
  scoring) against the random search's (target <= 0.5).

The trial-mode rows schedule the trials here (the pool; for halving, the operator's decision
functions): the trainer's own cost. `--local` adds the whole path: the same space as
spec.search of a TrainingPipeline on `kubeloop local`, the operator's trial Jobs, once per
parallelism given; `--local-batch` the same random search with spec.search.trialsPerJob (several
trials in one trial pod, parallelism 2: e.g. 12 gives two pods of 12 trials), once per value
given; `--local-halving` the same with strategy halving (budget auto), its trial CPU (the
TrialOutcomes' cpuSeconds in the version's manifest) against the first `--local` run's.

Usage: `python -m bench search` (defaults), or
`python -m bench.search_bench [--rows N] [--trials T] [--seed S] [--local [P ...]]
[--local-batch [K ...]] [--local-halving [P ...]] [--no-summary]`.
Writes bench/results/search.json (raw) and docs/benchmarks/search.md (summary).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.record import cpu_model, write_results

__all__ = ["SPACE", "main"]

TOPIC = "search"
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / f"{TOPIC}.json"
SUMMARY = ROOT / "docs" / "benchmarks" / f"{TOPIC}.md"
PARALLELISM = 2
ETA = 3
# spec.search.budget of the halving runs: `auto` (each estimator's own iterations or trees,
# rows for LogisticRegression: 1/9, 1/3, all) and, beside it, rows alone (1/9, 1/3, all).
BUDGETS: tuple[dict[str, Any], ...] = (
    {"parameter": "auto", "min": 1, "max": ETA**2},
    {"parameter": "rows", "min": 1778, "max": 16_000},
)
METRIC = "roc_auc"
LOCAL_NAME = "search-bench"
LOCAL_PLURAL = "trainingpipelines"
LOCAL_TIMEOUT = 900.0

# spec.search.space, as examples/search-local/churn-search.yaml writes it
SPACE: list[dict[str, Any]] = [
    {
        "estimator": "HistGradientBoostingClassifier",
        "params": {
            "learning_rate": {"logUniform": [0.02, 0.3]},
            "max_iter": {"integer": [50, 200]},
            "max_leaf_nodes": {"choice": [15, 31, 63]},
        },
    },
    {
        "estimator": "XGBClassifier",
        "params": {
            "n_estimators": {"integer": [50, 200]},
            "max_depth": {"integer": [2, 6]},
            "learning_rate": {"logUniform": [0.02, 0.3]},
        },
    },
    {
        "estimator": "LogisticRegression",
        "params": {"C": {"logUniform": [0.01, 10.0]}, "max_iter": {"choice": [500]}},
    },
]


def _distribution(range_: dict[str, Any]) -> Any:
    from scipy import stats

    (kind, bounds), *_ = range_.items()
    if kind == "choice":
        return list(bounds)
    low, high = bounds
    if kind == "uniform":
        return stats.uniform(low, high - low)
    if kind == "logUniform":
        return stats.loguniform(low, high)
    if kind == "integer":
        return stats.randint(low, high + 1)
    raise ValueError(f"unknown range {kind}")


def _distributions(seed: int, instances: bool) -> list[dict[str, Any]]:
    """ParameterSampler's input for SPACE. The keys are the Pipeline's (`model`,
    `model__<param>`) on both sides, so both sample the same configurations: the estimator
    by name for Kubeloop, as an instance for RandomizedSearchCV."""
    out = []
    for entry in SPACE:
        name = entry["estimator"]
        model: Any = _estimator(name, {}, seed) if instances else name
        dists = {f"model__{p}": _distribution(r) for p, r in entry["params"].items()}
        out.append({"model": [model], **dists})
    return out


def _estimator(name: str, params: dict[str, Any], seed: int) -> Any:
    """scikit-learn's side: the estimator with the trainer's defaults (seed, threads), without
    the trainer's label-index wrapper (the churn labels are 0/1 already)."""
    from kubeloop.workloads.trainer.estimators import ClassIndexClassifier, build_estimator

    built = build_estimator(name, params, seed)
    return built.estimator if isinstance(built, ClassIndexClassifier) else built


def configurations(trials: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """The (estimator, params) Kubeloop's trials train, drawn as RandomizedSearchCV draws."""
    from sklearn.model_selection import ParameterSampler

    out = []
    for drawn in ParameterSampler(_distributions(seed, False), trials, random_state=seed):
        params = {
            k.removeprefix("model__"): (v.item() if hasattr(v, "item") else v)
            for k, v in drawn.items()
            if k != "model"
        }
        out.append((drawn["model"], params))
    return out


# --- Kubeloop: the trainer's trial mode in warm worker processes ------------------------------


def _warm() -> None:
    """A worker's start: the trainer's stack imported once, as a warm fork server has it."""
    import importlib

    for module in ("sklearn.ensemble", "sklearn.linear_model", "xgboost", "kubeloop.formats"):
        importlib.import_module(module)
    importlib.import_module("kubeloop.workloads.trainer.run")


def _train(spec_path: str, work: str, env: dict[str, str], name: str) -> tuple[int, Any, float]:
    """`kubeloop train --spec` with `env` (one pod's container); its exit code, result and
    CPU seconds (data read, fit, scoring: what the trial's pod spends, whatever else runs)."""
    from kubeloop.workloads.trainer.main import main as train

    os.environ.update(env)
    for key in ("KUBELOOP_TRIAL", "KUBELOOP_SEARCH"):
        if key not in env:
            os.environ.pop(key, None)
    result = Path(work) / f"{name}.json"
    cpu = time.process_time()
    code = train(["--spec", spec_path, "--run-id", "1", "--result-path", str(result)])
    return code, json.loads(result.read_text()), time.process_time() - cpu


def _trials(
    pool: ProcessPoolExecutor, spec_path: Path, work: Path, assignments: list[Any]
) -> list[dict[str, Any]]:
    from kubeloop.api.search import TRIAL_ENV

    futures = [
        pool.submit(
            _train,
            str(spec_path),
            str(work),
            {TRIAL_ENV: a.to_env()},
            f"trial-{a.trial}-{a.rung}",
        )
        for a in assignments
    ]
    outcomes = []
    for future in futures:
        code, outcome, cpu = future.result()
        if code != 0 or outcome.get("state") != "Succeeded":
            raise RuntimeError(f"trial failed: {outcome}")
        outcomes.append({**outcome, "processCpuSeconds": cpu})
    return outcomes


def _assignment(trial: int, rung: int, config: tuple[str, dict[str, Any]], rows: int | None) -> Any:
    from kubeloop.api.search import Budget, TrialAssignment

    budget = Budget(parameter="rows", value=rows) if rows is not None else None
    name, params = config
    return TrialAssignment(
        run_id="1", trial=trial, rung=rung, estimator=name, params=params, budget=budget, seed=trial
    )


def _outcome(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k not in ("kind", "processCpuSeconds")}


def kubeloop_random(
    pool: ProcessPoolExecutor, spec_path: Path, work: Path, configs: list[Any], seed: int
) -> dict[str, Any]:
    """Every configuration as a trial, then the winner's run (a published version)."""
    from kubeloop.api.search import SEARCH_ENV, SearchRecord, SearchTrial, TrialOutcome

    started = time.perf_counter()
    assignments = [_assignment(i, 0, c, None) for i, c in enumerate(configs)]
    outcomes = _trials(pool, spec_path, work, assignments)
    scores = [o["score"] for o in outcomes]
    winner = max(range(len(scores)), key=lambda i: (scores[i], -i))
    record = SearchRecord(
        strategy="random",
        seed=seed,
        metric=METRIC,
        trials=[
            SearchTrial(assignment=a, outcome=TrialOutcome.model_validate(_outcome(o)))
            for a, o in zip(assignments, outcomes, strict=True)
        ],
        winner=winner,
        refit=False,
    )
    code, run, _ = pool.submit(
        _train, str(spec_path), str(work), {SEARCH_ENV: record.to_env()}, "run"
    ).result()
    if code != 0:
        raise RuntimeError(f"the winner's run failed: {run}")
    return {
        "wall_seconds": time.perf_counter() - started,
        "scores": scores,
        "best_score": scores[winner],
        "winner": winner,
        "trial_seconds": sum(o["seconds"] for o in outcomes),
        "trial_cpu_seconds": sum(o["processCpuSeconds"] for o in outcomes),
        "version": run["version"],
    }


def halving_spec(spec_doc: dict[str, Any], trials: int, seed: int, budget: dict[str, Any]) -> Any:
    """The pipeline's spec with spec.search halving over SPACE on `budget` (what a user writes)."""
    from kubeloop.api.training import TrainingPipelineSpec

    search = {
        "strategy": "halving",
        "trials": trials,
        "parallelism": PARALLELISM,
        "seed": seed,
        "reductionFactor": ETA,
        "budget": budget,
        "space": SPACE,
    }
    return TrainingPipelineSpec.model_validate({**spec_doc, "search": search})


def kubeloop_halving(
    pool: ProcessPoolExecutor,
    spec_path: Path,
    work: Path,
    configs: list[Any],
    spec: Any,
) -> dict[str, Any]:
    """Successive halving as the operator decides it (`kubeloop.decide.search`: its plan, rung
    budgets and sizes, promotions and winner), over the same configurations as the random
    search; each rung's trials run through the trainer's trial mode, as the operator's Jobs
    would. The run's records are what status.currentRun.search.trials would hold."""
    from dataclasses import replace

    from kubeloop.api.search import TrialStatus
    from kubeloop.decide.search import Config, plan, rung_budgets, step, winner

    p = replace(plan(spec, "1"), configs=tuple(Config(name, dict(ps)) for name, ps in configs))
    started = time.perf_counter()
    records: list[TrialStatus] = []
    trial_seconds, trial_cpu = 0.0, 0.0
    while True:
        # Every waiting trial of the rung at once; the pool runs PARALLELISM at a time.
        decision = step(p, records, len(p.configs))
        stopping = set(decision.stop)
        records = [
            r.model_copy(update={"state": "Stopped"}) if (r.trial, r.rung) in stopping else r
            for r in records
        ]
        if decision.finished:
            break
        outcomes = _trials(pool, spec_path, work, list(decision.start))
        for a, o in zip(decision.start, outcomes, strict=True):
            records.append(
                TrialStatus(
                    trial=a.trial,
                    rung=a.rung,
                    job=f"t{a.trial}-r{a.rung}",
                    state="Succeeded",
                    score=o["score"],
                    seconds=o["seconds"],
                )
            )
        trial_seconds += sum(o["seconds"] for o in outcomes)
        trial_cpu += sum(o["processCpuSeconds"] for o in outcomes)
    best = winner(p, records)
    assert best is not None and best.score is not None
    budget = spec.search.budget
    rungs = [
        {"trials": sum(1 for r in records if r.rung == rung), "budget": value}
        for rung, value in enumerate(rung_budgets(spec.search))
        if any(r.rung == rung for r in records)
    ]
    return {
        "wall_seconds": time.perf_counter() - started,
        "budget": budget.to_wire(),
        "rungs": rungs,
        "winner": best.trial,
        "best_score": best.score,
        "trial_seconds": trial_seconds,
        "trial_cpu_seconds": trial_cpu,
    }


# --- Kubeloop on `kubeloop local`: spec.search run by the operator ------------------------------


async def _watch_run(state: Path, up: Any, started: float) -> tuple[float, float]:
    """Poll the pipeline every 0.1 s: (when its first run was first seen, when it was first
    seen finished), on this process's clock (status times are to the second only)."""
    from kubeloop.local.cluster.kubeapi import KubeApi
    from kubeloop.local.cluster.stack import read_state

    while not read_state(state).get("url"):
        if up.poll() is not None or time.perf_counter() - started > LOCAL_TIMEOUT:
            raise RuntimeError("kubeloop local did not start")
        await asyncio.sleep(0.1)
    began: float | None = None
    async with KubeApi(str(read_state(state)["url"])) as api:
        while time.perf_counter() - started < LOCAL_TIMEOUT and up.poll() is None:
            found = await api.get(f"kubeloop.io/v1alpha1/{LOCAL_PLURAL}", "ml", LOCAL_NAME)
            status = (found or {}).get("status") or {}
            runs = status.get("runs") or []
            if began is None and (status.get("currentRun") or runs):
                began = time.perf_counter()
            if began is not None and runs and runs[0].get("finishedAt"):
                return began, time.perf_counter()
            await asyncio.sleep(0.1)
    raise RuntimeError("kubeloop local: the run did not finish")


def kubeloop_local(
    root: Path,
    data_uri: str,
    trials: int,
    seed: int,
    parallelism: int,
    *,
    budget: dict[str, Any] | None = None,
    trials_per_job: int = 1,
) -> dict[str, Any]:
    """The same space as a TrainingPipeline's spec.search (random, or halving on `budget`;
    `trials`, `parallelism` Jobs of `trials_per_job` trials at a time) on `kubeloop local`: the
    operator schedules the trial Jobs (halving: its rungs, promotions and stops), the winner's
    run publishes. Its trials are the operator's own seeded draws, not ParameterSampler's (the
    same for both strategies)."""
    import subprocess

    import yaml

    from kubeloop.api.search import SearchRecord

    root = root / f"local-{parallelism}-{time.monotonic_ns()}"
    root.mkdir()
    artifacts = root / "models-local"
    search: dict[str, Any] = {
        "strategy": "random",
        "trials": trials,
        "parallelism": parallelism,
        "seed": seed,
        "space": SPACE,
    }
    if trials_per_job > 1:
        search["trialsPerJob"] = trials_per_job
    if budget is not None:
        search.update(strategy="halving", reductionFactor=ETA, budget=budget)
    pipeline = {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "TrainingPipeline",
        "metadata": {"name": LOCAL_NAME, "namespace": "ml"},
        "spec": {
            "data": {"train": data_uri, "target": "churned"},
            "model": {"framework": "sklearn", "task": "classification"},
            "search": search,
            "resources": {"cpu": "1", "memory": "2Gi"},
            "artifacts": artifacts.as_uri() + "/",
            "promotion": {"metric": METRIC},
            "seed": 42,
        },
    }
    path = root / "search-local.yaml"
    path.write_text(yaml.safe_dump(pipeline))
    state = root / "state"
    cli = [sys.executable, "-m", "kubeloop.cli", "local", "--state-dir", str(state)]
    manifest = artifacts / "versions" / "1" / "manifest.json"
    with (root / "local-up.log").open("w") as log:
        started = time.perf_counter()
        up = subprocess.Popen([*cli, "up", "-f", str(path)], cwd=root, stdout=log, stderr=log)
        try:
            began, ended = asyncio.run(_watch_run(state, up, started))
        finally:
            subprocess.run([*cli, "down"], cwd=root, stdout=log, stderr=log, check=False)
            up.wait(timeout=60)
    record = SearchRecord.model_validate(json.loads(manifest.read_text())["search"])
    scored = [t.outcome for t in record.trials if t.outcome and t.outcome.score is not None]
    best = record.winning().outcome
    assert best is not None and best.score is not None
    return {
        "strategy": search["strategy"],
        "budget": budget,
        "trial_jobs": len(record.trials),
        "trial_cpu_seconds": sum(o.cpu_seconds or 0.0 for o in scored),
        "wall_seconds": ended - started,  # from `kubeloop local up` to the run recorded
        "run_seconds": ended - began,  # from the run's start to its record (promotion)
        "parallelism": parallelism,
        "trials_per_job": trials_per_job,
        "scores": [o.score for o in scored],
        "best_score": best.score,  # halving: the winner's on the highest rung it reached
        "winner": record.winner,
        "trial_seconds": sum(o.seconds or 0.0 for o in scored),
        "trials": [
            [t.assignment.trial, t.assignment.rung, t.outcome.cpu_seconds, t.outcome.score]
            for t in record.trials
            if t.outcome is not None
        ],
    }


# --- scikit-learn: RandomizedSearchCV on the same split ---------------------------------------


def sklearn_random(spec: Any, trials: int, seed: int) -> dict[str, Any]:
    """RandomizedSearchCV(n_jobs=2) scored on the trainer's own validation rows."""
    import numpy as np
    from joblib import Parallel, delayed
    from sklearn.model_selection import PredefinedSplit, RandomizedSearchCV
    from sklearn.pipeline import Pipeline

    from kubeloop.modelformat import feature_matrix
    from kubeloop.workloads.trainer.data import feature_columns, load_training_data
    from kubeloop.workloads.trainer.preprocess import build_preprocess

    # Warm workers on both sides: loky keeps these two for the search's own Parallel calls,
    # as Kubeloop's side has its two workers started before its clock starts.
    Parallel(n_jobs=PARALLELISM)(delayed(_warm)() for _ in range(PARALLELISM))
    started = time.perf_counter()
    data = load_training_data(spec)  # the same Parquet read and seeded split as a trial
    parts = [data.train, data.validation]
    x = np.vstack([feature_matrix(feature_columns(t, data.features), data.features) for t in parts])
    y = np.concatenate([t.column(data.target).to_numpy(zero_copy_only=False) for t in parts])
    fold = np.r_[np.full(data.train.num_rows, -1), np.zeros(data.validation.num_rows)]
    pipeline = Pipeline([("preprocess", build_preprocess(data.features)), ("model", None)])
    search = RandomizedSearchCV(
        pipeline,
        _distributions(spec.seed, True),
        n_iter=trials,
        scoring=METRIC,
        cv=PredefinedSplit(fold),
        n_jobs=PARALLELISM,
        random_state=seed,
        refit=True,
    )
    search.fit(x, y)
    tried = [
        (
            type(p["model"]).__name__,
            {k.removeprefix("model__"): v for k, v in p.items() if k != "model"},
        )
        for p in search.cv_results_["params"]
    ]
    return {
        "wall_seconds": time.perf_counter() - started,
        "scores": [float(s) for s in search.cv_results_["mean_test_score"]],
        "best_score": float(search.best_score_),
        "winner": int(search.best_index_),
        "trial_seconds": float(
            np.sum(search.cv_results_["mean_fit_time"] + search.cv_results_["mean_score_time"])
        ),
        "tried": tried,
    }


def _same(tried: list[Any], configs: list[Any]) -> bool:
    def norm(name: str, params: dict[str, Any]) -> tuple[str, str]:
        return name, json.dumps({k: float(v) for k, v in params.items()}, sort_keys=True)

    return [norm(*t) for t in tried] == [norm(*c) for c in configs]


def _rungs(halving: dict[str, Any]) -> str:
    """A halving run's rungs in words: how many trials on what budget."""
    budget = halving["budget"]
    if budget["parameter"] == "auto":
        shares = ", ".join(
            f"{r['trials']} on {r['budget']}/{budget['max']}" for r in halving["rungs"]
        )
        return (
            f"budget auto ({shares} of their rows and of their own iterations or trees, as "
            "the operator decides them)"
        )
    sizes = ", ".join(f"{r['trials']} on {r['budget']:,}" for r in halving["rungs"])
    name = budget["parameter"]
    return f"budget {name} ({sizes} {name}, as the operator decides them)"


def _summary(run: dict[str, Any]) -> str:
    ours, peer, halvings = run["kubeloop"], run["sklearn"], run["halving"]
    # The shared machine's load moves between the first and the last side: with the
    # `kubeloop local` rows, RandomizedSearchCV runs again after them and the faster of its two
    # runs is the one every ratio divides by (the ratios err against Kubeloop, never for it).
    peer_walls = [
        peer["wall_seconds"],
        *([peer["wall_seconds_after"]] if "wall_seconds_after" in peer else []),
    ]
    peer_wall = min(peer_walls)
    ratio = ours["wall_seconds"] / peer_wall
    delta = ours["best_score"] - peer["best_score"]
    machine = run["machine"]
    locals_ = [r for r in run.get("local") or [] if r.get("strategy", "random") == "random"]
    local_halvings = [r for r in run.get("local") or [] if r.get("strategy") == "halving"]
    local_rows, local_ratios, local_deltas = [], [], []
    for local in locals_:
        local_ratio = local["run_seconds"] / peer_wall
        per_job = local.get("trials_per_job", 1)
        batched = ""
        if per_job > 1:
            jobs = math.ceil(run["args"]["trials"] / per_job)
            batched = f", trialsPerJob {per_job} ({jobs} trial pods)"
        local_ratios.append(f"{local_ratio:.2f}x at parallelism {local['parallelism']}{batched}")
        local_deltas.append(f"{local['best_score'] - peer['best_score']:+.4f}")
        local_rows.append(
            f"| Kubeloop on `kubeloop local`: spec.search random, parallelism "
            f"{local['parallelism']}{batched} (run start to promotion; "
            f"{local['wall_seconds']:.1f} s "
            f"with the cluster's start) | {local['run_seconds']:.1f} ({local_ratio:.2f}x) | "
            f"{local['trial_seconds']:.1f} | {local['trial_cpu_seconds']:.1f} | "
            f"{local['best_score']:.4f} | trial {local['winner']} |"
        )
    local_head = ""
    if locals_:
        local_head = (
            f"{run['args']['trials']}-trial random search through Kubeloop on `kubeloop local` "
            f"(spec.search, the operator's trial Jobs, run start to promotion): "
            f"{', '.join(local_ratios)} the wall time of RandomizedSearchCV(n_jobs=2) (target "
            f"<= 1.5x), best {METRIC} {', '.join(local_deltas)} from it (target within 0.005); "
        )
    local_halving_heads = []
    singles = [r for r in locals_ if r.get("trials_per_job", 1) == 1]
    for local in local_halvings:
        base = singles[0] if singles else None
        compute = (
            f"{local['trial_cpu_seconds'] / base['trial_cpu_seconds']:.2f}x its trial CPU"
            if base
            else "-"
        )
        delta = local["best_score"] - (base or peer)["best_score"]
        local_halving_heads.append(f"{delta:+.4f} with {compute}")
        local_rows.append(
            f"| Kubeloop on `kubeloop local`: spec.search halving, budget "
            f"{local['budget']['parameter']} {local['budget']['min']}..{local['budget']['max']}, "
            f"parallelism {local['parallelism']} ({local['trial_jobs']} trial Jobs; "
            f"{local['wall_seconds']:.1f} s with the cluster's start) | "
            f"{local['run_seconds']:.1f} | {local['trial_seconds']:.1f} | "
            f"{local['trial_cpu_seconds']:.1f} ({compute.removesuffix(' its trial CPU')} "
            f"random) | {local['best_score']:.4f} | trial {local['winner']} |"
        )
    if local_halving_heads:
        local_head += (
            "halving through the operator on `kubeloop local` (spec.search halving, budget "
            f"auto) vs its random search: {'; '.join(local_halving_heads)}; "
        )
    halving_rows, halving_heads = [], []
    for halving in halvings:
        rungs = _rungs(halving)
        h_delta = halving["best_score"] - ours["best_score"]
        compute = halving["trial_cpu_seconds"] / ours["trial_cpu_seconds"]
        halving_heads.append(
            f"budget {halving['budget']['parameter']} {h_delta:+.4f} with {compute:.2f}x its "
            "trial CPU"
        )
        halving_rows.append(
            f"| Kubeloop halving, {rungs} | {halving['wall_seconds']:.1f} | "
            f"{halving['trial_seconds']:.1f} | {halving['trial_cpu_seconds']:.1f} "
            f"({compute:.2f}x random) | {halving['best_score']:.4f} | trial {halving['winner']} |"
        )
    return "\n".join(
        [
            "# Search benchmark",
            "",
            f"Headline: {local_head}{run['args']['trials']} trials in Kubeloop's trial mode "
            f"in warm worker processes (no cluster) at {ratio:.2f}x the wall time of "
            f"RandomizedSearchCV(n_jobs=2), best {METRIC} {delta:+.4f} from it; halving vs "
            f"that random search's best: {'; '.join(halving_heads)} (target within 0.005 "
            f"with <= 0.5x)",
            "",
            f"Command: `{run['command']}`",
            "",
            f"Run {run['started']} on {machine['cpu']}, {machine['cores']} cores (shared "
            "machine; load average at start "
            f"{', '.join(f'{x:.2f}' for x in machine['load_average_at_start'])}"
            + (
                f", at the end {', '.join(f'{x:.2f}' for x in machine['load_average_at_end'])}"
                if "load_average_at_end" in machine
                else ""
            )
            + "); "
            + ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
            + f". {run['args']['rows']:,} churn rows, 80/20 seeded split, one thread per trial, "
            f"{PARALLELISM} trials at a time on both sides (on `kubeloop local`: as its rows "
            "say).",
            "",
            "| side | wall (s) | trial fit + score (s) | trial CPU (s) | best "
            + METRIC
            + " | winner |",
            "| --- | ---: | ---: | ---: | ---: | --- |",
            f"| RandomizedSearchCV(n_jobs=2), refit | {peer_wall:.1f}"
            + (
                f" (the faster of {' and '.join(f'{w:.1f}' for w in peer_walls)}: before and "
                "after the Kubeloop rows)"
                if len(peer_walls) > 1
                else ""
            )
            + " | "
            f"{peer['trial_seconds']:.1f} | - | {peer['best_score']:.4f} | "
            f"trial {peer['winner']} |",
            f"| Kubeloop random (trials + winner's run) | {ours['wall_seconds']:.1f} | "
            f"{ours['trial_seconds']:.1f} | {ours['trial_cpu_seconds']:.1f} | "
            f"{ours['best_score']:.4f} | trial {ours['winner']} |",
            *local_rows,
            *halving_rows,
            "",
            "Both random searches tried the same configurations: "
            + ("yes (checked)." if run["same_configurations"] else "NO (see the JSON)."),
            "Trial fit + score: the trials' own fit and scoring seconds, wall clock (Kubeloop: "
            "TrialOutcome seconds; scikit-learn: mean_fit_time + mean_score_time). Trial CPU: "
            "the CPU seconds of each Kubeloop trial (data read, fit, scoring), which other work "
            "on the machine inflates far less than wall time: the halving ratios are taken "
            "from it. In trial mode it is each `kubeloop train` call's in its warm worker; on "
            "`kubeloop local` the TrialOutcomes' cpuSeconds in the version's manifest (each "
            "trial's own pod, after its imports: it also pays the first read and fit of a fresh "
            "process, e.g. scikit-learn's first discovery of dataframe plugins, some 0.02 s a "
            "trial, and the machine's load, which the many small trials of halving feel "
            "most). "
            "Halving: the operator's own decisions (kubeloop.decide.search: rung budgets and "
            "sizes, promotions, the winner) over the random search's 24 configurations in trial "
            "mode; on `kubeloop local` the operator's own run of spec.search halving over its "
            "own draws (the same for random and halving: one seed). Budget auto shrinks each "
            "trial as a whole (rows and its own iterations or trees); budget rows only its rows, "
            "which hardly shrinks HistGradientBoosting's cost (its binning and per-node "
            "splitting do not scale with the rows, and below 10,000 rows it stops early no "
            "more). Neither counts process starts; wall "
            "time includes them. Both sides start their two worker processes (and import the "
            "estimators in them) before the clock starts. Kubeloop's trial-mode row schedules "
            "the trials in this benchmark (the trainer's cost alone); the `kubeloop local` "
            "rows are the whole path: the operator records each trial in status, creates its "
            "Job, the emulated cluster runs its pod (forked from a warm fork server), the "
            "operator reads the outcome at the Job's watch event, then runs the winner through "
            "the gate and the registry. Their wall time is measured by polling the pipeline "
            "every 0.1 s from its first run's appearance to its record; their trials are the "
            "operator's own seeded draws (the same space, not the same 24 configurations). "
            "The trialsPerJob rows run the same search with several trials in each trial pod "
            "(spec.search.trialsPerJob; parallelism 2: two pods of 12 trials): each pod "
            "starts, imports and reads the data once and trains its trials one after another, "
            "each as a pod of its own would (the same scores); their trial CPU counts an equal "
            "share of that one read per trial.",
            "",
            "Wall times on this shared 2-core machine vary by 2x or more between runs of the "
            "same side (other sessions' work): read the ratios as one run's, the scores and the "
            "configurations as exact (both sides compute the same models).",
            "",
            "Raw numbers: bench/results/search.json (git-ignored).",
            "",
        ]
    )


def _machine() -> dict[str, Any]:
    import sklearn
    import xgboost

    cpu = cpu_model()
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "load_average_at_start": list(os.getloadavg()),
        "versions": {
            "python": platform.python_version(),
            "scikit-learn": sklearn.__version__,
            "xgboost": xgboost.__version__,
        },
    }


def main(argv: list[str] | None = None) -> int:
    """Run the three searches, print the comparison, write the JSON and the summary."""
    parser = argparse.ArgumentParser(prog="python -m bench search", description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--local",
        nargs="*",
        type=int,
        metavar="PARALLELISM",
        help="also run the random search as spec.search on `kubeloop local`, once per "
        f"PARALLELISM given (none given: {PARALLELISM}), e.g. `--local 2 2 4`",
    )
    parser.add_argument(
        "--local-batch",
        nargs="*",
        type=int,
        metavar="TRIALS_PER_JOB",
        help="also run the random search on `kubeloop local` with spec.search.trialsPerJob, "
        f"parallelism {PARALLELISM}, once per value given (none given: 12: two pods of 12 "
        "trials), beside the one-trial-per-Job rows of --local",
    )
    parser.add_argument(
        "--local-halving",
        nargs="*",
        type=int,
        metavar="PARALLELISM",
        help="also run spec.search halving (budget auto, 1/9 to all) on `kubeloop local`, "
        "once per PARALLELISM given (none given: "
        f"{PARALLELISM}): the operator's own rungs, compared with the first --local run",
    )
    parser.add_argument("--no-summary", action="store_true", help="do not rewrite the .md")
    args = parser.parse_args(argv)
    # One thread per trial on both sides; two trials at a time.
    for name in ("OMP_NUM_THREADS", "KUBELOOP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = "1"

    import pyarrow.parquet as pq
    import yaml

    from kubeloop.api.training import TrainingPipelineSpec
    from kubeloop.local.demo.datagen import churn_table

    machine = _machine()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    configs = configurations(args.trials, args.seed)
    with tempfile.TemporaryDirectory(prefix="kubeloop-search-bench-") as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        pq.write_table(churn_table(args.rows, seed=1), root / "data" / "part-0.parquet")
        spec_doc = {
            "data": {"train": (root / "data").as_uri() + "/", "target": "churned"},
            "model": {"framework": "sklearn", "task": "classification"},
            "artifacts": (root / "models").as_uri() + "/",
            "promotion": {"metric": METRIC},
            "seed": 42,
        }
        spec_path = root / "spec.yaml"
        spec_path.write_text(yaml.safe_dump({"kind": "TrainingPipeline", "spec": spec_doc}))
        spec = TrainingPipelineSpec.model_validate(spec_doc)
        peer = sklearn_random(spec, args.trials, args.seed)
        print(f"RandomizedSearchCV: {peer['wall_seconds']:.1f}s, best {peer['best_score']:.4f}")
        context = multiprocessing.get_context("fork")
        work = root / "work"
        work.mkdir()
        os.environ["KUBELOOP_WORK_DIR"] = str(work)
        with ProcessPoolExecutor(PARALLELISM, mp_context=context, initializer=_warm) as pool:
            list(pool.map(time.sleep, [0.1] * PARALLELISM))  # both workers started and warm
            ours = kubeloop_random(pool, spec_path, work, configs, args.seed)
            print(f"kubeloop random: {ours['wall_seconds']:.1f}s, best {ours['best_score']:.4f}")
            train_rows = round(args.rows * (1 - spec.data.validation_fraction))
            halvings = []
            for given in BUDGETS:
                budget = dict(given)
                if budget["parameter"] == "rows":  # 1/9 of the training rows, then all
                    budget.update(min=math.ceil(train_rows / ETA**2), max=train_rows)
                searched = halving_spec(spec_doc, args.trials, args.seed, budget)
                halving = kubeloop_halving(pool, spec_path, work, configs, searched)
                halvings.append(halving)
                print(
                    f"kubeloop halving (budget {budget['parameter']}): "
                    f"{halving['wall_seconds']:.1f}s, best {halving['best_score']:.4f}, trial "
                    f"CPU {halving['trial_cpu_seconds']:.1f}s vs {ours['trial_cpu_seconds']:.1f}s"
                )
        local = []
        randoms = [] if args.local is None else args.local or [PARALLELISM]
        halving_runs = [] if args.local_halving is None else args.local_halving or [PARALLELISM]
        batch_runs = [] if args.local_batch is None else args.local_batch or [12]
        data_uri = (root / "data").as_uri() + "/"
        for parallelism, budget, per_job in [
            *((p, None, 1) for p in randoms),
            *((PARALLELISM, None, k) for k in batch_runs),
            *((p, BUDGETS[0], 1) for p in halving_runs),
        ]:
            local.append(
                kubeloop_local(
                    root,
                    data_uri,
                    args.trials,
                    args.seed,
                    parallelism,
                    budget=budget,
                    trials_per_job=per_job,
                )
            )
            print(
                f"kubeloop local ({local[-1]['strategy']}, parallelism {parallelism}, "
                f"trialsPerJob {per_job}): run "
                f"{local[-1]['run_seconds']:.1f}s (wall {local[-1]['wall_seconds']:.1f}s with "
                f"the cluster's start), best {local[-1]['best_score']:.4f}, trial CPU "
                f"{local[-1]['trial_cpu_seconds']:.1f}s"
            )
        if local:  # the peer again, beside the `kubeloop local` rows (see _summary)
            peer["wall_seconds_after"] = sklearn_random(spec, args.trials, args.seed)[
                "wall_seconds"
            ]
            print(f"RandomizedSearchCV again: {peer['wall_seconds_after']:.1f}s")
    machine["load_average_at_end"] = list(os.getloadavg())
    given = argv if argv is not None else sys.argv[1:]
    run = {
        "topic": TOPIC,
        "started": started,
        "command": ("nice python -m bench.search_bench " + " ".join(given)).strip(),
        "args": vars(args),
        "machine": machine,
        "configurations": configs,
        "same_configurations": _same(peer.pop("tried"), configs),
        "kubeloop": ours,
        "sklearn": peer,
        "halving": halvings,
        "local": local,
    }
    write_results(run, RESULTS, SUMMARY, None if args.no_summary else _summary(run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
