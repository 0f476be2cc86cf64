"""Serving benchmark: `kubeloop serve` vs MLServer 1.7 and KServe, side by side in one run.

    make bench-venvs                      # MLServer 1.7 (+ sklearn, xgboost runtimes), KServe
    nice python -m bench serving          # or: nice python -m bench.serving_bench
    nice python -m bench.serving_bench --scenarios xgboost --duration 3 --rounds 2  # quicker

Scenarios (bench/serving/scenarios.py): HistGradientBoosting, XGBoost, random forest and a
logistic-regression pipeline against MLServer (sklearn / xgboost runtimes, four settings each:
parallel_workers 0 / 1, adaptive batching off / 64 rows + 2 ms), and a digits CNN in TorchScript
against KServe's Python ModelServer. Each scenario serves one model file to both, sends both
the same V2 body (one tensor [1, features], output `predict`) and checks that they answer alike.
One worker each, loopback only, load from `wrk` (one thread, bounded duration) at each
concurrency. Every server of every scenario is started first and stays up; the measurements
then alternate between all of them, the order reversed every other round, so drift in the
machine's load hits every configuration alike; medians are kept, and Kubeloop is compared with
the peer's best configuration (highest throughput; its p99 next to ours) at each concurrency.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.serving.model import Folders, body
from bench.serving.scenarios import SCENARIOS, Config, Scenario, configs_of
from bench.serving.servers import (
    KSERVE_PYTHON,
    MLSERVER,
    Running,
    kserve_available,
    mlserver_available,
    start_kserve,
    start_kubeloop,
    start_mlserver,
)

__all__ = ["main", "run_wrk", "start_config"]

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "bench" / "serving" / "post.lua"
RESULTS = ROOT / "bench" / "results" / "serving.json"
SUMMARY = ROOT / "docs" / "benchmarks" / "serving.md"
CHECK_ROWS = 16  # rows of the body whose predictions every server of a scenario must agree on


@dataclass
class Measure:
    """One wrk run against one server at one concurrency."""

    config: str
    concurrency: int
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    rss_mib: float


def run_wrk(
    running: Running, body_file: Path, concurrency: int, seconds: float, auth_header: str = ""
) -> dict[str, Any]:
    """One wrk run (bench/serving/post.lua): its WRKJSON counters and percentiles."""
    argv = [
        "wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--timeout", "5s",
        "-s", str(LUA), f"http://127.0.0.1:{running.port}",
    ]  # fmt: skip
    env = {
        **os.environ,
        "BODY_FILE": str(body_file),
        "INFER_PATH": running.infer_path,
        "AUTH_HEADER": auth_header,
    }
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    result: dict[str, Any] = json.loads(line.removeprefix("WRKJSON "))
    return result


def _measure(
    running: Running, body_file: Path, concurrency: int, round_: int, args: argparse.Namespace
) -> Measure:
    if args.warmup > 0:
        run_wrk(running, body_file, concurrency, args.warmup)
    raw = run_wrk(running, body_file, concurrency, args.duration)
    return Measure(
        running.name,
        concurrency,
        round_,
        rps=raw["requests"] / (raw["duration_us"] / 1e6),
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        requests=raw["requests"],
        errors=sum(v for k, v in raw.items() if k.startswith("errors_")),
        rss_mib=running.rss_mib(),
    )


def start_config(config: Config, scenario: Scenario, folders: Folders, work: Path) -> Running:
    """Start the server of one configuration (Kubeloop, MLServer or KServe)."""
    if config.server == "kubeloop":
        logs = work / f"payload-logs-{scenario.name}" if config.payload_log else None
        return start_kubeloop(
            config.name, folders.version, work, model_name=scenario.name, workers=1,
            max_batch_size=config.batch, max_latency_ms=config.wait_ms, payload_log=logs,
        )  # fmt: skip
    if config.server == "kserve":
        return start_kserve(config.name, folders.peer, work)
    return start_mlserver(
        config.name, folders.peer, work, implementation=scenario.mlserver_runtime,
        model_file=folders.model_file, parallel_workers=config.parallel_workers,
        max_batch_size=config.batch, max_batch_time_ms=config.wait_ms,
    )  # fmt: skip


def _predict(running: Running, data: bytes) -> list[Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{running.port}{running.infer_path}",
        data=data,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        doc = json.loads(resp.read())
    out = next(o for o in doc["outputs"] if o["name"] == "predict")
    data: list[Any] = out["data"]
    return data


def _median(items: list[Measure], config: str, concurrency: int) -> dict[str, Any]:
    mine = [m for m in items if m.config == config and m.concurrency == concurrency]
    return {
        "config": config,
        "concurrency": concurrency,
        "rps": statistics.median(m.rps for m in mine),
        "p50_ms": statistics.median(m.p50_ms for m in mine),
        "p99_ms": statistics.median(m.p99_ms for m in mine),
        "errors": sum(m.errors for m in mine),
        "rss_mib": statistics.median(m.rss_mib for m in mine),
        "rounds": len(mine),
    }


def _version_of(python: Path, distribution: str) -> str:
    if not python.is_file():
        return "not installed"
    code = f"import importlib.metadata as m; print(m.version({distribution!r}))"
    return subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=False
    ).stdout.strip()


def _machine() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mlserver_python = MLSERVER.parent / "python"
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "mlserver": _version_of(mlserver_python, "mlserver"),
        "mlserver_xgboost": _version_of(mlserver_python, "xgboost-cpu"),
        "kserve": _version_of(KSERVE_PYTHON, "kserve"),
        "kserve_torch": _version_of(KSERVE_PYTHON, "torch"),
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
        .stdout.split(" Copyright")[0]
        .strip(),
    }


def main(argv: list[str] | None = None) -> int:
    """Run every configuration at every concurrency, print a table, write results and summary."""
    parser = argparse.ArgumentParser(prog="python -m bench serving", description=__doc__)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load not counted")
    parser.add_argument("--concurrency", default="1,64")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--no-summary", action="store_true", help="do not rewrite the docs page")
    parser.add_argument(
        "--from-results", action="store_true", help=f"only rebuild the summary from {RESULTS}"
    )
    args = parser.parse_args(argv)
    if args.from_results:
        raw = json.loads(RESULTS.read_text())
        args = argparse.Namespace(**raw["args"])
        saved = [Measure(**m) for m in raw["measures"]]
        return _report(saved, raw["machine"], raw["command"], args, raw["notes"])
    scenarios = _scenarios(args)
    peers = {s.peer for s in scenarios}
    if "MLServer" in peers and not mlserver_available():
        print(f"{MLSERVER} is missing: run `make bench-venvs` first", file=sys.stderr)
        return 2
    if "KServe" in peers and not kserve_available():
        print(f"{KSERVE_PYTHON} is missing: run `make bench-venvs` first", file=sys.stderr)
        return 2
    concurrencies = _concurrencies(args)
    machine = _machine()
    command = " ".join(
        ["python -m bench serving", shlex.join(argv if argv is not None else sys.argv[1:])]
    ).strip()
    measures: list[Measure] = []
    notes: dict[str, str] = {}
    answers: dict[str, dict[str, list[Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="kubeloop-serving-bench-") as tmp:
        work = Path(tmp)
        configs: list[Config] = []
        bodies: dict[str, Path] = {}
        servers: dict[str, Running] = {}
        try:
            # All servers stay up for the whole run (idle ones cost nothing), so short
            # measurements can alternate between them: a change in the shared machine's load
            # then hits every configuration alike instead of whichever ran at that moment.
            for scenario in scenarios:
                print(f"scenario {scenario.name}: fitting and starting servers", flush=True)
                folders = scenario.write(work)
                notes[scenario.name] = folders.notes
                shape = {"features": scenario.features, "datatype": scenario.datatype}
                bodies[scenario.name] = work / f"body-{scenario.name}.json"
                bodies[scenario.name].write_bytes(body(**shape))
                check = body(**shape, rows=CHECK_ROWS, seed=2)
                answers[scenario.name] = {}
                for config in configs_of(scenario):
                    servers[config.name] = start_config(config, scenario, folders, work)
                    answers[scenario.name][config.name] = _predict(servers[config.name], check)
                    configs.append(config)
            for round_ in range(args.rounds):
                for concurrency in concurrencies:
                    order = configs if round_ % 2 == 0 else configs[::-1]
                    for config in order:
                        running = servers[config.name]
                        m = _measure(running, bodies[config.scenario], concurrency, round_, args)
                        measures.append(m)
                        print(
                            f"round {round_} {config.name:36s} c={concurrency:<3d} "
                            f"{m.rps:8.0f} req/s  p50 {m.p50_ms:7.2f} ms  p99 {m.p99_ms:7.2f} ms"
                            f"  errors {m.errors}  rss {m.rss_mib:.0f} MiB",
                            flush=True,
                        )
        finally:
            for running in servers.values():
                running.stop()
    disagree = {name: a for name, a in answers.items() if len({tuple(v) for v in a.values()}) != 1}
    if disagree:
        print(f"the servers disagree on the predictions: {disagree}", file=sys.stderr)
        return 1
    return _report(measures, machine, command, args, notes)


def _scenarios(args: argparse.Namespace) -> list[Scenario]:
    names = [n.strip() for n in str(args.scenarios).split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise SystemExit(f"--scenarios: unknown {unknown}; known: {', '.join(SCENARIOS)}")
    return [SCENARIOS[n] for n in names]


def _concurrencies(args: argparse.Namespace) -> list[int]:
    return [int(c) for c in str(args.concurrency).split(",")]


def _verdict(
    scenario: Scenario, n: int, summary: list[dict[str, Any]], measures: list[Measure]
) -> dict[str, Any]:
    """Kubeloop at its defaults against the peer's highest-throughput configuration at n."""
    configs = configs_of(scenario)
    ours_name = next(c.name for c in configs if c.is_kubeloop)
    peer_names = {c.name for c in configs if c.server != "kubeloop"}
    ours = next(s for s in summary if (s["config"], s["concurrency"]) == (ours_name, n))
    best = max(
        (s for s in summary if s["config"] in peer_names and s["concurrency"] == n),
        key=lambda s: s["rps"],
    )
    if best["rps"] <= 0 or best["p99_ms"] <= 0:
        raise RuntimeError(f"{scenario.peer} answered no request at c={n} ({scenario.name})")
    by_round = {(m.config, m.round): m for m in measures if m.concurrency == n}
    rounds = sorted({m.round for m in measures})
    pairs = [(by_round[ours_name, r], by_round[best["config"], r]) for r in rounds]
    target = scenario.target
    throughput_ok = ours["rps"] >= target.ratio * best["rps"]
    p99_ok = ours["p99_ms"] <= best["p99_ms"]
    applies = n in target.throughput_at or n in target.p99_at
    met = (throughput_ok or n not in target.throughput_at) and (p99_ok or n not in target.p99_at)
    return {
        "scenario": scenario.name,
        "peer": scenario.peer,
        "concurrency": n,
        "throughput_ratio_by_round": [a.rps / b.rps for a, b in pairs],
        "p99_ratio_by_round": [a.p99_ms / b.p99_ms for a, b in pairs],
        "kubeloop": ours,
        "peer_best": best,
        "throughput_ratio": ours["rps"] / best["rps"],
        "p99_ratio": ours["p99_ms"] / best["p99_ms"],
        "p50_ratio": ours["p50_ms"] / best["p50_ms"],
        "target": target.describe(),
        "target_applies": applies,
        "target_met": met if applies else None,
    }


