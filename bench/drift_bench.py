"""Drift monitor benchmark: Kubeloop vs Evidently 0.7 DataDriftPreset, side by side in one run.

    make bench-venvs                  # Evidently 0.7 + pandas<3 in .venv-bench-evidently
    python -m bench drift             # both sizes, then the false-positive rates
    python -m bench.drift_bench --sizes 1m --seeds 50   # a quicker look

Sizes: `1m` = 1M reference rows vs a 1M-row window, 20 features; `10m` = 10M reference rows vs a
10M-row window, 50 features (70% numeric, 30% categorical; a third of each kind shifts: mean,
scale or category shares, bench/drift_data.py).

Every tool runs as its own child process, one at a time. Wall time is measured around the
child; peak RSS is the child's own `ru_maxrss` (from `os.wait4`), so it is exact and covers
nothing else. A watchdog polls the child's RSS and kills it above `--rss-limit-gib` or after
`--timeout` seconds, so a blow-up cannot take the shared machine down; such a kill is reported
as the result, with the RSS reached.

Kubeloop is measured several ways: `kubeloop-profile` reads the reference from the version's
profile.json (what the CronJob does); `kubeloop-parquet-first` is the first check against the
raw reference Parquet (what Evidently has to do): it profiles it and caches the profile beside
it, which `kubeloop-parquet`, a later check, reads; `kubeloop-parquet-ks` decides numeric drift
with KS computed exactly from the raw reference, `kubeloop-profile-ks` the same against the
profile, which streams the data the profile records as its source (both run once). All run under
`.venv-bench-monitor`, which holds what images/monitor installs (`.[monitor]`);
`kubeloop-profile-devenv` repeats the first in the dev environment, whose pandas (imported by
pyarrow.dataset) the image does not have.
Evidently runs `DataDriftPreset` with the same tests and thresholds (PSI 0.2 numeric,
chi-square p 0.05 categorical, drift share 0.3) and, at 1M x 20,
also with its default tests.

Writes bench/results/drift.json (raw) and docs/benchmarks/drift.md (summary).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bench.drift_agreement import agreement_lines
from bench.drift_data import NOW, shifted
from bench.record import cpu_model
from kubeloop.api.monitor import DriftThresholds
from kubeloop.profile import build_profile, load_profile
from kubeloop.workloads.monitor.accumulate import CategoricalAccumulator, NumericAccumulator
from kubeloop.workloads.monitor.reference import CACHE_NAME
from kubeloop.workloads.monitor.verdict import judge

__all__ = ["false_positive_rates", "main", "measure"]

TOPIC = "drift"
ROOT = Path(__file__).resolve().parent.parent
EVIDENTLY = ROOT / ".venv-bench-evidently" / "bin" / "python"
# `kubeloop monitor` with what images/monitor installs (`.[monitor]`, `make bench-venvs`); the dev
# environment also has pandas, which pyarrow.dataset then imports (a third of a second).
MONITOR = ROOT / ".venv-bench-monitor" / "bin" / "python"
RESULTS = ROOT / "bench" / "results" / f"{TOPIC}.json"
DOC = ROOT / "docs" / "benchmarks" / f"{TOPIC}.md"
# name -> (reference rows, window rows, features)
SIZES = {"1m": (1_000_000, 1_000_000, 20), "10m": (10_000_000, 10_000_000, 50)}
THRESHOLDS = DriftThresholds()
# The same tests on both sides: Kubeloop's names, Evidently's names with their thresholds.
KUBELOOP_TESTS = {"numeric": "psi", "categorical": "chi2"}
SAME_TESTS = f"psi@{THRESHOLDS.psi}:chisquare@{THRESHOLDS.p_value}"
# Evidently stattests whose score is a p-value (drift below the threshold, not above).
P_VALUE_TESTS = {"ks", "chisquare", "z", "fisher_exact", "g_test", "cramer_von_mises", "mannw"}
KUBELOOP_TOOLS = (
    "kubeloop-profile",
    "kubeloop-parquet",
    "kubeloop-parquet-first",
    "kubeloop-profile-devenv",
    "kubeloop-parquet-ks",
    "kubeloop-profile-ks",
)
# Checks with KS as the numeric test (computed exactly from the full reference data).
KS_TOOLS = ("kubeloop-parquet-ks", "kubeloop-profile-ks")
FEATURE_LINE = re.compile(r"^drift (\S+): (\w+)=(\S+) \(threshold (\S+)\) drifted=(True|False)$")
TARGET_SPEEDUP = 20.0
# Issue 19: the PSI/chi2 check from a raw Parquet reference, profiling included.
TARGET_PARQUET_SPEEDUP = 30.0
TARGET_RSS_MIB = 2e9 / 2**20  # "2 GB", read strictly: 1907 MiB


@dataclass
class Measure:
    """One child run: wall seconds, its peak RSS, how it ended, its output."""

    tool: str
    size: str
    seconds: float
    peak_rss_mib: float
    status: str
    cpu_seconds: float = 0.0  # user + system time of the child: far less load-sensitive
    runs: int = 1  # > 1: an aggregate of repeated runs (median times, largest RSS)
    drifted: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    tail: str = ""


def _rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, IndexError, ValueError):
        return 0.0


def measure(
    tool: str,
    size: str,
    argv: list[str],
    *,
    env: dict[str, str],
    rss_limit_gib: float,
    timeout: float,
) -> tuple[Measure, str]:
    """Run argv as a child under an RSS and time watchdog; (measure, its combined output)."""
    limit_mib = rss_limit_gib * 1024
    with tempfile.TemporaryFile() as log:
        started = time.monotonic()
        child = subprocess.Popen(
            argv,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )
        killed = ""
        while True:
            pid, wait_status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            elapsed = time.monotonic() - started
            rss = _rss_mib(child.pid)
            if not killed and rss > limit_mib:
                killed = f"killed at the {rss_limit_gib:g} GiB RSS bound after {elapsed:.0f} s"
            elif not killed and elapsed > timeout:
                killed = f"killed at the {timeout:.0f} s time bound"
            if killed:
                os.killpg(child.pid, signal.SIGKILL)
                pid, wait_status, usage = os.wait4(child.pid, 0)
                break
            time.sleep(0.05)
        seconds = time.monotonic() - started
        child.returncode = os.waitstatus_to_exitcode(wait_status)
        log.seek(0)
        output = log.read().decode(errors="replace")
    status = killed or ("ok" if child.returncode == 0 else f"failed (exit {child.returncode})")
    if child.returncode and not killed and ("MemoryError" in output or "allocate" in output):
        status = f"out of memory (exit {child.returncode})"
    peak = usage.ru_maxrss / 1024  # KiB on Linux
    tail = output.strip().splitlines()[-1][:300] if output.strip() else ""
    cpu = usage.ru_utime + usage.ru_stime
    return Measure(tool, size, seconds, peak, status, cpu, tail=tail), output


def _kubeloop(root: Path, size: str, tool: str, limit: float, timeout: float) -> Measure:
    raw = tool.startswith("kubeloop-parquet")
    ref = root / ("reference" if raw else "version")
    if tool == "kubeloop-parquet-first":  # the first check against it: profiles the reference
        (ref / CACHE_NAME).unlink(missing_ok=True)
    tests = {**KUBELOOP_TESTS, "numeric": "ks"} if tool in KS_TOOLS else KUBELOOP_TESTS
    spec = {"deploymentRef": {"name": "bench"}, "window": "24h", "tests": tests}
    env = {
        "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), os.environ.get("PYTHONPATH", "")]),
        "KUBELOOP_MONITOR": "bench",
        "KUBELOOP_PAYLOAD_LOG_URI": f"file://{root / 'logs'}",
        "KUBELOOP_REFERENCE_URI": f"file://{ref}",
        "KUBELOOP_NOW": NOW.isoformat(),
        "KUBELOOP_RESULT_PATH": str(root / f"result-{tool}.json"),
        "KUBELOOP_MONITOR_SPEC": json.dumps(spec),
    }
    python = sys.executable if tool.endswith("-devenv") or not MONITOR.exists() else str(MONITOR)
    argv = [python, "-m", "kubeloop.cli", "monitor"]
    m, output = measure(tool, size, argv, env=env, rss_limit_gib=limit, timeout=timeout)
    scores = {}
    for line in output.splitlines():
        match = FEATURE_LINE.match(line.strip())
        if match:
            name, test, score, _, drifted = match.groups()
            scores[name] = {"test": test, "score": float(score), "drifted": drifted == "True"}
            if drifted == "True":
                m.drifted.append(name)
    m.detail = {"features": scores}
    if m.status == "ok":
        result = json.loads((root / f"result-{tool}.json").read_text())
        m.detail.update(verdict=result["verdict"], driftShare=result["driftShare"])
        m.detail.update(rows=result["rows"])
        if "ksReference" in result:
            m.detail.update(ksReference=result["ksReference"])
    return m


def _evidently(root: Path, size: str, methods: str, limit: float, timeout: float) -> Measure:
    num, cat = methods.split(":")
    script = str(ROOT / "bench" / "drift_evidently.py")
    argv = [str(EVIDENTLY), script, str(root), num, cat, str(THRESHOLDS.drift_share)]
    label = "evidently-same-tests" if methods == SAME_TESTS else f"evidently-{methods}"
    m, output = measure(label, size, argv, env={}, rss_limit_gib=limit, timeout=timeout)
    if m.status == "ok":
        out = json.loads(output.strip().splitlines()[-1])
        for name, column in out["columns"].items():
            score, threshold = float(column["score"]), float(column["threshold"])
            drifted = score < threshold if column["method"] in P_VALUE_TESTS else score >= threshold
            if drifted:
                m.drifted.append(name)
        m.detail = out
    return m


def false_positive_rates(
    seeds: int, window_rows: int = 2_000, reference_rows: int = 20_000
) -> dict[str, float]:
    """Share of seeds where identical distributions were called drifted, per feature and test.

    The same construction as tests/workloads/monitor/test_drift_detection.py: a normal numeric
    feature and a three-category feature, reference and window drawn from one distribution.
    """
    hits: dict[str, int] = {}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)

        def table(rows: int, rng: np.random.Generator = rng) -> pa.Table:
            x = rng.normal(0.0, 1.0, rows)
            return pa.table({"x": x, "c": rng.choice(["a", "b", "c"], rows, p=[0.5, 0.3, 0.2])})

        profile = load_profile(build_profile(table(reference_rows), ["x"], ["c"]))
        numeric = NumericAccumulator(profile.numeric["x"])
        categorical = CategoricalAccumulator(profile.categorical["c"])
        current = table(window_rows)
        numeric.add(current.column("x"))
        categorical.add(current.column("c"))
        tests: list[tuple[str, NumericAccumulator | CategoricalAccumulator, str]]
        tests = [("x", numeric, t) for t in ("psi", "ks", "wasserstein", "jensenshannon")]
        tests += [("c", categorical, t) for t in ("chi2", "jensenshannon", "psi")]
        for name, acc, test in tests:
            key = f"{'numeric' if name == 'x' else 'categorical'} {test}"
            hits[key] = hits.get(key, 0) + int(judge(name, acc, test, THRESHOLDS).drifted)
    return {key: count / seeds for key, count in hits.items()}


def _in_child(call: str) -> None:
    """Run one bench.drift_data / bench.drift_agreement call in a child Python process."""
    code = (
        "from pathlib import Path\n"
        "from bench.drift_data import generate\n"
        "from bench.drift_agreement import agreement_to\n"
        f"{call}\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT)]),
    }
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env)


def _machine() -> dict[str, Any]:
    cpu = cpu_model()
    try:
        mem_kib = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    except (OSError, StopIteration):
        mem_kib = 0
    versions = {"python": platform.python_version(), "pyarrow": pa.__version__}
    try:
        probe = "import evidently, pandas; print(evidently.__version__, pandas.__version__)"
        out = subprocess.run(
            [str(EVIDENTLY), "-c", probe], check=False, capture_output=True, text=True
        )
        versions["evidently"], versions["pandas (Evidently venv)"] = out.stdout.split()
    except (OSError, ValueError):
        versions["evidently"] = "missing (run `make bench-venvs`)"
    versions["kubeloop environment"] = (
        ".venv-bench-monitor (images/monitor's packages: .[monitor], no pandas)"
        if MONITOR.exists()
        else "the dev environment (run `make bench-venvs` for the monitor image's packages)"
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "load_average_at_start": os.getloadavg(),
        "versions": versions,
    }


def _ratio(slow: Measure | None, fast: Measure | None, attr: str) -> str:
    if slow is None or fast is None or fast.status != "ok":
        return "n/a"
    if slow.status != "ok" and attr != "peak_rss_mib" and "RSS bound" in slow.status:
        return f"Evidently did not finish ({slow.status})"
    ratio = getattr(slow, attr) / max(getattr(fast, attr), 1e-9)
    return f"{ratio:.1f}x" if slow.status == "ok" else f">= {ratio:.1f}x ({slow.status})"


def _find(measures: list[Measure], size: str, tool: str) -> Measure | None:
    """The tool's run at that size; repeated runs as one: median times, largest peak RSS."""
    found = [m for m in measures if m.size == size and m.tool == tool]
    if len(found) <= 1:
        return found[0] if found else None
    bad = [m for m in found if m.status != "ok"]
    if bad:
        return bad[0]
    return Measure(
        tool, size, statistics.median(m.seconds for m in found),
        max(m.peak_rss_mib for m in found), "ok",
        statistics.median(m.cpu_seconds for m in found), len(found),
        found[0].drifted, found[0].detail,
    )  # fmt: skip


