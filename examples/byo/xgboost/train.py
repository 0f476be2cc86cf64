"""Churn with XGBoost and your own feature engineering (churn_features.py), run by Kubeloop.

The model is saved as format `custom`: the booster's files plus the predictor class that
does the same feature engineering when serving, so training and serving cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xgboost
from churn_features import INPUTS, ChurnPredictor

import kubeloop_sdk as kl


class Progress(xgboost.callback.TrainingCallback):
    """Reports every 10 boosting rounds (a round is this code's "epoch")."""

    def __init__(self, rounds: int) -> None:
        super().__init__()
        self.rounds = rounds

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        done = epoch + 1
        if done % 10 == 0 or done == self.rounds:
            loss = evals_log.get("validation", {}).get("logloss", [None])[-1]
            kl.report(epoch=done, epochs=self.rounds, loss=loss)
        return False  # go on


def split(name: str, target: str, classes: list[str]) -> tuple[dict[str, Any], np.ndarray]:
    """The split's raw input columns and its labels as class positions (0/1)."""
    table = kl.read_table(name, columns=[*INPUTS, target])
    columns = {c: table.column(c).to_numpy(zero_copy_only=False) for c in INPUTS}
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[str(v)] for v in table.column(target).to_pylist()])
    return columns, labels


def main() -> None:
    ctx = kl.context()
    classes = [str(c) for c in (ctx.classes or [0, 1])]
    if len(classes) != 2:
        raise SystemExit(f"churn is a yes/no target; {ctx.target} has classes {classes}")
    rounds = int(ctx.params.get("rounds", 200))
    params = {
        "max_depth": int(ctx.params.get("maxDepth", 3)),
        "eta": float(ctx.params.get("learningRate", 0.05)),
        "subsample": 0.9,
        "seed": ctx.seed if ctx.seed is not None else 0,
    }
    train, y_train = split("train", ctx.target, classes)
    validation, y_validation = split("validation", ctx.target, classes)
    model = ChurnPredictor.train(
        train,
        y_train,
        params,
        rounds=rounds,
        evals=[(validation, y_validation, "validation")],
        callbacks=[Progress(rounds)],
    )
    churn = model.predict(validation)[:, 1]
    eps = 1e-7
    logloss = -np.mean(
        y_validation * np.log(churn + eps) + (1 - y_validation) * np.log(1 - churn + eps)
    )
    kl.log_metrics(
        {
            "validation_logloss": float(logloss),
            "validation_accuracy": float(np.mean((churn >= 0.5) == (y_validation == 1))),
        }
    )
    # predictor: churn_features:ChurnPredictor (the class's own module path)
    # shipCode: the predictor's module goes into the version (its code/ folder), for servers
    # whose ModelDeployment says allowCustomCode: true; else the server image must ship it.
    code = [Path(__file__).with_name("churn_features.py")] if ctx.params.get("shipCode") else None
    kl.save_model(model, format="custom", inputs=list(INPUTS), code=code)


if __name__ == "__main__":
    main()
