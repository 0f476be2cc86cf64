"""kubeloop.formats: every model format round-trips through a version folder, and each unsafe
or inconsistent folder is refused with a message naming the cause."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from tests.storage.format_models import (
    BUILDERS,
    CLASSES,
    CUSTOM,
    FEATURES,
    ROWS,
    Y_CLASS,
    Y_VALUE,
    X,
    columns_of,
    sklearn_version,
    skops_version,
)

from kubeloop.formats import (
    FORMATS,
    TRAINER,
    LoadOptions,
    PickleRefusedError,
    Signature,
    SignatureError,
    UnknownFormatError,
)
from kubeloop.modelformat import (
    ChecksumError,
    Feature,
    ModelFormatError,
    load_predictor,
    read_manifest,
    save_version,
    write_manifest,
)

ROOT = Path(__file__).resolve().parents[2]
ALLOW_ALL = LoadOptions(allow_pickle=True, custom_predictors=frozenset({CUSTOM}))


def test_every_format_is_registered_and_tested() -> None:
    assert set(FORMATS) == {*BUILDERS, "torch"}  # torch: the trainer's MLP (tests/workloads)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_round_trip_equals_the_native_prediction(tmp_path: Path, name: str) -> None:
    built = BUILDERS[name](tmp_path / name)
    manifest = read_manifest(built.folder)
    assert manifest["modelFormat"] == name
    assert [i["name"] for i in manifest["signature"]["inputs"]] == ["f0", "f1", "f2"]
    assert set(manifest["files"]) >= {p.name for p in built.folder.iterdir()} - {"manifest.json"}

    predictor = load_predictor(built.folder, ALLOW_ALL)
    got = predictor.predict(columns_of(ROWS))
    assert predictor.framework == name
    if built.task == "classification":
        assert got.probabilities is not None
        np.testing.assert_allclose(got.probabilities, built.expected, rtol=1e-5, atol=1e-6)
        assert built.labels is not None
        assert list(got.values) == list(built.labels)
    else:
        assert got.probabilities is None
        np.testing.assert_allclose(got.values, built.expected, rtol=1e-5, atol=1e-5)


def _tamper(folder: Path) -> str:
    target = next(p for p in sorted(folder.iterdir()) if p.name != "manifest.json")
    with target.open("ab") as handle:
        handle.write(b"\0")
    return target.name


def _pickled_skops(folder: Path) -> Path:
    """A skops file holding a user function: skops will not construct it without trust."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    model = make_pipeline(FunctionTransformer(np.negative), Ridge()).fit(X, Y_VALUE)
    model.steps[0][1].func = _user_function
    save_version(folder, model, "skops", Signature(FEATURES, "regression"))
    return folder


def _user_function(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return x


def _narrow_signature(name: str) -> Callable[[Path], Path]:
    """The format's model, but the manifest declares two inputs where the model takes three."""

    def build(folder: Path) -> Path:
        BUILDERS[name](folder)
        manifest = read_manifest(folder)
        manifest["signature"]["inputs"] = manifest["signature"]["inputs"][:2]
        del manifest["files"]
        (folder / "manifest.json").unlink()
        write_manifest(folder, manifest)
        return folder

    return build


def _too_few_classes(folder: Path) -> Path:
    import xgboost

    model = xgboost.XGBClassifier(n_estimators=4, n_jobs=1).fit(X, Y_CLASS)
    save_version(folder, model, "xgboost", Signature(FEATURES, "classification", ("a", "b")))
    return folder


def _classes_out_of_order(folder: Path) -> Path:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=500).fit(X, np.array(CLASSES)[Y_CLASS])
    save_version(folder, model, "skops", Signature(FEATURES, "classification", CLASSES))
    return folder


def _unknown_format(folder: Path) -> Path:
    sklearn_version(folder)
    manifest = read_manifest(folder)
    manifest["modelFormat"] = "pmml"
    del manifest["files"]
    write_manifest(folder, manifest)
    return folder


