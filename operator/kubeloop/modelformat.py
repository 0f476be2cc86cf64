"""The on-disk format of a model version folder: files, `manifest.json`, checksums, loading.

A version folder holds the model files and `manifest.json` (see docs/contracts.md). The
manifest lists the sha256 of every other file and is written last, so a folder without it is
incomplete. `load_predictor` verifies every checksum *before* unpickling anything, then returns
a `Predictor` that applies exactly the training-time transforms to raw columns.

Raw columns become the model's input matrix through `feature_matrix`, the one conversion used
both when training and when serving: numeric features as float64 (None/NaN = missing),
categorical features as `str(value)` (None/NaN = missing, kept as NaN so the encoder treats it
as its own category).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FORMAT",
    "MANIFEST",
    "ChecksumError",
    "Feature",
    "ModelFormatError",
    "Prediction",
    "Predictor",
    "build_mlp",
    "feature_matrix",
    "file_checksums",
    "load_predictor",
    "read_manifest",
    "sha256_file",
    "verify_folder",
    "write_manifest",
]

FORMAT = "kubeloop.model/v1"
MANIFEST = "manifest.json"
SKLEARN_MODEL = "model.joblib"
TORCH_PREPROCESS = "preprocess.joblib"
TORCH_WEIGHTS = "model.pt"


class ModelFormatError(ValueError):
    """A version folder is missing, incomplete or malformed."""


class ChecksumError(ModelFormatError):
    """A file does not match the sha256 recorded in manifest.json (tampered or truncated)."""


@dataclass(frozen=True)
class Feature:
    """One input column of the model, as listed in manifest `features[]`."""

    name: str
    dtype: str
    kind: str  # "numeric" | "categorical"
    categories: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The manifest entry."""
        return {
            "name": self.name,
            "dtype": self.dtype,
            "kind": self.kind,
            "categories": list(self.categories) if self.categories is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Feature:
        """Parse a manifest entry."""
        cats = data.get("categories")
        return cls(
            name=str(data["name"]),
            dtype=str(data["dtype"]),
            kind=str(data["kind"]),
            categories=tuple(str(c) for c in cats) if cats is not None else None,
        )


@dataclass(frozen=True)
class Prediction:
    """Predictions for a batch: `values` (n,), `probabilities` (n, classes) or None."""

    values: np.ndarray[Any, Any]
    probabilities: np.ndarray[Any, Any] | None = None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks (model files can be large)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_checksums(folder: Path) -> dict[str, str]:
    """{relative posix path: sha256} of every file in `folder` except the manifest and dotfiles."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if not path.is_file() or rel == MANIFEST or any(p.startswith(".") for p in rel.split("/")):
            continue
        out[rel] = sha256_file(path)
    return out


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Add `format` and `files` (sha256 of every file) and write manifest.json; call it last."""
    full = {"format": FORMAT, **manifest, "files": file_checksums(folder)}
    (folder / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=True, default=_jsonable))
    return full


def read_manifest(folder: Path) -> dict[str, Any]:
    """The parsed manifest.json of a local version folder."""
    path = folder / MANIFEST
    if not path.is_file():
        raise ModelFormatError(f"{folder}: no {MANIFEST} (incomplete or not a version folder)")
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"{path} is not valid JSON: {exc}") from exc
    return data


def verify_folder(folder: Path, manifest: Mapping[str, Any] | None = None) -> None:
    """Raise ChecksumError naming every file that is missing or differs from the manifest."""
    manifest = read_manifest(folder) if manifest is None else manifest
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise ModelFormatError(f"{folder}/{MANIFEST} lists no files")
    problems = []
    for rel, expected in sorted(files.items()):
        path = folder / rel
        if ".." in Path(rel).parts or not path.is_file():
            problems.append(f"{rel}: missing")
        elif sha256_file(path) != expected:
            problems.append(f"{rel}: sha256 differs from the manifest")
    if problems:
        raise ChecksumError(f"{folder} failed verification: " + "; ".join(problems))


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def feature_matrix(
    columns: Mapping[str, Sequence[Any] | np.ndarray[Any, Any]], features: Sequence[Feature]
) -> np.ndarray[Any, Any]:
    """An (n, features) object matrix in manifest order: what the saved preprocessing expects."""
    missing = [f.name for f in features if f.name not in columns]
    if missing:
        raise ValueError(f"missing feature columns: {', '.join(missing)}")
    lengths = {len(columns[f.name]) for f in features}
    if len(lengths) > 1:
        raise ValueError(f"feature columns differ in length: {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    if all(f.kind == "numeric" for f in features):
        # All-numeric models get a float matrix: no per-value Python work on the hot path.
        try:
            return np.column_stack(
                [np.asarray(columns[f.name], dtype=np.float64) for f in features]
            ).reshape(n, len(features))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"numeric features must be numbers: {exc}") from exc
    out = np.empty((n, len(features)), dtype=object)
    for j, feat in enumerate(features):
        raw = columns[feat.name]
        if feat.kind == "numeric":
            try:
                out[:, j] = np.asarray(raw, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"feature {feat.name!r} must be numeric: {exc}") from exc
        else:
            out[:, j] = _categorical_strings(raw)
    return out


