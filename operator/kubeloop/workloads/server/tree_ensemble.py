"""A vectorised evaluator for fitted HistGradientBoosting models (numeric splits).

Why: sklearn predicts one tree at a time, one Python-level call per tree, plus input
validation, so a 100-tree model costs ~0.5-1 ms per call whether it scores 1 row or 64. Serving
traffic is mostly tiny batches, so that overhead is most of the latency at low concurrency.
Here every tree's nodes are packed into flat arrays once at load, and all trees advance one
level per step with a few numpy operations over (trees x rows): the same comparisons sklearn
makes (`x <= threshold`, NaN follows `missing_go_to_left`), on the same float64 values, so the
same leaves are reached; only the order of adding leaf values differs (last-bit rounding).

Models with categorical splits or an internal column preprocessor are not compiled; the
caller falls back to sklearn. `compile_hgb` returns None for anything it does not recognise.
Random forests get the same treatment in `forest.py`; `accelerate` wraps whichever applies.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from kubeloop.workloads.server.forest import compile_forest, descend
from kubeloop.workloads.server.predictor import FeatureLike, PredictionLike, PredictorLike

log = logging.getLogger("kubeloop.serve")

# Up to this many rows the flat evaluator beats sklearn (measured: ~0.25 ms vs ~0.95 ms at 1
# row, ~0.7 ms vs ~0.9 ms at 16, slower beyond ~24 rows for a 100-tree, 31-leaf model); larger
# batches go to sklearn, whose per-row cost is lower.
SMALL_BATCH_ROWS = 16

__all__ = [
    "SMALL_BATCH_ROWS",
    "AcceleratedPredictor",
    "CompiledEnsemble",
    "CompiledModel",
    "accelerate",
    "compile_hgb",
]


class CompiledModel(Protocol):
    """What AcceleratedPredictor needs of a compiled model."""

    max_rows: ClassVar[int]  # larger batches go to sklearn, cheaper per row there
    exact: ClassVar[bool]  # answers must equal sklearn's (else: agree to rtol 1e-9)

    @property
    def n_features(self) -> int: ...
    def predict_proba(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]: ...
    def predict(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]: ...


@dataclass(frozen=True)
class CompiledEnsemble:
    """Flat node arrays of every tree of one fitted HistGradientBoosting model."""

    feature: np.ndarray[Any, Any]  # int64, per node
    threshold: np.ndarray[Any, Any]  # float64
    nan_left: np.ndarray[Any, Any]  # bool
    left: np.ndarray[Any, Any]  # int64, global node index (leaves point to themselves)
    right: np.ndarray[Any, Any]
    value: np.ndarray[Any, Any]  # float64
    is_leaf: np.ndarray[Any, Any]  # bool
    roots: np.ndarray[Any, Any]  # (trees,) global index of each root
    tree_class: np.ndarray[Any, Any]  # (trees,) which raw-score column a tree adds to
    depth: int
    baseline: np.ndarray[Any, Any]  # (k,)
    n_features: int
    model: Any  # the sklearn estimator: its loss turns raw scores into outputs
    max_rows: ClassVar[int] = SMALL_BATCH_ROWS
    exact: ClassVar[bool] = False  # leaf values are added in another order than sklearn's

    def raw_predict(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Raw scores (n, k) for a float64 matrix (n, n_features)."""
        n = x.shape[0]
        node = descend(self, np.ascontiguousarray(x, dtype=np.float64).ravel(), n)  # (trees, n)
        leaf = self.value[node]  # (trees, n)
        k = self.baseline.shape[0]
        raw = np.empty((n, k), dtype=np.float64)
        for c in range(k):
            raw[:, c] = leaf[self.tree_class == c].sum(axis=0) + self.baseline[c]
        return raw

    def predict_proba(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Class probabilities, as the classifier's predict_proba."""
        raw = self.raw_predict(x)
        proba: np.ndarray[Any, Any] = self.model._loss.predict_proba(
            raw[:, 0] if raw.shape[1] == 1 else raw
        )
        return proba

    def predict(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Regression predictions, as the regressor's predict."""
        raw = self.raw_predict(x)
        out: np.ndarray[Any, Any] = self.model._loss.link.inverse(raw[:, 0])
        return out


def compile_hgb(model: Any) -> CompiledEnsemble | None:
    """Pack a fitted HistGradientBoosting{Classifier,Regressor}; None if not supported."""
    try:
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    except ImportError:
        return None
    if not isinstance(model, HistGradientBoostingClassifier | HistGradientBoostingRegressor):
        return None
    predictors = getattr(model, "_predictors", None)
    if not predictors or getattr(model, "_preprocessor", None) is not None:
        return None
    if getattr(model, "is_categorical_", None) is not None and np.any(model.is_categorical_):
        return None
    features, thresholds, nan_left, lefts, rights, values, leaves, roots, classes = (
        [] for _ in range(9)
    )
    base = 0
    depth = 0
    for iteration in predictors:
        for k, tree in enumerate(iteration):
            nodes = tree.nodes
            if np.any(nodes["is_categorical"]):
                return None
            count = len(nodes)
            leaf = nodes["is_leaf"].astype(bool)
            own = np.arange(count, dtype=np.int64) + base
            features.append(np.where(leaf, 0, nodes["feature_idx"]).astype(np.int64))
            thresholds.append(nodes["num_threshold"].astype(np.float64))
            nan_left.append(nodes["missing_go_to_left"].astype(bool))
            lefts.append(np.where(leaf, own, nodes["left"].astype(np.int64) + base))
            rights.append(np.where(leaf, own, nodes["right"].astype(np.int64) + base))
            values.append(nodes["value"].astype(np.float64))
            leaves.append(leaf)
            roots.append(base)
            classes.append(k)
            depth = max(depth, int(nodes["depth"].max()))
            base += count
    baseline = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(-1)
    return CompiledEnsemble(
        feature=np.concatenate(features),
        threshold=np.concatenate(thresholds),
        nan_left=np.concatenate(nan_left),
        left=np.concatenate(lefts),
        right=np.concatenate(rights),
        value=np.concatenate(values),
        is_leaf=np.concatenate(leaves),
        roots=np.asarray(roots, dtype=np.int64),
        tree_class=np.asarray(classes, dtype=np.int64),
        depth=depth,
        baseline=baseline,
        n_features=int(model.n_features_in_),
        model=model,
    )


@dataclass(frozen=True)
class _Prediction:
    values: np.ndarray[Any, Any]
    probabilities: np.ndarray[Any, Any] | None


class AcceleratedPredictor:
    """The loaded predictor, with small batches answered by a compiled ensemble."""

    def __init__(self, inner: PredictorLike, compiled: CompiledModel, model: Any) -> None:
        self.inner = inner
        self.compiled = compiled
        self._names = [f.name for f in inner.features]
        self._labels = np.asarray(model.classes_) if hasattr(model, "classes_") else None

    @property
    def features(self) -> Sequence[FeatureLike]:
        """The inner predictor's features."""
        return self.inner.features

    @property
    def task(self) -> str:
        """The inner predictor's task."""
        return self.inner.task

    @property
    def classes(self) -> Sequence[Any] | None:
        """The inner predictor's classes."""
        return self.inner.classes

    def predict(self, columns: dict[str, np.ndarray[Any, Any]]) -> PredictionLike:
        """Compiled path for small batches, the verified sklearn model otherwise."""
        rows = len(columns[self._names[0]])
        if rows > self.compiled.max_rows:
            return self.inner.predict(columns)
        x = np.empty((rows, len(self._names)), dtype=np.float64)
        for j, name in enumerate(self._names):
            x[:, j] = columns[name]
        if self._labels is not None:
            proba = self.compiled.predict_proba(x)
            return _Prediction(self._labels[np.argmax(proba, axis=1)], proba)
        return _Prediction(self.compiled.predict(x), None)


def _estimator(predictor: PredictorLike) -> Any:
    """The fitted sklearn estimator behind a kubeloop.modelformat Predictor, if plain enough.

    Reads the Predictor's `_model` (a fitted estimator or a Pipeline): only a bare model, or a
    Pipeline whose other steps are passthrough, qualifies.
    """
    if getattr(predictor, "framework", None) not in ("sklearn", "skops"):
        return None
    model = getattr(predictor, "_model", None)
    steps = getattr(model, "steps", None)
    if steps is not None:
        if any(step not in (None, "passthrough") for _, step in steps[:-1]):
            return None
        model = steps[-1][1]
    return model


def accelerate(predictor: PredictorLike) -> PredictorLike:
    """Wrap with the compiled path when the model qualifies and agrees with sklearn."""
    if any(f.kind != "numeric" for f in predictor.features):
        return predictor
    model = _estimator(predictor)
    compiled: CompiledModel | None = None
    if model is not None:
        compiled = compile_hgb(model) or compile_forest(model)
    if compiled is None or compiled.n_features != len(predictor.features):
        return predictor
    fast = AcceleratedPredictor(predictor, compiled, model)
    # Self-check on synthetic rows before trusting it: any disagreement keeps sklearn.
    rng = np.random.default_rng(0)
    sample = rng.normal(size=(compiled.max_rows, compiled.n_features)) * 3
    columns = {f.name: sample[:, j].copy() for j, f in enumerate(predictor.features)}
    if not _agree(predictor.predict(columns), fast.predict(columns), exact=compiled.exact):
        log.warning("compiled tree ensemble disagrees with sklearn; serving with sklearn only")
        return predictor
    log.info(
        "serving batches of <= %d rows with the compiled %s",
        compiled.max_rows,
        type(model).__name__,
    )
    return fast


def _agree(want: PredictionLike, got: PredictionLike, *, exact: bool) -> bool:
    """Same labels; values and probabilities equal (exact) or within rtol 1e-9."""

    def same(a: np.ndarray[Any, Any] | None, b: np.ndarray[Any, Any] | None) -> bool:
        if a is None or b is None:
            return a is None and b is None
        if exact or a.dtype.kind not in "fc":
            return bool(np.array_equal(a, b))
        return bool(np.allclose(a, b, rtol=1e-9, atol=1e-12))

    return same(np.asarray(want.values), np.asarray(got.values)) and same(
        want.probabilities, got.probabilities
    )
