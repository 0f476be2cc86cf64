"""A real Open Inference Protocol client (tritonclient[http]) against `kubeloop serve`."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import tritonclient.http as triton
from tests.workloads.server.conftest import Server
from tritonclient.utils import InferenceServerException


def _client(server: Server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")


def _inputs(
    rows: int, *, age_type: str = "FP64", visits_type: str = "INT64"
) -> list[triton.InferInput]:
    rng = np.random.default_rng(rows)
    dtypes = {"FP64": np.float64, "FP32": np.float32, "INT64": np.int64, "INT32": np.int32}
    values = {
        "age": (rng.uniform(18, 90, rows).astype(dtypes[age_type]), age_type),
        "income": (rng.normal(50_000, 9_000, rows), "FP64"),
        "visits": (rng.integers(0, 30, rows).astype(dtypes[visits_type]), visits_type),
        "plan": (rng.choice(["basic", "pro", "max"], rows).astype(object), "BYTES"),
    }
    out = []
    for name, (data, datatype) in values.items():
        tensor = triton.InferInput(name, [rows], datatype)
        tensor.set_data_from_numpy(data, binary_data=False)
        out.append(tensor)
    return out


def _outputs() -> list[triton.InferRequestedOutput]:
    return [
        triton.InferRequestedOutput("predict", binary_data=False),
        triton.InferRequestedOutput("predict_proba", binary_data=False),
    ]


def test_health_and_metadata(churn_server: Server) -> None:
    client = _client(churn_server)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("churn")
    assert client.is_model_ready("churn", "3")
    assert not client.is_model_ready("churn", "4")
    assert client.get_server_metadata()["name"] == "kubeloop"
    meta = client.get_model_metadata("churn")
    assert meta["versions"] == ["3"]
    assert meta["platform"] == "sklearn"
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        ("age", "FP64"),
        ("income", "FP64"),
        ("visits", "FP64"),
        ("plan", "BYTES"),
    ]
    assert [o["name"] for o in meta["outputs"]] == ["predict", "predict_proba"]
    assert client.get_model_metadata("churn", "3")["name"] == "churn"


@pytest.mark.parametrize(
    ("rows", "age_type", "visits_type"),
    # 5000 rows: a body above 64 KiB, parsed and encoded off the event loop
    [(1, "FP64", "INT64"), (7, "FP32", "INT32"), (250, "FP64", "FP64"), (5000, "FP64", "INT64")],
)
def test_infer_datatypes_and_batches(
    churn_server: Server, rows: int, age_type: str, visits_type: str
) -> None:
    client = _client(churn_server)
    result = client.infer(
        "churn", _inputs(rows, age_type=age_type, visits_type=visits_type), outputs=_outputs()
    )
    labels = result.as_numpy("predict")
    proba = result.as_numpy("predict_proba")
    assert labels.shape == (rows,)
    assert set(labels.astype(str)) <= {"no", "yes"}
    assert proba.shape == (rows, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # the label is the most probable class, in the manifest's class order
    expected = np.array(["no", "yes"])[proba.argmax(axis=1)]
    assert (labels.astype(str) == expected).all()
    assert result.get_response()["model_version"] == "3"


def test_infer_matches_the_model_offline(
    churn_server: Server, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from tests.workloads.server.conftest import churn_version

    from kubeloop.modelformat import load_predictor

    predictor = load_predictor(churn_version(tmp_path_factory.mktemp("offline") / "v"))
    inputs = _inputs(5)
    result = _client(churn_server).infer("churn", inputs, outputs=_outputs())
    rng = np.random.default_rng(5)
    columns = {
        "age": rng.uniform(18, 90, 5),
        "income": rng.normal(50_000, 9_000, 5),
        "visits": rng.integers(0, 30, 5).astype(np.float64),
        "plan": rng.choice(["basic", "pro", "max"], 5).astype(object),
    }
    offline = predictor.predict(columns)
    np.testing.assert_allclose(result.as_numpy("predict_proba"), offline.probabilities)


def test_only_requested_output(churn_server: Server) -> None:
    result = _client(churn_server).infer(
        "churn", _inputs(2), outputs=[triton.InferRequestedOutput("predict", binary_data=False)]
    )
    assert result.as_numpy("predict").shape == (2,)
    assert result.as_numpy("predict_proba") is None


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t[:3], "missing tensor(s) for feature(s) plan"),
        (lambda t: [*t, _tensor("colour", ["red"], "BYTES")], "unknown feature 'colour'"),
        (lambda t: [*t[:3], _tensor("plan", [1], "INT64")], "'plan' is categorical"),
        (lambda t: [_tensor("age", ["old"], "BYTES"), *t[1:]], "'age' is numeric"),
        (
            lambda t: [_tensor("age", [1.0, 2.0], "FP64"), *t[1:]],
            "inputs[1] ('income').shape: 1 rows, but earlier inputs have 2",
        ),
    ],
)
def test_invalid_requests_name_the_tensor(
    churn_server: Server,
    mutate: Callable[[list[triton.InferInput]], list[triton.InferInput]],
    message: str,
) -> None:
    with pytest.raises(InferenceServerException) as err:
        _client(churn_server).infer("churn", mutate(_inputs(1)), outputs=_outputs())
    assert message in str(err.value)
    assert err.value.status() == "400"


def test_unknown_model_and_version(churn_server: Server) -> None:
    client = _client(churn_server)
    with pytest.raises(InferenceServerException) as err:
        client.infer("nope", _inputs(1))
    assert err.value.status() == "404"
    with pytest.raises(InferenceServerException) as err:
        client.infer("churn", _inputs(1), model_version="9")
    assert err.value.status() == "404"
    assert "no version '9'" in str(err.value)


def _tensor(name: str, data: list[object], datatype: str) -> triton.InferInput:
    tensor = triton.InferInput(name, [len(data)], datatype)
    dtype = {"BYTES": object, "INT64": np.int64, "FP64": np.float64}[datatype]
    tensor.set_data_from_numpy(np.array(data, dtype=dtype), binary_data=False)
    return tensor