def _checksum(folder: Path) -> Path:
    BUILDERS["xgboost"](folder)
    _tamper(folder)
    return folder


REFUSALS: list[tuple[str, Callable[[Path], Path], LoadOptions, type[Exception], str]] = [
    ("checksum", _checksum, ALLOW_ALL, ChecksumError, "model.ubj: sha256 differs"),
    (
        "pickle from user code",
        lambda f: sklearn_version(f).folder,
        LoadOptions(),
        PickleRefusedError,
        "format 'sklearn' is a pickle from user code",
    ),
    (
        "skops with an untrusted type",
        _pickled_skops,
        LoadOptions(),
        PickleRefusedError,
        "_user_function",
    ),
    (
        "xgboost narrower than its model",
        _narrow_signature("xgboost"),
        ALLOW_ALL,
        SignatureError,
        "the booster takes 3 features, but the signature lists 2 inputs (f0, f1)",
    ),
    (
        "lightgbm narrower than its model",
        _narrow_signature("lightgbm"),
        ALLOW_ALL,
        SignatureError,
        "the booster takes 3 features, but the signature lists 2 inputs",
    ),
    (
        "onnx narrower than its model",
        _narrow_signature("onnx"),
        ALLOW_ALL,
        SignatureError,
        "takes 3 columns, but the signature lists 2 inputs",
    ),
    (
        "torchscript narrower than its model",
        _narrow_signature("torchscript"),
        ALLOW_ALL,
        SignatureError,
        "refused a [n, 2] float32 input",
    ),
    (
        "classes the model does not give",
        _too_few_classes,
        ALLOW_ALL,
        SignatureError,
        "gives 3 class scores per row, but signature.classes lists 2",
    ),
    (
        "sklearn classes in another order",
        _classes_out_of_order,
        ALLOW_ALL,
        SignatureError,
        "signature.classes ['low', 'mid', 'high'] must be the estimator's classes_ in their "
        "order: ['high', 'low', 'mid']",
    ),
    (
        "custom predictor not allowed",
        lambda f: BUILDERS["custom"](f).folder,
        LoadOptions(allow_pickle=True),
        UnknownFormatError,
        f"custom predictor '{CUSTOM}' is not allowed on this server",
    ),
    ("unknown format", _unknown_format, ALLOW_ALL, UnknownFormatError, "unknown model format"),
]


@pytest.mark.parametrize(
    ("build", "options", "error", "message"),
    [r[1:] for r in REFUSALS],
    ids=[r[0] for r in REFUSALS],
)
def test_refusals_name_the_cause(
    tmp_path: Path,
    build: Callable[[Path], Path],
    options: LoadOptions,
    error: type[Exception],
    message: str,
) -> None:
    folder = build(tmp_path / "v")
    with pytest.raises(error) as info:
        load_predictor(folder, options)
    assert message in str(info.value)
    assert isinstance(info.value, ModelFormatError)


def test_pickles_our_trainer_wrote_load_without_the_allowance(tmp_path: Path) -> None:
    ours = sklearn_version(tmp_path / "ours", producedBy=TRAINER)
    predictor = load_predictor(ours.folder)
    np.testing.assert_allclose(predictor.predict(columns_of(ROWS)).values, ours.expected)


def test_manifests_from_before_formats_still_load(tmp_path: Path) -> None:
    """A version written before `modelFormat`/`signature` existed (framework + features)."""
    from sklearn.linear_model import LogisticRegression

    folder = tmp_path / "old"
    folder.mkdir()
    model = LogisticRegression(max_iter=500).fit(X, np.array(CLASSES)[Y_CLASS])
    joblib.dump(model, folder / "model.joblib")
    write_manifest(
        folder,
        {
            "version": "1",
            "framework": "sklearn",
            "task": "classification",
            "features": [f.to_dict() for f in FEATURES],
            "target": {"name": "y", "classes": list(CLASSES)},
        },
    )
    assert "modelFormat" not in json.loads((folder / "manifest.json").read_text())
    predictor = load_predictor(folder)
    np.testing.assert_allclose(
        predictor.predict(columns_of(ROWS)).probabilities, model.predict_proba(ROWS)
    )