def _correctness(m: Measure) -> str:
    """How many features a tool called drifted, against the ones shifted by construction."""
    if m.status != "ok":
        return "-"
    truth = set(shifted(SIZES[m.size][2]))
    found = set(m.drifted)
    text = f"{len(found)}: {len(found & truth)} of {len(truth)} shifted"
    wrong = sorted(found - truth)
    return text + (f", unshifted {', '.join(wrong)}" if wrong else ", no unshifted")


def _agreement(a: Measure | None, b: Measure | None) -> str:
    if a is None or b is None or a.status != "ok" or b.status != "ok":
        return "n/a"
    both = set(a.drifted) & set(b.drifted)
    only_a, only_b = sorted(set(a.drifted) - both), sorted(set(b.drifted) - both)
    text = f"{len(both)} drifted in both"
    if only_a or only_b:
        text += f"; only Kubeloop: {only_a or 'none'}; only Evidently: {only_b or 'none'}"
    return text


def _targets_short(measures: list[Measure]) -> str:
    """Issue 6's two targets, met or not, in a few words."""
    out = []
    small = _find(measures, "1m", "kubeloop-profile")
    small_ev = _find(measures, "1m", "evidently-same-tests")
    if small and small_ev and small.status == small_ev.status == "ok":
        met = small_ev.seconds / small.seconds >= TARGET_SPEEDUP
        out.append(f">= {TARGET_SPEEDUP:g}x at 1M x 20 {'met' if met else 'NOT met'}")
    raw = _find(measures, "1m", "kubeloop-parquet")
    if raw and small_ev and raw.status == small_ev.status == "ok":
        met = small_ev.seconds / raw.seconds >= TARGET_PARQUET_SPEEDUP
        verdict = "met" if met else "NOT met"
        out.append(f">= {TARGET_PARQUET_SPEEDUP:g}x from raw Parquet at 1M x 20 {verdict}")
    for tool in ("kubeloop-profile", "kubeloop-parquet-first", *KS_TOOLS):
        big = _find(measures, "10m", tool)
        if big:
            met = big.status == "ok" and big.peak_rss_mib < TARGET_RSS_MIB
            out.append(f"10M x 50 {tool} under 2 GB {'met' if met else 'NOT met'}")
    return ", ".join(out) or "not measured"


