"""Validation metrics as the trainer and the publish step compute them."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import log_loss

from kubeloop.workloads.trainer.metrics import evaluate


@pytest.mark.parametrize("widened", [False, True])
def test_float32_probabilities_score_without_a_warning_and_as_in_float64(widened: bool) -> None:
    """A float32 softmax (TorchScript, ONNX) sums to 1 only within float32 rounding, also
    once the format's prediction has widened it to float64."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 10))
    exact = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    proba = exact.astype(np.float32)
    if widened:
        proba = proba.astype(np.float64)
    y = rng.integers(0, 10, size=500)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = evaluate("classification", y, proba.argmax(axis=1), proba, classes=range(10))
    assert got["log_loss"] == pytest.approx(log_loss(y, exact, labels=list(range(10))), rel=1e-6)
    assert set(got) == {"accuracy", "f1", "log_loss", "roc_auc"}
