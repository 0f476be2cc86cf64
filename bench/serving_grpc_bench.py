"""Serving over gRPC: `kubeloop serve`'s V2 gRPC endpoint vs MLServer 1.7's, side by side.

    make bench-venvs                               # MLServer 1.7 (.venv-bench-mlserver)
    nice python -m bench serving_grpc              # or: nice python -m bench.serving_grpc_bench
    nice python -m bench.serving_grpc_bench --duration 3 --rounds 2   # quicker

The hgb scenario of the REST bench (bench/serving/scenarios.py: one HistGradientBoosting model
file served by both, MLServer in its four configurations), asked over
`inference.GRPCInferenceService/ModelInfer` instead: one ModelInferRequest, a single FP64
tensor `[1, 20]` in typed `contents` (what MLServer's own clients send; Kubeloop also takes
`raw_input_contents`), sent by one client (bench/serving/grpc_load.py, a grpc.aio closed loop)
to every server at each concurrency. Servers stay up; measurements alternate between them,
the order reversed every other round; medians kept; Kubeloop is compared with MLServer's best.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from bench.serving.grpc_load import run_load
from bench.serving.scenarios import SCENARIOS, configs_of
from bench.serving.servers import MLSERVER, Running, mlserver_available
from bench.serving_bench import start_config
from kubeloop.workloads.server.v2grpc import grpc_predict_v2_pb2 as pb
from kubeloop.workloads.server.v2grpc import grpc_predict_v2_pb2_grpc as pb_grpc

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "serving_grpc.json"
SUMMARY = ROOT / "docs" / "benchmarks" / "serving_grpc.md"
SCENARIO = SCENARIOS["hgb"]
TARGET = 2.0  # issue 20: >= 2x MLServer's gRPC throughput at c=64
CHECK_ROWS = 16


def _request(rows: int, seed: int) -> pb.ModelInferRequest:
    x = np.random.default_rng(seed).normal(size=(rows, SCENARIO.features))
    request = pb.ModelInferRequest(model_name=SCENARIO.name)
    tensor = request.inputs.add(name="input-0", datatype="FP64", shape=[rows, SCENARIO.features])
    tensor.contents.fp64_contents.extend(x.ravel().tolist())
    return request


def _labels(response: pb.ModelInferResponse) -> list[int]:
    """The `predict` output, from raw bytes (Kubeloop) or typed contents (MLServer)."""
    for index, output in enumerate(response.outputs):
        if output.name != "predict":
            continue
        if response.raw_output_contents:
            dtype = {"INT64": "<i8", "INT32": "<i4", "FP64": "<f8"}[output.datatype]
            return [int(v) for v in np.frombuffer(response.raw_output_contents[index], dtype)]
        contents = output.contents
        values = contents.int64_contents or contents.int_contents or contents.fp64_contents
        return [int(v) for v in values]
    raise RuntimeError(f"no `predict` output in {response}")


def _predict(running: Running, request: pb.ModelInferRequest) -> list[int]:
    with grpc.insecure_channel(f"127.0.0.1:{running.grpc_port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        return _labels(stub.ModelInfer(request, timeout=30))


def main(argv: list[str] | None = None) -> int:
    """Measure every configuration, print the table, write results and the summary page."""
    parser = argparse.ArgumentParser(prog="python -m bench serving_grpc", description=__doc__)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load not counted")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    if not mlserver_available():
        print(f"{MLSERVER} is missing: run `make bench-venvs` first", file=sys.stderr)
        return 2
    command = " ".join(
        ["python -m bench serving_grpc", shlex.join(argv if argv is not None else sys.argv[1:])]
    ).strip()
    load_at_start = os.getloadavg()
    configs = [c for c in configs_of(SCENARIO) if not c.payload_log]
    request = _request(1, seed=1).SerializeToString()
    measures: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="kubeloop-grpc-bench-") as tmp:
        work = Path(tmp)
        folders = SCENARIO.write(work)
        servers: dict[str, Running] = {}
        try:
            check = _request(CHECK_ROWS, seed=2)
            answers = {}
            for config in configs:
                servers[config.name] = start_config(config, SCENARIO, folders, work)
                answers[config.name] = _predict(servers[config.name], check)
            if len({tuple(a) for a in answers.values()}) != 1:
                print(f"the servers disagree on the predictions: {answers}", file=sys.stderr)
                return 1
            for round_ in range(args.rounds):
                for config in configs if round_ % 2 == 0 else configs[::-1]:
                    target = f"127.0.0.1:{servers[config.name].grpc_port}"
                    if args.warmup > 0:
                        run_load(target, request, concurrency=args.concurrency, seconds=args.warmup)
                    result = run_load(
                        target, request, concurrency=args.concurrency, seconds=args.duration
                    )
                    rss = servers[config.name].rss_mib()
                    measures.append(
                        {
                            "config": config.name,
                            "round": round_,
                            "rps": result.rps,
                            "p50_ms": result.p50_ms,
                            "p99_ms": result.p99_ms,
                            "errors": result.errors,
                            "rss_mib": rss,
                        }
                    )
                    print(
                        f"round {round_} {config.name:36s} c={args.concurrency} "
                        f"{result.rps:8.0f} req/s  p50 {result.p50_ms:7.2f} ms  "
                        f"p99 {result.p99_ms:7.2f} ms  errors {result.errors}  rss {rss:.0f} MiB",
                        flush=True,
                    )
        finally:
            for running in servers.values():
                running.stop()
    summary = [
        {
            "config": c.name,
            **{
                key: statistics.median(m[key] for m in measures if m["config"] == c.name)
                for key in ("rps", "p50_ms", "p99_ms", "rss_mib")
            },
            "errors": sum(m["errors"] for m in measures if m["config"] == c.name),
        }
        for c in configs
    ]
    ours = next(s for s in summary if s["config"] == configs[0].name)
    best = max((s for s in summary if s["config"] != ours["config"]), key=lambda s: s["rps"])
    ratio = ours["rps"] / best["rps"]
    by_round = [
        next(m["rps"] for m in measures if (m["config"], m["round"]) == (ours["config"], r))
        / next(m["rps"] for m in measures if (m["config"], m["round"]) == (best["config"], r))
        for r in range(args.rounds)
    ]
    verdict = {"ratio": ratio, "by_round": by_round, "met": ratio >= TARGET, "best": best}
    page = _page(command, args, summary, verdict, load_at_start)
    print(page)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {"command": command, "args": vars(args), "measures": measures, "summary": summary,
             "verdict": verdict, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
            indent=2,
        )
    )  # fmt: skip
    SUMMARY.write_text(page)
    return 1 if ours["errors"] else 0


def _page(
    command: str,
    args: argparse.Namespace,
    summary: list[dict[str, Any]],
    verdict: dict[str, Any],
    load: tuple[float, float, float],
) -> str:
    mark = "met" if verdict["met"] else "NOT met"
    rows = "\n".join(
        f"| {s['config'].split(': ', 1)[1]} | {s['rps']:.0f} | {s['p50_ms']:.2f} | "
        f"{s['p99_ms']:.2f} | {s['rss_mib']:.0f} | {s['errors']} |"
        for s in summary
    )
    rounds = ", ".join(f"{x:.2f}x" for x in verdict["by_round"])
    best = verdict["best"]["config"].split(": ", 1)[1]
    return f"""# Serving over gRPC: `kubeloop serve` vs MLServer 1.7 (V2 ModelInfer)