def _report(
    measures: list[Measure],
    machine: dict[str, Any],
    command: str,
    args: argparse.Namespace,
    notes: dict[str, str],
) -> int:
    """Medians, verdicts, the tables; raw results to bench/results, the summary to docs/."""
    scenarios = _scenarios(args)
    concurrencies = _concurrencies(args)
    summary = [
        _median(measures, c.name, n)
        for s in scenarios
        for n in concurrencies
        for c in configs_of(s)
    ]
    try:
        verdicts = [_verdict(s, n, summary, measures) for s in scenarios for n in concurrencies]
    except RuntimeError as exc:
        print(f"{exc}: see the logs above", file=sys.stderr)
        return 1
    tables = _tables(scenarios, summary, verdicts)
    print(tables)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": machine,
                "command": command,
                "args": vars(args),
                "notes": notes,
                "measures": [asdict(m) for m in measures],
                "summary": summary,
                "verdicts": verdicts,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            indent=2,
        )
    )
    if not args.no_summary:
        SUMMARY.parent.mkdir(parents=True, exist_ok=True)
        SUMMARY.write_text(
            _page(
                machine,
                command,
                args,
                scenarios=scenarios,
                notes=notes,
                tables=tables,
                verdicts=verdicts,
            )
        )
    ours = {c.name for s in scenarios for c in configs_of(s) if c.server == "kubeloop"}
    our_errors = sum(m.errors for m in measures if m.config in ours)
    if our_errors:
        print(f"{our_errors} requests to Kubeloop failed or timed out", file=sys.stderr)
        return 1
    return 0


