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


def _cases() -> list[tuple[str, int, int, bool]]:
    """(name, rows, classes, ties): binary and multiclass, with and without tied scores."""
    return [
        ("binary", 400, 2, False),
        ("binary-ties", 400, 2, True),
        ("binary-few", 7, 2, True),
        ("three", 300, 3, False),
        ("ten-ties", 1000, 10, True),
        ("imbalanced", 500, 2, False),
    ]


@pytest.mark.parametrize(("name", "rows", "k", "ties"), _cases(), ids=[c[0] for c in _cases()])
def test_classification_metrics_equal_scikit_learns(
    name: str, rows: int, k: int, ties: bool
) -> None:
    from sklearn import metrics as m

    rng = np.random.default_rng(rows + k)
    labels = [f"c{i}" for i in range(k)]  # strings: sorted, as a fitted model's classes_
    weights = [0.9, 0.1] if name == "imbalanced" else None
    y = rng.choice(labels, size=rows, p=weights)
    logits = rng.normal(size=(rows, k)) + 1.5 * (y[:, None] == np.array(labels))
    if ties:
        logits = np.round(logits)  # many equal scores: the AUC's half-credit for ties
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    # What evaluate scores: rows scaled to sum to 1 again (this can break or make exact ties).
    scored = proba / proba.sum(axis=1, keepdims=True)
    pred = np.array(labels)[proba.argmax(axis=1)]

    got = evaluate("classification", y, pred, proba, classes=labels)

    binary = k == 2
    assert got["accuracy"] == pytest.approx(m.accuracy_score(y, pred), abs=1e-12)
    f1 = m.f1_score(
        y,
        pred,
        labels=labels,
        average="binary" if binary else "macro",
        pos_label=labels[1] if binary else 1,
        zero_division=0.0,
    )
    assert got["f1"] == pytest.approx(f1, abs=1e-12)
    assert got["log_loss"] == pytest.approx(m.log_loss(y, scored, labels=labels), abs=1e-12)
    auc = (
        m.roc_auc_score(y == labels[1], scored[:, 1])
        if binary
        else m.roc_auc_score(y, scored, multi_class="ovr", labels=labels)
    )
    assert got["roc_auc"] == pytest.approx(auc, abs=1e-12)


def test_regression_metrics_equal_scikit_learns() -> None:
    from sklearn import metrics as m

    rng = np.random.default_rng(3)
    y = rng.normal(size=300)
    pred = y + rng.normal(scale=0.3, size=300)
    got = evaluate("regression", y, pred)
    assert got["rmse"] == pytest.approx(m.root_mean_squared_error(y, pred), abs=1e-12)
    assert got["mae"] == pytest.approx(m.mean_absolute_error(y, pred), abs=1e-12)
    assert got["r2"] == pytest.approx(m.r2_score(y, pred), abs=1e-12)
    constant = np.full(10, 2.0)
    assert evaluate("regression", constant, constant)["r2"] == 1.0 == m.r2_score(constant, constant)
    assert evaluate("regression", constant, constant + 1)["r2"] == 0.0


def test_undefined_metrics_are_left_out_or_zero() -> None:
    """A class absent from the validation rows: no roc_auc (scikit-learn would say nan); a
    class never predicted nor present scores f1 0.0 (zero_division=0.0)."""
    y = np.array(["a", "b", "a", "b"])
    proba = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.3, 0.6, 0.1]])
    got = evaluate("classification", y, np.array(["a", "b", "a", "b"]), proba, ["a", "b", "c"])
    assert "roc_auc" not in got
    assert got["f1"] == pytest.approx(2 / 3)  # 1, 1 and 0.0 for "c"
    single = evaluate("classification", np.array([1, 1]), np.array([1, 1]), np.eye(2), [0, 1])
    assert "roc_auc" not in single and single["accuracy"] == 1.0
