"""Metrics your code computed: merged into `<outputDir>/metrics.json` for Kubeloop to record
(as the run's reportedMetrics) next to the metrics it computes itself on the validation split.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from typing import Any

from kubeloop_sdk.context import context
from kubeloop_sdk.files import write_atomic

__all__ = ["METRICS_FILE", "log_metrics", "metric_values"]

METRICS_FILE = "metrics.json"


def metric_values(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The metrics as floats; ValueError naming the first that is not a finite number."""
    if not isinstance(metrics, Mapping):
        raise ValueError(f"log_metrics: a dict of name -> number, not {type(metrics).__name__}")
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"log_metrics: metric names are non-empty strings, not {name!r}")
        # numbers.Real: int, float and numpy's scalars; a tensor needs .item() first
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(
                f"log_metrics: {name}: a number, not {type(value).__name__} {value!r} "
                "(pass float(x), or x.item() for a tensor)"
            )
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"log_metrics: {name}: {number} is not a finite number")
        out[name] = number
    return out


def log_metrics(metrics: Mapping[str, Any]) -> None:
    """Merge `metrics` into metrics.json (rank 0 only; a later value of a name wins)."""
    values = metric_values(metrics)
    ctx = context()
    if not ctx.is_main:
        return
    path = ctx.output_dir / METRICS_FILE
    try:
        merged = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        merged = {}
    merged.update(values)
    write_atomic(path, (json.dumps(merged, indent=2, sort_keys=True) + "\n").encode("utf-8"))
