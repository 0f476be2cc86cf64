"""Every model format through the real `kubeloop serve` and tritonclient: served predictions
equal the native library's offline ones, metadata reports the signature, requests are checked
against it, and a folder the server must not load keeps it unready with the cause."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from tests.storage.format_models import BUILDERS, CUSTOM, ROWS, sklearn_version
from tests.workloads.server.conftest import ROOT, Server, start_server
from tritonclient.utils import InferenceServerException

from kubeloop.modelformat import read_manifest, write_manifest

# What an operator grants this server: the test's custom predictor, importable from ROOT.
ENV = {
    "PYTHONPATH": f"{ROOT / 'operator'}:{ROOT}",
    "KUBELOOP_CUSTOM_PREDICTORS": CUSTOM,
}


def _infer(server: Server, rows: np.ndarray[Any, Any], outputs: list[str]) -> triton.InferResult:
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    inputs = []
    for j in range(rows.shape[1]):
        tensor = triton.InferInput(f"f{j}", [rows.shape[0]], "FP64")
        tensor.set_data_from_numpy(rows[:, j].copy(), binary_data=False)
        inputs.append(tensor)
    wanted = [triton.InferRequestedOutput(name, binary_data=False) for name in outputs]
    return client.infer("churn", inputs, outputs=wanted)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_served_prediction_equals_the_offline_one(tmp_path: Path, name: str) -> None:
    built = BUILDERS[name](tmp_path / "versions" / "1")
    env = {**ENV, "KUBELOOP_ALLOW_PICKLE": "true"} if name == "sklearn" else ENV
    server = start_server(tmp_path, built.folder, **env)
    try:
        client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
        meta = client.get_model_metadata("churn")
        assert meta["platform"] == name
        assert meta["parameters"]["format"] == name
        assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [
            (f"f{j}", "FP64", [-1]) for j in range(3)
        ]
        classify = built.task == "classification"
        outputs = ["predict", "predict_proba"] if classify else ["predict"]
        assert [o["name"] for o in meta["outputs"]] == outputs

        result = _infer(server, ROWS, outputs)
        if classify:
            proba = result.as_numpy("predict_proba")
            np.testing.assert_allclose(proba, built.expected, rtol=1e-5, atol=1e-6)
            assert built.labels is not None
            assert list(result.as_numpy("predict").astype(str)) == list(built.labels)
        else:
            np.testing.assert_allclose(
                result.as_numpy("predict"), built.expected, rtol=1e-5, atol=1e-5
            )

        # requests are checked against the signature, and the 400 names the input
        with pytest.raises(InferenceServerException, match=r"unknown feature 'f3'"):
            _infer(server, np.zeros((2, 4)), ["predict"])
        with pytest.raises(InferenceServerException, match=r"missing tensor.*f2"):
            _infer(server, np.zeros((2, 2)), ["predict"])
        wrong = [
            ("f0", np.array(["a", "b"], dtype=object), "BYTES", r"'f0'.*numeric; send FP32"),
            ("f1", np.zeros((2, 2)), "FP64", r"\('f1'\)\.shape: expected \[n\] or \[n, 1\]"),
        ]
        for bad, data, datatype, message in wrong:
            inputs = []
            for j in range(3):
                name = f"f{j}"
                value = data if name == bad else np.zeros(2)
                tensor = triton.InferInput(
                    name, list(value.shape), datatype if name == bad else "FP64"
                )
                tensor.set_data_from_numpy(value, binary_data=False)
                inputs.append(tensor)
            with pytest.raises(InferenceServerException, match=message):
                client.infer("churn", inputs)
    finally:
        server.stop()


def _tampered(folder: Path) -> Path:
    BUILDERS["xgboost"](folder)
    with (folder / "model.ubj").open("ab") as handle:
        handle.write(b"\0")
    return folder


def _narrow(folder: Path) -> Path:
    BUILDERS["lightgbm"](folder)
    manifest = read_manifest(folder)
    manifest["signature"]["inputs"] = manifest["signature"]["inputs"][:2]
    del manifest["files"]
    write_manifest(folder, manifest)
    return folder


@pytest.mark.parametrize(
    ("build", "cause"),
    [
        (_tampered, "model.ubj: sha256 differs from the manifest"),
        (lambda f: sklearn_version(f).folder, "format 'sklearn' is a pickle from user code"),
        (_narrow, "the booster takes 3 features, but the signature lists 2 inputs"),
    ],
    ids=["checksum", "pickle-without-allowance", "signature-mismatch"],
)
def test_refused_versions_keep_the_server_unready_naming_the_cause(
    tmp_path: Path, build: object, cause: str
) -> None:
    assert callable(build)
    folder = build(tmp_path / "versions" / "1")
    server = start_server(tmp_path, folder, wait_ready=False, **ENV)
    try:
        deadline = time.monotonic() + 60
        status, body = server.get("/v2/health/ready")
        while "cannot load" not in str(body) and time.monotonic() < deadline:
            time.sleep(0.05)
            status, body = server.get("/v2/health/ready")
        assert status == 503
        assert cause in body["error"]
    finally:
        server.stop()
