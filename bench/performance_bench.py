"""Performance monitoring benchmark, side by side in one run (issue 19).

    make venv-nannyml                          # NannyML 0.13 in .venv-bench-nannyml
    python -m bench performance                # 1M rows x 20 features, 9 runs of each check
    python -m bench.performance_bench --rows 200000 --repeat 3   # a quicker look

1. What the rest adds to a check: `kubeloop monitor` on the same 1M-row window (20 features,
   bench/drift_data.py), input drift alone (data quality off) and input drift + data quality +
   prediction drift + performance from labels for 10 % of the rows + the CBPE estimate (both
   windows 24h: one scan of the window). Target: at most +30 %.
   The version's folder holds validation-predictions.parquet and, as the trainer writes it
   beside them, validation-outputs.json (their profile and calibrator, derived once).
2. The label-free estimate against NannyML's CBPE on the same 1M scores, each fitted on the same
   100k-row reference (calibration included), each in its own child process (reading the same
   Parquet). Target: Kubeloop >= 10x faster; peak RSS of both.

Every run is a child process measured as bench/drift_bench.py measures (wall, CPU, peak RSS
from wait4). The two checks alternate `--repeat` times, the two estimates `--repeat-estimate`
times, so both sides of a ratio sample the same load; the summary gives median wall and CPU
times and the largest peak RSS. Writes bench/results/performance.json and
docs/benchmarks/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.drift_bench import Measure, _find, _machine, measure
from bench.drift_data import NOW
from kubeloop.payload_schema import VALIDATION_OUTPUTS, VALIDATION_PREDICTIONS
from kubeloop.workloads.monitor.validation import derive

__all__ = ["main"]

TOPIC = "performance"
ROOT = Path(__file__).resolve().parent.parent
NANNYML = ROOT / ".venv-bench-nannyml" / "bin" / "python"
RESULTS = ROOT / "bench" / "results" / f"{TOPIC}.json"
DOC = ROOT / "docs" / "benchmarks" / f"{TOPIC}.md"
FEATURES = 20
REFERENCE_ROWS = 100_000
TARGET_OVERHEAD = 0.30
TARGET_SPEEDUP = 10.0

_OURS = """
import sys, numpy as np, pyarrow.compute as pc, pyarrow.parquet as pq
from kubeloop.workloads.monitor import cbpe
root = sys.argv[1]
ref = pq.read_table(f"{root}/version-perf/validation-predictions.parquet")
cur = pq.read_table(f"{root}/scores.parquet")
label = pc.equal(ref["_label"], "1").to_numpy()  # compared in Arrow, as the monitor does
calibrator = cbpe.fit_isotonic(ref["_proba_1"].to_numpy(), label)
positive = pc.equal(cur["_prediction"], "1").to_numpy()
out = cbpe.estimate(cur["_proba_1"].to_numpy(), positive, calibrator)
print("estimate", out)
"""

_NANNY = """
import sys, warnings, pandas as pd, pyarrow.parquet as pq
warnings.filterwarnings("ignore")
from nannyml.performance_estimation.confidence_based import CBPE
root = sys.argv[1]
ref = pq.read_table(f"{root}/version-perf/validation-predictions.parquet").to_pandas()
cur = pq.read_table(f"{root}/scores.parquet").to_pandas()
def frame(t):
    return pd.DataFrame({"p": t["_proba_1"], "y_pred": (t["_prediction"] == "1").astype(int)})
reference = frame(ref).assign(y_true=(ref["_label"] == "1").astype(int))
est = CBPE(y_pred_proba="p", y_pred="y_pred", y_true="y_true", problem_type="classification_binary",
           metrics=["roc_auc", "f1", "accuracy"], chunk_number=1)
est.fit(reference)
out = est.estimate(frame(cur)).to_df()
out = out[out[("chunk", "period")] == "analysis"]
print("estimate", {m: float(out[(m, "value")].iloc[0]) for m in ["roc_auc", "f1", "accuracy"]})
"""


def _outputs(rng: np.random.Generator, rows: int) -> tuple[dict[str, pa.Array], np.ndarray]:
    x = rng.normal(0, 1, rows)
    p_true = 1 / (1 + np.exp(-2 * x))
    truth = (rng.random(rows) < p_true).astype(int)
    score = p_true**1.5
    return {
        "_prediction": pa.array(np.where(score >= 0.5, "1", "0")),
        "_proba_0": pa.array(1 - score),
        "_proba_1": pa.array(score),
    }, truth


def prepare(root: Path, rows: int) -> None:
    """The drift bench's window, plus model outputs, labels and validation predictions."""
    from bench.drift_bench import _in_child

    _in_child(f"generate(Path({str(root)!r}), {rows}, {rows}, {FEATURES})")
    if not (root / "prepared").exists():
        _prepare_outputs(root)
    perf = root / "version-perf"
    if not (perf / VALIDATION_OUTPUTS).exists():  # as the trainer writes it beside them
        derived = derive(pq.read_table(perf / VALIDATION_PREDICTIONS))
        (perf / VALIDATION_OUTPUTS).write_text(json.dumps(derived, sort_keys=True))


