"""A ModelInferRequest becomes the request document JSON bodies become (pure, no server)."""

from __future__ import annotations

import numpy as np
import pytest
from tests.workloads.server.test_protocol import SCHEMA

from kubeloop.workloads.server.binary import RawTensor
from kubeloop.workloads.server.errors import InvalidRequestError
from kubeloop.workloads.server.grpc_service import GRPC_CODES, infer_document
from kubeloop.workloads.server.protocol import validate_infer_request
from kubeloop.workloads.server.v2grpc import grpc_predict_v2_pb2 as pb


def _request(*, raw: bool) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m", id="r1")
    request.outputs.add(name="predict")
    age = request.inputs.add(name="age", datatype="FP32", shape=[2])
    plan = request.inputs.add(name="plan", datatype="BYTES", shape=[2])
    if raw:
        request.raw_input_contents.append(np.array([1.5, 2.0], dtype="<f4").tobytes())
        request.raw_input_contents.append(b"\x01\x00\x00\x00a\x02\x00\x00\x00zz")
    else:
        age.contents.fp32_contents.extend([1.5, 2.0])
        plan.contents.bytes_contents.extend([b"a", b"zz"])
    return request


@pytest.mark.parametrize("raw", [True, False])
def test_raw_and_typed_contents_validate_alike(raw: bool) -> None:
    doc = infer_document(_request(raw=raw))
    assert [t["name"] for t in doc["inputs"]] == ["age", "plan"]
    assert isinstance(doc["inputs"][0]["data"], RawTensor) is raw
    request = validate_infer_request(doc, SCHEMA, 100)
    assert request.id == "r1"
    assert request.outputs == ("predict",)
    assert request.columns["age"].tolist() == [1.5, 2.0]
    assert request.columns["plan"].tolist() == ["a", "zz"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda r: r.raw_input_contents.pop(),
            "raw_input_contents: 1 entries for 2 inputs",
        ),
        (
            lambda r: r.raw_input_contents.__setitem__(0, b"\x00" * 4),
            "inputs[0] ('age').raw_input_contents[0]: 4 bytes, but shape [2] of FP32 takes 8",
        ),
        (
            lambda r: r.inputs[0].shape.append(3),
            "inputs[0] ('age').raw_input_contents[0]: 8 bytes, but shape [2, 3] of FP32 takes 24",
        ),
    ],
)
def test_refusals_name_the_input(mutate: object, message: str) -> None:
    request = _request(raw=True)
    mutate(request)  # type: ignore[operator]
    with pytest.raises(InvalidRequestError) as err:
        validate_infer_request(infer_document(request), SCHEMA, 100)
    assert message in str(err.value)


def test_typed_contents_of_the_wrong_size_get_the_rest_message() -> None:
    request = _request(raw=False)
    request.inputs[0].contents.fp32_contents.append(3.0)
    with pytest.raises(InvalidRequestError) as err:
        validate_infer_request(infer_document(request), SCHEMA, 100)
    assert str(err.value) == "inputs[0] ('age').data: 3 values do not fill shape [2] (2 values)"


def test_every_error_status_has_a_grpc_code() -> None:
    from kubeloop.workloads.server import errors

    statuses = {cls.status for cls in vars(errors).values() if isinstance(cls, type)}
    assert statuses <= set(GRPC_CODES)
