"""Open Inference Protocol (V2) bodies: validate an infer request into columns, encode answers.

Everything a client can get wrong is caught here, before any compute, with a message naming
the tensor and the field. Every way of sending a request (JSON, JSON with binary tensors, gRPC)
becomes the same document, with tensor data as JSON lists or as `binary.RawTensor`, and meets the
same `validate_infer_request`. Two request forms are accepted:

- one tensor per feature, named after it, shape `[n]` or `[n, 1]`;
- a single `[n, F]` tensor (any name that is not a feature) holding every feature in manifest
  order, row-major: the body MLServer and Triton clients send for tabular models. Only when
  every feature is numeric.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from kubeloop.workloads.server.binary import (
    RawTensor,
    attach_binary_inputs,
    decode_tensor,
    encode_tensor,
    input_field,
    split_binary_body,
)
from kubeloop.workloads.server.errors import InvalidRequestError, PayloadTooLargeError
from kubeloop.workloads.server.predictor import FeatureLike

__all__ = [
    "DATATYPES",
    "OUTPUT_LABELS",
    "OUTPUT_PROBABILITIES",
    "InferRequest",
    "ModelSchema",
    "OutputTensor",
    "encode_infer_response",
    "parse_infer_request",
    "response_tensors",
    "v2_datatype",
    "validate_infer_request",
]

OUTPUT_LABELS = "predict"
OUTPUT_PROBABILITIES = "predict_proba"

_INT_RANGES = {
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1),
    "INT64": (-(2**63), 2**63 - 1),
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
    "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1),
}
_FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})
DATATYPES = frozenset({"BOOL", "BYTES", *_INT_RANGES, *_FLOAT_TYPES})
_NUMERIC_TYPES = frozenset({"BOOL", *_INT_RANGES, *_FLOAT_TYPES})


@dataclass(frozen=True)
class ModelSchema:
    """The model's inputs as validation needs them, computed once at load."""

    names: tuple[str, ...]
    kinds: dict[str, str]
    # categorical features whose categories are numbers may also come as INT tensors
    numeric_categories: frozenset[str]
    all_numeric: bool
    outputs: tuple[str, ...]

    @classmethod
    def of(cls, features: Sequence[FeatureLike], task: str) -> ModelSchema:
        """Schema of a predictor's features."""
        kinds = {f.name: f.kind for f in features}
        numeric_categories = frozenset(
            f.name
            for f in features
            if f.kind == "categorical"
            and f.categories
            and all(isinstance(c, int | float) and not isinstance(c, bool) for c in f.categories)
        )
        outputs = (
            (OUTPUT_LABELS, OUTPUT_PROBABILITIES) if task == "classification" else (OUTPUT_LABELS,)
        )
        return cls(
            names=tuple(kinds),
            kinds=kinds,
            numeric_categories=numeric_categories,
            all_numeric=all(k == "numeric" for k in kinds.values()),
            outputs=outputs,
        )


@dataclass
class InferRequest:
    """A validated request: one array of `rows` values per feature."""

    id: str | None
    columns: dict[str, np.ndarray[Any, Any]]
    rows: int
    outputs: tuple[str, ...]
    # outputs the client asked for as binary tensors (REST binary extension)
    binary_outputs: frozenset[str] = frozenset()


_field = input_field