def _prepare_outputs(root: Path) -> None:
    rng = np.random.default_rng(1)
    labelled_ids, labels = [], []
    start = 0
    for path in sorted((root / "logs").rglob("*.parquet")):
        table = pq.read_table(path)
        n = table.num_rows
        outputs, truth = _outputs(rng, n)
        ids = [f"r{i}" for i in range(start, start + n)]
        table = table.append_column("_request_id", pa.array(ids))
        table = table.append_column("_row", pa.array(np.zeros(n, np.int32)))
        for name, column in outputs.items():
            table = table.append_column(name, column)
        pq.write_table(table, path)
        pick = rng.random(n) < 0.1
        labelled_ids += [i for i, keep in zip(ids, pick, strict=True) if keep]
        labels += truth[pick].tolist()
        start += n
    pq.write_table(pa.table({"request_id": labelled_ids, "label": labels}), root / "labels.parquet")
    scores = pq.read_table(root / "logs", columns=["_prediction", "_proba_1"])
    pq.write_table(scores, root / "scores.parquet")
    perf = root / "version-perf"
    perf.mkdir(exist_ok=True)
    (perf / "profile.json").write_text((root / "version" / "profile.json").read_text())
    outputs, truth = _outputs(rng, REFERENCE_ROWS)
    reference = pa.table({**outputs, "_label": pa.array([str(v) for v in truth])})
    pq.write_table(reference, perf / VALIDATION_PREDICTIONS)
    (root / "prepared").write_text("ok")


def _monitor(root: Path, tool: str, limit: float, timeout: float) -> Measure:
    spec: dict[str, object] = {
        "deploymentRef": {"name": "bench"},
        "window": "24h",
        "quality": {"enabled": False},
    }
    version = "version"
    if tool == "kubeloop-drift+performance":
        # data quality with thresholds as examples/churn-monitor.yaml sets them
        spec["quality"] = {
            "enabled": True,
            "nullShare": 0.1,
            "outOfRangeShare": 0.05,
            "unseenCategoryShare": 0.05,
        }
        version = "version-perf"
        spec["performance"] = {
            "labels": {"uri": f"file://{root / 'labels.parquet'}"},
            "window": "24h",
        }
    env = {
        "PYTHONPATH": str(ROOT / "operator"),
        "KUBELOOP_MONITOR": "bench",
        "KUBELOOP_PAYLOAD_LOG_URI": f"file://{root / 'logs'}",
        "KUBELOOP_REFERENCE_URI": f"file://{root / version}",
        "KUBELOOP_NOW": NOW.isoformat(),
        "KUBELOOP_RESULT_PATH": str(root / f"result-{tool}.json"),
        "KUBELOOP_MONITOR_SPEC": json.dumps(spec),
    }
    argv = [sys.executable, "-m", "kubeloop.cli", "monitor"]
    m, _ = measure(tool, "1m", argv, env=env, rss_limit_gib=limit, timeout=timeout)
    if m.status == "ok":
        result = json.loads((root / f"result-{tool}.json").read_text())
        wanted = ("verdict", "rows", "quality", "performance", "predictionDrift")
        m.detail = {k: result.get(k) for k in wanted}
    return m


