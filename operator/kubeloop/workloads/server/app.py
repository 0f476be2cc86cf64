"""The V2 REST routes as a plain ASGI app (no framework: per-request overhead stays tiny).

GET  /v2/health/live, /v2/health/ready, /v2, /v2/openapi.json, /metrics
GET  /v2/models/{m}[/versions/{v}], /v2/models/{m}[/versions/{v}]/ready
POST /v2/models/{m}[/versions/{v}]/infer   (JSON, or JSON + binary tensors)

The infer path itself (`counted`, `predict`, `failure`) is shared with the gRPC service
(`grpc_service`): one validation, batching, payload log and metrics for both protocols.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson

from kubeloop.formats import LoadOptions
from kubeloop.workloads.server.batching import Batcher, BatchResult
from kubeloop.workloads.server.errors import (
    InferenceError,
    InvalidRequestError,
    MethodNotAllowedError,
    ModelNotReadyError,
    NotFoundError,
    PayloadTooLargeError,
)
from kubeloop.workloads.server.loading import LoadedModel, load_model
from kubeloop.workloads.server.metrics import CONTENT_TYPE_LATEST, ServerMetrics
from kubeloop.workloads.server.openapi import openapi_document
from kubeloop.workloads.server.payload_log import PayloadLogger
from kubeloop.workloads.server.protocol import (
    InferRequest,
    ModelSchema,
    encode_infer_response,
    parse_infer_request,
    v2_datatype,
)
from kubeloop.workloads.server.settings import ServerSettings, load_options

__all__ = ["InferCall", "InferenceApp"]

log = logging.getLogger("kubeloop.serve")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]
_SERVER_NAME = "kubeloop"
_SERVER_VERSION = "0.1.0"
_NUMERIC_INPUT = "FP64"
# Bodies and row counts up to these are parsed and encoded on the event loop (tens of
# microseconds: a thread hop would cost more); larger ones go to a thread.
_INLINE_BODY_BYTES = 64 * 1024
_INLINE_ROWS = 256
_BINARY = b"application/octet-stream"
_T = TypeVar("_T")
_EXTENSIONS = ["binary_tensor_data"]


@dataclass
class InferCall:
    """One infer request's bookkeeping while it is answered (see `InferenceApp.counted`)."""

    status: int = 200
    queued: bool = False