@pytest.mark.parametrize("name", ["xgboost", "lightgbm", "onnx", "torchscript"])
def test_matrix_formats_refuse_categorical_inputs_when_saving(tmp_path: Path, name: str) -> None:
    signature = Signature((*FEATURES, Feature("plan", "string", "categorical")), "regression")
    with pytest.raises(SignatureError, match=r"plan are categorical .*'skops'"):
        FORMATS[name].save(object(), tmp_path, signature)


@pytest.mark.parametrize(
    ("device", "available", "providers"),
    [
        (None, ["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]),
        ("cpu", ["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]),
        (
            "cuda",
            ["CUDAExecutionProvider", "CPUExecutionProvider"],
            ["CUDAExecutionProvider", "CPUExecutionProvider"],
        ),
        ("cuda", ["CPUExecutionProvider"], ["CPUExecutionProvider"]),  # onnxruntime (CPU)
    ],
)
def test_onnx_runs_on_cuda_only_on_gpu_pods_that_offer_it(
    monkeypatch: pytest.MonkeyPatch, device: str | None, available: list[str], providers: list[str]
) -> None:
    from kubeloop.formats.tensors import DEVICE_ENV, onnx_providers

    if device is None:
        monkeypatch.delenv(DEVICE_ENV, raising=False)
    else:
        monkeypatch.setenv(DEVICE_ENV, device)
    assert onnx_providers(available) == providers


def test_a_gpu_pod_without_a_gpu_serves_torchscript_on_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This machine has no CUDA: KUBELOOP_DEVICE=cuda must still serve, on CPU, same answers.
    import torch

    from kubeloop.formats.tensors import DEVICE_ENV, torch_device

    assert not torch.cuda.is_available()
    monkeypatch.setenv(DEVICE_ENV, "cuda")
    assert torch_device() == "cpu"
    test_round_trip_equals_the_native_prediction(tmp_path, "torchscript")


_TRUSTED = """
import json, sys
from kubeloop_sdk.skopsio import skops_io
from kubeloop.modelformat import load_predictor
from tests.storage.format_models import ROWS, columns_of

names = skops_io()._trusted_types.SKLEARN_ESTIMATOR_TYPE_NAMES
values = load_predictor(sys.argv[1]).predict(columns_of(ROWS)).values.tolist()
print(json.dumps({"torch": "torch" in sys.modules, "names": names, "values": values}))
"""


def test_a_skops_model_loads_without_torch_and_the_same_trusted_types(tmp_path: Path) -> None:
    """skops lists its trusted types by importing all of scikit-learn, which would import torch
    where it is installed (seconds of CPU, hundreds of MB per server); kubeloop keeps torch out
    (a fresh process, as a server starts), and the list skops trusts is the one skops builds
    with torch importable (here: skops' own rule, over scikit-learn's estimators)."""
    import torch  # noqa: F401  (importable, and imported, for the reference list)
    from sklearn.utils import all_estimators
    from skops.io._utils import get_type_name

    built = skops_version(tmp_path / "skops")
    proc = subprocess.run(
        [sys.executable, "-c", _TRUSTED, str(built.folder)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(map(str, (ROOT / "operator", ROOT)))},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    alone = json.loads(proc.stdout)
    assert alone["torch"] is False
    reference = [get_type_name(cls) for _, cls in all_estimators()]
    assert alone["names"] == [n for n in reference if n.startswith("sklearn.")]
    assert len(alone["names"]) > 100
    assert built.labels is not None
    assert alone["values"] == built.labels.tolist()
