"""Tensors as raw bytes: the V2 binary tensor data extension (REST) and gRPC's raw contents.

Both carry a tensor as its elements in row-major order, little-endian, with no padding; a BYTES
tensor as each element's length (4 bytes, little-endian) followed by its bytes. A REST body
with the header `Inference-Header-Content-Length: n` is a JSON header of n bytes followed by
the binary parts of the inputs that declare `parameters.binary_data_size`, in input order.

Raw data is only sliced here (`RawTensor`); it is decoded by `protocol` once the tensor's
datatype and shape have passed the same checks as JSON data, so every form of a request meets
one validation and gets the same messages.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from kubeloop.workloads.server.errors import InvalidRequestError

__all__ = [
    "BINARY_SIZE",
    "HEADER_LENGTH",
    "NUMPY_TYPES",
    "RawTensor",
    "attach_binary_inputs",
    "decode_tensor",
    "encode_tensor",
    "input_field",
    "split_binary_body",
]

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_SIZE = "binary_data_size"

# little-endian element types of the fixed-size V2 datatypes
NUMPY_TYPES: dict[str, np.dtype[Any]] = {
    name: np.dtype(code)
    for name, code in {
        "BOOL": "?",
        "INT8": "<i1",
        "INT16": "<i2",
        "INT32": "<i4",
        "INT64": "<i8",
        "UINT8": "<u1",
        "UINT16": "<u2",
        "UINT32": "<u4",
        "UINT64": "<u8",
        "FP16": "<f2",
        "FP32": "<f4",
        "FP64": "<f8",
    }.items()
}
_LENGTH = struct.Struct("<I")


@dataclass(frozen=True)
class RawTensor:
    """A tensor's data as bytes, and the field that sent them (for messages)."""

    data: bytes | memoryview
    source: str  # "parameters.binary_data_size", "raw_input_contents[2]"


def split_binary_body(body: bytes, header_length: str) -> tuple[bytes, memoryview]:
    """The JSON header and the binary part of a body sent with Inference-Header-Content-Length."""
    try:
        length = int(header_length)
    except ValueError:
        length = -1
    if length < 0:
        raise InvalidRequestError(
            f"{HEADER_LENGTH} header: {header_length!r} is not a byte count; send the length "
            "of the JSON header that starts the body"
        )
    if length > len(body):
        raise InvalidRequestError(
            f"{HEADER_LENGTH} header: {length} bytes is beyond the body of {len(body)} bytes; "
            "send the length of the JSON header only"
        )
    view = memoryview(body)
    return body[:length], view[length:]


def attach_binary_inputs(doc: Any, binary: memoryview) -> None:
    """Give each input that declares `parameters.binary_data_size` its slice of `binary`."""
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    offset = 0
    for index, tensor in enumerate(inputs if isinstance(inputs, list) else []):
        parameters = tensor.get("parameters") if isinstance(tensor, dict) else None
        if not isinstance(parameters, dict) or BINARY_SIZE not in parameters:
            continue
        where = input_field(index, tensor.get("name"))
        size = parameters[BINARY_SIZE]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidRequestError(
                f"{where}.parameters.{BINARY_SIZE}: must be a non-negative byte count"
            )
        if "data" in tensor:
            raise InvalidRequestError(
                f"{where}: has both `data` and parameters.{BINARY_SIZE}; send one of them"
            )
        if offset + size > len(binary):
            raise InvalidRequestError(
                f"{where}.parameters.{BINARY_SIZE}: {size} bytes from offset {offset} run past "
                f"the {len(binary)} binary bytes after the JSON header"
            )
        tensor["data"] = RawTensor(binary[offset : offset + size], f"parameters.{BINARY_SIZE}")
        offset += size
    if offset != len(binary):
        raise InvalidRequestError(
            f"body: {len(binary) - offset} binary bytes after the JSON header belong to no "
            f"input; each binary input declares its size in parameters.{BINARY_SIZE}"
        )


def input_field(index: int, name: object) -> str:
    """How messages name an input: `inputs[0] ('age')`."""
    return f"inputs[{index}] ({name!r})" if isinstance(name, str) else f"inputs[{index}]"


def decode_tensor(
    where: str, datatype: str, shape: list[int], raw: RawTensor
) -> np.ndarray[Any, Any]:
    """The elements of a raw tensor whose datatype and shape are already valid (flat)."""
    count = math.prod(shape)
    if datatype == "BYTES":
        return _decode_strings(where, count, raw)
    dtype = NUMPY_TYPES[datatype]
    expected = count * dtype.itemsize
    if len(raw.data) != expected:
        raise InvalidRequestError(
            f"{where}.{raw.source}: {len(raw.data)} bytes, but shape {shape} of {datatype} "
            f"takes {expected} bytes ({count} values of {dtype.itemsize} bytes); send a shape "
            "that matches the data"
        )
    return np.frombuffer(raw.data, dtype=dtype)


def _decode_strings(where: str, count: int, raw: RawTensor) -> np.ndarray[Any, Any]:
    data = raw.data
    values: list[str] = []
    offset = 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise InvalidRequestError(
                f"{where}.{raw.source}: BYTES element {len(values)} has a cut-off length "
                "prefix; each element is a 4-byte little-endian length and then its bytes"
            )
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += 4
        if offset + length > len(data):
            raise InvalidRequestError(
                f"{where}.{raw.source}: BYTES element {len(values)} declares {length} bytes, "
                f"past the end of the tensor's {len(data)} bytes"
            )
        try:
            values.append(bytes(data[offset : offset + length]).decode())
        except UnicodeDecodeError as exc:
            raise InvalidRequestError(
                f"{where}.{raw.source}: BYTES element {len(values)} is not UTF-8 text ({exc})"
            ) from exc
        offset += length
    if len(values) != count:
        raise InvalidRequestError(
            f"{where}.{raw.source}: {len(values)} strings do not fill the shape "
            f"({count} values); send a shape that matches the data"
        )
    return np.asarray(values, dtype=str) if values else np.empty(0, dtype=str)


def encode_tensor(arr: np.ndarray[Any, Any], datatype: str) -> bytes:
    """An output tensor's bytes (flat, row-major)."""
    if datatype == "BYTES":
        parts = []
        for value in arr.ravel().tolist():
            data = value if isinstance(value, bytes) else str(value).encode()
            parts.append(_LENGTH.pack(len(data)))
            parts.append(data)
        return b"".join(parts)
    return np.ascontiguousarray(arr, dtype=NUMPY_TYPES[datatype]).tobytes()
