"""Validation metrics: accuracy, roc_auc, f1, log_loss or rmse, mae, r2."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["evaluate"]

log = logging.getLogger("kubeloop.train")


def evaluate(
    task: str,
    y_true: np.ndarray[Any, Any],
    y_pred: np.ndarray[Any, Any],
    proba: np.ndarray[Any, Any] | None = None,
    classes: Sequence[Any] | None = None,
) -> dict[str, float]:
    """The task's metrics on the validation set; a metric undefined on it is left out."""
    from sklearn import metrics as m

    if task == "regression":
        return {
            "rmse": float(math.sqrt(m.mean_squared_error(y_true, y_pred))),
            "mae": float(m.mean_absolute_error(y_true, y_pred)),
            "r2": float(m.r2_score(y_true, y_pred)),
        }
    labels = list(classes or [])
    binary = len(labels) == 2
    out = {
        "accuracy": float(m.accuracy_score(y_true, y_pred)),
        "f1": float(
            m.f1_score(
                y_true,
                y_pred,
                labels=labels,
                average="binary" if binary else "macro",
                pos_label=labels[1] if binary else 1,
                zero_division=0.0,
            )
        ),
    }
    if proba is not None:
        # A float32 model's rows sum to 1 only within float32 rounding, which scikit-learn's
        # log_loss warns about (and is to refuse): in float64, each row scaled to sum to 1.
        proba = np.asarray(proba, dtype=np.float64)
        proba = proba / proba.sum(axis=1, keepdims=True)
        out["log_loss"] = float(m.log_loss(y_true, proba, labels=labels))
        if len(set(np.asarray(y_true).tolist())) < 2:
            log.warning("roc_auc left out: the validation rows hold a single class")
        else:
            out["roc_auc"] = float(
                m.roc_auc_score(y_true, proba[:, 1])
                if binary
                else m.roc_auc_score(y_true, proba, multi_class="ovr", labels=labels)
            )
    return dict(sorted(out.items()))
