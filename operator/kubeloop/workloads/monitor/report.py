"""The optional HTML report: a verdict table, the data-quality checks and one distribution
picture per feature.

Pictures are inline SVG drawn here (reference vs current shares per bin), so the report is one
self-contained file that needs no plotting library in the monitor image.
"""

from __future__ import annotations

import html
import itertools
from datetime import datetime

import numpy as np

from kubeloop.decide.quality import QualityVerdict
from kubeloop.profile import FloatArray
from kubeloop.workloads.monitor.accumulate import CategoricalAccumulator, NumericAccumulator
from kubeloop.workloads.monitor.verdict import DatasetVerdict

__all__ = ["quality_section", "render_report", "svg_bars"]

WIDTH, HEIGHT, PAD = 560, 180, 24
MAX_CATEGORY_BARS = 20
REF_COLOUR, CUR_COLOUR = "#4c78a8", "#f58518"


def _shares(counts: FloatArray) -> FloatArray:
    total = float(np.sum(counts))
    return np.asarray(counts, float) / total if total > 0 else np.zeros(len(counts))


def svg_bars(labels: list[str], reference: FloatArray, current: FloatArray, title: str) -> str:
    """Side-by-side bars of reference and current shares per bin, as an SVG element."""
    ref, cur = _shares(reference), _shares(current)
    top = float(max(ref.max(initial=0.0), cur.max(initial=0.0))) or 1.0
    n = max(len(labels), 1)
    slot = (WIDTH - 2 * PAD) / n
    bar = max(slot / 2 - 0.5, 0.5)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{html.escape(title)}">',
        f'<text x="{PAD}" y="14" font-size="12">{html.escape(title)}</text>',
    ]
    base = HEIGHT - PAD
    for i, label in enumerate(labels):
        x = PAD + i * slot
        for offset, share, colour in ((0.0, ref[i], REF_COLOUR), (bar, cur[i], CUR_COLOUR)):
            h = (HEIGHT - 2 * PAD) * float(share) / top
            parts.append(
                f'<rect x="{x + offset:.1f}" y="{base - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{html.escape(label)}: '
                f"{float(share):.4f}</title></rect>"
            )
    parts.append(
        f'<line x1="{PAD}" y1="{base}" x2="{WIDTH - PAD}" y2="{base}" stroke="#333"/>'
        f'<text x="{PAD}" y="{HEIGHT - 6}" font-size="10">'
        f"{html.escape(labels[0] if labels else '')}</text>"
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 6}" font-size="10" text-anchor="end">'
        f"{html.escape(labels[-1] if labels else '')}</text></svg>"
    )
    return "".join(parts)


def _numeric_picture(name: str, acc: NumericAccumulator) -> str:
    edges = acc.ref.fine_edges
    if edges.size == 0:
        return ""
    ref = np.concatenate([[0.0], acc.ref.fine_counts, [0.0], [acc.ref.missing]])
    cur = np.concatenate([acc.fine, [acc.missing]])
    labels = (
        [f"< {edges[0]:.4g}"]
        + [f"[{a:.4g}, {b:.4g})" for a, b in itertools.pairwise(edges)]
        + [f"> {edges[-1]:.4g}", "missing"]
    )
    return svg_bars(labels, ref, cur, f"{name}: share per bin (blue reference, orange current)")


def _categorical_picture(name: str, acc: CategoricalAccumulator) -> str:
    keys = acc.keys[:MAX_CATEGORY_BARS]
    rest_ref = sum(list(acc.ref.categories.values())[MAX_CATEGORY_BARS:]) + acc.ref.other
    rest_cur = float(acc.counts[MAX_CATEGORY_BARS:-1].sum() + acc.counts[-1])
    ref = np.array([*(acc.ref.categories[k] for k in keys), rest_ref, acc.ref.missing], float)
    cur = np.array([*acc.counts[: len(keys)], rest_cur, acc.missing], float)
    labels = [*keys, "other / unseen", "missing"]
    return svg_bars(
        labels, ref, cur, f"{name}: share per category (blue reference, orange current)"
    )


def quality_section(quality: QualityVerdict | None) -> str:
    """The data-quality verdict and every measured share, failed checks highlighted."""
    if quality is None:
        return "<h2>Data quality</h2><p>Not checked (spec.quality.enabled is false).</p>"
    failed = {(i.feature, i.check): i.threshold for i in quality.issues}
    rows = [
        f"<tr class='{'drift' if (feature, check) in failed else ''}'>"
        f"<td>{html.escape(feature)}</td><td>{check}</td><td>{value:.4g}</td>"
        f"<td>{failed.get((feature, check), '')}</td></tr>"
        for (feature, check), value in sorted(quality.shares.items())
    ]
    return (
        f"<h2>Data quality</h2><p>Verdict <b>{quality.verdict}</b>, "
        f"{len(quality.issues)} failed checks.</p>"
        "<table><tr><th>feature</th><th>check</th><th>share</th><th>threshold (failed)</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _ks_note(verdict: DatasetVerdict) -> str:
    """Where the KS p-values came from, when KS decided (a warning when from the sketch)."""
    ks = verdict.ks_reference
    if ks is None:
        return ""
    if ks.exact:
        return f"<p>KS computed exactly from the full reference data ({ks.source}).</p>"
    return (
        "<p><b>KS p-values are approximate</b> (from the reference profile's sketch, up to "
        f"~0.02 off scipy's at millions of rows): {html.escape(ks.reason or '')}</p>"
    )


def render_report(
    monitor: str,
    verdict: DatasetVerdict,
    accumulators: dict[str, NumericAccumulator | CategoricalAccumulator],
    when: datetime,
    model_version: str | None,
    *,
    quality: QualityVerdict | None = None,
) -> str:
    """The whole report as one HTML document."""
    rows = []
    for f in verdict.features:
        others = ", ".join(f"{t}={v:.4g}" for t, v in sorted(f.scores.items()))
        rows.append(
            f"<tr class='{'drift' if f.drifted else ''}'><td>{html.escape(f.name)}</td>"
            f"<td>{f.kind}</td><td>{f.test}</td><td>{f.score:.4g}</td><td>{f.threshold:g}</td>"
            f"<td>{'yes' if f.drifted else 'no'}</td><td>{f.missing}</td><td>{f.unseen}</td>"
            f"<td>{html.escape(others)}</td></tr>"
        )
    pictures = []
    for name, acc in accumulators.items():
        if isinstance(acc, NumericAccumulator):
            pictures.append(_numeric_picture(name, acc))
        else:
            pictures.append(_categorical_picture(name, acc))
    title = f"Drift report: {html.escape(monitor)}"
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{title}</title><style>body{{font-family:sans-serif}}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
        "tr.drift{background:#fde0dc}</style></head><body>"
        f"<h1>{title}</h1><p>Verdict <b>{verdict.verdict}</b>, drift share "
        f"{verdict.drift_share:.3f}, {verdict.rows} rows, model version "
        f"{html.escape(model_version or '-')}, checked {when.isoformat()}.</p>"
        + _ks_note(verdict)
        + "<table><tr><th>feature</th><th>kind</th><th>test</th><th>score</th><th>threshold</th>"
        "<th>drifted</th><th>missing</th><th>unseen</th><th>all scores</th></tr>"
        + "".join(rows)
        + "</table>"
        + quality_section(quality)
        + "<h2>Distributions</h2>"
        + "".join(f"<div>{p}</div>" for p in pictures if p)
        + "</body></html>"
    )
