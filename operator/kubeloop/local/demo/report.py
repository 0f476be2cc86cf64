"""The demo's summary table (terminal) and report file (HTML with inline SVG plots).

The plots are drawn as SVG by hand so the report needs nothing beyond the standard library
and opens in any browser offline: drift score per feature for each monitor check (against
the test's threshold), metrics per model version, and which version answered during the
rollout, second by second.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kubeloop.local.demo.scenario import DemoResult, DriftCheck
from kubeloop.workloads.monitor.verdict import P_VALUE_TESTS

__all__ = ["bar_chart", "render_summary", "rollout_buckets", "same_rows", "write_html"]

METRICS = ("roc_auc", "accuracy", "f1")
COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2")
DRIFTED = "#e15759"


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in head], *[["-" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _num(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"


def _runs(result: DemoResult) -> list[dict[str, Any]]:
    return list(reversed(result.pipeline.get("runs") or []))


def render_summary(result: DemoResult) -> str:
    """The summary the demo prints at the end: versions, drift and performance, traffic,
    rollout, payload log."""
    parts = [f"Kubeloop demo: the whole loop in {result.seconds:.0f}s\n"]
    runs = [
        [
            r.get("id"),
            r.get("trigger"),
            r.get("result"),
            r.get("modelVersion"),
            *[_num((r.get("metrics") or {}).get(m)) for m in METRICS],
        ]
        for r in _runs(result)
    ]
    champion = (result.pipeline.get("champion") or {}).get("version")
    parts.append(f"Training runs (champion: version {champion})")
    parts.append(_table(["RUN", "TRIGGER", "RESULT", "VERSION", *m_upper()], runs))
    gated = same_rows(result)
    if gated:
        parts.append(
            "\nGate: the new version and the champion, scored on the same validation rows "
            "(the new run's)"
        )
        parts.append(_table(["RUN", "VERSION", *m_upper(), "RESULT"], gated))
        for r in _runs(result):
            if r.get("championMetrics"):
                parts.append(f"run {r['id']}: {r.get('message')}")
    features = sorted({f for c in result.checks for f in c.features})
    head = ["FEATURE", "TEST", *[f"{c.job}" for c in result.checks]]
    rows: list[list[Any]] = []
    for feature in features:
        first = next(c.features[feature] for c in result.checks if feature in c.features)
        cells = []
        for check in result.checks:
            f = check.features.get(feature)
            cells.append(
                "-" if f is None else f"{f['score']:.3f}{' DRIFT' if f['drifted'] else ''}"
            )
        rows.append([feature, f"{first.get('test')} ({first.get('threshold')})", *cells])
    rows.append(["verdict", "", *[c.verdict for c in result.checks]])
    rows.append(["drift share", "", *[_num(c.drift_share, 2) for c in result.checks]])
    rows.append(["rows checked", "", *[c.rows for c in result.checks]])
    rows += _performance_rows(result.checks)
    parts.append("\nDrift checks (score per feature; PSI: higher is drift, p-value: lower)")
    parts.append(_table(head, rows))
    traffic = [
        [t.phase, t.requests, t.rows, t.failed, _versions(t.by_version), f"{t.seconds:.1f}s"]
        for t in result.traffic
    ]
    total = ["total", sum(t.requests for t in result.traffic)]
    total += [sum(t.rows for t in result.traffic), sum(t.failed for t in result.traffic), "", ""]
    parts.append("\nRequests (V2 over the Service's loopback URL)")
    parts.append(
        _table(["PHASE", "REQUESTS", "ROWS", "FAILED", "ANSWERED BY", "TIME"], [*traffic, total])
    )
    states = " -> ".join(_state(s) for s in result.deployment_states)
    parts.append(f"\nModelDeployment states: {states}")
    # Each CanaryStep Event carries the analysis verdict that let that step through.
    for message in result.canary_messages:
        parts.append(f"Canary: {message}")
    parts.append(
        f"Payload log: {result.logged_rows} rows logged for {result.rows_sent} rows answered "
        f"({len(result.logged_request_ids)} request ids)"
    )
    if result.get_output:
        parts.append("\n$ kubeloop local get tp,md,dm -n ml\n" + result.get_output.rstrip())
    if result.report is not None:
        parts.append(f"Report: {result.report}")
    return "\n".join(parts)


def _performance_rows(checks: list[DriftCheck]) -> list[list[Any]]:
    """The checks' status.performance (spec.performance: delayed labels), when any has one:
    the verdict, each measured metric (the estimate beside it, `~`), the label coverage."""
    sections = [c.performance for c in checks]
    if not any(sections):
        return []
    rows: list[list[Any]] = [
        ["performance", "", *[(p or {}).get("verdict", "-") for p in sections]]
    ]
    names = sorted({m for p in sections for m in (p or {}).get("measured") or {}})
    for name in names:
        cells = []
        for p in sections:
            measured = ((p or {}).get("measured") or {}).get(name)
            estimated = ((p or {}).get("estimated") or {}).get(name)
            cell = _num(measured) if measured is not None else "-"
            cells.append(cell if estimated is None else f"{cell} (~{_num(estimated)})")
        rows.append([f"measured {name}", "", *cells])
    coverage = [_num((p or {}).get("coverage"), 2) if p else "-" for p in sections]
    rows.append(["label coverage", "", *coverage])
    return rows


def same_rows(result: DemoResult) -> list[list[Any]]:
    """For each run that scored the champion: a row for its version and one for the champion,
    both on that run's validation rows."""
    rows: list[list[Any]] = []
    for r in _runs(result):
        champion = r.get("championMetrics")
        if not champion:
            continue
        mine = r.get("metrics") or {}
        new = f"v{r.get('modelVersion')} (new)"
        old = f"v{r.get('championVersion')} (champion)"
        rows.append([r.get("id"), new, *[_num(mine.get(m)) for m in METRICS], r.get("result")])
        rows.append(["", old, *[_num(champion.get(m)) for m in METRICS], ""])
    return rows