def _report(run: dict[str, Any]) -> str:
    measures = [Measure(**m) for m in run["measures"]]
    lines = [
        "# Drift monitor benchmark: Kubeloop vs Evidently 0.7",
        "",
    ]
    headline = []
    for size in run["sizes"]:
        same = _find(measures, size, "evidently-same-tests")
        profile = _find(measures, size, "kubeloop-profile")
        ratio = _ratio(same, profile, "seconds")
        cpu = _ratio(same, profile, "cpu_seconds")
        text = f"{size}: {ratio} faster (CPU time {cpu})" if ratio.endswith("x") else ratio
        text = text if text.startswith(size) else f"{size}: {text}"
        peak = f"Kubeloop peak RSS {profile.peak_rss_mib:.0f} MiB" if profile else ""
        headline.append(f"{text}, {peak}")
    lines += [
        f"Headline: Evidently (same tests) / Kubeloop: {'; '.join(headline)}; "
        f"targets: {_targets_short(measures)}",
        "",
    ]
    machine = run["machine"]
    lines += [
        f"Run {run['started']} on {machine['cpu']}, {machine['cores']} cores, "
        f"{machine['memory_gib']} GiB RAM (shared with other work; load average at start "
        f"{', '.join(f'{x:.2f}' for x in machine['load_average_at_start'])}); "
        + ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
        + ".",
        "",
        "Command (from the repository root, after `make bench-venvs`):",
        "",
        f"    {run['command']}",
        "",
        "What runs: each tool is a separate child process, one at a time, on the same files: a "
        "reference Parquet folder (as many rows as the window) with its profile.json, and a "
        "window of payload logs "
        "in the server's layout (dt=/hour= partitions). `kubeloop-profile` is `kubeloop monitor` "
        "as the CronJob runs it (reference = the version's profile.json); "
        "`kubeloop-parquet-first` is the first check against the raw reference Parquet (no "
        "cached profile: it profiles the reference and caches the profile beside it), "
        "`kubeloop-parquet` a later one (it reads that cache), `kubeloop-parquet-ks` one "
        "with KS as the numeric test, computed exactly from the raw reference, and "
        "`kubeloop-profile-ks` the same against the profile, which streams the data the "
        "profile records as its source (unchanged, so the KS is exact; both run once); all "
        "run with the monitor image's packages "
        "(`.venv-bench-monitor`: `.[monitor]`, no pandas), and `kubeloop-profile-devenv` is the "
        "first again in the dev environment (pandas installed, so pyarrow.dataset imports it). "
        "`evidently-same-tests` is `DataDriftPreset("
        f"num_method='psi', num_threshold={THRESHOLDS.psi}, cat_method='chisquare', "
        f"cat_threshold={THRESHOLDS.p_value}, drift_share={THRESHOLDS.drift_share})` on pandas "
        "frames read with `pd.read_parquet`, as Kubeloop's psi/chi2 defaults. Peak RSS is the "
        "child's own `ru_maxrss`. Bounds: a watchdog kills a child above "
        f"{run['rss_limit_gib']:g} GiB RSS or after {run['timeout']:.0f} s.",
        "",
        "Kubeloop runs are repeated (before and after Evidently's, so they sample the same "
        "load); the table gives their median wall and CPU time and the largest peak RSS; "
        "every single run is in bench/results/drift.json.",
        "",
        "| size | tool | runs | wall s | CPU s | peak RSS MiB | status | features called drifted "
        "| verdict |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- |",
    ]
    tools = list(dict.fromkeys((m.size, m.tool) for m in measures))
    for m in (_find(measures, size, tool) for size, tool in tools):
        assert m is not None
        _, cur_rows, features = SIZES[m.size]
        label = f"{cur_rows / 1e6:g}M x {features}"
        verdict = m.detail.get("verdict", "")
        if "driftedColumns" in m.detail:
            share = m.detail["driftedColumns"].get("share")
            verdict = f"drift share {share}"
        elif verdict:
            verdict += f", drift share {m.detail.get('driftShare')}"
        if "ksReference" in m.detail:  # what the KS test was computed against
            ks = m.detail["ksReference"]
            how = "exact" if ks["exact"] else f"from the sketch: {ks.get('reason')}"
            verdict += f"; KS {how} ({ks['source']})"
        drifted = _correctness(m)
        lines.append(
            f"| {label} | {m.tool} | {m.runs} | {m.seconds:.1f} | {m.cpu_seconds:.1f} | "
            f"{m.peak_rss_mib:.0f} | {m.status} | {drifted} | {verdict} |"
        )
    lines += ["", "## Ratios (Evidently / Kubeloop)", ""]
    lines += [
        "| size | Evidently run | vs | wall time | CPU time | peak RSS | same features drifted? |"
    ]
    lines += ["| --- | --- | --- | ---: | ---: | ---: | --- |"]
    for size in run["sizes"]:
        for ev in (m for m in measures if m.size == size and m.tool.startswith("evidently")):
            if ev.tool == "evidently-default:default" and size != "1m":
                continue
            for k in KUBELOOP_TOOLS:
                kl = _find(measures, size, k)
                if kl is None:
                    continue
                lines.append(
                    f"| {size} | {ev.tool} | {k} | {_ratio(ev, kl, 'seconds')} | "
                    f"{_ratio(ev, kl, 'cpu_seconds')} | "
                    f"{_ratio(ev, kl, 'peak_rss_mib')} | "
                    f"{_agreement(kl, ev) if ev.tool == 'evidently-same-tests' else ''} |"
                )
    lines += ["", "## Targets (issues 6 and 19)", ""]
    small = _find(measures, "1m", "kubeloop-profile")
    small_ev = _find(measures, "1m", "evidently-same-tests")
    small_default = _find(measures, "1m", "evidently-default:default")
    if small and small_ev and small.status == small_ev.status == "ok":
        met = small_ev.seconds / small.seconds >= TARGET_SPEEDUP
        lines.append(
            f"- >= {TARGET_SPEEDUP:g}x faster at 1M x 20: **{'met' if met else 'NOT met'}** "
            f"({small_ev.seconds / small.seconds:.1f}x wall, "
            f"{small_ev.cpu_seconds / small.cpu_seconds:.1f}x CPU time against Evidently with "
            "the same tests"
            + (
                f", {small_default.seconds / small.seconds:.1f}x against its default tests"
                if small_default and small_default.status == "ok"
                else ""
            )
            + ")."
        )
    raw = _find(measures, "1m", "kubeloop-parquet")
    first = _find(measures, "1m", "kubeloop-parquet-first")
    if raw and small_ev and raw.status == small_ev.status == "ok":
        met = small_ev.seconds / raw.seconds >= TARGET_PARQUET_SPEEDUP
        lines.append(
            f"- PSI/chi2 from a raw Parquet reference >= {TARGET_PARQUET_SPEEDUP:g}x faster at "
            f"1M x 20 (issue 19): **{'met' if met else 'NOT met'}** "
            f"({small_ev.seconds / raw.seconds:.1f}x wall, "
            f"{small_ev.cpu_seconds / raw.cpu_seconds:.1f}x CPU time, with the reference's "
            "cached profile"
            + (
                f"; the first check, which profiles the reference and writes the cache: "
                f"{small_ev.seconds / first.seconds:.1f}x wall, "
                f"{small_ev.cpu_seconds / first.cpu_seconds:.1f}x CPU time"
                if first and first.status == "ok"
                else ""
            )
            + ")."
        )
    big_ev = _find(measures, "10m", "evidently-same-tests")
    for tool in ("kubeloop-profile", "kubeloop-parquet-first", *KS_TOOLS):
        big = _find(measures, "10m", tool)
        if big:
            met = big.status == "ok" and big.peak_rss_mib < TARGET_RSS_MIB
            lines.append(
                f"- 10M x 50, {tool}, completes with peak RSS < 2 GB: "
                f"**{'met' if met else 'NOT met'}** "
                f"({big.status}, {big.seconds:.1f} s, {big.peak_rss_mib:.0f} MiB)."
            )
    if big_ev:
        lines.append(
            f"- Evidently at 10M x 50: {big_ev.status}, {big_ev.seconds:.1f} s, "
            f"peak RSS {big_ev.peak_rss_mib:.0f} MiB."
        )
    lines += [
        "",
        "## Notes",
        "",
        "- Features called drifted are checked against the ones the generator shifts "
        "(bench/drift_data.py: a third of each kind); the others are drawn from the reference's "
        "distribution, so calling them drifted is a false positive.",
        "- Evidently's `chisquare` is a goodness-of-fit test that takes the reference counts as "
        "the exact expected frequencies (`scipy.stats.chisquare(f_obs, f_exp)` in "
        "evidently/legacy/calculations/stattests/chisquare_stattest.py); with a reference as "
        "large as the window it ignores the reference's own sampling noise, so it rejects "
        "unshifted features more often than its p-value threshold says. Kubeloop's chi2 is the "
        "two-sample test (`chi2_contingency` on reference and window counts).",
        "- Evidently's wall time includes reading Parquet into pandas; Kubeloop's includes its "
        "interpreter start, reading the window and, for `kubeloop-parquet-first`, profiling "
        "the reference.",
    ]
    fpr = run.get("false_positive_rates")
    if run.get("agreement"):
        lines += ["", *agreement_lines(run["agreement"])]
    if fpr:
        lines += [
            "",
            f"## False-positive rate ({run['seeds']} seeds, identical distributions)",
            "",
            "Reference 20,000 rows and window 2,000 rows drawn from the same distribution, "
            f"per seed; thresholds: PSI {THRESHOLDS.psi}, p-value {THRESHOLDS.p_value}, "
            f"Wasserstein {THRESHOLDS.wasserstein}, Jensen-Shannon {THRESHOLDS.jensenshannon}. "
            "A p-value test at 0.05 is expected near 5%; the distance tests should stay near 0.",
            "",
            "| feature test | false-positive rate |",
            "| --- | ---: |",
        ]
        lines += [f"| {key} | {rate:.3f} |" for key, rate in fpr.items()]
    lines += [
        "",
        "Correctness against scipy (1e-9) and Evidently's PSI on the same bins (1e-6), shift "
        "detection, NoData and the Pushgateway -> Prometheus path are tests: "
        "`python -m pytest tests/workloads/monitor tests/prometheus -q`.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Generate data, run every tool on every size, print and write the results."""
    parser = argparse.ArgumentParser(prog="python -m bench.drift_bench", description=__doc__)
    parser.add_argument("--sizes", default="1m,10m", help="comma list of: " + ", ".join(SIZES))
    default_dir = os.environ.get("KUBELOOP_BENCH_DIR", "/tmp/kubeloop-bench")
    parser.add_argument("--dir", default=default_dir, help="where the data is generated")
    parser.add_argument(
        "--evidently",
        default=f"{SAME_TESTS},default:default",
        help="Evidently runs NUM:CAT[,...]; past the first only at 1m",
    )
    parser.add_argument("--rss-limit-gib", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--seeds", type=int, default=500, help="false-positive seeds (0: skip)")
    parser.add_argument("--repeat", type=int, default=3, help="Kubeloop runs per tool and size")
    parser.add_argument(
        "--from-results", action="store_true", help="only rewrite the summary from the JSON"
    )
    parser.add_argument(
        "--agreement",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="statistics against scipy on the full data, detection per configuration",
    )
    args = parser.parse_args(argv)
    if args.from_results:
        DOC.write_text(_report(json.loads(RESULTS.read_text())))
        print(DOC.read_text())
        return 0
    sizes = [s for s in args.sizes.split(",") if s]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown sizes {unknown}")
    run: dict[str, Any] = {
        "topic": TOPIC,
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m bench.drift_bench " + " ".join(sys.argv[1:] if argv is None else argv)
        if (sys.argv[1:] if argv is None else argv)
        else "python -m bench drift",
        "machine": _machine(),
        "sizes": sizes,
        "rss_limit_gib": args.rss_limit_gib,
        "timeout": args.timeout,
        "seeds": args.seeds,
        "measures": [],
        "agreement": [],
    }
    if not EVIDENTLY.exists():
        print("Evidently venv missing: run `make bench-venvs` first", file=sys.stderr)
        return 2
    for size in sizes:
        ref_rows, cur_rows, features = SIZES[size]
        root = Path(args.dir) / size
        started = time.monotonic()
        # Generating (and, below, checking against scipy) holds columns in memory; in this
        # process that would become every later child's peak RSS (a forked child's ru_maxrss
        # counts the parent's pages it started with), so both run in children of their own.
        _in_child(f"generate(Path({str(root)!r}), {ref_rows}, {cur_rows}, {features})")
        print(f"# {size}: data ready in {time.monotonic() - started:.0f} s", flush=True)
        methods = args.evidently.split(",")
        ours: list[tuple[str, str]] = [("kubeloop", "kubeloop-profile")]
        # First without the reference's cached profile (it pays the profiling), then with it.
        ours += [("kubeloop", "kubeloop-parquet-first"), ("kubeloop", "kubeloop-parquet")]
        if size == "1m" and MONITOR.exists():
            ours += [("kubeloop", "kubeloop-profile-devenv")]
        runs = ours + [("evidently", m) for m in (methods if size == "1m" else methods[:1])]
        runs += ours * max(args.repeat - 1, 0)
        runs += [("kubeloop", t) for t in KS_TOOLS]  # the exact KS: time and peak RSS, once
        for kind, what in runs:
            if kind == "kubeloop":
                m = _kubeloop(root, size, what, args.rss_limit_gib, args.timeout)
            else:
                m = _evidently(root, size, what, args.rss_limit_gib, args.timeout)
            run["measures"].append(asdict(m))
            print(
                f"{size} {m.tool}: {m.seconds:.1f} s (CPU {m.cpu_seconds:.1f} s), "
                f"peak RSS {m.peak_rss_mib:.0f} MiB, "
                f"{m.status}, {len(m.drifted)} drifted"
                + ("" if m.status == "ok" else f"; {m.tail}"),
                flush=True,
            )
        if args.agreement:
            started = time.monotonic()
            out = root / "agreement.json"
            _in_child(f"agreement_to(Path({str(root)!r}), {size!r}, {features})")
            run["agreement"].append(json.loads(out.read_text()))
            print(f"# {size}: agreement in {time.monotonic() - started:.0f} s", flush=True)
    if args.seeds:
        started = time.monotonic()
        run["false_positive_rates"] = false_positive_rates(args.seeds)
        print(
            f"# false-positive rates over {args.seeds} seeds in "
            f"{time.monotonic() - started:.0f} s: {run['false_positive_rates']}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(run, indent=2))
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(_report(run))
    print(DOC.read_text())
    ok = all(m["status"] == "ok" for m in run["measures"] if m["tool"].startswith("kubeloop"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
