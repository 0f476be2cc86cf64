"""V2 request validation: every mistake is refused before compute, naming tensor and field."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pytest

from kubeloop.workloads.server.errors import InvalidRequestError, PayloadTooLargeError
from kubeloop.workloads.server.protocol import (
    ModelSchema,
    encode_infer_response,
    parse_infer_request,
)


@dataclass(frozen=True)
class _Feature:
    name: str
    kind: str
    dtype: str = "float64"
    categories: tuple[str, ...] | None = None


SCHEMA = ModelSchema.of(
    [_Feature("age", "numeric"), _Feature("plan", "categorical", "string", ("a", "b"))],
    "classification",
)
NUMERIC = ModelSchema.of([_Feature("x", "numeric"), _Feature("y", "numeric")], "regression")


def _body(*inputs: dict[str, Any], **extra: Any) -> bytes:
    return orjson.dumps({"inputs": list(inputs), **extra})


def _age(data: Any, shape: Any = None, datatype: str = "FP64") -> dict[str, Any]:
    return {"name": "age", "shape": shape or [len(data)], "datatype": datatype, "data": data}


def _plan(data: list[Any]) -> dict[str, Any]:
    return {"name": "plan", "shape": [len(data)], "datatype": "BYTES", "data": data}


def test_named_tensors_become_columns() -> None:
    request = parse_infer_request(
        _body(_age([1, 2.5], datatype="FP32"), _plan(["a", "z"]), id="r1"), SCHEMA, 100
    )
    assert request.rows == 2
    assert request.id == "r1"
    assert request.columns["age"].dtype == np.float64
    assert request.columns["age"].tolist() == [1.0, 2.5]
    assert request.columns["plan"].tolist() == ["a", "z"]
    assert request.outputs == ("predict", "predict_proba")


def test_matrix_tensor_in_manifest_order() -> None:
    tensor = {"name": "input-0", "shape": [2, 2], "datatype": "INT64", "data": [[1, 2], [3, 4]]}
    request = parse_infer_request(_body(tensor), NUMERIC, 100)
    assert request.columns["x"].tolist() == [1.0, 3.0]
    assert request.columns["y"].tolist() == [2.0, 4.0]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "body: not valid JSON"),
        (b"[]", "body: must be a JSON object"),
        (_body(), "inputs: required"),
        (_body(_age([1])), "missing tensor(s) for feature(s) plan"),
        (
            _body(_age([1]), _plan(["a"]), _age([2])),
            "inputs[2] ('age').name: feature 'age' sent twice",
        ),
        (_body(_age([1], shape=[2])), "inputs[0] ('age').data: 1 values do not fill shape [2]"),
        (
            _body(_age([[1, 2]], shape=[1, 2]), _plan(["a"])),
            "inputs[0] ('age').shape: expected [n]",
        ),
        (_body(_age(["1"]), _plan(["a"])), "inputs[0] ('age').data: FP64 tensors hold numbers"),
        (_body(_age([1.5], datatype="INT32"), _plan(["a"])), "INT32 tensors hold integers"),
        (_body(_age([300], datatype="INT8"), _plan(["a"])), "outside the INT8 range"),
        (_body(_age([1], datatype="FP128"), _plan(["a"])), "inputs[0] ('age').datatype: 'FP128'"),
        (_body(_age([None]), _plan(["a"])), "FP64 tensors hold numbers"),
        (_body(_age([1]), _plan([1])), "inputs[1] ('plan').data: BYTES tensors hold strings"),
        (_body(_age([1]), _plan(["a", "b"])), "inputs[1] ('plan').shape: 2 rows"),
        (_body(_age([]), _plan([])), "0 rows"),
        (_body(_age([1]), _plan(["a"]), outputs=[{"name": "x"}]), "outputs[0].name: 'x'"),
        (_body({"name": 3, "shape": [1], "datatype": "FP64", "data": [1]}), "inputs[0].name"),
        (
            _body(
                {
                    "name": "age",
                    "shape": [1],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": 8},
                }
            ),
            "binary data needs the Inference-Header-Content-Length header",
        ),
    ],
)
def test_refusals_name_tensor_and_field(body: bytes, message: str) -> None:
    with pytest.raises(InvalidRequestError) as err:
        parse_infer_request(body, SCHEMA, 100)
    assert message in str(err.value)


def test_nan_is_refused() -> None:
    # JSON has no NaN literal: "NaN" strings must not sneak in through numpy's string parsing
    with pytest.raises(InvalidRequestError, match="FP64 tensors hold numbers"):
        parse_infer_request(_body(_age(["NaN"]), _plan(["a"])), SCHEMA, 100)
    # nor infinities: orjson refuses NaN/Infinity literals and overflowing numbers
    with pytest.raises(InvalidRequestError, match="not valid JSON"):
        parse_infer_request(
            b'{"inputs": [{"name": "age", "shape": [1], "datatype": "FP64", "data": [1e400]}]}',
            SCHEMA,
            100,
        )
    with pytest.raises(InvalidRequestError, match="outside the FP32 range"):
        parse_infer_request(_body(_age([1e39], datatype="FP32"), _plan(["a"])), SCHEMA, 100)


def test_matrix_needs_all_numeric_features() -> None:
    tensor = {"name": "m", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}
    with pytest.raises(InvalidRequestError, match="only when all features are numeric"):
        parse_infer_request(_body(tensor), SCHEMA, 100)
    tensor = {"name": "m", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}
    with pytest.raises(InvalidRequestError, match=r"expected \[n, 2\]"):
        parse_infer_request(_body(tensor), NUMERIC, 100)


def test_too_many_rows() -> None:
    with pytest.raises(PayloadTooLargeError, match="3 rows is above the limit of 2"):
        parse_infer_request(_body(_age([1, 2, 3]), _plan(["a"] * 3)), SCHEMA, 2)


def test_response_encoding() -> None:
    body, header_length = encode_infer_response(
        model_name="m",
        model_version="3",
        request_id="r",
        outputs=("predict", "predict_proba"),
        values=np.array(["no", "yes"], dtype=object),
        probabilities=np.array([[0.75, 0.25], [0.5, 0.5]]),
        classes=["no", "yes"],
    )
    assert header_length is None
    doc = orjson.loads(body)
    assert doc["id"] == "r"
    assert doc["outputs"][0] == {
        "name": "predict",
        "shape": [2],
        "datatype": "BYTES",
        "data": ["no", "yes"],
    }
    assert doc["outputs"][1]["shape"] == [2, 2]
    assert doc["outputs"][1]["data"] == [0.75, 0.25, 0.5, 0.5]
    assert doc["outputs"][1]["parameters"] == {"classes": ["no", "yes"]}


# ---- the binary tensor data extension -------------------------------------------------------


def _binary(header: dict[str, Any], *parts: bytes) -> tuple[bytes, str]:
    text = orjson.dumps(header)
    return text + b"".join(parts), str(len(text))


def _strings(*values: str) -> bytes:
    return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)


def _binary_age(
    size: int, datatype: str = "FP64", shape: list[int] | None = None
) -> dict[str, Any]:
    return {
        "name": "age",
        "shape": shape or [2],
        "datatype": datatype,
        "parameters": {"binary_data_size": size},
    }


def _binary_plan(size: int) -> dict[str, Any]:
    return {
        "name": "plan",
        "shape": [2],
        "datatype": "BYTES",
        "parameters": {"binary_data_size": size},
    }


def test_binary_inputs_become_the_same_columns_as_json() -> None:
    plan = _strings("a", "zé")
    body, length = _binary(
        {"inputs": [_binary_age(8, "FP32"), _binary_plan(len(plan))], "id": "b"},
        np.array([1.0, 2.5], dtype="<f4").tobytes(),
        plan,
    )
    binary = parse_infer_request(body, SCHEMA, 100, length)
    as_json = parse_infer_request(_body(_age([1, 2.5]), _plan(["a", "zé"]), id="b"), SCHEMA, 100)
    assert binary.columns["age"].dtype == np.float64
    for name in ("age", "plan"):
        assert binary.columns[name].tolist() == as_json.columns[name].tolist()
    assert (binary.id, binary.rows, binary.outputs) == ("b", 2, as_json.outputs)
    assert binary.binary_outputs == frozenset()


@pytest.mark.parametrize(
    ("header", "parts", "length", "message"),
    [
        (
            {"inputs": [_binary_age(8), _plan(["a", "b"])]},
            [bytes(8)],
            None,
            "inputs[0] ('age').parameters.binary_data_size: 8 bytes, but shape [2] of FP64 "
            "takes 16 bytes (2 values of 8 bytes); send a shape that matches the data",
        ),
        (
            {"inputs": [_binary_age(16), _plan(["a", "b"])]},
            [bytes(16)],
            "999",
            "Inference-Header-Content-Length header: 999 bytes is beyond the body",
        ),
        (
            {"inputs": [_binary_age(16), _plan(["a", "b"])]},
            [bytes(16)],
            "ten",
            "Inference-Header-Content-Length header: 'ten' is not a byte count",
        ),
        (
            {"inputs": [_binary_age(16), _plan(["a", "b"])]},
            [bytes(8)],
            None,
            "inputs[0] ('age').parameters.binary_data_size: 16 bytes from offset 0 run past "
            "the 8 binary bytes",
        ),
        (
            {"inputs": [_binary_age(16), _plan(["a", "b"])]},
            [bytes(20)],
            None,
            "body: 4 binary bytes after the JSON header belong to no input",
        ),
        (
            {"inputs": [_binary_age(16, "FP128"), _plan(["a", "b"])]},
            [bytes(16)],
            None,
            "inputs[0] ('age').datatype: 'FP128' is not a V2 datatype",
        ),
        (
            {"inputs": [{**_binary_age(16), "data": [1, 2]}, _plan(["a", "b"])]},
            [bytes(16)],
            None,
            "inputs[0] ('age'): has both `data` and parameters.binary_data_size",
        ),
        (
            {"inputs": [_binary_age(-1), _plan(["a", "b"])]},
            [],
            None,
            "inputs[0] ('age').parameters.binary_data_size: must be a non-negative byte count",
        ),
        (
            {"inputs": [_age([1, 2]), _binary_plan(len(_strings("a")))]},
            [_strings("a")],
            None,
            "inputs[1] ('plan').parameters.binary_data_size: 1 strings do not fill the shape "
            "(2 values)",
        ),
        (
            {"inputs": [_age([1, 2]), _binary_plan(6)]},
            [struct.pack("<I", 9) + b"ab"],
            None,
            "inputs[1] ('plan').parameters.binary_data_size: BYTES element 0 declares 9 bytes",
        ),
        (
            {"inputs": [_age([1, 2]), _binary_plan(7)]},
            [_strings("a") + b"\x01\x00"],
            None,
            "BYTES element 1 has a cut-off length prefix",
        ),
        (
            {"inputs": [_age([1, 2]), _binary_plan(10)]},
            [_strings("a") + struct.pack("<I", 1) + b"\xff"],
            None,
            "inputs[1] ('plan').parameters.binary_data_size: BYTES element 1 is not UTF-8 text",
        ),
        (
            {"inputs": [_binary_age(16), _plan(["a", "b"])]},
            [np.array([1.0, np.nan]).tobytes()],
            None,
            "inputs[0] ('age').data: NaN or infinite values are not allowed",
        ),
        (
            {"inputs": [_age([1, 2]), _plan(["a", "b"])], "parameters": {"binary_data_output": 1}},
            [],
            None,
            "parameters.binary_data_output: must be true or false",
        ),
    ],
)
def test_binary_refusals_name_the_input_and_the_fix(
    header: dict[str, Any], parts: list[bytes], length: str | None, message: str
) -> None:
    body, measured = _binary(header, *parts)
    with pytest.raises(InvalidRequestError) as err:
        parse_infer_request(body, SCHEMA, 100, length or measured)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("request_parameters", "outputs", "binary"),
    [
        (None, None, frozenset()),
        ({"binary_data_output": True}, None, {"predict", "predict_proba"}),
        ({"binary_data_output": True}, [{"name": "predict"}], {"predict"}),
        (
            {"binary_data_output": True},
            [{"name": "predict", "parameters": {"binary_data": False}}, {"name": "predict_proba"}],
            {"predict_proba"},
        ),
        (None, [{"name": "predict_proba", "parameters": {"binary_data": True}}], {"predict_proba"}),
    ],
)
def test_binary_outputs_requested(
    request_parameters: dict[str, Any] | None, outputs: list[Any] | None, binary: set[str]
) -> None:
    extra: dict[str, Any] = {}
    if request_parameters is not None:
        extra["parameters"] = request_parameters
    if outputs is not None:
        extra["outputs"] = outputs
    request = parse_infer_request(_body(_age([1]), _plan(["a"]), **extra), SCHEMA, 100)
    assert request.binary_outputs == frozenset(binary)


def test_binary_response_encoding() -> None:
    body, header_length = encode_infer_response(
        model_name="m",
        model_version="3",
        request_id=None,
        outputs=("predict", "predict_proba"),
        values=np.array(["no", "yés"], dtype=object),
        probabilities=np.array([[0.75, 0.25], [0.5, 0.5]]),
        classes=["no", "yes"],
        binary_outputs=frozenset({"predict", "predict_proba"}),
    )
    assert header_length is not None
    doc = orjson.loads(body[:header_length])
    labels, proba = doc["outputs"]
    assert "data" not in labels and "data" not in proba
    assert labels["parameters"] == {"binary_data_size": len(_strings("no", "yés"))}
    assert proba["parameters"] == {"classes": ["no", "yes"], "binary_data_size": 32}
    rest = body[header_length:]
    assert rest[: labels["parameters"]["binary_data_size"]] == _strings("no", "yés")
    assert np.frombuffer(rest[-32:], "<f8").tolist() == [0.75, 0.25, 0.5, 0.5]
