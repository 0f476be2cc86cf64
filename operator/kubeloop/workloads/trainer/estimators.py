"""sklearn estimators from the allow-list, with `params` checked before any data is read."""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any

from kubeloop.api.training import CLASSIFIERS, REGRESSORS
from kubeloop.workloads.trainer.errors import TrainingError

__all__ = ["MODULES", "build_estimator"]

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
}
_PARAM = re.compile(r"The '(\w+)' parameter")


def build_estimator(name: str, params: dict[str, Any], seed: int) -> Any:
    """An unfitted estimator; raises TrainingError naming spec.model.params.<name>."""
    if name not in MODULES or name not in (*CLASSIFIERS, *REGRESSORS):
        raise TrainingError(
            "UnknownEstimator",
            f"spec.model.estimator {name!r} is not on the allow-list: {', '.join(sorted(MODULES))}",
        )
    cls = getattr(importlib.import_module(MODULES[name]), name)
    accepted = [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]
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
    estimator = cls(**kwargs)
    from sklearn.utils._param_validation import InvalidParameterError

    try:
        # sklearn checks values only in fit(); do it now so a typo fails before the data load.
        estimator._validate_params()
    except InvalidParameterError as exc:
        match = _PARAM.search(str(exc))
        field = f"spec.model.params.{match.group(1)}" if match else "spec.model.params"
        raise TrainingError("InvalidParameter", f"{field}: {exc}") from exc
    return estimator
