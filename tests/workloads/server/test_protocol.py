"""V2 request validation: every mistake is refused before compute, naming tensor and field."""

from __future__ import annotations

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
            "binary tensor extension is not supported",
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
    body = encode_infer_response(
        model_name="m",
        model_version="3",
        request_id="r",
        outputs=("predict", "predict_proba"),
        values=np.array(["no", "yes"], dtype=object),
        probabilities=np.array([[0.75, 0.25], [0.5, 0.5]]),
        classes=["no", "yes"],
    )
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
