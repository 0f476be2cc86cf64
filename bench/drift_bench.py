"""Drift monitor benchmark: Kubeloop vs Evidently 0.7 DataDriftPreset, side by side.

    make bench-venvs                       # Evidently 0.7 + pandas<3 in .venv-bench-evidently
    python -m bench.drift_bench            # both sizes; data under $KUBELOOP_BENCH_DIR
    python -m bench.drift_bench --sizes 1m # only 1M x 20

Each tool runs in its own subprocess; wall time and peak RSS (ru_maxrss from wait4) are taken
for that process alone. Evidently runs under an address-space limit and a timeout so a blow-up
cannot take the shared machine down; a kill is reported as such, with the RSS it had reached.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.drift_data import NOW, generate

ROOT = Path(__file__).resolve().parent.parent
EVIDENTLY = ROOT / ".venv-bench-evidently" / "bin" / "python"
SIZES = {"1m": (1_000_000, 1_000_000, 20), "10m": (1_000_000, 10_000_000, 50)}


@dataclass
class Measure:
    """One run: wall seconds, peak RSS, exit status, last output line."""

    tool: str
    seconds: float
    peak_rss_mib: float
    status: str
    output: str


def measure(
    tool: str, argv: list[str], env: dict[str, str], limit_gib: float, timeout: float
) -> Measure:
    """Run argv in a child with an address-space limit; wall time and that child's peak RSS."""
    limit = int(limit_gib * 2**30)

    def bound() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    started = time.monotonic()
    child = subprocess.Popen(
        argv,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=bound,
        start_new_session=True,
    )
    status = "ok"
    try:
        out, _ = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        out, _ = child.communicate()
        status = f"killed after {timeout:.0f} s timeout"
    seconds = time.monotonic() - started
    # communicate() reaped the child; RUSAGE_CHILDREN is per-process max over reaped children,
    # so each measurement runs in a fresh interpreter (see main) to keep it to one child.
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    text = out.decode(errors="replace").strip().splitlines()
    if status == "ok" and child.returncode != 0:
        status = f"failed (exit {child.returncode})"
        if any("MemoryError" in line or "Unable to allocate" in line for line in text):
            status = f"out of memory at the {limit_gib:g} GiB limit (exit {child.returncode})"
    return Measure(tool, seconds, rss, status, text[-1][:300] if text else "")


def _one(args: argparse.Namespace) -> None:
    """Child mode: run one measurement and print it as JSON (keeps RUSAGE_CHILDREN to one)."""
    root = Path(args.root)
    if args.one.startswith("kubeloop"):
        ref = root / ("version" if args.one == "kubeloop-profile" else "reference")
        env = {
            "PYTHONPATH": str(ROOT / "operator"),
            "KUBELOOP_MONITOR": "bench",
            "KUBELOOP_PAYLOAD_LOG_URI": f"file://{root / 'logs'}",
            "KUBELOOP_REFERENCE_URI": f"file://{ref}",
            "KUBELOOP_NOW": NOW.isoformat(),
            "KUBELOOP_RESULT_PATH": str(root / f"result-{args.one}.json"),
            "KUBELOOP_MONITOR_SPEC": json.dumps(
                {"deploymentRef": {"name": "bench"}, "window": "24h", "tests": {"numeric": "psi"}}
            ),
        }
        argv = [sys.executable, "-m", "kubeloop.cli", "monitor"]
        m = measure(args.one, argv, env, args.limit_gib, args.timeout)
    else:
        _, num, cat = args.one.split(":")
        argv = [str(EVIDENTLY), str(ROOT / "bench" / "drift_evidently.py"), str(root), num, cat]
        m = measure(args.one, argv, {}, args.limit_gib, args.timeout)
    print(json.dumps(m.__dict__))


def _spawn(root: Path, tool: str, limit_gib: float, timeout: float) -> Measure:
    argv = [sys.executable, "-m", "bench.drift_bench", "--one", tool, "--root", str(root)]
    argv += ["--limit-gib", str(limit_gib), "--timeout", str(timeout)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=ROOT)
    return Measure(**json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    """Generate data, run every tool on every size, print a Markdown table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1m,10m")
    parser.add_argument(
        "--dir", default=os.environ.get("KUBELOOP_BENCH_DIR", "/tmp/kubeloop-bench")
    )
    parser.add_argument("--evidently", default="psi:chisquare,default:default")
    parser.add_argument("--one")
    parser.add_argument("--root")
    parser.add_argument("--limit-gib", type=float, default=8.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--evidently-timeout-10m", type=float, default=300.0)
    args = parser.parse_args()
    if args.one:
        _one(args)
        return
    rows = []
    for size in args.sizes.split(","):
        ref_rows, cur_rows, features = SIZES[size]
        root = Path(args.dir) / size
        started = time.monotonic()
        generate(root, ref_rows, cur_rows, features)
        print(f"# {size}: data ready in {time.monotonic() - started:.0f} s", flush=True)
        tools = ["kubeloop-profile", "kubeloop-parquet"]
        methods = args.evidently.split(",") if size == "1m" else args.evidently.split(",")[:1]
        tools += [f"evidently:{m}" for m in methods]
        for tool in tools:
            timeout = (
                args.evidently_timeout_10m
                if size == "10m" and "evidently" in tool
                else args.timeout
            )
            m = _spawn(root, tool, args.limit_gib, timeout)
            rows.append((size, ref_rows, cur_rows, features, m))
            print(
                f"{size} {tool}: {m.seconds:.1f} s, peak RSS {m.peak_rss_mib:.0f} MiB, {m.status}; "
                f"{m.output}",
                flush=True,
            )
    print("\n| size | tool | wall s | peak RSS MiB | status |\n| --- | --- | --- | --- | --- |")
    for size, ref_rows, cur_rows, features, m in rows:
        label = f"{cur_rows:,} x {features} (ref {ref_rows:,})"
        print(f"| {label} | {m.tool} | {m.seconds:.1f} | {m.peak_rss_mib:.0f} | {m.status} |")


if __name__ == "__main__":
    main()