def _array(where: str, tensor: dict[str, Any]) -> tuple[np.ndarray[Any, Any], list[int], str]:
    """The tensor's data as an array of its declared shape; checks shape, datatype, values."""
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InvalidRequestError(f"{where}.shape: must be a list of non-negative integers")
    datatype = tensor.get("datatype")
    if datatype not in DATATYPES:
        raise InvalidRequestError(
            f"{where}.datatype: {datatype!r} is not a V2 datatype; use one of "
            + ", ".join(sorted(DATATYPES))
        )
    if "data" not in tensor:
        if (
            isinstance(tensor.get("parameters"), dict)
            and "binary_data_size" in tensor["parameters"]
        ):
            raise InvalidRequestError(
                f"{where}.parameters.binary_data_size: binary data needs the "
                "Inference-Header-Content-Length header (the length of the JSON part)"
            )
        raise InvalidRequestError(f"{where}.data: required")
    data = tensor["data"]
    if isinstance(data, RawTensor):
        arr = decode_tensor(where, datatype, shape, data)
    elif isinstance(data, np.ndarray):  # gRPC typed contents, already of one element type
        arr = data
    else:
        try:
            arr = np.asarray(data if isinstance(data, list) else [data])
        except ValueError as exc:  # ragged nesting
            raise InvalidRequestError(f"{where}.data: not a regular nested array ({exc})") from exc
    expected = math.prod(shape)
    if arr.size != expected:
        raise InvalidRequestError(
            f"{where}.data: {arr.size} values do not fill shape {shape} ({expected} values)"
        )
    kind = arr.dtype.kind
    if datatype == "BYTES":
        if kind not in "U" and arr.size:
            raise InvalidRequestError(f"{where}.data: BYTES tensors hold strings")
        arr = arr.astype(object)
    elif datatype == "BOOL":
        if kind != "b" and arr.size:
            raise InvalidRequestError(f"{where}.data: BOOL tensors hold true/false")
    elif datatype in _FLOAT_TYPES:
        if kind not in "fiu" and arr.size:
            raise InvalidRequestError(f"{where}.data: {datatype} tensors hold numbers")
        arr = arr.astype(np.float64, copy=False)
        if not np.isfinite(arr).all():
            raise InvalidRequestError(f"{where}.data: NaN or infinite values are not allowed")
        if datatype != "FP64" and arr.size:
            limit = float(np.finfo(np.float32 if datatype == "FP32" else np.float16).max)
            if float(np.abs(arr).max()) > limit:
                raise InvalidRequestError(f"{where}.data: values outside the {datatype} range")
    else:
        if kind not in "iu" and arr.size:
            raise InvalidRequestError(f"{where}.data: {datatype} tensors hold integers")
        low, high = _INT_RANGES[datatype]
        if arr.size and (int(arr.min()) < low or int(arr.max()) > high):
            raise InvalidRequestError(f"{where}.data: values outside the {datatype} range")
    return arr.reshape(shape), shape, datatype


def parse_infer_request(
    body: bytes, schema: ModelSchema, max_rows: int, header_length: str | None = None
) -> InferRequest:
    """Validate a V2 infer body against the model's features; raises InvalidRequestError.
    `header_length`: the Inference-Header-Content-Length header, when the body carries binary
    tensors after its JSON header."""
    header, binary = (
        (body, None) if header_length is None else split_binary_body(body, header_length)
    )
    try:
        doc = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"body: not valid JSON ({exc})") from exc
    if binary is not None:
        attach_binary_inputs(doc, binary)
    return validate_infer_request(doc, schema, max_rows)