def m_upper() -> list[str]:
    """Metric column headers."""
    return [m.upper() for m in METRICS]


def _versions(counts: Counter[str]) -> str:
    return ", ".join(f"v{v}: {n}" for v, n in sorted(counts.items()))


def _state(state: tuple[str | None, str | None, int | None]) -> str:
    version, canary, percent = state
    text = f"v{version}" if version else "none"
    return f"{text} + canary v{canary} {percent}%" if canary else text


def bar_chart(
    title: str,
    groups: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    threshold: float | None = None,
    highlight: Sequence[Sequence[bool]] | None = None,
    ymax: float | None = None,
    labels: bool = False,
    width: int = 640,
    height: int = 260,
) -> str:
    """A grouped bar chart as an inline <svg>; `highlight[s][g]` bars are drawn in red, with at
    least a sliver of height (a drifted p-value is often 0); `labels` prints each value."""
    left, right, top, bottom = 50, 10, 30, 60
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _, vs in series for v in vs if v is not None]
    top_value = ymax or max([*values, threshold or 0.0, 1e-9]) * 1.1
    group_w = plot_w / max(len(groups), 1)
    bar_w = group_w * 0.8 / max(len(series), 1)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{html.escape(title)}">',
        f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">'
        f"{html.escape(title)}</text>",
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#333"/>',
    ]
    for tick in range(5):
        value = top_value * tick / 4
        y = top + plot_h - plot_h * tick / 4
        out.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10">'
            f"{value:.2g}</text>"
        )
    for g, group in enumerate(groups):
        x0 = left + g * group_w + group_w * 0.1
        for s, (name, vs) in enumerate(series):
            v = vs[g]
            if v is None:
                continue
            h = plot_h * min(v / top_value, 1.0)
            red = highlight is not None and highlight[s][g]
            color = DRIFTED if red else COLORS[s % len(COLORS)]
            h = max(h, 3.0) if red else h
            out.append(
                f'<rect x="{x0 + s * bar_w:.1f}" y="{top + plot_h - h:.1f}" '
                f'width="{bar_w * 0.95:.1f}" height="{h:.1f}" fill="{color}">'
                f"<title>{html.escape(name)} {html.escape(group)}: {v:.4g}</title></rect>"
            )
            if labels:
                centre = x0 + s * bar_w + bar_w * 0.475
                out.append(
                    f'<text x="{centre:.1f}" y="{top + plot_h - h - 3:.1f}" '
                    f'text-anchor="middle" font-size="10" fill="{color}">{v:.3g}</text>'
                )
        out.append(
            f'<text x="{x0 + group_w * 0.4:.1f}" y="{top + plot_h + 14}" text-anchor="middle" '
            f'font-size="11">{html.escape(group)}</text>'
        )
    if threshold is not None:
        y = top + plot_h - plot_h * min(threshold / top_value, 1.0)
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#000" '
            f'stroke-dasharray="4 3"/><text x="{left + plot_w}" y="{y - 3:.1f}" '
            f'text-anchor="end" font-size="10">threshold {threshold:g}</text>'
        )
    x = left
    for s, (name, _) in enumerate(series):
        out.append(
            f'<rect x="{x}" y="{height - 18}" width="10" height="10" '
            f'fill="{COLORS[s % len(COLORS)]}"/><text x="{x + 14}" y="{height - 9}" '
            f'font-size="11">{html.escape(name)}</text>'
        )
        x += 14 + 7 * len(name) + 24  # about 7 px per character at 11 px
    out.append("</svg>")
    return "\n".join(out)


