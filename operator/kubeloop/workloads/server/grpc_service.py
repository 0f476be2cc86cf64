"""The V2 gRPC endpoint (`inference.GRPCInferenceService`, as KServe and Triton serve it).

It runs in each worker process beside the REST app, on the same event loop, and answers infer
requests through the same path (`InferenceApp.counted` and `.predict`): one validation, one
batcher, one payload log, one set of metrics (`protocol="grpc"`). A ModelInferRequest becomes
the same request document a JSON body does, with each input's data as a `RawTensor` (from
`raw_input_contents`, what tritonclient sends) or an array (from typed `contents`); errors
carry the same messages as REST under the gRPC code of the same meaning.

With a token (spec.auth) every method but ServerLive/ServerReady needs the metadata
`authorization: Bearer <token>`, decided by the same `auth.check` as REST (UNAUTHENTICATED
otherwise, counted like a REST 401); with a certificate (spec.tls) the port speaks TLS.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np

from kubeloop.workloads.server.auth import REFUSALS, Verdict, check
from kubeloop.workloads.server.binary import RawTensor, encode_tensor
from kubeloop.workloads.server.errors import InvalidRequestError, ModelNotReadyError
from kubeloop.workloads.server.protocol import (
    InferRequest,
    ModelSchema,
    response_tensors,
    validate_infer_request,
)
from kubeloop.workloads.server.v2grpc import grpc_predict_v2_pb2 as pb
from kubeloop.workloads.server.v2grpc import grpc_predict_v2_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from kubeloop.workloads.server.app import InferenceApp

__all__ = ["GRPC_CODES", "BearerInterceptor", "infer_document", "start_grpc_server"]

# the gRPC status of the same meaning as each HTTP status the server answers with
GRPC_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
}
# typed `contents` field of each datatype, and the element type it holds
_CONTENTS = {
    "BOOL": ("bool_contents", np.bool_),
    "INT8": ("int_contents", np.int8),
    "INT16": ("int_contents", np.int16),
    "INT32": ("int_contents", np.int32),
    "INT64": ("int64_contents", np.int64),
    "UINT8": ("uint_contents", np.uint8),
    "UINT16": ("uint_contents", np.uint16),
    "UINT32": ("uint_contents", np.uint32),
    "UINT64": ("uint64_contents", np.uint64),
    "FP16": ("fp32_contents", np.float32),
    "FP32": ("fp32_contents", np.float32),
    "FP64": ("fp64_contents", np.float64),
}


def infer_document(request: pb.ModelInferRequest) -> dict[str, Any]:
    """A ModelInferRequest as the request document `validate_infer_request` takes."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidRequestError(
            f"raw_input_contents: {len(raw)} entries for {len(request.inputs)} inputs; send "
            "one per input, in order, or typed contents for every input"
        )
    inputs = []
    for index, tensor in enumerate(request.inputs):
        doc: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        if raw:
            doc["data"] = RawTensor(raw[index], f"raw_input_contents[{index}]")
        elif tensor.HasField("contents"):
            doc["data"] = _typed_contents(index, tensor)
        inputs.append(doc)
    document: dict[str, Any] = {
        "inputs": inputs,
        "outputs": [{"name": output.name} for output in request.outputs] or None,
    }
    if request.id:
        document["id"] = request.id
    return document


def _typed_contents(index: int, tensor: Any) -> Any:
    if tensor.datatype == "BYTES":
        try:
            return np.asarray([b.decode() for b in tensor.contents.bytes_contents], dtype=str)
        except UnicodeDecodeError as exc:
            raise InvalidRequestError(
                f"inputs[{index}] ({tensor.name!r}).contents.bytes_contents: not UTF-8 text"
            ) from exc
    field, dtype = _CONTENTS.get(tensor.datatype, ("", None))
    if dtype is None:  # validation names the datatype
        return []
    return np.asarray(getattr(tensor.contents, field), dtype=dtype)


def _parse(request: pb.ModelInferRequest, schema: ModelSchema, max_rows: int) -> InferRequest:
    return validate_infer_request(infer_document(request), schema, max_rows)


def _response(
    request: InferRequest,
    *,
    model_name: str,
    model_version: str,
    values: Any,
    probabilities: Any,
    classes: list[Any] | None,
) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(
        model_name=model_name, model_version=model_version, id=request.id or ""
    )
    for tensor in response_tensors(request.outputs, values, probabilities, classes):
        response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        response.raw_output_contents.append(encode_tensor(tensor.data, tensor.datatype))
    return response


