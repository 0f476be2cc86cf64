"""Estimators from the allow-list (scikit-learn, and the scikit-learn APIs of XGBoost and
LightGBM), with `params` checked before any data is read."""

from __future__ import annotations

import importlib
import inspect
import os
import re
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from kubeloop.api.training import CLASSIFIERS, REGRESSORS
from kubeloop.workloads.trainer.errors import TrainingError

__all__ = ["MODULES", "ClassIndexClassifier", "build_estimator"]

# name -> module: the allow-list maps to fixed classes, never to an import path from the spec.
MODULES = {
    "LogisticRegression": "sklearn.linear_model",
    "LinearRegression": "sklearn.linear_model",
    "Ridge": "sklearn.linear_model",
    "Lasso": "sklearn.linear_model",
    "ElasticNet": "sklearn.linear_model",
    "RandomForestClassifier": "sklearn.ensemble",
    "RandomForestRegressor": "sklearn.ensemble",
    "ExtraTreesClassifier": "sklearn.ensemble",
    "ExtraTreesRegressor": "sklearn.ensemble",
    "GradientBoostingClassifier": "sklearn.ensemble",
    "GradientBoostingRegressor": "sklearn.ensemble",
    "HistGradientBoostingClassifier": "sklearn.ensemble",
    "HistGradientBoostingRegressor": "sklearn.ensemble",
    "XGBClassifier": "xgboost",
    "XGBRegressor": "xgboost",
    "LGBMClassifier": "lightgbm",
    "LGBMRegressor": "lightgbm",
}
# XGBoost's classifier takes only the labels 0..k-1: it learns class indexes instead.
_INDEXED_LABELS = frozenset({"XGBClassifier"})
# The libraries' own defaults use every core; a pod's CPU limit says how many it has.
_THREADED = frozenset({"XGBClassifier", "XGBRegressor", "LGBMClassifier", "LGBMRegressor"})
_PARAM = re.compile(r"The '(\w+)' parameter")


def build_estimator(name: str, params: dict[str, Any], seed: int) -> Any:
    """An unfitted estimator; raises TrainingError naming spec.model.params.<name>."""
    if name not in MODULES or name not in (*CLASSIFIERS, *REGRESSORS):
        raise TrainingError(
            "UnknownEstimator",
            f"spec.model.estimator {name!r} is not on the allow-list: {', '.join(sorted(MODULES))}",
        )
    cls = getattr(importlib.import_module(MODULES[name]), name)
    # get_params(): XGBoost's and LightGBM's __init__ take **kwargs, scikit-learn's name them.
    accepted = sorted(cls().get_params(deep=False)) if name in _THREADED else _init_params(cls)
    for key in params:
        if key not in accepted:
            raise TrainingError(
                "InvalidParameter",
                f"spec.model.params.{key} is not a parameter of {name}; it accepts: "
                f"{', '.join(accepted)}",
            )
    kwargs = dict(params)
    if "random_state" in accepted and "random_state" not in kwargs:
        kwargs["random_state"] = seed  # same data + seed -> same model
    if name in _THREADED and "n_jobs" not in kwargs:
        kwargs["n_jobs"] = int(os.environ.get("KUBELOOP_NUM_THREADS") or os.cpu_count() or 1)
    if name.startswith("LGBM") and "verbose" not in kwargs:
        kwargs["verbose"] = -1  # its per-iteration warnings would bury the run's log
    estimator = cls(**kwargs)
    if name in _INDEXED_LABELS:
        return ClassIndexClassifier(estimator)
    if name in _THREADED:
        return estimator  # their own checks run in fit(); unknown names are refused above
    from sklearn.utils._param_validation import InvalidParameterError

    try:
        # sklearn checks values only in fit(); do it now so a typo fails before the data load.
        estimator._validate_params()
    except InvalidParameterError as exc:
        match = _PARAM.search(str(exc))
        field = f"spec.model.params.{match.group(1)}" if match else "spec.model.params"
        raise TrainingError("InvalidParameter", f"{field}: {exc}") from exc
    return estimator


def _init_params(cls: type) -> list[str]:
    return [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]


class ClassIndexClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A classifier that learns the index of each label in `classes_` (sorted, as every
    scikit-learn classifier orders them) and answers in the labels again: for libraries that
    accept only 0..k-1 (XGBoost), whatever the data's labels are (strings, 1/2, -1/1)."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def fit(self, x: Any, y: Any) -> ClassIndexClassifier:
        self.classes_, index = np.unique(np.asarray(y), return_inverse=True)
        self.estimator_ = clone(self.estimator).fit(x, index)
        return self

    def predict(self, x: Any) -> Any:
        return self.classes_[np.asarray(self.estimator_.predict(x), dtype=np.int64)]

    def predict_proba(self, x: Any) -> Any:
        # float32 rows that sum to 1 +- 1e-7: renormalised in float64 for log_loss and friends
        p = np.asarray(self.estimator_.predict_proba(x), dtype=np.float64)
        return p / p.sum(axis=1, keepdims=True)
