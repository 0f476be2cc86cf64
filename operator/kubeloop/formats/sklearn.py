"""scikit-learn models: `skops` (trusted types only, no pickle) and `sklearn` (joblib pickle).

A joblib file runs arbitrary code when loaded, so `sklearn` loads only versions our own trainer
wrote (manifest `producedBy: kubeloop-trainer`, or a manifest from before formats were named)
unless the server allows pickles. `skops` loads any version, refusing types outside its
trusted set (sklearn, numpy, scipy) unless pickles are allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kubeloop.formats.base import (
    TRAINER,
    LoadOptions,
    ModelFormat,
    PickleRefusedError,
    Signature,
    SignatureError,
)
from kubeloop.modelformat import Prediction, feature_matrix
from kubeloop_sdk.modelfiles import JOBLIB_FILE, SKOPS_FILE
from kubeloop_sdk.skopsio import skops_io

__all__ = ["SklearnJoblibFormat", "SkopsFormat"]


def trusted_writer(manifest: Mapping[str, Any]) -> bool:
    """Written by our trainer: says so, or predates `modelFormat` (only the trainer wrote)."""
    return manifest.get("producedBy") == TRAINER or "modelFormat" not in manifest


def refuse_pickle(
    folder: Path, fmt: str, options: LoadOptions, manifest: Mapping[str, Any]
) -> None:
    """Raise unless the pickle is ours or the server allows user pickles."""
    if not (options.allow_pickle or trusted_writer(manifest)):
        raise PickleRefusedError(
            f"{folder}: format {fmt!r} is a pickle from user code, which can run any code when "
            "loaded; save the model with format 'skops' (or xgboost/lightgbm/onnx/torchscript), "
            "or allow pickles for this deployment (server env KUBELOOP_ALLOW_PICKLE=true)"
        )


class _SklearnPredict(ModelFormat):
    """Predicts like the fitted estimator: labels from its own `classes_`."""

    @staticmethod
    def check_classes(path: Path, model: Any, signature: Signature) -> None:
        """The server labels probability columns with signature.classes: same order needed."""
        own = getattr(model, "classes_", None)
        if signature.task != "classification" or own is None or signature.classes is None:
            return
        if [str(c) for c in own] != [str(c) for c in signature.classes]:
            raise SignatureError(
                f"{path}: signature.classes {list(signature.classes)} must be the estimator's "
                f"classes_ in their order: {[str(c) for c in own]}"
            )

    def predict(self, model: Any, signature: Signature, columns: Mapping[str, Any]) -> Prediction:
        matrix = feature_matrix(columns, signature.inputs)
        if signature.task == "classification" and hasattr(model, "predict_proba"):
            proba = np.asarray(model.predict_proba(matrix), dtype=np.float64)
            labels = np.asarray(model.classes_)
            return Prediction(labels[np.argmax(proba, axis=1)], proba)
        values = np.asarray(model.predict(matrix))
        if signature.task == "regression":
            values = values.astype(np.float64)
        return Prediction(values, None)


class SklearnJoblibFormat(_SklearnPredict):
    """`model.joblib`: what the trainer writes; a pickle."""

    name = "sklearn"
    pickled = True

    def save(self, model: Any, folder: Path, signature: Signature) -> dict[str, Any]:
        import joblib

        joblib.dump(model, folder / JOBLIB_FILE)
        return {}

    def load(
        self, folder: Path, manifest: Mapping[str, Any], signature: Signature, options: LoadOptions
    ) -> Any:
        refuse_pickle(folder, self.name, options, manifest)
        import joblib

        model = joblib.load(folder / JOBLIB_FILE)
        if not trusted_writer(manifest):
            self.check_classes(folder / JOBLIB_FILE, model, signature)
        return model


class SkopsFormat(_SklearnPredict):
    """`model.skops`: sklearn without pickle; only trusted types are constructed."""

    name = "skops"

    def save(self, model: Any, folder: Path, signature: Signature) -> dict[str, Any]:
        skops_io().dump(model, folder / SKOPS_FILE)
        return {}

    def load(
        self, folder: Path, manifest: Mapping[str, Any], signature: Signature, options: LoadOptions
    ) -> Any:
        sio = skops_io()
        path = folder / SKOPS_FILE
        untrusted = sio.get_untrusted_types(file=path)
        if untrusted and not options.allow_pickle:
            raise PickleRefusedError(
                f"{path}: holds types outside skops' trusted set ({', '.join(untrusted)}); "
                "they could run code when loaded; allow pickles for this deployment (server "
                "env KUBELOOP_ALLOW_PICKLE=true) only if you trust who wrote the model"
            )
        model = sio.load(path, trusted=untrusted or None)
        self.check_classes(path, model, signature)
        return model
