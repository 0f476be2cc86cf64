"""Operator benchmark: 500 TrainingPipelines created at once against the emulated API server;
time until every run's Job exists, and the operator's memory, Kubeloop side by side with a bare
kopf operator that only creates one Job per custom resource (bench/operator_bare_kopf.py).

    python -m bench operator                 # 500 CRs, both operators
    python -m bench.operator_bench --count 50

Each operator is its own child process (`kopf run -A --standalone ...`) against a fresh
in-process emulator (admission off: the CRs are the churn example, already valid). One warm-up
CR is reconciled first, so the clock measures steady reconciling, not imports and discovery.
The clock starts before the first of the N creates and stops when N Jobs exist (listed every
0.2 s for 5 s, then every second). RSS is the child's VmRSS after the last Job and its
peak (VmHWM), from /proc.
Kubeloop does more per CR by design: status allocation before the Job, a ServiceAccount,
Role and RoleBinding for the progress channel, conditions, Events and a resync timer.

Writes bench/results/operator.json (raw) and docs/benchmarks/operator.md (summary).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from kubeloop.local.cluster.emulator import EmulatorThread

__all__ = ["main", "measure"]

TOPIC = "operator"
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / f"{TOPIC}.json"
DOC = ROOT / "docs" / "benchmarks" / f"{TOPIC}.md"
JOBS = "batch/v1/jobs"
CONTENDERS: dict[str, list[str]] = {
    "bare-kopf": [str(ROOT / "bench" / "operator_bare_kopf.py")],
    "kubeloop": ["-m", "kubeloop.controller"],
}


def _proc_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _pipeline(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "churn-pipeline.yaml").read_text())
    doc["metadata"].update(name=name, namespace="bench")
    doc["spec"].pop("schedule", None)
    return doc


def _wait_jobs(thread: EmulatorThread, want: int, deadline: float) -> int:
    # Listing copies every Job inside the emulator, which also serves the operator: poll
    # often at first (short runs), then once a second so the poll itself costs little.
    start = time.monotonic()
    while True:
        count = len(thread.call(lambda: thread.emulator.list_objects(JOBS, "bench")))
        if count >= want or time.monotonic() > deadline:
            return count
        time.sleep(0.2 if time.monotonic() - start < 5 else 1.0)


def measure(contender: str, count: int, timeout: float) -> dict[str, Any]:
    """One operator, one fresh emulator: seconds until `count` Jobs exist, RSS in MiB."""
    with EmulatorThread(admission=False) as thread:
        env = {
            **os.environ,
            "KUBELOOP_KUBE_SERVER": thread.url,
            "BENCH_KUBE_SERVER": thread.url,
            "KUBELOOP_METRICS_PORT": "0",
            "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT)]),
        }
        command = [sys.executable, "-m", "kopf", "run", "-A", "--standalone", "--quiet"]
        child = subprocess.Popen(
            [*command, *CONTENDERS[contender]],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            thread.call(thread.emulator.create_object(_pipeline("warmup")))
            if _wait_jobs(thread, 1, time.monotonic() + 120) < 1:
                raise RuntimeError(f"{contender}: no Job for the warm-up CR within 120 s")
            docs = [_pipeline(f"tp-{i:04d}") for i in range(count)]
            start = time.monotonic()
            for doc in docs:
                thread.call(thread.emulator.create_object(copy.deepcopy(doc)))
            created = time.monotonic() - start
            jobs = _wait_jobs(thread, count + 1, start + timeout) - 1
            seconds = time.monotonic() - start
            rss = _proc_kib(child.pid, "VmRSS") / 1024
            peak = _proc_kib(child.pid, "VmHWM") / 1024
        finally:
            child.terminate()
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    return {
        "contender": contender,
        "count": count,
        "jobs": jobs,
        "complete": jobs >= count,
        "seconds": round(seconds, 2),
        "create_seconds": round(created, 2),
        "jobs_per_second": round(jobs / seconds, 1),
        "rss_mib": round(rss, 1),
        "peak_rss_mib": round(peak, 1),
    }


def _doc(results: list[dict[str, Any]], command: str, machine: str) -> str:
    by = {r["contender"]: r for r in results}
    bare, ours = by["bare-kopf"], by["kubeloop"]
    rows = [
        f"| {r['contender']} | {r['jobs']}/{r['count']} | {r['seconds']} | "
        f"{r['jobs_per_second']} | {r['rss_mib']} | {r['peak_rss_mib']} |"
        for r in results
    ]
    return "\n".join(
        [
            f"# Operator: {ours['count']} TrainingPipelines, Kubeloop vs bare kopf",
            "",
            "What: N TrainingPipelines (the churn example) created at once against the emulated",
            "API server (`kubeloop.local.cluster.emulator`, admission off); the clock runs from",
            "the first create until N Jobs exist (polled every 0.2 s, after 5 s every 1 s).",
            "Each operator is a `kopf run -A --standalone` child",
            "process with a fresh emulator, after one warm-up CR. The peer",
            "(`bench/operator_bare_kopf.py`) only creates one Job per CR; Kubeloop also allocates",
            "the run in status first, creates the progress ServiceAccount/Role/RoleBinding,",
            "writes conditions and Events and runs a resync timer per CR.",
            "",
            f"Machine: {machine}. Run: {datetime.now(tz=UTC):%Y-%m-%d %H:%M} UTC.",
            "",
            f"Command: `{command}`",
            "",
            "| operator | Jobs | seconds | Jobs/s | RSS MiB | peak RSS MiB |",
            "| --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
            f"Headline: {ours['count']} TrainingPipelines to Jobs against the emulator: "
            f"Kubeloop takes {ours['seconds'] / bare['seconds']:.1f}x the time of a bare kopf "
            f"operator, with {ours['rss_mib'] / bare['rss_mib']:.2f}x its RSS.",
            "",
            f"Ratios (Kubeloop / bare kopf): time to all Jobs "
            f"**{ours['seconds'] / bare['seconds']:.2f}x**, RSS "
            f"**{ours['rss_mib'] / bare['rss_mib']:.2f}x**, peak RSS "
            f"**{ours['peak_rss_mib'] / bare['peak_rss_mib']:.2f}x**.",
            "",
            "The build machine is shared (2 cores, several other jobs running), so absolute",
            "numbers move from run to run; the two operators ran back to back in one run.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Run both operators; print the table; write the JSON and the markdown summary."""
    parser = argparse.ArgumentParser(prog="python -m bench.operator_bench", description=__doc__)
    parser.add_argument("--count", type=int, default=500, help="TrainingPipelines to create")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per operator")
    parser.add_argument("--no-summary", action="store_true", help="do not write the markdown")
    args = parser.parse_args(argv)
    results = [measure(name, args.count, args.timeout) for name in CONTENDERS]
    print(f"{'operator':<10} {'jobs':>9} {'seconds':>8} {'jobs/s':>7} {'rss MiB':>8} {'peak':>7}")
    for r in results:
        print(
            f"{r['contender']:<10} {r['jobs']:>5}/{r['count']:<3} {r['seconds']:>8} "
            f"{r['jobs_per_second']:>7} {r['rss_mib']:>8} {r['peak_rss_mib']:>7}"
        )
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    command = "python -m bench.operator_bench " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    if not args.no_summary:
        DOC.parent.mkdir(parents=True, exist_ok=True)
        DOC.write_text(_doc(results, command.strip(), machine))
    return 0 if all(r["complete"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