class InferenceApp:
    """ASGI app serving one model version; loads it in the background at startup."""

    def __init__(
        self,
        settings: ServerSettings,
        *,
        loader: Callable[[str, Path, LoadOptions], LoadedModel] = load_model,
        started_at: float | None = None,
        loaded_workers: Any = None,
    ) -> None:
        """`loaded_workers`: with several worker processes, a shared `multiprocessing.Value`
        counting the workers that have loaded the model. The pod reports ready only when all
        have: the kernel hands a connection to any worker, so one still loading would answer
        the Service's traffic with 503."""
        self.settings = settings
        self.started_at = time.time() if started_at is None else started_at
        self.metrics = ServerMetrics(settings.model_name)
        self._loader = loader
        self._loaded_workers = loaded_workers
        self.model: LoadedModel | None = None
        self.not_ready_reason = "model is loading"
        self.shutting_down = False
        self._schema: ModelSchema | None = None
        self._batcher: Batcher | None = None
        self._payload_log: PayloadLogger | None = None
        self._classes: list[Any] | None = None
        self._receiving = 0  # infer requests being read/validated, not yet queued
        self._ok_counters: dict[str, Any] = {}  # by protocol
        self._metadata: bytes = b""
        self.metadata: dict[str, Any] = {}
        self._openapi = orjson.dumps(openapi_document(settings.model_name))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._load_thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    def begin_shutdown(self) -> None:
        """SIGTERM: report not ready at once; in-flight requests still complete."""
        self.shutting_down = True
        self.not_ready_reason = "server is shutting down"

    def start_loading(self) -> None:
        """Load the model in a thread so liveness answers while a large model downloads."""
        self._loop = asyncio.get_running_loop()
        self._load_thread = threading.Thread(target=self._load, name="kubeloop-load", daemon=True)
        self._load_thread.start()

    def _load(self) -> None:
        try:
            settings = self.settings
            model = self._loader(
                settings.model_uri, Path(settings.work_dir), load_options(settings)
            )
        except Exception as exc:
            reason = f"cannot load {self.settings.model_uri}: {type(exc).__name__}: {exc}"
            log.error("model not ready: %s", reason)
            self.not_ready_reason = reason
            return
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._activate, model)

    def _activate(self, model: LoadedModel) -> None:
        settings = self.settings
        predictor = model.predictor
        self._schema = ModelSchema.of(predictor.features, predictor.task)
        classes = predictor.classes
        self._classes = None if classes is None else [_plain(c) for c in classes]
        self._batcher = Batcher(
            predictor.predict,
            max_batch_size=settings.max_batch_size,
            max_latency_ms=settings.max_latency_ms,
            in_flight=lambda: self._receiving,
            observe_batch=self.metrics.batch_size.observe,
        )
        self._batcher.start()
        if settings.payload_log_uri:
            dropped = self.metrics.log_dropped
            self._payload_log = PayloadLogger(
                settings.payload_log_uri,
                features=[(f.name, f.kind) for f in predictor.features],
                model_version=model.version,
                classification=predictor.task == "classification",
                sample_rate=settings.payload_sample_rate,
                flush_rows=settings.payload_flush_rows,
                flush_seconds=settings.payload_flush_seconds,
                max_pending_rows=settings.payload_max_pending_rows,
                on_written=self.metrics.log_written.inc,
                on_dropped=lambda n, reason: dropped.labels(settings.model_name, reason).inc(n),
                classes=self._classes,
            )
        self._ok_counters = {
            protocol: self.metrics.requests.labels(
                settings.model_name, model.version, "200", protocol
            )
            for protocol in ("rest", "grpc")
        }
        self.metadata = self._model_metadata(model)
        self._metadata = orjson.dumps(self.metadata)
        self.model = model
        if self._loaded_workers is not None:
            with self._loaded_workers.get_lock():
                self._loaded_workers.value += 1
        if not self.shutting_down:
            self.not_ready_reason = ""
        print(
            f"kubeloop serve: model {settings.model_name} version {model.version} verified and "
            f"loaded in {model.load_seconds:.2f}s; ready {time.time() - self.started_at:.2f}s "
            f"after start (pid {os.getpid()})",
            flush=True,
        )

    async def _shutdown(self) -> None:
        """After uvicorn drained in-flight requests: finish batches, flush the payload log."""
        self.begin_shutdown()
        if self._batcher is not None:
            await self._batcher.stop()
        if self._payload_log is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._payload_log.close)
            log.info("payload log flushed")

    @property
    def ready(self) -> bool:
        """Loaded, verified and not shutting down, in this worker and in every other one."""
        return self._serving and self._peers_loaded() >= self.settings.workers

    @property
    def _serving(self) -> bool:
        """This worker can answer infer requests."""
        return self.model is not None and not self.shutting_down

    def _peers_loaded(self) -> int:
        if self._loaded_workers is None:
            return self.settings.workers
        return int(self._loaded_workers.value)

    def _reason(self) -> str:
        if self._serving:
            loaded, workers = self._peers_loaded(), self.settings.workers
            return f"{loaded} of {workers} workers have loaded the model"
        return self.not_ready_reason

    # ---- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start_loading()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        parts = path.strip("/").split("/")
        try:
            if parts[-1] == "infer" and len(parts) in (4, 6) and parts[1] == "models":
                if method != "POST":
                    await _respond(send, 405, b'{"error":"use POST for infer"}')
                    return
                await self._infer(scope, receive, send, parts)
                return
            if method not in ("GET", "HEAD"):
                raise MethodNotAllowedError(f"{method} is not allowed on {path}")
            status, body, content_type = self._get(path, parts)
            await _respond(send, status, body, content_type)
        except InferenceError as exc:
            await _respond(send, exc.status, orjson.dumps({"error": str(exc)}))

    def _get(self, path: str, parts: list[str]) -> tuple[int, bytes, bytes]:
        json = b"application/json"
        if path == "/v2/health/live":
            return 200, b'{"live":true}', json
        if path == "/v2/health/ready":
            if self.ready:
                return 200, b'{"ready":true}', json
            raise ModelNotReadyError(f"not ready: {self._reason()}")
        if path in ("/v2", "/v2/"):
            return 200, orjson.dumps(self.server_metadata), json
        if path == "/v2/openapi.json":
            return 200, self._openapi, json
        if path == "/metrics":
            return 200, self.metrics.exposition(), CONTENT_TYPE_LATEST.encode()
        if len(parts) >= 3 and parts[0] == "v2" and parts[1] == "models":
            tail = self._model_path(parts)
            if tail == ():
                self._require_ready()
                return 200, self._metadata, json
            if tail == ("ready",):
                if not self.ready:
                    raise ModelNotReadyError(f"model not ready: {self._reason()}")
                name = self.settings.model_name
                return 200, orjson.dumps({"name": name, "ready": True}), json
        raise NotFoundError(f"no route {path}")

    def _model_path(self, parts: list[str]) -> tuple[str, ...]:
        """Checks /v2/models/{m}[/versions/{v}]; returns what follows."""
        self.check_model(parts[2], "")
        rest = parts[3:]
        if rest[:1] == ["versions"]:
            if len(rest) < 2:
                raise NotFoundError("missing version after /versions/")
            self.check_model(parts[2], rest[1])
            return tuple(rest[2:])
        return tuple(rest)

    def check_model(self, name: str, version: str) -> None:
        """The model (and version, unless empty) a request names is the one served here."""
        if name != self.settings.model_name:
            raise NotFoundError(
                f"model {name!r} not found; this server serves {self.settings.model_name!r}"
            )
        if version:
            self._require_ready()
            assert self.model is not None
            if version != self.model.version:
                raise NotFoundError(
                    f"model {name!r} has no version {version!r}; serving {self.model.version!r}"
                )

    @property
    def server_metadata(self) -> dict[str, Any]:
        """GET /v2 and gRPC ServerMetadata."""
        return {"name": _SERVER_NAME, "version": _SERVER_VERSION, "extensions": _EXTENSIONS}

    @property
    def schema(self) -> ModelSchema:
        """The loaded model's inputs (ModelNotReadyError before it is loaded)."""
        self._require_ready()
        assert self._schema is not None
        return self._schema

    @property
    def classes(self) -> list[Any] | None:
        """The classifier's labels as plain values (None for a regressor)."""
        return self._classes

    def _require_ready(self) -> None:
        """This worker has the model: it answers even while a sibling worker still loads."""
        if not self._serving:
            raise ModelNotReadyError(f"model not ready: {self.not_ready_reason}")

    async def _infer(self, scope: Scope, receive: Receive, send: Send, parts: list[str]) -> None:
        with self.counted("rest") as call:
            try:
                self._model_path(parts[:-1])
                body = await self._read_body(scope, receive)
                header_length = _header(scope, b"inference-header-content-length")
                schema, limit = self._schema, self.settings.max_request_rows

                def parse() -> InferRequest:
                    assert schema is not None
                    return parse_infer_request(body, schema, limit, header_length)

                request, result = await self.predict(call, len(body), parse)
                assert self.model is not None
                encode = functools.partial(
                    encode_infer_response,
                    model_name=self.settings.model_name,
                    model_version=self.model.version,
                    request_id=request.id,
                    outputs=request.outputs,
                    values=result.values,
                    probabilities=result.probabilities,
                    classes=self._classes,
                    binary_outputs=request.binary_outputs,
                )
                payload, json_length = await self.encode(len(body), request.rows, encode)
                if json_length is None:
                    await _respond(send, 200, payload)
                else:
                    extra = [(b"inference-header-content-length", str(json_length).encode())]
                    await _respond(send, 200, payload, _BINARY, extra)
            except Exception as exc:
                call.status, message = self.failure(exc)
                await _respond(send, call.status, orjson.dumps({"error": message}))

    @contextlib.contextmanager
    def counted(self, protocol: str) -> Iterator[InferCall]:
        """Metrics and in-flight accounting around one infer request of either protocol; the
        caller sets `status` when it fails."""
        started = time.perf_counter()
        metrics = self.metrics
        metrics.in_flight.inc()
        self._receiving += 1
        call = InferCall()
        try:
            yield call
        finally:
            if not call.queued:
                self._receiving -= 1
            metrics.in_flight.dec()
            ok = self._ok_counters.get(protocol)
            if call.status == 200 and ok is not None:
                ok.inc()
            else:
                version = self.model.version if self.model is not None else ""
                model = self.settings.model_name
                metrics.requests.labels(model, version, str(call.status), protocol).inc()
            metrics.duration.observe(time.perf_counter() - started)

    async def predict(
        self, call: InferCall, size: int, parse: Callable[[], InferRequest]
    ) -> tuple[InferRequest, BatchResult]:
        """Validate (`parse`, off the event loop when the request is `size` bytes or more than
        that inline limit), queue for the batcher, log the payload; shared by REST and gRPC."""
        self._require_ready()
        assert self._batcher is not None
        if size > _INLINE_BODY_BYTES:  # parsing megabytes would stall every other request
            request = await asyncio.get_running_loop().run_in_executor(None, parse)
        else:
            request = parse()
        self._receiving -= 1
        call.queued = True
        result = await self._batcher.submit(request.columns, request.rows)
        if self._payload_log is not None:
            self._payload_log.submit(
                request.columns,
                result.values,
                request.rows,
                request.id or uuid.uuid4().hex,
                result.probabilities,
            )
        return request, result

    async def encode(self, size: int, rows: int, work: Callable[[], _T]) -> _T:
        """Encode an answer (`work`), off the event loop for a large request or answer."""
        if size > _INLINE_BODY_BYTES or rows > _INLINE_ROWS:
            return await asyncio.get_running_loop().run_in_executor(None, work)
        return work()

    def failure(self, exc: Exception) -> tuple[int, str]:
        """The status and message a failed infer request is answered with."""
        if isinstance(exc, InferenceError):
            return exc.status, str(exc)
        # The exception's text stays in the log: it can name files, hosts or data. The client
        # gets an id to quote that finds the log line.
        error_id = uuid.uuid4().hex[:12]
        log.error("infer failed (error id %s)", error_id, exc_info=exc)
        return 500, f"the model failed on this request (error id {error_id}; see the server log)"

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.settings.max_request_bytes
        for key, value in scope["headers"]:
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError as exc:
                    raise InvalidRequestError("Content-Length header is not a number") from exc
                if declared > limit:
                    raise PayloadTooLargeError(f"body of {declared} bytes is above {limit} bytes")
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise InvalidRequestError("client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(f"body above {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _model_metadata(self, model: LoadedModel) -> dict[str, Any]:
        predictor = model.predictor
        inputs = [
            {
                "name": f.name,
                "datatype": "BYTES" if f.kind == "categorical" else _NUMERIC_INPUT,
                "shape": [-1],
                "parameters": {"kind": f.kind, "dtype": str(f.dtype)},
            }
            for f in predictor.features
        ]
        import numpy as np

        classes = self._classes
        label_type = (
            v2_datatype(np.asarray(classes)) if classes else "FP64"
        )  # regression predicts floats
        outputs: list[dict[str, Any]] = [{"name": "predict", "datatype": label_type, "shape": [-1]}]
        if predictor.task == "classification":
            outputs.append(
                {
                    "name": "predict_proba",
                    "datatype": "FP64",
                    "shape": [-1, len(classes or [])],
                    "parameters": {"classes": classes},
                }
            )
        return {
            "name": self.settings.model_name,
            "versions": [model.version],
            "platform": model.framework,
            "inputs": inputs,
            "outputs": outputs,
            # Not the storage URI: clients need not know where models live.
            "parameters": {"task": predictor.task, "format": model.framework},
        }


def _plain(value: Any) -> Any:
    """numpy scalars → Python values for JSON."""
    return value.item() if hasattr(value, "item") else value


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = b"application/json",
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *(extra or ()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
