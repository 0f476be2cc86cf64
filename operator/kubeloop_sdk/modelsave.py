"""`save_model`: your trained model as the files Kubeloop's format classes read.

The folder (the context's `modelDir`) gets the format's files (names in
`kubeloop_sdk.modelfiles`) and `kubeloop-model.json`, which tells Kubeloop's publisher the
format, the inputs and, for `custom`, the predictor class. The folder appears whole or not at
all: it is written aside and renamed into place, so a crash mid-save leaves no half model.
Each format's library is imported only when that format is saved.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kubeloop_sdk.context import Context, context
from kubeloop_sdk.files import copy_atomic, write_atomic
from kubeloop_sdk.modelfiles import (
    CODE_DIR,
    JOBLIB_FILE,
    LIGHTGBM_FILE,
    MODEL_FORMATS,
    MODEL_MANIFEST,
    ONNX_FILE,
    SKOPS_FILE,
    TORCHSCRIPT_FILE,
    XGBOOST_FILE,
)
from kubeloop_sdk.skopsio import skops_io
from kubeloop_sdk.version import __version__

__all__ = ["class_path", "code_sources", "model_inputs", "model_manifest", "save_model"]

log = logging.getLogger("kubeloop_sdk")
_CLASS_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def _library(
    module: str, fmt: str, package: str, load: Callable[[str], Any] = importlib.import_module
) -> Any:
    try:
        return load(module)
    except ImportError:
        raise ImportError(
            f"save_model(format={fmt!r}) needs {package} in your image (pip install {package})"
        ) from None


def _torchscript(model: Any, folder: Path) -> None:
    torch = _library("torch", "torchscript", "torch")
    path = str(folder / TORCHSCRIPT_FILE)
    if isinstance(model, torch.jit.ScriptModule):  # scripted or traced
        model.save(path)
        return
    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            f"save_model(format='torchscript'): a torch.nn.Module or a ScriptModule, "
            f"not {type(model).__name__}"
        )
    try:
        scripted = torch.jit.script(model)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"save_model(format='torchscript'): torch.jit.script cannot compile "
            f"{type(model).__name__} ({first}); trace it instead and save the traced module: "
            "save_model(torch.jit.trace(model.eval(), example_batch), format='torchscript')"
        ) from exc
    scripted.save(path)


def _onnx(model: Any, folder: Path) -> None:
    if isinstance(model, (bytes, bytearray, memoryview)):
        write_atomic(folder / ONNX_FILE, bytes(model))
    elif isinstance(model, (str, os.PathLike)):
        source = Path(model)
        if not source.is_file():
            raise ValueError(f"save_model(format='onnx'): {source} is not a file")
        copy_atomic(source, folder / ONNX_FILE)
    elif hasattr(model, "SerializeToString"):  # an onnx.ModelProto
        write_atomic(folder / ONNX_FILE, model.SerializeToString())
    else:
        raise TypeError(
            "save_model(format='onnx'): the model's bytes, the path of a .onnx file or an "
            f"onnx.ModelProto, not {type(model).__name__}"
        )


def _xgboost(model: Any, folder: Path) -> None:
    booster = model.get_booster() if hasattr(model, "get_booster") else model
    if not hasattr(booster, "save_model"):
        raise TypeError(
            "save_model(format='xgboost'): an xgboost.Booster or a fitted XGBClassifier/"
            f"XGBRegressor, not {type(model).__name__}"
        )
    booster.save_model(str(folder / XGBOOST_FILE))  # the .ubj suffix picks UBJSON


def _lightgbm(model: Any, folder: Path) -> None:
    booster = model.booster_ if hasattr(model, "booster_") else model
    if not hasattr(booster, "save_model") or not hasattr(booster, "num_feature"):
        raise TypeError(
            "save_model(format='lightgbm'): a lightgbm.Booster or a fitted LGBMClassifier/"
            f"LGBMRegressor, not {type(model).__name__}"
        )
    booster.save_model(str(folder / LIGHTGBM_FILE))


def _skops(model: Any, folder: Path) -> None:
    _library("skops.io", "skops", "skops", load=lambda _name: skops_io()).dump(
        model, folder / SKOPS_FILE
    )


def _sklearn(model: Any, folder: Path) -> None:
    _library("joblib", "sklearn", "joblib").dump(model, folder / JOBLIB_FILE)
    log.info(
        "kubeloop_sdk: %s is a pickle: a ModelDeployment serves it only with "
        "spec.model.allowPickle; format 'skops' needs no such allowance",
        JOBLIB_FILE,
    )


def _custom(model: Any, folder: Path) -> None:
    if hasattr(model, "save"):
        model.save(folder)


_WRITERS: dict[str, Callable[[Any, Path], None]] = {
    "custom": _custom,
    "lightgbm": _lightgbm,
    "onnx": _onnx,
    "sklearn": _sklearn,
    "skops": _skops,
    "torchscript": _torchscript,
    "xgboost": _xgboost,
}


def class_path(cls: type) -> str:
    """`module:Class` of a class."""
    return f"{cls.__module__}:{cls.__qualname__}"


def model_inputs(inputs: Sequence[str] | None, ctx: Context) -> list[str] | None:
    """The model's input columns: `inputs` (checked against the features), else all."""
    if inputs is None:
        return ctx.feature_names or None
    if isinstance(inputs, str) or not all(isinstance(i, str) for i in inputs):
        raise ValueError(f"save_model(inputs=...): a list of column names, not {inputs!r}")
    names = list(inputs)
    if not names:
        raise ValueError("save_model(inputs=[]): the model needs at least one input")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"save_model(inputs=...): {', '.join(twice)} listed twice")
    known = ctx.feature_names
    unknown = [n for n in names if known and n not in known]
    if unknown:
        raise ValueError(
            f"save_model(inputs=...): {', '.join(unknown)} not among the pipeline's features "
            f"({', '.join(known)})"
        )
    return names


