"""Tiny real models, one per model format, saved with `kubeloop.modelformat.save_version`.

Each builder fits on the same numeric rows and returns the version folder and the model's
own offline answer (from the native library, not through kubeloop) for `ROWS`, which the
round-trip tests compare with what `load_predictor` and `kubeloop serve` give.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kubeloop.formats import Signature
from kubeloop.modelformat import Feature, save_version

__all__ = [
    "BUILDERS",
    "CLASSES",
    "FEATURES",
    "ROWS",
    "Built",
    "MeanPredictor",
    "columns_of",
]

FEATURES = tuple(Feature(f"f{i}", "float64", "numeric") for i in range(3))
CLASSES = ("low", "mid", "high")
_RNG = np.random.default_rng(3)
X = _RNG.normal(size=(120, 3))
Y_CLASS = np.digitize(X[:, 0] + 0.5 * X[:, 1], [-0.5, 0.5])  # 0, 1, 2
Y_VALUE = 2.0 * X[:, 0] - X[:, 2] + 0.1 * _RNG.normal(size=120)
ROWS = np.random.default_rng(4).normal(size=(6, 3))
CLASSIFY = Signature(FEATURES, "classification", CLASSES)
REGRESS = Signature(FEATURES, "regression")


@dataclass(frozen=True)
class Built:
    """A saved version and the native library's answer for ROWS."""

    folder: Path
    task: str
    expected: np.ndarray[Any, Any]  # (n, k) probabilities or (n,) values
    labels: np.ndarray[Any, Any] | None = None  # classifiers: the predicted class per row


def columns_of(rows: np.ndarray[Any, Any]) -> dict[str, np.ndarray[Any, Any]]:
    """{f0: ..., f1: ..., f2: ...} for a [n, 3] matrix."""
    return {f.name: rows[:, j].copy() for j, f in enumerate(FEATURES)}


def skops_version(folder: Path) -> Built:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=500).fit(X, np.array(CLASSES)[Y_CLASS])
    # probabilities follow the estimator's own (sorted) classes_
    signature = Signature(FEATURES, "classification", tuple(model.classes_))
    save_version(folder, model, "skops", signature)
    return Built(folder, "classification", model.predict_proba(ROWS), model.predict(ROWS))


def sklearn_version(folder: Path, **manifest: Any) -> Built:
    """A joblib pickle written by user code (no `producedBy`): needs the allowance."""
    from sklearn.linear_model import Ridge

    model = Ridge().fit(X, Y_VALUE)
    save_version(folder, model, "sklearn", REGRESS, manifest)
    return Built(folder, "regression", model.predict(ROWS))


def xgboost_version(folder: Path) -> Built:
    import xgboost

    model = xgboost.XGBClassifier(n_estimators=8, max_depth=3, n_jobs=1, random_state=0)
    model.fit(X, Y_CLASS)
    save_version(folder, model, "xgboost", CLASSIFY)
    proba = model.predict_proba(ROWS.astype(np.float32))
    return Built(folder, "classification", proba, np.array(CLASSES)[proba.argmax(axis=1)])


def lightgbm_version(folder: Path) -> Built:
    import lightgbm

    model = lightgbm.LGBMRegressor(n_estimators=10, num_leaves=4, min_child_samples=5)
    model.set_params(n_jobs=1, verbose=-1)
    model.fit(X, Y_VALUE)
    save_version(folder, model, "lightgbm", REGRESS)
    return Built(folder, "regression", model.predict(ROWS.astype(np.float32)))


def torchscript_version(folder: Path) -> Built:
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    model = torch.nn.Sequential(net, torch.nn.Softmax(dim=1)).eval()
    save_version(folder, model, "torchscript", CLASSIFY)
    with torch.no_grad():
        expected = model(torch.from_numpy(ROWS.astype(np.float32))).double().numpy()
    return Built(folder, "classification", expected, np.array(CLASSES)[expected.argmax(axis=1)])


def onnx_version(folder: Path) -> Built:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=500).fit(X, Y_CLASS)
    onx = to_onnx(model, X[:1].astype(np.float32), options={id(model): {"zipmap": False}})
    save_version(folder, onx, "onnx", CLASSIFY)
    proba = model.predict_proba(ROWS.astype(np.float32))
    return Built(folder, "classification", proba, np.array(CLASSES)[proba.argmax(axis=1)])


class MeanPredictor:
    """A custom predictor: `load(folder)` reads its weights, `predict(columns)` gives values."""

    def __init__(self, weights: np.ndarray[Any, Any] | None = None) -> None:
        self.weights = weights

    def save(self, folder: Path) -> None:
        assert self.weights is not None
        (folder / "weights.txt").write_text(" ".join(repr(float(w)) for w in self.weights))

    def load(self, folder: Path) -> None:
        self.weights = np.array([float(w) for w in (folder / "weights.txt").read_text().split()])

    def predict(self, columns: dict[str, np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
        assert self.weights is not None
        matrix = np.column_stack([columns[f.name] for f in FEATURES]).astype(np.float64)
        return matrix @ self.weights


CUSTOM = "tests.storage.format_models:MeanPredictor"


def custom_version(folder: Path) -> Built:
    weights = np.array([0.5, -1.0, 2.0])
    save_version(folder, MeanPredictor(weights), "custom", REGRESS)
    return Built(folder, "regression", ROWS @ weights)


# format name -> builder; `sklearn` needs KUBELOOP_ALLOW_PICKLE, `custom` its allow-list entry
BUILDERS: dict[str, Callable[[Path], Built]] = {
    "skops": skops_version,
    "sklearn": sklearn_version,
    "xgboost": xgboost_version,
    "lightgbm": lightgbm_version,
    "torchscript": torchscript_version,
    "onnx": onnx_version,
    "custom": custom_version,
}