def _mark(verdict: dict[str, Any]) -> str:
    met = verdict["target_met"]
    return "reported" if met is None else "met" if met else "NOT met"


def _tables(
    scenarios: list[Scenario], summary: list[dict[str, Any]], verdicts: list[dict[str, Any]]
) -> str:
    lines = [
        "| scenario | concurrency | peer's best configuration | throughput ratio "
        "(Kubeloop / peer) | p50 ratio | p99 ratio | per-round throughput ratios | "
        "per-round p99 ratios | target | verdict |",
        "| --- | ---: | --- | ---: | ---: | ---: | --- | --- | --- | --- |",
    ]
    for v in verdicts:
        by_round = ", ".join(f"{x:.1f}" for x in v["throughput_ratio_by_round"])
        p99_by_round = ", ".join(f"{x:.2f}" for x in v["p99_ratio_by_round"])
        lines.append(
            f"| {v['scenario']} | {v['concurrency']} | {v['peer_best']['config']} | "
            f"{v['throughput_ratio']:.2f}x | {v['p50_ratio']:.2f} | {v['p99_ratio']:.2f} | "
            f"{by_round} | {p99_by_round} | {v['target']} | {_mark(v)} |"
        )
    for scenario in scenarios:
        lines += [
            "",
            f"**{scenario.name}**: {scenario.title}",
            "",
            "| concurrency | server configuration | req/s | p50 ms | p99 ms | RSS MiB | errors |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for s in summary:
            if not s["config"].startswith(f"{scenario.name}: "):
                continue
            lines.append(
                f"| {s['concurrency']} | {s['config'].split(': ', 1)[1]} | {s['rps']:.0f} | "
                f"{s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['rss_mib']:.0f} | {s['errors']} |"
            )
    return "\n".join(lines)


def _headline(scenarios: list[Scenario], verdicts: list[dict[str, Any]]) -> str:
    parts = []
    for scenario in scenarios:
        mine = [v for v in verdicts if v["scenario"] == scenario.name]
        ratios = " / ".join(f"{v['throughput_ratio']:.1f}x" for v in mine)
        judged = [v["target_met"] for v in mine if v["target_met"] is not None]
        mark = "reported" if not judged else "met" if all(judged) else "NOT met"
        parts.append(f"{scenario.name} vs {scenario.peer} {ratios} ({mark})")
    judged = [v["target_met"] for v in verdicts if v["target_met"] is not None]
    concurrencies = " / ".join(f"c={n}" for n in dict.fromkeys(v["concurrency"] for v in verdicts))
    return (
        f"throughput, Kubeloop / the peer's best ({concurrencies}): " + "; ".join(parts)
        + f"; {sum(judged)} of {len(judged)} targets met"
    )  # fmt: skip


def _page(
    machine: dict[str, Any],
    command: str,
    args: argparse.Namespace,
    *,
    scenarios: list[Scenario],
    notes: dict[str, str],
    tables: str,
    verdicts: list[dict[str, Any]],
) -> str:
    models = "\n".join(
        f"- **{s.name}** ({s.source}; target {s.target.describe()}): {notes.get(s.name, '')}; "
        f"body {s.datatype} `[1, {s.features}]`."
        for s in scenarios
    )
    failed = [f"{v['scenario']} c={v['concurrency']}" for v in verdicts if v["target_met"] is False]
    verdict = "every target met" if not failed else "targets NOT met at " + ", ".join(failed)
    peak = ", ".join(
        f"{v['scenario']} c={v['concurrency']}: {v['peer_best']['rps']:.0f}" for v in verdicts
    )
    return f"""# Serving benchmark: `kubeloop serve` vs MLServer {machine["mlserver"]} and KServe {
        machine.get("kserve", "")
    }

Headline: {_headline(scenarios, verdicts)}

Generated by `bench/serving_bench.py` on {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}.
**Result: {verdict}.** Per scenario and concurrency, the verdict table below gives Kubeloop's
throughput and latency as ratios to the peer's best configuration, with each round's ratio.

## What was run

{models}

- Each scenario serves one model file to both servers (Kubeloop from a version folder with a
  sha256 manifest; the peer from a copy of the same file): MLServer through
  `mlserver_sklearn.SKLearnModel` or `mlserver_xgboost.XGBoostModel` (xgboost
  {machine.get("mlserver_xgboost", "")}, the build Kubeloop uses), KServe through a
  `kserve.Model` subclass (`bench/serving/kserve_server.py`, torch
  {machine.get("kserve_torch", "")}) that loads the same TorchScript file and answers the V2
  endpoint `/v2/models/digits/infer`.
- Request: one V2 body per scenario for all its servers, a single tensor of shape
  `[1, features]`, output `predict` (class labels). Every response is checked to be 200 (wrk's
  error counters), and before the load all servers of a scenario are asked to predict the same
  {CHECK_ROWS} rows: the run stops if any two disagree.
- One worker each, loopback only, access and per-request logs off. Kubeloop
  (`KUBELOOP_WORKERS=1`): adaptive batching 64 rows / 2 ms, its defaults; for hgb also with
  payload logging on to Parquet (shown, not compared). MLServer: `parallel_workers` 0 and 1,
  adaptive batching off and on at `max_batch_size` 64 / `max_batch_time` 2 ms (four
  configurations). KServe: its ModelServer in one process (its Python server has no batching),
  gRPC server off, latency logging off; it binds 0.0.0.0 by default, so the script binds
  127.0.0.1.
- Every server runs its model on one thread (`OMP_NUM_THREADS=1` etc., what `kubeloop serve`
  sets for itself; `torch.set_num_threads(1)` in KServe): with one OpenMP pool per core a
  single-row HistGradientBoosting predict in MLServer spun across the busy cores and was tens
  of times slower.
- Load: `wrk -t1 -c<concurrency> -d{args.duration:g}s --timeout 5s` after {args.warmup:g} s of
  warm-up. All servers of all scenarios are started first and stay up; the measurements then
  alternate between them ({args.rounds} rounds x concurrency x configuration, the order
  reversed every other round), so the shared machine's changing load hits every configuration
  alike; medians shown. Kubeloop is compared with the peer's highest-throughput configuration
  at each concurrency.
- `errors` counts non-200 answers and requests with no answer within 5 s (wrk's counters);
  wrk's percentiles cover answered requests only, so a configuration with errors has a p99
  that flatters it.

## How each server runs each model

- hgb: Kubeloop answers batches of up to 16 rows from its compiled HistGradientBoosting
  arrays (`tree_ensemble.py`), larger ones with sklearn; MLServer calls sklearn's `predict`.
- forest: Kubeloop answers batches of up to 32 rows from its compiled forest arrays
  (`forest.py`: float32 rows, sklearn's leaf normalisation, trees added in order; equal to
  sklearn bit for bit, checked on probe rows at load), larger ones with sklearn's
  `predict_proba`, which calls the 100 trees one by one through joblib. MLServer calls
  sklearn's `predict`, the same per-tree loop, for every request or batch.
- linear: both call sklearn (`Pipeline.predict_proba` / `predict`): no compiled path, so the
  c=1 ratio is the two servers' own per-request cost around the same sklearn call.
- xgboost: Kubeloop calls `Booster.inplace_predict` on a float32 matrix; MLServer
  `XGBClassifier.predict`, the sklearn wrapper around the same booster.
- digits: both call the TorchScript module (`torch.no_grad`, one thread). KServe runs its
  synchronous `predict` on its event loop.
- Kubeloop, every model: a lone request of up to 16 rows (nothing else queued or being
  received) runs on the event loop once the model's recent small calls took at most 1 ms
  (`batching.py`, `runs_inline`): at c=1 that saves two thread wake-ups per request. Everything
  else, batches in particular, runs on its model thread, so a slow call never blocks the loop.

## Machine

{machine["cpus"]} CPUs ({machine["cpu_model"]}), **shared with other engineers running test
suites while this ran** (load average at start
{", ".join(f"{x:.1f}" for x in machine["load_average_at_start"])}); Python {machine["python"]};
{machine["wrk"].split(" Copyright")[0]}. Servers, wrk and this runner share the same cores,
so absolute numbers move with the machine's load; the ratios come from runs taken side by side
in one invocation, interleaved round by round.

## Reading these numbers

The peer's best throughput in this run (req/s): {peak}. On a quiet machine every server is
faster, and the ratios may differ: re-run the command below there. Per-round ratios show how
far one measurement moves (most at c=1, where every request waits for the busy cores'
scheduler on its way through wrk, the server and back); the verdicts use the medians.

## Reproduce

```bash
make bench-venvs   # .venv-bench-mlserver (MLServer 1.7 + sklearn/xgboost), .venv-bench-kserve
nice {command}
```

Raw measures: `bench/results/serving.json` (git-ignored; `--from-results` rebuilds this page).

## Results

{tables}
"""


if __name__ == "__main__":
    sys.exit(main())
