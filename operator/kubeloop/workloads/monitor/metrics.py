"""Drift metrics pushed to the Pushgateway, grouped by namespace and monitor.

One push replaces the whole group (HTTP PUT), so features that left the spec stop being
reported instead of lingering with their last value. Prometheus scrapes the Pushgateway with
`honor_labels: true`, which keeps `namespace` and `monitor` from the grouping key.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from kubeloop.api.monitor import PUSHGATEWAY_JOB, pushgateway_group
from kubeloop.workloads.monitor.verdict import DatasetVerdict

__all__ = ["JOB", "add_performance", "add_prediction_drift", "build_registry", "push_metrics"]

JOB = PUSHGATEWAY_JOB


def _scores(
    registry: CollectorRegistry, verdict: DatasetVerdict, name: str, help_: str, label: str
) -> None:
    """Every test's statistic of every column judged, labelled by column (`label`) and test."""
    score = Gauge(name, help_, [label, "test"], registry=registry)
    for column in verdict.features:
        for test, value in column.scores.items():
            score.labels(column.name, test).set(value)


def build_registry(
    result: DatasetVerdict, duration_seconds: float, schedule_interval_seconds: float | None
) -> CollectorRegistry:
    """The metrics of one run (names used by the chart's rules and dashboard)."""
    registry = CollectorRegistry()
    _scores(
        registry,
        result,
        "kubeloop_drift_score",
        "Drift statistic per feature and test (p-value for ks and chi2, their effect sizes "
        "ks_statistic and cramers_v, else a distance).",
        "feature",
    )
    drifted = Gauge(
        "kubeloop_drift_feature_drifted",
        "1 when the feature drifted under the monitor's test and threshold.",
        ["feature", "test"],
        registry=registry,
    )
    for feature in result.features:
        drifted.labels(feature.name, feature.test).set(int(feature.drifted))
    Gauge("kubeloop_drift_share", "Share of features drifted.", registry=registry).set(
        result.drift_share
    )
    Gauge(
        "kubeloop_drift_detected", "1 when the dataset drifted (verdict Drift).", registry=registry
    ).set(int(result.verdict == "Drift"))
    Gauge("kubeloop_drift_nodata", "1 when the window had too few rows.", registry=registry).set(
        int(result.verdict == "NoData")
    )
    Gauge("kubeloop_drift_rows", "Rows in the window.", registry=registry).set(result.rows)
    Gauge("kubeloop_drift_duration_seconds", "Wall time of the check.", registry=registry).set(
        duration_seconds
    )
    if schedule_interval_seconds is not None:
        Gauge(
            "kubeloop_drift_schedule_interval_seconds",
            "Seconds between two scheduled checks.",
            registry=registry,
        ).set(schedule_interval_seconds)
    Gauge(
        "kubeloop_drift_last_success_timestamp_seconds",
        "Unix time of the last check that reached a verdict.",
        registry=registry,
    ).set(time.time())
    return registry


def add_performance(registry: CollectorRegistry, result: dict[str, Any]) -> None:
    """The performance section of a check (`PerformanceResult.as_result()`) as metrics."""
    value = Gauge(
        "kubeloop_model_performance",
        "Model performance per metric: measured on labelled rows, or estimated without labels "
        "(CBPE).",
        ["metric", "source"],
        registry=registry,
    )
    for source in ("measured", "estimated"):
        for metric, number in (result.get(source) or {}).items():
            value.labels(metric, source).set(number)
    Gauge(
        "kubeloop_model_performance_label_coverage",
        "Share of the performance window's served rows that have a label.",
        registry=registry,
    ).set(result.get("coverage", 0.0))
    Gauge(
        "kubeloop_model_performance_labelled_rows",
        "Served rows of the performance window joined with a label.",
        registry=registry,
    ).set(result.get("labelledRows", 0))
    Gauge(
        "kubeloop_model_performance_degraded",
        "1 when a measured metric is past its threshold (verdict Degraded).",
        registry=registry,
    ).set(int(result.get("verdict") == "Degraded"))


def add_prediction_drift(registry: CollectorRegistry, verdict: DatasetVerdict) -> None:
    """Drift of the model's outputs, apart from the input features' metrics."""
    _scores(
        registry,
        verdict,
        "kubeloop_prediction_drift_score",
        "Drift statistic of a model output (`_prediction`, `_proba_<class>`) per test.",
        "output",
    )
    Gauge(
        "kubeloop_prediction_drift_detected",
        "1 when the prediction or a class probability drifted.",
        registry=registry,
    ).set(int(any(f.drifted for f in verdict.features)))


def push_metrics(url: str, namespace: str, monitor: str, registry: CollectorRegistry) -> None:
    """Replace this monitor's group on the Pushgateway at `url`."""
    push_to_gateway(
        url,
        job=JOB,
        grouping_key=pushgateway_group(namespace, monitor),
        registry=registry,
        timeout=10,
    )
