"""The benchmark model: one fitted HistGradientBoostingClassifier, two folders that hold it.

Kubeloop gets a version folder as the trainer writes it (model.joblib + manifest.json with the
sha256 of every file); MLServer gets a model folder with the very same model.joblib bytes and a
model-settings.json for its sklearn runtime. One V2 body (a single FP64 tensor of shape
[rows, features]) is sent to both.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from kubeloop.modelformat import write_manifest

__all__ = ["MODEL_NAME", "body", "write_folders"]

MODEL_NAME = "hgb"


def _fit(features: int, rows: int, seed: int) -> tuple[Any, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    y = x[:, 0] + 0.5 * x[:, 1] - x[:, 2] * x[:, 3] + rng.normal(scale=0.3, size=rows) > 0
    model = HistGradientBoostingClassifier(max_iter=100, random_state=seed).fit(x, y.astype(int))
    return model, x


def write_folders(root: Path, *, features: int = 20, seed: int = 0) -> tuple[Path, Path]:
    """(kubeloop version folder, mlserver model folder) for the same fitted model."""
    model, _ = _fit(features, 20_000, seed)
    version = root / "kubeloop" / "versions" / "1"
    if version.exists():
        shutil.rmtree(version)
    version.mkdir(parents=True)
    joblib.dump(model, version / "model.joblib")
    write_manifest(
        version,
        {
            "version": "1",
            "framework": "sklearn",
            "task": "classification",
            "estimator": "HistGradientBoostingClassifier",
            "features": [
                {"name": f"f{i}", "dtype": "float64", "kind": "numeric", "categories": None}
                for i in range(features)
            ],
            "target": {"name": "label", "classes": [0, 1]},
        },
    )
    mlserver = root / "mlserver" / MODEL_NAME
    mlserver.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(version / "model.joblib", mlserver / "model.joblib")
    return version, mlserver


def body(*, features: int = 20, rows: int = 1, seed: int = 1) -> bytes:
    """One V2 infer body: an FP64 [rows, features] tensor, only the `predict` output asked."""
    rng = np.random.default_rng(seed)
    data = np.round(rng.normal(size=rows * features), 4).tolist()
    doc = {
        "inputs": [
            {"name": "input-0", "shape": [rows, features], "datatype": "FP64", "data": data}
        ],
        "outputs": [{"name": "predict"}],
    }
    return json.dumps(doc).encode()
