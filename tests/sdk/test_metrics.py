"""kubeloop_sdk.log_metrics: numbers merged into <outputDir>/metrics.json by rank 0."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

import kubeloop_sdk as kl

from .conftest import MakeContext


def test_metrics_merge_and_later_values_win(make_context: MakeContext) -> None:
    ctx = make_context()
    kl.log_metrics({"train_loss": 0.5, "epochs": 3})
    kl.log_metrics({"train_loss": np.float32(0.25), "val_f1": np.float64(0.8)})
    got = json.loads((ctx.output_dir / kl.METRICS_FILE).read_text())
    assert got == {"train_loss": 0.25, "epochs": 3.0, "val_f1": pytest.approx(0.8)}


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ({"loss": "0.5"}, "loss: a number, not str '0.5'"),
        ({"ok": True}, "ok: a number, not bool"),
        ({"loss": None}, "loss: a number, not NoneType"),
        ({"loss": float("inf")}, "loss: inf is not a finite number"),
        ({"": 1.0}, "metric names are non-empty strings"),
        ([("loss", 1.0)], "a dict of name -> number, not list"),
    ],
)
def test_what_is_not_a_number_is_named(
    make_context: MakeContext, metrics: Any, message: str
) -> None:
    ctx = make_context()
    with pytest.raises(ValueError, match=message):
        kl.log_metrics(metrics)
    assert not (ctx.output_dir / kl.METRICS_FILE).exists()


def test_only_rank_0_writes(make_context: MakeContext, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_context()
    monkeypatch.setenv("RANK", "2")
    kl.log_metrics({"loss": 1.0})
    assert not (ctx.output_dir / kl.METRICS_FILE).exists()
