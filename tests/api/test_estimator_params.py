"""The API's table of estimator parameters (admission checks spec.search against it without
importing the libraries) equals what the trainer accepts from the real classes."""

from __future__ import annotations

import dataclasses
import importlib
import inspect

from kubeloop.api.estimator_params import BUDGET_PARAMS, ESTIMATOR_PARAMS
from kubeloop.api.training import ESTIMATORS, TORCH_ESTIMATOR
from kubeloop.workloads.trainer.estimators import MODULES
from kubeloop.workloads.trainer.mlp import MLPParams


def _accepted(name: str) -> set[str]:
    if name == TORCH_ESTIMATOR:
        return {f.name for f in dataclasses.fields(MLPParams)}
    cls = getattr(importlib.import_module(MODULES[name]), name)
    if name.startswith(("XGB", "LGBM")):  # **kwargs in __init__: the trainer asks get_params()
        return set(cls().get_params(deep=False))
    return {p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")}


def test_the_table_lists_every_estimator_of_the_allow_list_with_its_real_parameters() -> None:
    assert set(ESTIMATOR_PARAMS) == set(ESTIMATORS) == set(BUDGET_PARAMS)
    wrong = {n: set(ESTIMATOR_PARAMS[n]) ^ _accepted(n) for n in ESTIMATORS}
    assert not any(wrong.values()), {n: sorted(d) for n, d in wrong.items() if d}


def test_budget_parameters_are_integer_parameters_of_their_estimator() -> None:
    for name, budgets in BUDGET_PARAMS.items():
        assert set(budgets) <= set(ESTIMATOR_PARAMS[name]), name
