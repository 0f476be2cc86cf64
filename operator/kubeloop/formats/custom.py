"""`custom`: a Python predictor class shipped in the server image (like KServe/MLServer custom
runtimes), named `module:Class` in the manifest's `predictor`.

The class needs `load(folder)` (called once on a fresh instance) and `predict(columns)` taking
{input name: numpy array} and giving [n] values or [n, k] class probabilities. The manifest only
names the class: the server imports it only if its operator listed it in
KUBELOOP_CUSTOM_PREDICTORS, so a model file can never choose which code runs.

A version trained by custom code may ship its predictor's source in its own `code/` folder (as
MLServer loads a runtime from the model's folder): checksummed like every file, and run only
where the ModelDeployment says `allowCustomCode: true` (KUBELOOP_ALLOW_CUSTOM_CODE).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubeloop.formats.base import (
    LoadOptions,
    ModelFormat,
    Signature,
    SignatureError,
    UnknownFormatError,
    to_prediction,
)
from kubeloop.modelformat import ModelFormatError, Prediction
from kubeloop_sdk.modelfiles import CODE_DIR
from kubeloop_sdk.modelsave import class_path

__all__ = ["CODE_DIR", "CustomFormat"]


class CustomFormat(ModelFormat):
    """Files are whatever the class's own `save(folder)` writes (if it has one)."""

    name = "custom"

    def save(self, model: Any, folder: Path, signature: Signature) -> dict[str, Any]:
        if hasattr(model, "save"):
            model.save(folder)
        return {"predictor": class_path(type(model))}

    def load(
        self, folder: Path, manifest: Mapping[str, Any], signature: Signature, options: LoadOptions
    ) -> Any:
        path = manifest.get("predictor")
        if not isinstance(path, str) or ":" not in path:
            raise ModelFormatError(
                f"{folder}/manifest.json: predictor: {path!r}; format 'custom' needs 'module:Class'"
            )
        code = folder / CODE_DIR
        if code.is_dir():
            if not options.allow_custom_code:
                raise UnknownFormatError(
                    f"this version ships its predictor {path!r} as code in {CODE_DIR}/; the "
                    "server runs it only with spec.model.allowCustomCode: true on the "
                    "ModelDeployment (KUBELOOP_ALLOW_CUSTOM_CODE)"
                )
            sys.path.insert(0, str(code))
            module = path.partition(":")[0].split(".")[0]
            stale = sys.modules.get(module)
            if stale is not None and not str(getattr(stale, "__file__", "")).startswith(str(code)):
                del sys.modules[module]  # another version's module of the same name
        elif path not in options.custom_predictors:
            allowed = ", ".join(sorted(options.custom_predictors)) or "none"
            raise UnknownFormatError(
                f"custom predictor {path!r} is not allowed on this server (allowed: {allowed}); "
                "add it to KUBELOOP_CUSTOM_PREDICTORS of a server image that ships it"
            )
        module_name, _, class_name = path.partition(":")
        try:
            target: Any = importlib.import_module(module_name)
            for part in class_name.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as exc:
            raise UnknownFormatError(
                f"custom predictor {path!r} cannot be imported in this image: {exc}"
            ) from exc
        predictor = target()
        predictor.load(folder)
        return predictor

    def predict(self, model: Any, signature: Signature, columns: Mapping[str, Any]) -> Prediction:
        missing = [f.name for f in signature.inputs if f.name not in columns]
        if missing:
            raise ValueError(f"missing feature columns: {', '.join(missing)}")
        raw = model.predict({f.name: columns[f.name] for f in signature.inputs})
        try:
            return to_prediction(raw, signature)
        except SignatureError as exc:
            raise SignatureError(f"custom predictor: {exc}") from exc