def _estimate(root: Path, tool: str, limit: float, timeout: float) -> Measure:
    python, code = (sys.executable, _OURS) if tool == "kubeloop-cbpe" else (str(NANNYML), _NANNY)
    env = {"PYTHONPATH": str(ROOT / "operator")}
    m, output = measure(
        tool, "1m", [python, "-c", code, str(root)], env=env, rss_limit_gib=limit, timeout=timeout
    )
    lines = [line for line in output.splitlines() if line.startswith("estimate ")]
    m.detail = {"estimate": lines[-1][len("estimate ") :] if lines else output[-300:]}
    return m


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _report(run: dict[str, object], measures: list[Measure]) -> str:
    tools = list(dict.fromkeys(m.tool for m in measures))
    by = {tool: _find(measures, "1m", tool) for tool in tools}
    drift, full = by["kubeloop-drift"], by["kubeloop-drift+performance"]
    ours, theirs = by["kubeloop-cbpe"], by.get("nannyml-cbpe")
    assert drift is not None and full is not None and ours is not None
    overhead = full.seconds / drift.seconds - 1
    cpu_overhead = full.cpu_seconds / drift.cpu_seconds - 1
    speedup = theirs.seconds / ours.seconds if theirs and theirs.status == "ok" else float("nan")
    pairs = list(
        zip(
            [m for m in measures if m.tool == "kubeloop-drift"],
            [m for m in measures if m.tool == "kubeloop-drift+performance"],
            strict=False,
        )
    )
    paired_wall = float(np.median([b.seconds / a.seconds - 1 for a, b in pairs]))
    paired_cpu = float(np.median([b.cpu_seconds / a.cpu_seconds - 1 for a, b in pairs]))
    lines = [
        "# Performance monitoring benchmark",
        "",
        f"Headline: performance + prediction drift + data quality add {overhead:+.0%} wall, "
        f"{cpu_overhead:+.0%} CPU to the drift check (ratio of the medians; the median of the "
        f"paired runs: {paired_wall:+.0%} wall, {paired_cpu:+.0%} CPU; target "
        f"<= +{TARGET_OVERHEAD:.0%} on the ratio of the medians: "
        f"{_met(max(overhead, cpu_overhead) <= TARGET_OVERHEAD)}); the CBPE estimate is "
        f"{speedup:.1f}x faster than NannyML's (target >= {TARGET_SPEEDUP:g}x: "
        f"{_met(speedup >= TARGET_SPEEDUP)}), peak RSS {ours.peak_rss_mib:.0f} vs "
        f"{theirs.peak_rss_mib if theirs else float('nan'):.0f} MiB.",
        "",
        f"Run {run['when']} on {run['machine']}; {run['rows']:,} window rows x {FEATURES} "
        "features, labels for 10 %, a 100k-row validation reference "
        f"(`python -m bench performance`, {run['command']}).",
        "",
        "`kubeloop-drift` is the check with input drift alone (data quality off); "
        "`kubeloop-drift+performance` adds data quality (nullShare 0.1, outOfRangeShare 0.05, "
        "unseenCategoryShare 0.05, as examples/churn-monitor.yaml), prediction drift, "
        "performance measured from the labels (joined by request id) and the CBPE estimate, all "
        "in the same one scan of the window (both windows 24h), against a version folder with "
        "validation-outputs.json as the trainer writes it. Both run as `kubeloop monitor` "
        "(cli.VERB_ENV alike). The checks alternate, and so do the estimates, so both sides of "
        "each ratio sample the same load.",
        "",
        f"Load average at the start: {run['load']}; the table gives median wall and CPU times "
        "and the largest peak RSS of the runs: wall time on a shared machine is noisy, CPU time "
        "less so.",
        "",
        "| run | runs | wall s | CPU s | peak RSS MiB | status |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for m in (by[tool] for tool in tools):
        assert m is not None
        row = f"{m.seconds:.2f} | {m.cpu_seconds:.2f} | {m.peak_rss_mib:.0f} | {m.status}"
        lines.append(f"| {m.tool} | {m.runs} | {row} |")
    lines += [
        "",
        "Per pair of runs (each full check against the drift check run just before it: wall, CPU):",
        "",
    ]
    lines.append(
        ", ".join(
            f"{b.seconds / a.seconds - 1:+.0%} / {b.cpu_seconds / a.cpu_seconds - 1:+.0%}"
            for a, b in pairs
        )
    )
    lines += ["", "Estimates (Kubeloop, NannyML):", ""]
    lines += [f"- {m.tool}: {m.detail.get('estimate')}" for m in (ours, theirs) if m]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; write its results and summary."""
    parser = argparse.ArgumentParser(prog="python -m bench.performance_bench")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--data", default=os.environ.get("KUBELOOP_BENCH_DATA", "/tmp/kubeloop-bench")
    )
    parser.add_argument("--rss-limit-gib", type=float, default=6.0)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--repeat", type=int, default=9, help="runs of each check")
    parser.add_argument("--repeat-estimate", type=int, default=5, help="runs of each estimate")
    parser.add_argument("--prepare-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    root = Path(args.data) / f"performance-{args.rows}"
    if args.prepare_only:
        prepare(root, args.rows)
        return 0
    # In a child: a child inherits its parent's peak RSS at fork (ru_maxrss), so the parent
    # that starts the measured runs must never have held the data.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT)])}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.performance_bench",
            "--prepare-only",
            "--rows",
            str(args.rows),
            "--data",
            args.data,
        ],
        check=True,
        cwd=ROOT,
        env=env,
    )
    when = datetime.now(UTC).isoformat(timespec="seconds")
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    measures = []
    for _ in range(max(args.repeat, 1)):
        for tool in ("kubeloop-drift", "kubeloop-drift+performance"):
            measures.append(_monitor(root, tool, args.rss_limit_gib, args.timeout))
    estimators = ["kubeloop-cbpe"] + (["nannyml-cbpe"] if NANNYML.exists() else [])
    for _ in range(max(args.repeat_estimate, 1)):
        for tool in estimators:
            measures.append(_estimate(root, tool, args.rss_limit_gib, args.timeout))
    run = {
        "when": when,
        "machine": _machine()["cpu"],
        "rows": args.rows,
        "load": load,
        "command": f"--repeat {args.repeat} --repeat-estimate {args.repeat_estimate}",
        "measures": [asdict(m) for m in measures],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(run, indent=2, default=str))
    report = _report(run, measures)
    DOC.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
