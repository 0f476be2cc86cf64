"""What `kubeloop trials` shows of a version's search (its manifest's `search`): a row per trial
and rung, then the report: the score of every trial and the effect of each parameter, as text
bars a terminal (and a run's log) shows as they are. Pure functions; no I/O here."""

from __future__ import annotations

import json
from typing import Any

from kubeloop.api.search import SearchRecord, SearchTrial

__all__ = ["render_search_report", "render_trials", "trial_rows"]

_BAR = 30  # characters of the longest bar
_BINS = 4  # a numeric parameter with more distinct values is shown in this many ranges


def _budget(trial: SearchTrial) -> str:
    budget = trial.assignment.budget
    if budget is None:
        return "-"
    share = f"/{budget.max}" if budget.max else ""  # auto: the share value/max
    return f"{budget.parameter}={budget.value}{share}"


def trial_rows(record: SearchRecord) -> list[dict[str, Any]]:
    """One row per trial and rung, in trial order: what `kubeloop trials -o json` lists."""
    rows = []
    for entry in sorted(record.trials, key=lambda t: (t.assignment.trial, t.assignment.rung)):
        a, outcome = entry.assignment, entry.outcome
        rows.append(
            {
                "trial": a.trial,
                "rung": a.rung,
                "estimator": a.estimator,
                "params": a.params,
                "budget": _budget(entry),
                "score": outcome.score if outcome else None,
                "state": outcome.state if outcome else "Pending",
                "seconds": outcome.seconds if outcome else None,
                "message": outcome.message if outcome else "",
                "winner": a.trial == record.winner,
            }
        )
    return rows


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def render_trials(rows: list[dict[str, Any]], metric: str) -> str:
    """The table: `*` marks the winner; ESTIMATOR `-` is spec.model.estimator."""
    header = ["TRIAL", "RUNG", "ESTIMATOR", "BUDGET", metric.upper(), "STATE", "SECONDS", "PARAMS"]
    body = [
        [
            f"{row['trial']}{'*' if row['winner'] else ''}",
            str(row["rung"]),
            row["estimator"] or "-",
            row["budget"],
            _cell(row["score"]),
            row["state"],
            _cell(row["seconds"]),
            json.dumps(row["params"], sort_keys=True, separators=(",", ":")),
        ]
        for row in rows
    ]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *body]]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _bars(labels: list[str], values: list[float], low: float, high: float) -> list[str]:
    width = max((len(label) for label in labels), default=0)
    span = (high - low) or 1.0
    out = []
    for label, value in zip(labels, values, strict=True):
        # the lowest score still gets one mark: a bar of nothing reads as "no score"
        length = 1 + round((value - low) / span * (_BAR - 1))
        out.append(f"  {label.ljust(width)}  {'#' * length}{' ' * (_BAR - length)}  {value:.4f}")
    return out


def _span(low: float, high: float) -> str:
    return f"{low:.4g}" if low == high else f"{low:.4g}..{high:.4g}"


def _groups(values: list[Any], scores: list[float]) -> list[tuple[str, float]]:
    """(label, mean score) per value; numbers with more than _BINS values per range."""
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    pairs = sorted(zip(values, scores, strict=True), key=lambda p: (numeric and p[0], str(p[0])))
    if numeric and len({v for v, _ in pairs}) > _BINS:
        size = -(-len(pairs) // _BINS)
        chunks = [pairs[i : i + size] for i in range(0, len(pairs), size)]
        return [
            (_span(chunk[0][0], chunk[-1][0]), sum(s for _, s in chunk) / len(chunk))
            for chunk in chunks
        ]
    grouped: dict[str, list[float]] = {}
    for value, score in pairs:
        grouped.setdefault(json.dumps(value) if not isinstance(value, str) else value, []).append(
            score
        )
    return [(label, sum(s) / len(s)) for label, s in grouped.items()]


def render_search_report(rows: list[dict[str, Any]], metric: str, default_estimator: str) -> str:
    """Score per trial (each trial's highest rung with a score), then per parameter the mean
    score of the trials that tried each value (numbers in ranges)."""
    best: dict[int, dict[str, Any]] = {}
    for row in rows:
        if row["score"] is not None and row["rung"] >= best.get(row["trial"], {}).get("rung", -1):
            best[row["trial"]] = row
    if not best:
        return f"no trial has a {metric} score yet\n"
    scored = [best[t] for t in sorted(best)]
    scores = [float(r["score"]) for r in scored]
    low, high = min(scores), max(scores)
    labels = [f"{r['trial']}{'*' if r['winner'] else ''} r{r['rung']}" for r in scored]
    lines = [f"score per trial ({metric}; * the winner, rN its highest rung)"]
    lines += _bars(labels, scores, low, high)
    effects: dict[str, list[Any]] = {"estimator": []}
    for row in scored:
        effects["estimator"].append(row["estimator"] or default_estimator)
        for name in row["params"]:
            effects.setdefault(name, [])
    for name, values in effects.items():
        if name != "estimator":
            values.extend(r["params"].get(name) for r in scored)
        tried = [(v, s) for v, s in zip(values, scores, strict=True) if v is not None]
        if len({json.dumps(v) for v, _ in tried}) < 2:
            continue  # one value tried: no effect to show
        groups = _groups([v for v, _ in tried], [s for _, s in tried])
        lines.append(f"effect of {name} (mean {metric} of the trials with each value)")
        lines += _bars([g for g, _ in groups], [s for _, s in groups], low, high)
    return "\n".join(lines) + "\n"
