"""Model formats, one class per format, shared by the trainer (save) and the server (load).

`kubeloop.modelformat` owns the version folder (files, manifest, checksums); the manifest's
`modelFormat` names the class here that reads the model files. Heavy libraries (xgboost,
lightgbm, onnxruntime, torch, skops) are imported inside the classes, so importing this package
costs nothing where they are not installed (the operator image).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubeloop.formats.base import (
    TRAINER,
    LoadOptions,
    ModelFormat,
    PickleRefusedError,
    Signature,
    SignatureError,
    UnknownFormatError,
)
from kubeloop.formats.custom import CustomFormat
from kubeloop.formats.sklearn import SklearnJoblibFormat, SkopsFormat
from kubeloop.formats.tensors import OnnxFormat, TorchMLP, TorchMLPFormat, TorchScriptFormat
from kubeloop.formats.trees import LightGBMFormat, XGBoostFormat

__all__ = [
    "FORMATS",
    "TRAINER",
    "LoadOptions",
    "ModelFormat",
    "PickleRefusedError",
    "Signature",
    "SignatureError",
    "TorchMLP",
    "UnknownFormatError",
    "format_named",
    "format_of",
]

FORMATS: dict[str, ModelFormat] = {
    f.name: f
    for f in (
        SklearnJoblibFormat(),
        SkopsFormat(),
        TorchMLPFormat(),
        TorchScriptFormat(),
        XGBoostFormat(),
        LightGBMFormat(),
        OnnxFormat(),
        CustomFormat(),
    )
}


def format_named(name: str) -> ModelFormat:
    """The format class registered as `name`; raises naming the known ones."""
    try:
        return FORMATS[name]
    except KeyError:
        raise UnknownFormatError(
            f"unknown model format {name!r}; known: {', '.join(sorted(FORMATS))}"
        ) from None


def format_of(manifest: Mapping[str, Any]) -> str:
    """`modelFormat`, or `framework` in manifests written before formats were named."""
    name = manifest.get("modelFormat", manifest.get("framework"))
    if isinstance(name, dict):
        name = name.get("name")
    return str(name)
