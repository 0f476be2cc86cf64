"""kubeloop.modelformat: manifest checksums and load_predictor round trips on real models."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from kubeloop.modelformat import (
    ChecksumError,
    Feature,
    ModelFormatError,
    build_mlp,
    feature_matrix,
    load_predictor,
    read_manifest,
    verify_folder,
    write_manifest,
)

FEATURES = (
    Feature("tenure", "double", "numeric"),
    Feature("contract", "string", "categorical", ("monthly", "yearly")),
)
COLUMNS = {
    "tenure": np.array([1.0, 30.0, 2.0, 40.0, 3.0, 50.0]),
    "contract": np.array(["monthly", "yearly"] * 3, dtype=object),
}
LABELS = np.array(["yes", "no"] * 3)


def _preprocess() -> ColumnTransformer:
    return ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), [0]),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), [1]),
        ],
        sparse_threshold=0,
    )


def _sklearn_version(folder: Path) -> Path:
    folder.mkdir()
    model = Pipeline([("prep", _preprocess()), ("model", LogisticRegression())])
    model.fit(feature_matrix(COLUMNS, FEATURES), LABELS)
    joblib.dump(model, folder / "model.joblib")
    write_manifest(
        folder,
        {
            "version": "1",
            "framework": "sklearn",
            "task": "classification",
            "features": [f.to_dict() for f in FEATURES],
            "target": {"name": "churned", "classes": ["no", "yes"]},
        },
    )
    return folder


def test_sklearn_round_trip_predicts_like_the_fitted_pipeline(tmp_path: Path) -> None:
    folder = _sklearn_version(tmp_path / "v1")
    predictor = load_predictor(folder)
    assert predictor.task == "classification"
    assert [f.name for f in predictor.features] == ["tenure", "contract"]
    pred = predictor.predict(COLUMNS)
    assert list(pred.values) == list(LABELS)
    assert pred.probabilities is not None and pred.probabilities.shape == (6, 2)
    # Unseen category and missing values are accepted (handle_unknown="ignore", NaN).
    odd = predictor.predict({"tenure": np.array([None, 5.0]), "contract": ["weekly", None]})
    assert odd.values.shape == (2,)


def test_manifest_lists_sha256_of_every_file_and_verifies(tmp_path: Path) -> None:
    folder = _sklearn_version(tmp_path / "v1")
    manifest = read_manifest(folder)
    assert set(manifest["files"]) == {"model.joblib"}
    assert len(manifest["files"]["model.joblib"]) == 64
    verify_folder(folder)


def test_flipped_byte_fails_verification_before_loading(tmp_path: Path) -> None:
    folder = _sklearn_version(tmp_path / "v1")
    data = bytearray((folder / "model.joblib").read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / "model.joblib").write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=r"model.joblib: sha256 differs"):
        load_predictor(folder)


def test_missing_file_and_missing_manifest_are_refused(tmp_path: Path) -> None:
    folder = _sklearn_version(tmp_path / "v1")
    (folder / "model.joblib").unlink()
    with pytest.raises(ChecksumError, match=r"model\.joblib: missing"):
        verify_folder(folder)
    (folder / "manifest.json").unlink()
    with pytest.raises(ModelFormatError, match=r"no manifest\.json"):
        load_predictor(folder)


def test_torch_round_trip_loads_state_dict_with_weights_only(tmp_path: Path) -> None:
    folder = tmp_path / "v2"
    folder.mkdir()
    prep = _preprocess().fit(feature_matrix(COLUMNS, FEATURES))
    joblib.dump(prep, folder / "preprocess.joblib")
    torch.manual_seed(0)
    net = build_mlp(3, [8], 0.1, 2)
    torch.save(net.state_dict(), folder / "model.pt")
    arch = {"inputs": 3, "hiddenSizes": [8], "dropout": 0.1, "outputs": 2}
    write_manifest(
        folder,
        {
            "framework": "torch",
            "task": "classification",
            "architecture": arch,
            "features": [f.to_dict() for f in FEATURES],
            "target": {"name": "churned", "classes": ["no", "yes"]},
        },
    )
    assert set(json.loads((folder / "manifest.json").read_text())["files"]) == {
        "model.pt",
        "preprocess.joblib",
    }
    pred = load_predictor(folder).predict(COLUMNS)
    net.eval()
    x = torch.from_numpy(prep.transform(feature_matrix(COLUMNS, FEATURES)).astype(np.float32))
    expected = torch.softmax(net(x).double(), dim=1).detach().numpy()
    assert pred.probabilities is not None
    np.testing.assert_allclose(pred.probabilities, expected, rtol=1e-6)
    assert set(pred.values) <= {"no", "yes"}


def test_feature_matrix_names_missing_and_non_numeric_columns() -> None:
    with pytest.raises(ValueError, match="missing feature columns: contract"):
        feature_matrix({"tenure": [1.0]}, FEATURES)
    with pytest.raises(ValueError, match="'tenure' must be numeric"):
        feature_matrix({"tenure": ["abc"], "contract": ["x"]}, FEATURES)