def validate_infer_request(doc: Any, schema: ModelSchema, max_rows: int) -> InferRequest:
    """A V2 infer request document (data as lists, RawTensor or arrays) → columns."""
    if not isinstance(doc, dict):
        raise InvalidRequestError("body: must be a JSON object with `inputs`")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidRequestError("id: must be a string")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidRequestError("inputs: required, a non-empty list of tensors")
    outputs, binary_outputs = _requested_outputs(doc, schema)

    first = inputs[0]
    if (
        len(inputs) == 1
        and isinstance(first, dict)
        and isinstance(first.get("name"), str)
        and first["name"] not in schema.kinds
        and isinstance(first.get("shape"), list)
        and len(first["shape"]) == 2
    ):
        columns, rows = _matrix(first, schema, max_rows)
        return InferRequest(request_id, columns, rows, outputs, binary_outputs)

    columns = {}
    rows = -1
    for index, tensor in enumerate(inputs):
        if not isinstance(tensor, dict):
            raise InvalidRequestError(f"inputs[{index}]: must be an object")
        name = tensor.get("name")
        where = _field(index, name)
        if not isinstance(name, str):
            raise InvalidRequestError(f"{where}.name: required, a string")
        kind = schema.kinds.get(name)
        if kind is None:
            raise InvalidRequestError(
                f"{where}.name: unknown feature {name!r}; the model takes "
                + ", ".join(schema.names)
            )
        if name in columns:
            raise InvalidRequestError(f"{where}.name: feature {name!r} sent twice")
        arr, shape, datatype = _array(where, tensor)
        if len(shape) == 2 and shape[1] == 1:
            arr = arr.reshape(shape[0])
        elif len(shape) != 1:
            raise InvalidRequestError(f"{where}.shape: expected [n] or [n, 1], got {shape}")
        if rows < 0:
            rows = shape[0]
        elif shape[0] != rows:
            raise InvalidRequestError(
                f"{where}.shape: {shape[0]} rows, but earlier inputs have {rows}"
            )
        if kind == "numeric":
            if datatype == "BYTES":
                raise InvalidRequestError(
                    f"{where}.datatype: feature {name!r} is numeric; send FP32, FP64 or INT*"
                )
            arr = arr.astype(np.float64, copy=False)
        elif datatype != "BYTES" and name not in schema.numeric_categories:
            raise InvalidRequestError(
                f"{where}.datatype: feature {name!r} is categorical; send BYTES (strings)"
            )
        columns[name] = arr
    missing = [n for n in schema.names if n not in columns]
    if missing:
        raise InvalidRequestError("inputs: missing tensor(s) for feature(s) " + ", ".join(missing))
    _check_rows(rows, max_rows)
    return InferRequest(request_id, columns, rows, outputs, binary_outputs)


def _matrix(
    tensor: dict[str, Any], schema: ModelSchema, max_rows: int
) -> tuple[dict[str, np.ndarray[Any, Any]], int]:
    where = _field(0, tensor.get("name"))
    if not schema.all_numeric:
        raise InvalidRequestError(
            f"{where}.name: not a feature; a single [n, F] tensor is accepted only when all "
            "features are numeric; send one tensor per feature: " + ", ".join(schema.names)
        )
    arr, shape, datatype = _array(where, tensor)
    if shape[1] != len(schema.names):
        raise InvalidRequestError(
            f"{where}.shape: expected [n, {len(schema.names)}] (features "
            + ", ".join(schema.names)
            + f"), got {shape}"
        )
    if datatype == "BYTES":
        raise InvalidRequestError(f"{where}.datatype: the features are numeric; send FP32 or FP64")
    _check_rows(shape[0], max_rows)
    arr = arr.astype(np.float64, copy=False)
    return {name: arr[:, j] for j, name in enumerate(schema.names)}, shape[0]


def _check_rows(rows: int, max_rows: int) -> None:
    if rows == 0:
        raise InvalidRequestError("inputs: shape has 0 rows; send at least one")
    if rows > max_rows:
        raise PayloadTooLargeError(f"inputs: {rows} rows is above the limit of {max_rows}")


def _requested_outputs(
    doc: dict[str, Any], schema: ModelSchema
) -> tuple[tuple[str, ...], frozenset[str]]:
    """The outputs to answer, and those to answer as binary tensors: an output's
    `parameters.binary_data` wins over the request's `parameters.binary_data_output`."""
    parameters = doc.get("parameters")
    all_binary = _flag("parameters.binary_data_output", parameters, "binary_data_output")
    spec = doc.get("outputs")
    if spec is None:
        return schema.outputs, frozenset(schema.outputs if all_binary else ())
    if not isinstance(spec, list):
        raise InvalidRequestError("outputs: must be a list of {name}")
    names = []
    binary = set()
    for index, item in enumerate(spec):
        name = item.get("name") if isinstance(item, dict) else None
        if name not in schema.outputs:
            raise InvalidRequestError(
                f"outputs[{index}].name: {name!r} is not an output; use "
                + " or ".join(schema.outputs)
            )
        assert isinstance(item, dict)
        wanted = _flag(f"outputs[{index}].parameters.binary_data", item.get("parameters"))
        if wanted if wanted is not None else all_binary:
            binary.add(name)
        names.append(name)
    if not names:
        return schema.outputs, frozenset(schema.outputs if all_binary else ())
    return tuple(names), frozenset(binary)