def rollout_buckets(
    timeline: Sequence[tuple[float, str]],
) -> tuple[list[str], dict[str, list[int]]]:
    """Answers per second of the rollout, by version: (second labels, version -> counts)."""
    if not timeline:
        return [], {}
    seconds = int(max(t for t, _ in timeline)) + 1
    versions = sorted({v for _, v in timeline})
    counts = {v: [0] * seconds for v in versions}
    for t, v in timeline:
        counts[v][int(t)] += 1
    return [str(s) for s in range(seconds)], counts


def _drift_charts(result: DemoResult) -> list[str]:
    charts = []
    by_test: dict[str, list[str]] = {}
    for check in result.checks:
        for feature, f in check.features.items():
            names = by_test.setdefault(str(f.get("test")), [])
            if feature not in names:
                names.append(feature)
    for test, features in sorted(by_test.items()):
        series = []
        highlight = []
        threshold = None
        for check in result.checks:
            scores = [check.features.get(f, {}).get("score") for f in features]
            series.append((f"{check.job} ({check.verdict})", scores))
            highlight.append([bool(check.features.get(f, {}).get("drifted")) for f in features])
            for name in features:
                threshold = check.features.get(name, {}).get("threshold", threshold)
        reading = (
            "p-value, drift below the line" if test in P_VALUE_TESTS else "drift above the line"
        )
        charts.append(
            bar_chart(
                f"Drift per feature: {test} ({reading}; red: drifted)",
                features,
                series,
                threshold=threshold,
                highlight=highlight,
                labels=True,
            )
        )
    return charts


def write_html(result: DemoResult, path: Path) -> Path:
    """Write the report (summary + plots) to `path`; returns it."""
    runs = [r for r in _runs(result) if r.get("metrics")]
    metrics_chart = bar_chart(
        "Metrics per model version",
        list(METRICS),
        [
            (
                f"v{r.get('modelVersion')} ({r.get('trigger')})",
                [r["metrics"].get(m) for m in METRICS],
            )
            for r in runs
        ],
        ymax=1.0,
    )
    rollout = next((t for t in result.traffic if t.phase == "rollout"), None)
    rollout_chart = ""
    if rollout is not None and rollout.timeline:
        seconds, counts = rollout_buckets(rollout.timeline)
        rollout_chart = bar_chart(
            "Rollout: answers per second by model version "
            f"({rollout.failed} failed of {rollout.requests})",
            seconds,
            [(f"v{v}", [float(c) for c in cs]) for v, cs in counts.items()],
            width=max(640, 14 * len(seconds) + 60),
        )
    body = "\n".join(
        [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8"><title>Kubeloop demo report</title>',
            "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}"
            "pre{background:#f6f6f6;padding:1em;overflow-x:auto}</style></head><body>",
            "<h1>Kubeloop demo: train → gate → serve → drift → retrain → roll out</h1>",
            *[f"<figure>{c}</figure>" for c in _drift_charts(result)],
            f"<figure>{metrics_chart}</figure>",
            f"<figure>{rollout_chart}</figure>" if rollout_chart else "",
            "<h2>Summary</h2>",
            f"<pre>{html.escape(render_summary(result))}</pre>",
            "</body></html>",
        ]
    )
    path.write_text(body, encoding="utf-8")
    return path