Headline: gRPC throughput at c={args.concurrency}, Kubeloop / MLServer's best ({best}): \
{verdict["ratio"]:.2f}x (target >= {TARGET:g}x: {mark})

Generated by `bench/serving_grpc_bench.py` on {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
with `{command}`.

## What was run

- Model: the REST bench's hgb scenario (`HistGradientBoostingClassifier(max_iter=100)`, 20
  numeric features), one model file served by both; MLServer 1.7 through
  `mlserver_sklearn.SKLearnModel` in its four configurations (`parallel_workers` 0 / 1,
  adaptive batching off / 64 rows + 2 ms); Kubeloop at its defaults (one worker, adaptive
  batching 64 rows / 2 ms). One OpenMP/BLAS thread each, loopback only.
- Request: one `ModelInferRequest`, tensor `input-0` FP64 `[1, 20]` in typed
  `contents.fp64_contents`, output `predict`. Before the load every server predicts the same
  {CHECK_ROWS} rows over gRPC; the run stops if any two disagree.
- Load: `bench/serving/grpc_load.py`, one `grpc.aio` channel with {args.concurrency} calls in
  flight (closed loop: each task sends its next call when the answer arrives), the request
  serialized once, answers not parsed; {args.warmup:g} s warm-up, then {args.duration:g} s
  measured, {args.rounds} rounds alternating between the servers (order reversed every other
  round); medians. The client runs in Python on the same cores as the servers, so it takes
  its share of the CPU from both alike.
- Machine: {os.cpu_count()} CPUs **shared with other engineers' test runs** (load average at
  start {", ".join(f"{x:.1f}" for x in load)}): absolute numbers move with that load; the
  ratio comes from interleaved runs in one invocation.

## Result

Throughput ratio {verdict["ratio"]:.2f}x (per round: {rounds}).

| configuration | calls/s | p50 ms | p99 ms | RSS MiB | errors |
| --- | ---: | ---: | ---: | ---: | ---: |
{rows}
"""


if __name__ == "__main__":
    sys.exit(main())
