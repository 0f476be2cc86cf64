"""DriftMonitor performance: the verdict from measured metrics, and its retrain episode.

A verdict needs enough labels: fewer than `minLabelledRows` labelled rows, or a coverage below
`minCoverage`, is InsufficientLabels (it says nothing about the model, like drift's NoData).
Otherwise a measured metric past its threshold (below it for accuracy, roc_auc, f1; above it
for rmse, mae) is Degraded; a threshold on a metric that could not be computed (roc_auc with
one class among the labels) is not judged. The label-free estimate never decides.

Episodes follow drift's rule (decide/retrain.py): a run of Degraded verdicts asks once;
OK ends the episode; InsufficientLabels keeps it; a broken feed in the same window holds it.
A check that finds drift and degradation annotates the pipeline with the same value (a
function of the check's Job): one run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kubeloop.api.monitor import HIGHER_IS_BETTER
from kubeloop.decide.retrain import RetrainCause

__all__ = ["DEGRADED_CAUSE", "PerformanceVerdict", "as_episode", "performance_verdict"]

DEGRADED_CAUSE = RetrainCause(
    "performance degraded", "spec.performance.onDegraded.retrain", "Degraded"
)

# A performance verdict read as a drift verdict by the shared episode rule.
_AS_EPISODE = {"Degraded": "Drift", "OK": "NoDrift", "InsufficientLabels": "NoData"}


@dataclass(frozen=True)
class PerformanceVerdict:
    """`verdict`: OK | Degraded | InsufficientLabels; `breached`: the metrics past threshold."""

    verdict: str
    breached: tuple[str, ...] = ()


def performance_verdict(
    measured: Mapping[str, float | None],
    *,
    labelled_rows: int,
    coverage: float,
    min_labelled_rows: int,
    min_coverage: float,
    thresholds: Mapping[str, float],
) -> PerformanceVerdict:
    """The verdict of one check from its `measured` metrics (None: undefined on these rows)."""
    if labelled_rows < min_labelled_rows or coverage < min_coverage:
        return PerformanceVerdict("InsufficientLabels")
    breached = []
    for metric, limit in sorted(thresholds.items()):
        value = measured.get(metric)
        if value is None:
            continue
        if (value < limit) if metric in HIGHER_IS_BETTER else (value > limit):
            breached.append(metric)
    return PerformanceVerdict("Degraded" if breached else "OK", tuple(breached))


def as_episode(verdict: str) -> str:
    """A performance verdict as the drift verdict the shared episode rule
    (`retrain_episode`, with cause DEGRADED_CAUSE) reads."""
    return _AS_EPISODE.get(verdict, verdict)