class _Service(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, app: InferenceApp) -> None:
        self._app = app

    async def ServerLive(self, request: Any, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._app.ready)

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Any
    ) -> pb.ModelReadyResponse:
        app = self._app
        model = app.model
        ready = (
            app.ready
            and request.name == app.settings.model_name
            and (not request.version or (model is not None and request.version == model.version))
        )
        return pb.ModelReadyResponse(ready=ready)

    async def ServerMetadata(self, request: Any, context: Any) -> pb.ServerMetadataResponse:
        meta = self._app.server_metadata
        return pb.ServerMetadataResponse(
            name=meta["name"], version=meta["version"], extensions=meta["extensions"]
        )

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Any
    ) -> pb.ModelMetadataResponse:
        app = self._app
        try:
            app.check_model(request.name, request.version)
            if not app.metadata:
                raise ModelNotReadyError(f"model not ready: {app.not_ready_reason}")
        except Exception as exc:
            status, message = app.failure(exc)
            await context.abort(GRPC_CODES.get(status, grpc.StatusCode.INTERNAL), message)
        meta = app.metadata
        tensors = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=[
                tensors(name=t["name"], datatype=t["datatype"], shape=t["shape"])
                for t in meta["inputs"]
            ],
            outputs=[
                tensors(name=t["name"], datatype=t["datatype"], shape=t["shape"])
                for t in meta["outputs"]
            ],
        )

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Any
    ) -> pb.ModelInferResponse:
        app = self._app
        with app.counted("grpc") as call:
            try:
                app.check_model(request.model_name, request.model_version)
                parse = functools.partial(
                    _parse, request, app.schema, app.settings.max_request_rows
                )
                size = request.ByteSize()
                parsed, result = await app.predict(call, size, parse)
                assert app.model is not None
                encode = functools.partial(
                    _response,
                    parsed,
                    model_name=app.settings.model_name,
                    model_version=app.model.version,
                    values=result.values,
                    probabilities=result.probabilities,
                    classes=app.classes,
                )
                return await app.encode(size, parsed.rows, encode)
            except Exception as exc:
                call.status, message = app.failure(exc)
        # counted first: abort sends the status to the client at once
        await context.abort(GRPC_CODES.get(call.status, grpc.StatusCode.INTERNAL), message)
        raise AssertionError("context.abort returns only by raising")


# What kubelet-style health checks call: open, like REST's /v2/health/*.
_OPEN_METHODS = frozenset(
    f"/inference.GRPCInferenceService/{name}" for name in ("ServerLive", "ServerReady")
)


class BearerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """UNAUTHENTICATED for a call without this server's bearer token (see the module doc)."""

    def __init__(self, token: str, on_refused: Callable[[], None]) -> None:
        self._token = token.encode()
        self._on_refused = on_refused

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        if details.method in _OPEN_METHODS:
            return await continuation(details)
        metadata = details.invocation_metadata or ()
        value = next((v for k, v in metadata if k == "authorization"), None)
        raw = value.encode() if isinstance(value, str) else value
        verdict = check(details.method, raw, self._token)
        if verdict is Verdict.ALLOWED:
            return await continuation(details)
        self._on_refused()
        message = REFUSALS[verdict]

        async def refuse(request: Any, context: Any) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

        return grpc.unary_unary_rpc_method_handler(refuse)


def _credentials(cert_file: str, key_file: str) -> Any:
    """The server's TLS credentials from the mounted kubernetes.io/tls Secret's files."""
    pair = (Path(key_file).read_bytes(), Path(cert_file).read_bytes())
    return grpc.ssl_server_credentials([pair])


async def start_grpc_server(app: InferenceApp, port: int, *, reuse_port: bool) -> Any:
    """Serve the app's model over gRPC on `port` (on the app's host); returns the started
    `grpc.aio.Server`. `reuse_port`: several worker processes listen on the one port."""
    settings = app.settings
    token = settings.auth_token.get_secret_value()
    server = grpc.aio.server(
        interceptors=[BearerInterceptor(token, app.metrics.unauthorized.inc)] if token else None,
        options=[
            ("grpc.max_receive_message_length", settings.max_request_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
        ],
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(_Service(app), server)  # type: ignore[no-untyped-call]
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    if settings.tls_cert_file:
        server.add_secure_port(
            f"{host}:{port}", _credentials(settings.tls_cert_file, settings.tls_key_file)
        )
    else:
        server.add_insecure_port(f"{host}:{port}")
    await server.start()
    return server
