"""What every model format shares: the signature, the load options, the refusals.

A format is a class with a `name`, `save(model, folder, signature)` (writes the model files
and returns extra manifest fields) and `load(folder, manifest, signature, options)` (returns
the loaded model object that `predict` takes). It never verifies checksums itself:
`kubeloop.modelformat.load_predictor` does that for every format, before `load` runs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from kubeloop.modelformat import Feature, ModelFormatError, Prediction, feature_matrix

__all__ = [
    "TRAINER",
    "LoadOptions",
    "MatrixFormat",
    "ModelFormat",
    "PickleRefusedError",
    "Signature",
    "SignatureError",
    "UnknownFormatError",
    "numeric_matrix",
    "probe_columns",
    "to_prediction",
]

TRAINER = "kubeloop-trainer"  # manifest `producedBy` of versions our trainer wrote


class PickleRefusedError(ModelFormatError):
    """A pickle from user code, without the explicit allowance to load it."""


class SignatureError(ModelFormatError):
    """The model does not take or give what its declared signature says."""


class UnknownFormatError(ModelFormatError):
    """The manifest names a format this build does not know (or a custom one not allowed)."""


@dataclass(frozen=True)
class LoadOptions:
    """What the server lets a version do: set by the operator, never by the manifest."""

    allow_pickle: bool = False
    # "module:Class" names a custom predictor may use (env KUBELOOP_CUSTOM_PREDICTORS)
    custom_predictors: frozenset[str] = frozenset()
    # the predictor a version ships in its own code/ folder (KUBELOOP_ALLOW_CUSTOM_CODE)
    allow_custom_code: bool = False


@dataclass(frozen=True)
class Signature:
    """The model's inputs (one named column each) and its task, which fixes the outputs."""

    inputs: tuple[Feature, ...]
    task: str  # "classification" | "regression"
    classes: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        if self.task not in ("classification", "regression"):
            raise SignatureError(
                f"signature.task: {self.task!r}; use 'classification' or 'regression'"
            )
        if not self.inputs:
            raise SignatureError("signature.inputs: the model needs at least one input")

    @property
    def outputs(self) -> list[dict[str, Any]]:
        """The V2 outputs: `predict` (n,) and, for classifiers, `predict_proba` (n, k)."""
        out: list[dict[str, Any]] = [{"name": "predict", "shape": [-1]}]
        if self.classes is not None and self.task == "classification":
            out.append({"name": "predict_proba", "shape": [-1, len(self.classes)]})
        return out

    def to_dict(self) -> dict[str, Any]:
        """The manifest's `signature`."""
        return {
            "inputs": [
                {
                    **f.to_dict(),
                    "datatype": "BYTES" if f.kind == "categorical" else "FP64",
                    "shape": [-1],
                }
                for f in self.inputs
            ],
            "outputs": self.outputs,
            "task": self.task,
            "classes": list(self.classes) if self.classes is not None else None,
        }

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> Signature:
        """`signature` if the manifest has one, else today's `features`/`task`/`target`."""
        sig = manifest.get("signature")
        if isinstance(sig, Mapping):
            inputs, task, classes = sig.get("inputs") or [], sig.get("task"), sig.get("classes")
        else:
            target = manifest.get("target") or {}
            inputs, task = manifest.get("features") or [], manifest.get("task")
            classes = target.get("classes")
        try:
            features = tuple(Feature.from_dict(f) for f in inputs)
        except (KeyError, TypeError) as exc:
            raise SignatureError(f"signature.inputs: malformed entry ({exc})") from exc
        return cls(features, str(task), tuple(classes) if classes is not None else None)

    def numeric_only(self, fmt: str) -> None:
        """Formats that take one float matrix cannot take string columns."""
        text = [f.name for f in self.inputs if f.kind != "numeric"]
        if text:
            raise SignatureError(
                f"signature.inputs: format {fmt!r} takes numeric inputs only; "
                f"{', '.join(text)} are categorical (encode them in the model, or use 'skops')"
            )


class ModelFormat(ABC):
    """One on-disk model format; subclasses are stateless and registered by `name`."""

    name: ClassVar[str]
    pickled: ClassVar[bool] = False  # loading it runs a pickle from whoever wrote the files

    @abstractmethod
    def save(self, model: Any, folder: Path, signature: Signature) -> dict[str, Any]:
        """Write the model's files into `folder`; returns extra manifest fields."""

    @abstractmethod
    def load(
        self, folder: Path, manifest: Mapping[str, Any], signature: Signature, options: LoadOptions
    ) -> Any:
        """The loaded model object `predict` takes (checksums are already verified)."""

    @abstractmethod
    def predict(self, model: Any, signature: Signature, columns: Mapping[str, Any]) -> Prediction:
        """Raw columns in, predictions out."""


class MatrixFormat(ModelFormat):
    """A format whose model takes one float32 matrix (boosters, TorchScript, ONNX): it only
    says how to score that matrix."""

    def predict(self, model: Any, signature: Signature, columns: Mapping[str, Any]) -> Prediction:
        matrix = feature_matrix(columns, signature.inputs)
        return to_prediction(self.scores(model, numeric_matrix(matrix)), signature)

    @abstractmethod
    def scores(self, model: Any, matrix: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """(n,) values (regression), (n,) P(class 1) or (n, k) probabilities (classification)."""


def numeric_matrix(matrix: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The float32 matrix the tensor and booster formats take."""
    return np.ascontiguousarray(matrix, dtype=np.float32)


def to_prediction(raw: Any, signature: Signature) -> Prediction:
    """A format's raw scores as labels (+ probabilities), checked against the signature."""
    out = np.asarray(raw, dtype=np.float64)
    if signature.task == "regression":
        if out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]
        if out.ndim != 1:
            raise SignatureError(
                f"a regression model must give one value per row; it gave shape {out.shape}"
            )
        return Prediction(out, None)
    if not signature.classes:
        raise SignatureError("signature.classes: a classifier needs its class labels")
    classes = np.asarray(signature.classes)
    if out.ndim == 1 or (out.ndim == 2 and out.shape[1] == 1 and len(classes) == 2):
        p = out.reshape(-1)
        out = np.column_stack([1.0 - p, p])
    if out.ndim != 2 or out.shape[1] != len(classes):
        raise SignatureError(
            f"the model gives {out.shape[-1] if out.ndim else 0} class scores per row, but "
            f"signature.classes lists {len(classes)} ({', '.join(map(str, classes))})"
        )
    return Prediction(classes[np.argmax(out, axis=1)], out)


def probe_columns(inputs: Sequence[Feature]) -> dict[str, Any]:
    """One row that any model of this signature must accept (the load-time check)."""
    return {
        f.name: np.array([0.0])
        if f.kind == "numeric"
        else np.array([f.categories[0] if f.categories else ""], dtype=object)
        for f in inputs
    }
