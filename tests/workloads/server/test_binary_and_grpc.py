"""The V2 protocol as clients speak it: tritonclient's HTTP client with its defaults (binary
tensor data on) and its gRPC client get the answers JSON over REST gets, from a real `kubeloop
serve` process; both meet the same validation, payload log and metrics."""

from __future__ import annotations

import json
import struct
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pyarrow.dataset as ds
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tests.workloads.server.conftest import Server, start_server, torch_version
from tritonclient.utils import InferenceServerException

# the churn model's features (conftest.churn_version)
_FEATURES = {"age": "FP64", "income": "FP64", "visits": "INT64", "plan": "BYTES"}


def _columns(rows: int, seed: int = 3) -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    return {
        "age": rng.uniform(18, 90, rows),
        "income": rng.normal(50_000, 9_000, rows),
        "visits": rng.integers(0, 30, rows).astype(np.int64),
        "plan": rng.choice(["basic", "pro", "max"], rows).astype(object),
    }


def _http_inputs(
    columns: dict[str, np.ndarray[Any, Any]], types: dict[str, str], *, binary: bool
) -> list[triton_http.InferInput]:
    out = []
    for name, data in columns.items():
        tensor = triton_http.InferInput(name, [len(data)], types[name])
        tensor.set_data_from_numpy(data, binary_data=binary)
        out.append(tensor)
    return out


def _grpc_inputs(
    columns: dict[str, np.ndarray[Any, Any]], types: dict[str, str]
) -> list[triton_grpc.InferInput]:
    out = []
    for name, data in columns.items():
        tensor = triton_grpc.InferInput(name, [len(data)], types[name])
        tensor.set_data_from_numpy(data)
        out.append(tensor)
    return out


def _plain(arr: np.ndarray[Any, Any]) -> list[Any]:
    """Labels as str (binary and gRPC BYTES come back as bytes), numbers as they are."""
    return [v.decode() if isinstance(v, bytes) else v for v in arr.ravel().tolist()]


def _json_answer(server: Server, model: str, columns: dict[str, Any], types: dict[str, str]) -> Any:
    client = triton_http.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    outputs = [
        triton_http.InferRequestedOutput(name, binary_data=False)
        for name in ("predict", "predict_proba")
    ]
    result = client.infer(model, _http_inputs(columns, types, binary=False), outputs=outputs)
    assert result.get_response()["outputs"][0]["data"]  # really JSON
    return result


