"""The on-disk format of a model version folder: files, `manifest.json`, checksums, loading.

A version folder holds the model files and `manifest.json` (see docs/contracts.md). The
manifest lists the sha256 of every other file and is written last, so a folder without it is
incomplete. `load_predictor` verifies every checksum *before* unpickling anything, then loads
the model with the class of its format (`kubeloop.formats`, named by manifest `modelFormat`) and
returns a `Predictor` that applies exactly the training-time transforms to raw columns.

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
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from kubeloop.formats import LoadOptions, Signature

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
    "save_version",
    "sha256_file",
    "verify_folder",
    "write_manifest",
]

FORMAT = "kubeloop.model/v1"
MANIFEST = "manifest.json"


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
    """A verified, loaded model version: raw columns in, predictions out.

    `framework` names the model format (`kubeloop.formats`) that reads `_model`.
    """

    features: tuple[Feature, ...]
    task: str
    classes: tuple[Any, ...] | None
    framework: str
    _model: Any = field(repr=False)

    def __post_init__(self) -> None:
        from kubeloop.formats import Signature, format_named

        self._format = format_named(self.framework)
        self.signature = Signature(tuple(self.features), self.task, self.classes)

    def predict(self, columns: Mapping[str, Any]) -> Prediction:
        """Predict a batch given one array per feature (extra columns are ignored)."""
        return self._format.predict(self._model, self.signature, columns)


def load_predictor(local_dir: Path | str, options: LoadOptions | None = None) -> Predictor:
    """Verify every sha256 in manifest.files, then load with the manifest's model format.

    Raises ModelFormatError (ChecksumError, PickleRefusedError, SignatureError,
    UnknownFormatError) naming the cause. `options` are the server's allowances (pickles,
    custom predictors); the manifest cannot grant them.
    """
    from kubeloop.formats import LoadOptions, Signature, SignatureError, format_named, format_of
    from kubeloop.formats.base import probe_columns

    folder = Path(local_dir)
    manifest = read_manifest(folder)
    verify_folder(folder, manifest)  # before any unpickling
    name = format_of(manifest)
    fmt = format_named(name)
    signature = Signature.from_manifest(manifest)
    model = fmt.load(folder, manifest, signature, options or LoadOptions())
    predictor = Predictor(signature.inputs, signature.task, signature.classes, name, model)
    if "modelFormat" in manifest:
        # Brought models are checked against what they declare before serving anything.
        try:
            predictor.predict(probe_columns(signature.inputs))
        except SignatureError:
            raise
        except Exception as exc:
            raise SignatureError(
                f"{folder}: the {name} model fails on one row of its declared signature "
                f"(inputs {', '.join(f.name for f in signature.inputs)}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    return predictor


def save_version(
    folder: Path | str,
    model: Any,
    model_format: str,
    signature: Signature,
    manifest: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write `model` in `model_format` into `folder`, then manifest.json with the format, the
    signature (also as `features`/`task`/`target` for older readers) and every checksum."""
    from kubeloop.formats import format_named

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    extra = format_named(model_format).save(model, folder, signature)
    given = dict(manifest or {})
    target = dict(given.pop("target", None) or {})
    target["classes"] = list(signature.classes) if signature.classes is not None else None
    return write_manifest(
        folder,
        {
            **given,
            **extra,
            "modelFormat": model_format,
            "signature": signature.to_dict(),
            "features": [f.to_dict() for f in signature.inputs],
            "task": signature.task,
            "target": target,
        },
    )


def _jsonable(value: Any) -> Any:
    """json.dumps fallback for numpy scalars and arrays."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
