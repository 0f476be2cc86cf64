"""The shape of a loaded model as the server uses it (implemented by `kubeloop.modelformat`).

The server depends on this small Protocol, not on the trainer's classes, so the HTTP layer,
validation and batching can be tested against any object with the same shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

__all__ = ["FeatureLike", "PredictionLike", "PredictorLike"]


class FeatureLike(Protocol):
    """One input column of the model (manifest `features[]`)."""

    @property
    def name(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def kind(self) -> str: ...  # "numeric" | "categorical"
    @property
    def categories(self) -> Sequence[Any] | None: ...


class PredictionLike(Protocol):
    """Predictions for a batch: `values` (n,), `probabilities` (n, classes) or None."""

    @property
    def values(self) -> np.ndarray[Any, Any]: ...
    @property
    def probabilities(self) -> np.ndarray[Any, Any] | None: ...


class PredictorLike(Protocol):
    """A verified, loaded model version."""

    @property
    def features(self) -> Sequence[FeatureLike]: ...
    @property
    def task(self) -> str: ...  # "classification" | "regression"
    @property
    def classes(self) -> Sequence[Any] | None: ...
    def predict(self, columns: dict[str, np.ndarray[Any, Any]]) -> PredictionLike: ...