@pytest.fixture(scope="module")
def torch_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The torch MLP classifier (4 numeric features, classes a/b)."""
    tmp = tmp_path_factory.mktemp("torch")
    server = start_server(tmp, torch_version(tmp / "models" / "versions" / "2"))
    yield server
    server.stop()


def _cases(churn_server: Server, torch_server: Server) -> list[tuple[Server, dict[str, Any], Any]]:
    rng = np.random.default_rng(1)
    torch_columns = {f"f{i}": rng.normal(size=9).astype(np.float32) for i in range(4)}
    return [
        (churn_server, _columns(6), _FEATURES),
        (torch_server, torch_columns, dict.fromkeys(torch_columns, "FP32")),
    ]


def test_tritonclient_http_defaults_binary_data_match_json(
    churn_server: Server, torch_server: Server
) -> None:
    for server, columns, types in _cases(churn_server, torch_server):
        expected = _json_answer(server, "churn", columns, types)
        client = triton_http.InferenceServerClient(url=f"127.0.0.1:{server.port}")
        inputs = []
        for name, data in columns.items():  # tritonclient's defaults: binary_data=True
            tensor = triton_http.InferInput(name, [len(data)], types[name])
            tensor.set_data_from_numpy(data)
            inputs.append(tensor)
        result = client.infer("churn", inputs)  # outputs: binary by default too
        response = result.get_response()
        assert all("data" not in o for o in response["outputs"]), response
        proba = expected.as_numpy("predict_proba")
        assert response["outputs"][1]["parameters"]["binary_data_size"] == proba.nbytes
        for name in ("predict", "predict_proba"):
            assert _plain(result.as_numpy(name)) == _plain(expected.as_numpy(name)), name
        assert result.as_numpy("predict_proba").shape == expected.as_numpy("predict_proba").shape


def test_binary_inputs_with_json_outputs_and_only_one_binary_output(churn_server: Server) -> None:
    columns = _columns(3)
    expected = _json_answer(churn_server, "churn", columns, _FEATURES)
    client = triton_http.InferenceServerClient(url=f"127.0.0.1:{churn_server.port}")
    outputs = [
        triton_http.InferRequestedOutput("predict", binary_data=False),
        triton_http.InferRequestedOutput("predict_proba", binary_data=True),
    ]
    result = client.infer("churn", _http_inputs(columns, _FEATURES, binary=True), outputs=outputs)
    doc = result.get_response()
    assert doc["outputs"][0]["data"] == _plain(expected.as_numpy("predict"))
    assert doc["outputs"][1]["parameters"]["binary_data_size"] == 3 * 2 * 8
    np.testing.assert_array_equal(
        result.as_numpy("predict_proba"), expected.as_numpy("predict_proba")
    )


def test_tritonclient_grpc_matches_json(churn_server: Server, torch_server: Server) -> None:
    for server, columns, types in _cases(churn_server, torch_server):
        expected = _json_answer(server, "churn", columns, types)
        client = triton_grpc.InferenceServerClient(url=f"127.0.0.1:{server.grpc_port}")
        result = client.infer("churn", _grpc_inputs(columns, types), request_id="g-1")
        assert result.get_response().id == "g-1"
        for name in ("predict", "predict_proba"):
            got, want = result.as_numpy(name), expected.as_numpy(name)
            assert got.shape == want.shape, name
            assert _plain(got) == _plain(want), name


def test_grpc_health_and_metadata(churn_server: Server) -> None:
    client = triton_grpc.InferenceServerClient(url=f"127.0.0.1:{churn_server.grpc_port}")
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("churn")
    assert client.is_model_ready("churn", "3")
    assert not client.is_model_ready("churn", "4")
    assert not client.is_model_ready("other")
    assert client.get_server_metadata().name == "kubeloop"
    meta = client.get_model_metadata("churn")
    assert (meta.name, list(meta.versions), meta.platform) == ("churn", ["3"], "sklearn")
    assert [(t.name, t.datatype) for t in meta.inputs] == [
        ("age", "FP64"),
        ("income", "FP64"),
        ("visits", "FP64"),
        ("plan", "BYTES"),
    ]
    with pytest.raises(InferenceServerException) as err:
        client.get_model_metadata("other")
    assert err.value.status() == "StatusCode.NOT_FOUND"


def test_grpc_typed_contents_match_raw_contents(churn_server: Server) -> None:
    """Clients that fill `contents` (KServe's Python client, grpcurl) instead of raw bytes."""
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    columns = _columns(4)
    request = service_pb2.ModelInferRequest(model_name="churn", id="typed")
    fields = {"FP64": "fp64_contents", "INT64": "int64_contents", "BYTES": "bytes_contents"}
    for name, data in columns.items():
        tensor = request.inputs.add(name=name, datatype=_FEATURES[name], shape=[len(data)])
        values = [v.encode() for v in data] if _FEATURES[name] == "BYTES" else data.tolist()
        getattr(tensor.contents, fields[_FEATURES[name]]).extend(values)
    with grpc.insecure_channel(f"127.0.0.1:{churn_server.grpc_port}") as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        response = stub.ModelInfer(request, timeout=10)
    expected = _json_answer(churn_server, "churn", columns, _FEATURES)
    proba = np.frombuffer(response.raw_output_contents[1], dtype="<f8").reshape(4, 2)
    np.testing.assert_array_equal(proba, expected.as_numpy("predict_proba"))
    assert list(response.outputs[1].shape) == [4, 2]


def _post(server: Server, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        server.url + "/v2/models/churn/infer", data=body, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _binary_body(age_bytes: bytes, *, rows: int = 2) -> tuple[bytes, int]:
    plan = b"".join(struct.pack("<I", 5) + b"basic" for _ in range(rows))
    header = {
        "inputs": [
            {"name": "age", "shape": [rows], "datatype": "FP64",
             "parameters": {"binary_data_size": len(age_bytes)}},
            {"name": "income", "shape": [rows], "datatype": "FP64", "data": [1.0] * rows},
            {"name": "visits", "shape": [rows], "datatype": "FP64", "data": [2.0] * rows},
            {"name": "plan", "shape": [rows], "datatype": "BYTES",
             "parameters": {"binary_data_size": len(plan)}},
        ]
    }  # fmt: skip
    text = json.dumps(header).encode()
    return text + age_bytes + plan, len(text)


def test_malformed_binary_requests_get_400_naming_the_input(churn_server: Server) -> None:
    good, length = _binary_body(np.array([30.0, 40.0]).tobytes())
    status, doc = _post(churn_server, good, {"Inference-Header-Content-Length": str(length)})
    assert status == 200, doc

    short, length = _binary_body(np.array([30.0]).tobytes())  # 8 bytes for shape [2] of FP64
    status, doc = _post(churn_server, short, {"Inference-Header-Content-Length": str(length)})
    assert status == 400
    assert doc["error"] == (
        "inputs[0] ('age').parameters.binary_data_size: 8 bytes, but shape [2] of FP64 takes "
        "16 bytes (2 values of 8 bytes); send a shape that matches the data"
    )

    status, doc = _post(churn_server, good, {"Inference-Header-Content-Length": "99999"})
    assert status == 400
    assert "Inference-Header-Content-Length header: 99999 bytes is beyond the body" in doc["error"]

    header = {"inputs": [{"name": "age", "shape": [1], "datatype": "FP128",
                          "parameters": {"binary_data_size": 8}}]}  # fmt: skip
    text = json.dumps(header).encode()
    status, doc = _post(
        churn_server, text + bytes(8), {"Inference-Header-Content-Length": str(len(text))}
    )
    assert status == 400
    assert doc["error"].startswith("inputs[0] ('age').datatype: 'FP128' is not a V2 datatype")


def test_grpc_bad_shape_is_invalid_argument_with_the_rest_message(churn_server: Server) -> None:
    columns = _columns(2)
    rest_doc = {
        "inputs": [
            {"name": n, "shape": [2, 2] if n == "age" else [2], "datatype": _FEATURES[n],
             "data": [float(v) for v in d] * (2 if n == "age" else 1)
             if n != "plan" else list(d)}
            for n, d in columns.items()
        ]
    }  # fmt: skip
    status, body = churn_server.post("/v2/models/churn/infer", rest_doc)
    assert status == 400
    client = triton_grpc.InferenceServerClient(url=f"127.0.0.1:{churn_server.grpc_port}")
    inputs = _grpc_inputs(columns, _FEATURES)
    age = triton_grpc.InferInput("age", [2, 2], "FP64")
    age.set_data_from_numpy(np.repeat(columns["age"], 2).reshape(2, 2))
    with pytest.raises(InferenceServerException) as err:
        client.infer("churn", [age, *inputs[1:]])
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert (
        err.value.message()
        == body["error"]
        == ("inputs[0] ('age').shape: expected [n] or [n, 1], got [2, 2]")
    )


def _metrics(server: Server) -> dict[tuple[str, str], float]:
    """kubeloop_inference_requests_total by (code, protocol)."""
    _, text = server.get("/metrics")
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line.startswith("kubeloop_inference_requests_total{"):
            labels = dict(
                part.split("=", 1)
                for part in line[line.index("{") + 1 : line.index("}")].split(",")
            )
            key = (labels["code"].strip('"'), labels["protocol"].strip('"'))
            out[key] = out.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def test_payload_log_and_metrics_count_binary_and_grpc_requests(churn_server: Server) -> None:
    before = _metrics(churn_server)
    http = triton_http.InferenceServerClient(url=f"127.0.0.1:{churn_server.port}")
    grpc_client = triton_grpc.InferenceServerClient(url=f"127.0.0.1:{churn_server.grpc_port}")
    columns = _columns(3, seed=9)
    inputs = []
    for name, data in columns.items():
        tensor = triton_http.InferInput(name, [3], _FEATURES[name])
        tensor.set_data_from_numpy(data)
        inputs.append(tensor)
    http.infer("churn", inputs, request_id="log-binary")
    grpc_client.infer("churn", _grpc_inputs(columns, _FEATURES), request_id="log-grpc")
    bad = triton_grpc.InferInput("age", [1], "FP64")
    bad.set_data_from_numpy(np.array([1.0]))
    with pytest.raises(InferenceServerException):
        grpc_client.infer("churn", [bad])

    def deltas() -> tuple[float, ...]:
        after = _metrics(churn_server)
        keys = (("200", "rest"), ("200", "grpc"), ("400", "grpc"))
        return tuple(after.get(k, 0.0) - before.get(k, 0.0) for k in keys)

    # a REST answer is counted just after it is sent: wait for the count, not for a time
    deadline = time.monotonic() + 10
    while deltas() != (1, 1, 1):
        assert time.monotonic() < deadline, (
            f"requests counted (200 rest, 200 grpc, 400 grpc): {deltas()}"
        )
        time.sleep(0.05)

    logs = churn_server.log_path.parent / "logs"
    deadline = time.monotonic() + 30
    while True:
        rows = _logged(logs)
        if {"log-binary", "log-grpc"} <= {r["_request_id"] for r in rows}:
            break
        assert time.monotonic() < deadline, "binary and gRPC requests were not payload-logged"
        time.sleep(0.1)
    for request_id in ("log-binary", "log-grpc"):
        mine = [r for r in rows if r["_request_id"] == request_id]
        assert [r["plan"] for r in mine] == list(columns["plan"])
        assert [r["visits"] for r in mine] == [float(v) for v in columns["visits"]]
        assert [r["age"] for r in mine] == columns["age"].tolist()


def _logged(folder: Path) -> list[dict[str, Any]]:
    if not any(folder.rglob("*.parquet")):
        return []
    return ds.dataset(str(folder), format="parquet", partitioning="hive").to_table().to_pylist()


def test_sigterm_under_grpc_load_exits_cleanly_and_logs_every_answer(tmp_path: Path) -> None:
    """SIGTERM under gRPC load: new calls are refused (UNAVAILABLE, not ready), those in
    flight finish, the payload log flushes every answered call, and the exit code is 0."""
    from tests.workloads.server.conftest import numeric_version, sigterm_under_load

    logs = tmp_path / "logs"
    server = start_server(
        tmp_path,
        numeric_version(tmp_path / "v1", n_features=4),
        KUBELOOP_PAYLOAD_LOG_URI=logs.as_uri(),
        KUBELOOP_PAYLOAD_FLUSH_SECONDS="600",  # rows reach Parquet only by the shutdown flush
    )
    answered: list[str] = []
    stop = threading.Event()

    def client(worker: int) -> None:
        client = triton_grpc.InferenceServerClient(url=f"127.0.0.1:{server.grpc_port}")
        tensor = triton_grpc.InferInput("m", [1, 4], "FP64")
        tensor.set_data_from_numpy(np.full((1, 4), 0.5))
        i = 0
        while not stop.is_set():
            request_id = f"w{worker}-{i}"
            i += 1
            try:
                client.infer("churn", [tensor], request_id=request_id, client_timeout=10)
            except InferenceServerException:  # the server went away after SIGTERM
                if stop.wait(0.01):
                    return
                continue
            answered.append(request_id)

    code = sigterm_under_load(server, client, workers=4, answered=answered, at_least=40, stop=stop)
    assert code == 0, server.log()
    assert len(answered) >= 40, "the load did not run"
    assert sorted(r["_request_id"] for r in _logged(logs)) == sorted(answered)