def model_manifest(
    fmt: str, model: Any, inputs: list[str] | None, predictor: str | None
) -> dict[str, Any]:
    """kubeloop-model.json: format, inputs, the predictor class (custom), the SDK version."""
    if fmt not in _WRITERS:
        raise ValueError(
            f"save_model(format={fmt!r}): unknown model format; known: {', '.join(MODEL_FORMATS)}"
        )
    manifest: dict[str, Any] = {"modelFormat": fmt}
    if inputs is not None:
        manifest["inputs"] = inputs
    if fmt == "custom":
        path = predictor if predictor is not None else class_path(type(model))
        if not isinstance(path, str) or not _CLASS_PATH.match(path):
            raise ValueError(
                f"save_model(predictor={path!r}): 'module:Class' of a class at the top level "
                "of a module the server image ships"
            )
        if path.startswith("__main__:"):
            raise ValueError(
                f"save_model(format='custom'): the predictor class {path.partition(':')[2]} is "
                "defined in your script (__main__), which the server cannot import; move it "
                "into a module the server image ships (and lists in KUBELOOP_CUSTOM_PREDICTORS)"
                ", or pass predictor='module:Class'"
            )
        manifest["predictor"] = path
    elif predictor is not None:
        raise ValueError(f"save_model(predictor=...): only format 'custom' has one, not {fmt!r}")
    manifest["sdkVersion"] = __version__
    return manifest


def code_sources(
    code: Sequence[str | os.PathLike[str]] | None, manifest: dict[str, Any]
) -> list[Path]:
    """The files and folders of the predictor's source to ship in the version's code/."""
    if code is None:
        return []
    if manifest["modelFormat"] != "custom":
        raise ValueError("save_model(code=...): only format 'custom' ships its predictor's code")
    if isinstance(code, (str, os.PathLike)):
        raise ValueError("save_model(code=...): a list of files or folders, e.g. ['features.py']")
    paths = [Path(c) for c in code]
    missing = [str(p) for p in paths if not (p.is_file() or p.is_dir())]
    if missing:
        raise ValueError(f"save_model(code=...): {', '.join(missing)} not found")
    module = manifest["predictor"].partition(":")[0].split(".")[0]
    if module not in {p.stem if p.is_file() else p.name for p in paths}:
        raise ValueError(
            f"save_model(code=...): the predictor's module {module!r} is not among "
            f"{', '.join(p.name for p in paths)}; ship the file or package it is defined in"
        )
    return paths


def _copy_code(paths: list[Path], folder: Path) -> None:
    if not paths:  # no code/ at all: its presence alone asks the server for allowCustomCode
        return
    target = folder / CODE_DIR
    target.mkdir(exist_ok=True)
    for path in paths:
        if path.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(path, target / path.name, ignore=ignore)
        else:
            shutil.copyfile(path, target / path.name)


def _swap_in(staging: Path, final: Path) -> None:
    """Put the staged folder where the model goes, replacing what was there."""
    if not final.exists():
        staging.rename(final)
        return
    old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}-old-"))
    try:
        final.rename(old / final.name)
    except OSError:  # the folder is a mount point: replace what it holds instead
        for entry in final.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        for entry in staging.iterdir():
            entry.rename(final / entry.name)
        staging.rmdir()
    else:
        staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def save_model(
    model: Any,
    format: str,
    *,
    inputs: Sequence[str] | None = None,
    predictor: str | None = None,
    code: Sequence[str | os.PathLike[str]] | None = None,
) -> Path | None:
    """Write `model` in `format` into the context's model folder (rank 0 only; others return
    None); returns the folder.

    format: torchscript (a ScriptModule, or an nn.Module torch.jit.script compiles), onnx
    (bytes, a .onnx path or a ModelProto), xgboost (Booster or XGBModel), lightgbm (Booster or
    LGBMModel), skops (scikit-learn, no pickle), sklearn (joblib: a pickle, served only with
    spec.model.allowPickle on the ModelDeployment) or custom (your class: its save(folder)
    writes the files, `predictor` names the class the server loads, default the model's).
    inputs: the model's input columns, default all the pipeline's features.
    code (custom only): files or packages of the predictor's source, shipped in the version's
    code/ folder; a server runs them only where the ModelDeployment has allowCustomCode. Leave
    it out when the server image ships the module (listed in KUBELOOP_CUSTOM_PREDICTORS).
    """
    ctx = context()
    manifest = model_manifest(format, model, model_inputs(inputs, ctx), predictor)
    sources = code_sources(code, manifest)
    if not ctx.is_main:
        return None
    final = ctx.model_dir
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}-new-"))
    try:
        os.chmod(staging, 0o755)  # mkdtemp's 0700 would hide it from the publish container
        _WRITERS[format](model, staging)
        _copy_code(sources, staging)
        write_atomic(staging / MODEL_MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
        _swap_in(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final
