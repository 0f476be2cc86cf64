"""Inputs shared by the decision tables: a pipeline spec as a user writes it, data checks."""

from __future__ import annotations

from typing import Any

__all__ = ["BASE_SPEC", "NEW", "OLD", "check"]

BASE_SPEC: dict[str, Any] = {
    "data": {"train": "s3://datasets/churn/train/", "target": "churned"},
    "model": {
        "framework": "sklearn",
        "task": "classification",
        "estimator": "HistGradientBoostingClassifier",
        "params": {"max_iter": 200},
    },
    "resources": {"cpu": "2", "memory": "4Gi"},
    "artifacts": "s3://models/churn/",
    "promotion": {"metric": "roc_auc", "minimum": 0.75},
    "seed": 42,
}

OLD, NEW = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def check(fingerprint: str | None, at: str = "2026-01-01T10:30:00Z") -> dict[str, Any]:
    """status.dataCheck of a finished data-watch Job that found `fingerprint` at `at`."""
    return {"job": "churn-datawatch-1", "checkedAt": at, "fingerprint": fingerprint}