def _flag(where: str, parameters: object, key: str = "binary_data") -> bool | None:
    if parameters is None:
        return None
    if not isinstance(parameters, dict):
        raise InvalidRequestError(f"{where.rsplit('.', 1)[0]}: must be an object")
    value = parameters.get(key)
    if value is not None and not isinstance(value, bool):
        raise InvalidRequestError(f"{where}: must be true or false")
    return value


def v2_datatype(arr: np.ndarray[Any, Any]) -> str:
    """The V2 datatype of an output array."""
    kind = arr.dtype.kind
    if kind == "f":
        return "FP64" if arr.dtype.itemsize == 8 else "FP32"
    if kind == "b":
        return "BOOL"
    if kind in "iu":
        return f"{'INT' if kind == 'i' else 'UINT'}{arr.dtype.itemsize * 8}"
    return "BYTES"


def _data(arr: np.ndarray[Any, Any]) -> Any:
    # orjson serialises contiguous numeric arrays natively (no per-element Python objects)
    if arr.dtype.kind in "fiub":
        return np.ascontiguousarray(arr)
    return [str(v) for v in arr.tolist()]


@dataclass(frozen=True)
class OutputTensor:
    """One output of a response, before it is written as JSON, binary or protobuf."""

    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray[Any, Any]  # flat, row-major
    parameters: dict[str, Any]


def response_tensors(
    outputs: tuple[str, ...],
    values: np.ndarray[Any, Any],
    probabilities: np.ndarray[Any, Any] | None,
    classes: list[Any] | None,
) -> list[OutputTensor]:
    """`predict` (n,) and, for classifiers, `predict_proba` (n, k), as requested."""
    tensors = []
    for name in outputs:
        if name == OUTPUT_LABELS:
            tensors.append(
                OutputTensor(name, v2_datatype(values), [int(values.shape[0])], values, {})
            )
        elif probabilities is not None:
            tensors.append(
                OutputTensor(
                    name,
                    v2_datatype(probabilities),
                    [int(probabilities.shape[0]), int(probabilities.shape[1])],
                    probabilities.ravel(),
                    {"classes": classes},
                )
            )
    return tensors


def encode_infer_response(
    *,
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: tuple[str, ...],
    values: np.ndarray[Any, Any],
    probabilities: np.ndarray[Any, Any] | None,
    classes: list[Any] | None,
    binary_outputs: frozenset[str] = frozenset(),
) -> tuple[bytes, int | None]:
    """The V2 response body, and the length of its JSON header when `binary_outputs` follow it
    as raw bytes (the binary tensor extension; None for a JSON-only body)."""
    encoded: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for tensor in response_tensors(outputs, values, probabilities, classes):
        doc: dict[str, Any] = {
            "name": tensor.name,
            "shape": tensor.shape,
            "datatype": tensor.datatype,
        }
        parameters = dict(tensor.parameters)
        if tensor.name in binary_outputs:
            chunk = encode_tensor(tensor.data, tensor.datatype)
            chunks.append(chunk)
            parameters["binary_data_size"] = len(chunk)
        else:
            doc["data"] = _data(tensor.data)
        if parameters:
            doc["parameters"] = parameters
        encoded.append(doc)
    body: dict[str, Any] = {
        "model_name": model_name,
        "model_version": model_version,
        "outputs": encoded,
    }
    if request_id is not None:
        body["id"] = request_id
    header = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)
