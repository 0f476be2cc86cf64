"""Gradient-boosted trees in their native files: `xgboost` (UBJSON) and `lightgbm` (text).

Both take the float32 matrix of the signature's inputs; a classifier's booster gives P(class 1)
per row (binary) or [n, k] probabilities, in the order of `signature.classes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kubeloop.formats.base import LoadOptions, MatrixFormat, Signature, SignatureError
from kubeloop_sdk.modelfiles import LIGHTGBM_FILE, XGBOOST_FILE

__all__ = ["LightGBMFormat", "XGBoostFormat"]


def _check_width(path: Path, width: int, signature: Signature) -> None:
    if width != len(signature.inputs):
        raise SignatureError(
            f"{path}: the booster takes {width} features, but the signature lists "
            f"{len(signature.inputs)} inputs ({', '.join(f.name for f in signature.inputs)})"
        )


class XGBoostFormat(MatrixFormat):
    """`model.ubj`: `Booster.save_model` (an XGBClassifier/XGBRegressor or a Booster)."""

    name = "xgboost"

    def save(self, model: Any, folder: Path, signature: Signature) -> dict[str, Any]:
        signature.numeric_only(self.name)
        booster = model.get_booster() if hasattr(model, "get_booster") else model
        booster.save_model(str(folder / XGBOOST_FILE))
        return {}

    def load(
        self, folder: Path, manifest: Mapping[str, Any], signature: Signature, options: LoadOptions
    ) -> Any:
        import xgboost

        signature.numeric_only(self.name)
        path = folder / XGBOOST_FILE
        booster = xgboost.Booster(model_file=str(path))  # threads: OMP_NUM_THREADS
        _check_width(path, booster.num_features(), signature)
        return booster

    def scores(self, model: Any, matrix: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.asarray(model.inplace_predict(matrix))


class LightGBMFormat(MatrixFormat):
    """`model.txt`: `Booster.save_model` (an LGBMClassifier/LGBMRegressor or a Booster)."""

    name = "lightgbm"

    def save(self, model: Any, folder: Path, signature: Signature) -> dict[str, Any]:
        signature.numeric_only(self.name)
        booster = model.booster_ if hasattr(model, "booster_") else model
        booster.save_model(str(folder / LIGHTGBM_FILE))
        return {}

    def load(
        self, folder: Path, manifest: Mapping[str, Any], signature: Signature, options: LoadOptions
    ) -> Any:
        import lightgbm

        signature.numeric_only(self.name)
        path = folder / LIGHTGBM_FILE
        booster = lightgbm.Booster(model_file=str(path))
        _check_width(path, booster.num_feature(), signature)
        return booster

    def scores(self, model: Any, matrix: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.asarray(model.predict(matrix))  # threads: OMP_NUM_THREADS
