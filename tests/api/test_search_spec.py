"""spec.search against spec.model: the CEL rules (API server) and their Python twins refuse
the same rules for the same specs, each naming the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubeloop.api.admission import admit
from kubeloop.api.parse import SpecError, parse_resource

BASE: dict[str, Any] = {
    "apiVersion": "kubeloop.io/v1alpha1",
    "kind": "TrainingPipeline",
    "metadata": {"name": "churn", "namespace": "ml"},
    "spec": {
        "data": {"train": "s3://datasets/churn/", "target": "churned"},
        "model": {"framework": "sklearn", "task": "classification"},
        "artifacts": "s3://models/churn/",
        "promotion": {"metric": "roc_auc"},
    },
}
# Each rule's words: the CEL rule's message, and the Python rule's (which lists every problem
# of every rule, naming the candidate and the parameter).
RULES = {
    "estimator": "spec.search.space: a candidate's estimator",
    "params": "spec.search.space: a candidate searches a parameter",
    "budget": "spec.search.budget.parameter: an estimator of the space",
}
PYTHON = {
    "estimator": "].estimator: ",
    "params": "is not a parameter of",
    "budget": "as a budget; it can use",
}
LR_C = {"estimator": "LogisticRegression", "params": {"C": {"logUniform": [0.01, 10]}}}
HALVING_TREES = {
    "strategy": "halving",
    "budget": {"parameter": "n_estimators", "min": 10, "max": 90},
}

# auto: every built-in estimator can shrink (rows, and its own iterations); custom code cannot
HALVING_AUTO = {"strategy": "halving", "budget": {"parameter": "auto", "min": 1, "max": 9}}


def _doc(search: dict[str, Any], **model: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc["spec"]["model"].update(model)
    if model.get("framework") == "custom":
        doc["spec"]["trainer"] = {"image": "team/churn:1"}
    doc["spec"]["search"] = {"trials": 4, **search}
    return doc


@pytest.mark.parametrize(
    ("doc", "refused"),
    [
        (_doc({"space": [LR_C]}), set()),
        (_doc({"space": [{"params": {"max_iter": {"integer": [50, 300]}}}]}), set()),
        (_doc({"space": [{**LR_C, "params": {"n_estimators": {"integer": [1, 9]}}}]}), {"params"}),
        (_doc({"space": [{"estimator": "XGBRegressor"}]}), {"estimator"}),
        (_doc({"space": [{"estimator": "NotOnTheList"}]}), {"estimator"}),
        (
            _doc({"space": [{"estimator": "TabularMLP", "params": {"C": {"choice": [1]}}}]}),
            {"estimator", "params"},
        ),
        (_doc({"space": [LR_C], **HALVING_TREES}), {"budget"}),
        (_doc({"space": [{"estimator": "XGBClassifier"}], **HALVING_TREES}), set()),
        (
            _doc({"space": [{"params": {"lr": {"uniform": [0.0, 1.0]}}}], **HALVING_TREES},
                 framework="custom"),
            set(),
        ),
        (_doc({"space": [LR_C]}, framework="custom"), {"estimator"}),
        (_doc({"space": [LR_C, {"estimator": "XGBClassifier"}], **HALVING_AUTO}), set()),
        (
            _doc({"space": [{"params": {"lr": {"uniform": [0.0, 1.0]}}}], **HALVING_AUTO},
                 framework="custom"),
            {"budget"},
        ),
        (
            _doc({"space": [{"params": {"epochs": {"integer": [5, 50]}}}], "strategy": "halving",
                  "budget": {"parameter": "epochs", "min": 2, "max": 18}}, framework="torch"),
            set(),
        ),
    ],
)  # fmt: skip
def test_cel_and_pydantic_refuse_the_same_rules(doc: dict[str, Any], refused: set[str]) -> None:
    cel = {k for k, text in RULES.items() if any(text in e for e in admit(doc).errors)}
    assert cel == refused
    try:
        parse_resource(doc)
        python: set[str] = set()
    except SpecError as error:
        python = {k for k, text in PYTHON.items() if any(text in m for m in error.messages)}
    assert python == refused
