"""`kubeloop_training_*` metrics pushed to a Pushgateway when KUBELOOP_PUSHGATEWAY_URL is set.

`kubeloop_training_runs_total` belongs to the operator (it counts runs across pods); the
trainer pushes the facts only it knows, grouped by namespace and pipeline, replacing the
previous run's group.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

__all__ = ["JOB", "build_registry", "push_training_metrics"]

JOB = "kubeloop-trainer"
log = logging.getLogger("kubeloop.train")


def build_registry(pipeline: str, result: dict[str, Any], duration: float) -> CollectorRegistry:
    """Gauges describing one finished run (successful or not)."""
    registry = CollectorRegistry()
    ok = bool(result.get("ok"))
    Gauge(
        "kubeloop_training_success", "1 when the last run wrote a version.", registry=registry
    ).set(1 if ok else 0)
    Gauge(
        "kubeloop_training_duration_seconds", "Wall time of the last run.", registry=registry
    ).set(duration)
    if ok:
        Gauge(
            "kubeloop_training_last_success_timestamp_seconds",
            "Unix time of the last run that wrote a version.",
            registry=registry,
        ).set(time.time())
        Gauge(
            "kubeloop_training_model_version", "Version the last run wrote.", registry=registry
        ).set(float(result.get("version", 0)))
    metric = Gauge(
        "kubeloop_training_metric",
        "Validation metric of the last run.",
        ["pipeline", "metric"],
        registry=registry,
    )
    for name, value in (result.get("metrics") or {}).items():
        metric.labels(pipeline, name).set(value)
    rows = Gauge(
        "kubeloop_training_rows",
        "Rows used by the last run.",
        ["pipeline", "split"],
        registry=registry,
    )
    for split, value in (result.get("rows") or {}).items():
        rows.labels(pipeline, split).set(value)
    if "epochs" in result:
        Gauge("kubeloop_training_epochs", "Epochs the last run trained.", registry=registry).set(
            result["epochs"]
        )
    return registry


def push_training_metrics(
    url: str, namespace: str, pipeline: str, result: dict[str, Any], duration: float
) -> bool:
    """Push; a Pushgateway that is down is logged, never a failed run."""
    try:
        push_to_gateway(
            url,
            job=JOB,
            grouping_key={"namespace": namespace, "pipeline": pipeline},
            registry=build_registry(pipeline, result, duration),
            timeout=10,
        )
    except Exception as exc:
        log.warning("could not push metrics to %s: %s", url, exc)
        return False
    return True
