"""A vectorised evaluator for fitted random forests (RandomForest / ExtraTrees, one output).

Why: sklearn scores a forest one tree at a time through joblib, each tree a separate call with
its own input checks, so a 100-tree forest costs milliseconds per call even for one row, and
serving traffic is mostly tiny batches. Here every tree's nodes are packed into flat arrays
once at load and all trees advance one level per step over (trees x rows).

The answers are sklearn's, bit for bit: the rows are cast to float32 as sklearn's trees do,
each node makes the same comparison (`x <= threshold` against the float64 threshold, NaN to
the learned side), each leaf's class fractions are normalised with the same division, and the
trees' outputs are added in estimator order starting from zero before the same division by
the number of trees (numpy adds along a non-contiguous axis in order, one slice after another).
`accelerate` still checks the answers on probe rows and keeps sklearn on any difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

__all__ = ["CompiledForest", "FlatTrees", "compile_forest", "descend"]


class FlatTrees(Protocol):
    """What `descend` reads: every tree's nodes in flat arrays (HGB and forests alike)."""

    @property
    def feature(self) -> np.ndarray[Any, Any]: ...

    @property
    def threshold(self) -> np.ndarray[Any, Any]: ...

    @property
    def nan_left(self) -> np.ndarray[Any, Any]: ...

    @property
    def left(self) -> np.ndarray[Any, Any]: ...

    @property
    def right(self) -> np.ndarray[Any, Any]: ...

    @property
    def is_leaf(self) -> np.ndarray[Any, Any]: ...

    @property
    def roots(self) -> np.ndarray[Any, Any]: ...

    @property
    def depth(self) -> int: ...

    @property
    def n_features(self) -> int: ...


def descend(trees: FlatTrees, flat: np.ndarray[Any, Any], n: int) -> np.ndarray[Any, Any]:
    """(trees, n) global index of the leaf each of the `n` rows (`flat`: row-major, already in
    the dtype the model compares in) reaches in each tree; all trees advance one level a step."""
    offsets = (np.arange(n, dtype=np.int64) * trees.n_features)[None, :]
    node = np.repeat(trees.roots[:, None], n, axis=1)
    for level in range(trees.depth):
        xv = flat[offsets + trees.feature[node]]
        go_left = np.where(np.isnan(xv), trees.nan_left[node], xv <= trees.threshold[node])
        node = np.where(go_left, trees.left[node], trees.right[node])
        # most paths are far shorter than the deepest one: stop once all reached leaves
        if level % 4 == 3 and trees.is_leaf[node].all():
            break
    return node


@dataclass(frozen=True)
class CompiledForest:
    """Flat node arrays of every tree of one fitted forest."""

    feature: np.ndarray[Any, Any]  # int64, per node (0 at leaves)
    threshold: np.ndarray[Any, Any]  # float64
    nan_left: np.ndarray[Any, Any]  # bool
    left: np.ndarray[Any, Any]  # int64, global node index (leaves point to themselves)
    right: np.ndarray[Any, Any]
    is_leaf: np.ndarray[Any, Any]  # bool
    leaf_value: np.ndarray[Any, Any]  # (nodes, k): class fractions, or (nodes, 1) for regression
    roots: np.ndarray[Any, Any]  # (trees,)
    depth: int
    n_features: int
    # Up to this many rows the flat evaluator beats sklearn (measured on a 100-tree forest of
    # depth 34: ~1.3 ms vs tens of ms at 1 row, ~13 ms vs ~60 ms at 16; about even near 100).
    max_rows: ClassVar[int] = 32
    exact: ClassVar[bool] = True  # accelerate() asks for equal answers, not close ones

    def _leaves(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """(trees, n) global index of the leaf each row reaches in each tree."""
        # float32 rows compared with float64 thresholds: what sklearn's trees compute
        return descend(self, np.ascontiguousarray(x, dtype=np.float32).ravel(), x.shape[0])

    def _mean(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        per_tree = self.leaf_value[self._leaves(x)]  # (trees, n, k)
        total: np.ndarray[Any, Any] = np.add.reduce(per_tree, axis=0, initial=0.0)
        total /= len(self.roots)
        return total

    def predict_proba(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Class probabilities, as the classifier's predict_proba."""
        return self._mean(x)

    def predict(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Regression predictions, as the regressor's predict."""
        out: np.ndarray[Any, Any] = self._mean(x)[:, 0]
        return out


def compile_forest(model: Any) -> CompiledForest | None:
    """Pack a fitted single-output RandomForest / ExtraTrees model; None if not supported."""
    try:
        from sklearn.ensemble import (
            ExtraTreesClassifier,
            ExtraTreesRegressor,
            RandomForestClassifier,
            RandomForestRegressor,
        )
    except ImportError:
        return None
    kinds = (
        RandomForestClassifier,
        RandomForestRegressor,
        ExtraTreesClassifier,
        ExtraTreesRegressor,
    )
    if type(model) not in kinds or getattr(model, "n_outputs_", None) != 1:
        return None
    estimators = getattr(model, "estimators_", None)
    if not estimators:
        return None
    classifier = isinstance(model, RandomForestClassifier | ExtraTreesClassifier)
    parts: dict[str, list[np.ndarray[Any, Any]]] = {
        k: [] for k in ("feature", "threshold", "nan_left", "left", "right", "leaf", "value")
    }
    roots, base, depth = [], 0, 0
    for estimator in estimators:
        tree = estimator.tree_
        nan_left = getattr(tree, "missing_go_to_left", None)
        if nan_left is None:
            return None
        count = tree.node_count
        leaf = tree.children_left == -1
        own = np.arange(count, dtype=np.int64) + base
        value = np.asarray(tree.value[:, 0, :], dtype=np.float64)
        if classifier:
            value = value[:, : model.n_classes_]
            normalizer = value.sum(axis=1)[:, np.newaxis]
            normalizer[normalizer == 0.0] = 1.0
            value = value / normalizer  # sklearn's DecisionTreeClassifier.predict_proba
        else:
            value = value[:, :1]
        parts["feature"].append(np.where(leaf, 0, tree.feature).astype(np.int64))
        parts["threshold"].append(np.asarray(tree.threshold, dtype=np.float64))
        parts["nan_left"].append(np.asarray(nan_left).astype(bool))
        parts["left"].append(np.where(leaf, own, tree.children_left + base).astype(np.int64))
        parts["right"].append(np.where(leaf, own, tree.children_right + base).astype(np.int64))
        parts["leaf"].append(leaf)
        parts["value"].append(value)
        roots.append(base)
        depth = max(depth, int(tree.max_depth))
        base += count
    return CompiledForest(
        feature=np.concatenate(parts["feature"]),
        threshold=np.concatenate(parts["threshold"]),
        nan_left=np.concatenate(parts["nan_left"]),
        left=np.concatenate(parts["left"]),
        right=np.concatenate(parts["right"]),
        is_leaf=np.concatenate(parts["leaf"]),
        leaf_value=np.concatenate(parts["value"]),
        roots=np.asarray(roots, dtype=np.int64),
        depth=depth,
        n_features=int(model.n_features_in_),
    )