def _categorical_strings(raw: Sequence[Any] | np.ndarray[Any, Any]) -> Any:
    """`str(v)`, or NaN when missing, for every value: vectorized when all values are strings.

    pyarrow converts a column of str/None/NaN in C; any other value type (numbers, booleans,
    mixes) takes the per-value path, whose `str(v)` pyarrow's casts would not reproduce.
    """
    try:
        import pyarrow as pa

        array = pa.array(raw, from_pandas=True)  # from_pandas: float NaN counts as missing
    except (ImportError, TypeError, ValueError, OverflowError):
        array = None
    if array is not None and (
        pa.types.is_string(array.type) or pa.types.is_large_string(array.type)
    ):
        strings = np.asarray(array.to_numpy(zero_copy_only=False), dtype=object)
        if array.null_count:
            strings[np.asarray(array.is_null())] = np.nan
        return strings
    return [np.nan if _is_missing(v) else str(v) for v in raw]


def build_mlp(inputs: int, hidden: Sequence[int], dropout: float, outputs: int) -> Any:
    """The TabularMLP network (a torch Sequential): Linear-ReLU-Dropout blocks, then a head.

    Defined here, not in the trainer, because loading a state_dict needs the same layout.
    """
    from torch import nn

    layers: list[Any] = []
    width = inputs
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    layers.append(nn.Linear(width, outputs))
    return nn.Sequential(*layers)


@dataclass
class Predictor:
    """A verified, loaded model version: raw columns in, predictions out."""

    features: tuple[Feature, ...]
    task: str
    classes: tuple[Any, ...] | None
    framework: str
    _model: Any = field(repr=False)
    _preprocess: Any = field(default=None, repr=False)
    _target_scale: tuple[float, float] = (0.0, 1.0)

    def predict(self, columns: Mapping[str, Any]) -> Prediction:
        """Predict a batch given one array per feature (extra columns are ignored)."""
        matrix = feature_matrix(columns, self.features)
        if self.framework == "sklearn":
            return self._predict_sklearn(matrix)
        return self._predict_torch(matrix)

    def _predict_sklearn(self, matrix: np.ndarray[Any, Any]) -> Prediction:
        if self.task == "classification" and hasattr(self._model, "predict_proba"):
            proba = np.asarray(self._model.predict_proba(matrix), dtype=np.float64)
            labels = np.asarray(self._model.classes_)
            return Prediction(labels[np.argmax(proba, axis=1)], proba)
        values = np.asarray(self._model.predict(matrix))
        if self.task == "regression":
            values = values.astype(np.float64)
        return Prediction(values, None)

    def _predict_torch(self, matrix: np.ndarray[Any, Any]) -> Prediction:
        import torch

        x = torch.from_numpy(np.asarray(self._preprocess.transform(matrix), dtype=np.float32))
        with torch.no_grad():
            out = self._model(x).double()
        if self.task == "classification":
            proba = torch.softmax(out, dim=1).numpy()
            labels = np.asarray(self.classes)
            return Prediction(labels[np.argmax(proba, axis=1)], proba)
        mean, std = self._target_scale
        return Prediction(out[:, 0].numpy() * std + mean, None)


def load_predictor(local_dir: Path | str) -> Predictor:
    """Verify every sha256 in manifest.files, then load the model; raises ModelFormatError."""
    folder = Path(local_dir)
    manifest = read_manifest(folder)
    verify_folder(folder, manifest)  # before any unpickling
    import joblib

    features = tuple(Feature.from_dict(f) for f in manifest.get("features", []))
    task = str(manifest.get("task"))
    target = manifest.get("target") or {}
    classes = tuple(target["classes"]) if target.get("classes") is not None else None
    framework = str(manifest.get("framework"))
    if framework == "sklearn":
        model = joblib.load(folder / SKLEARN_MODEL)
        return Predictor(features, task, classes, framework, model)
    if framework == "torch":
        import torch

        arch = manifest["architecture"]
        # Same dropout as in training: Dropout layers shift the Sequential's indices, and the
        # state_dict keys name those indices.
        net = build_mlp(
            int(arch["inputs"]),
            [int(h) for h in arch["hiddenSizes"]],
            float(arch["dropout"]),
            int(arch["outputs"]),
        )
        state = torch.load(folder / TORCH_WEIGHTS, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        net.eval()
        preprocess = joblib.load(folder / TORCH_PREPROCESS)
        scale = (float(arch.get("targetMean", 0.0)), float(arch.get("targetStd", 1.0)))
        return Predictor(features, task, classes, framework, net, preprocess, scale)
    raise ModelFormatError(f"{folder}: unknown framework {framework!r} in {MANIFEST}")


def _jsonable(value: Any) -> Any:
    """json.dumps fallback for numpy scalars and arrays."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
