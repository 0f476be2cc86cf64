"""Serving auth benchmark: the cost of bearer-token auth, `kubeloop serve` without and with it.

    nice python -m bench serving_auth                 # or: nice python -m bench.serving_auth_bench
    nice python -m bench.serving_auth_bench --rounds 4   # quicker

The same HistGradientBoosting model (the serving benchmark's `hgb`), one worker each, is served
twice side by side: once without a token and once with KUBELOOP_AUTH_TOKEN set, the load sending
`Authorization: Bearer <token>` on every request. `wrk` (one thread) at c=64 alternates between
the two servers, the order reversed every other round. The target (issue 20): auth costs less
than 5 % of throughput. Every answer must be 200, and the guarded server must answer 401 to a
request without the token (else the run is void).

On a small shared machine two throughput measurements seconds apart differ by tens of percent,
so the verdict uses what contention changes least: the server's CPU time per answered request
(its throughput when CPU-bound is the inverse), median over rounds, each round pairing the two
servers back to back. The throughput ratio (median of the rounds' ratios) is shown beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench.serving.model import body, write_hgb
from bench.serving.servers import Running, process_tree, start_kubeloop
from bench.serving_bench import run_wrk

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "serving_auth.json"
SUMMARY = ROOT / "docs" / "benchmarks" / "serving_auth.md"
TOKEN = "bench-token-0123456789abcdef0123456789abcdef"  # 44 characters, like a random token
TARGET = 0.05  # most throughput auth may cost
FEATURES = 20


def _refuses_without_token(running: Running, data: bytes) -> bool:
    request = urllib.request.Request(
        f"http://127.0.0.1:{running.port}{running.infer_path}", data=data
    )
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except urllib.error.HTTPError as exc:
        return exc.code == 401
    return False


def _pin(servers: Any) -> None:
    """Both servers (every thread) on the first CPU, this process and wrk on the others: each
    server, when measured, has the same core, not whichever one the scheduler gave it."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return
    for running in servers:
        for pid in process_tree(running.process.pid):
            subprocess.run(["taskset", "-a", "-p", "-c", str(cpus[0]), str(pid)],
                           capture_output=True, check=False)  # fmt: skip
    os.sched_setaffinity(0, set(cpus[1:]))


def _rps(raw: dict[str, Any]) -> float:
    return float(raw["requests"] / (raw["duration_us"] / 1e6))


def main(argv: list[str] | None = None) -> int:
    """Run both servers, measure, write bench/results/serving_auth.json and the summary."""
    parser = argparse.ArgumentParser(prog="python -m bench.serving_auth_bench")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kubeloop-bench-auth-") as tmp:
        work = Path(tmp)
        folders = write_hgb(work / "models", features=FEATURES)
        data = body(features=FEATURES)
        body_file = work / "body.json"
        body_file.write_bytes(data)
        servers = {
            "off": start_kubeloop(
                "auth off", folders.version, work, model_name="hgb", workers=1,
                max_batch_size=64, max_latency_ms=2.0,
            ),
            "on": start_kubeloop(
                "auth on", folders.version, work, model_name="hgb", workers=1,
                max_batch_size=64, max_latency_ms=2.0, auth_token=TOKEN,
            ),
        }  # fmt: skip
        headers = {"off": "", "on": f"Bearer {TOKEN}"}
        _pin(servers.values())
        try:
            if not _refuses_without_token(servers["on"], data):
                raise SystemExit("the server with a token answered a request without it")
            runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
            for round_ in range(args.rounds):
                order = ["off", "on"] if round_ % 2 == 0 else ["on", "off"]
                for key in order:
                    running, auth = servers[key], headers[key]
                    if args.warmup > 0:
                        run_wrk(running, body_file, args.concurrency, args.warmup, auth)
                    cpu = running.cpu_seconds()
                    raw = run_wrk(running, body_file, args.concurrency, args.duration, auth)
                    raw["cpu_ms_per_request"] = (
                        (running.cpu_seconds() - cpu) * 1000 / max(raw["requests"], 1)
                    )
                    runs[key].append(raw)
        finally:
            for running in servers.values():
                running.stop()
    errors = {
        k: sum(v for r in rs for n, v in r.items() if n.startswith("errors_"))
        for k, rs in runs.items()
    }
    rps = {k: statistics.median(_rps(r) for r in rs) for k, rs in runs.items()}
    p99 = {k: statistics.median(r["p99_us"] / 1000 for r in rs) for k, rs in runs.items()}
    cpu = {k: statistics.median(r["cpu_ms_per_request"] for r in rs) for k, rs in runs.items()}
    pairs = list(zip(runs["off"], runs["on"], strict=True))
    throughput_ratio = statistics.median(_rps(on) / _rps(off) for off, on in pairs)
    # Throughput when CPU-bound is 1 / CPU per request: auth's share of it.
    overhead = 1 - cpu["off"] / cpu["on"]
    met = overhead < TARGET and not any(errors.values())
    result = {
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "rps": rps,
        "p99_ms": p99,
        "cpu_ms_per_request": cpu,
        "throughput_ratio": throughput_ratio,
        "errors": errors,
        "overhead": overhead,
        "target": TARGET,
        "met": met,
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "raw": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    SUMMARY.write_text(_page(result, args, folders.notes))
    print(SUMMARY.read_text())
    return 0 if met else 1


def _page(result: dict[str, Any], args: argparse.Namespace, notes: str) -> str:
    rps, p99, errors = result["rps"], result["p99_ms"], result["errors"]
    cpu = result["cpu_ms_per_request"]
    verdict = "met" if result["met"] else "NOT met"
    c = result["concurrency"]
    return f"""# Serving auth: bearer-token auth's cost

Headline: bearer-token auth costs {result["overhead"]:.1%} of throughput at c={c} \
(server CPU per request; target < {TARGET:.0%}: {verdict}); measured throughput with / without \
{result["throughput_ratio"]:.2f}

| server | CPU per request (ms) | throughput (req/s) | p99 (ms) | errors |
| --- | --- | --- | --- | --- |
| `kubeloop serve`, auth off | {cpu["off"]:.3f} | {rps["off"]:.0f} | {p99["off"]:.2f} | \
{errors["off"]} |
| `kubeloop serve`, KUBELOOP_AUTH_TOKEN set, `Authorization: Bearer` sent | {cpu["on"]:.3f} | \
{rps["on"]:.0f} | {p99["on"]:.2f} | {errors["on"]} |

The verdict uses CPU time per request (the server's throughput when CPU-bound is its inverse):
on this shared machine two throughput runs seconds apart differ by tens of percent, the CPU
each request costs much less. Medians over rounds; the throughput ratio is the median of each
round's back-to-back pair.

What was run: `python -m bench.serving_auth_bench --duration {args.duration:g} --rounds \
{args.rounds}` (under `nice -n 10`). Model: {notes}; one row per request, one worker, adaptive
batching at its defaults (64 rows, 2 ms). `wrk -t1 -c{c} -d{args.duration:g}s` after
{args.warmup:g} s of warm-up, alternating between the two servers (order reversed every other
round), medians of {args.rounds} rounds; both servers pinned to one CPU (every thread), wrk and
the runner on the others; the server with a token answered 401 to a request
without it before the measurements began. Loopback only, on a machine with
{result["cpus"]} CPUs shared with other work (load average at the end
{result["load_average_at_end"][0]:.1f}): the difference between two servers' medians carries
a few percent of noise either way. Raw numbers: bench/results/serving_auth.json.
"""


if __name__ == "__main__":
    raise SystemExit(main())
