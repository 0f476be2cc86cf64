"""Inference traffic for the demo: a real Open Inference Protocol (V2) client, counted.

Requests go through `tritonclient.http.aio` (the client Triton users run) to a Service's
loopback URL, one tensor per feature, a few rows per request, each with its own request id so
the payload log can be checked row for row. Nothing is retried: a refused connection, a
timeout or a non-200 answer is a failed request, counted with its error, which is what "no
failed requests during the rollout" has to mean.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import tritonclient.http.aio as triton

__all__ = ["TrafficStats", "V2Traffic", "host_port"]

DATATYPES = {"int64": "INT64", "double": "FP64", "string": "BYTES", "large_string": "BYTES"}
MAX_ERRORS_KEPT = 20


def host_port(url: str) -> str:
    """`127.0.0.1:8080` from `http://127.0.0.1:8080/` (tritonclient takes no scheme)."""
    return url.split("://", 1)[-1].rstrip("/")


@dataclass
class TrafficStats:
    """What one phase of traffic did, as the client saw it."""

    phase: str
    requests: int = 0
    rows: int = 0
    failed: int = 0
    seconds: float = 0.0
    by_version: Counter[str] = field(default_factory=Counter)
    rows_ok: int = 0
    # request id -> version that answered it, for every request answered with 200
    answered: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    # (seconds since the phase started, version that answered) per successful request
    timeline: list[tuple[float, str]] = field(default_factory=list)
    # request id -> the feature rows it sent, for every request answered with 200 (the keys
    # delayed labels are written under: kubeloop.local.demo.labels)
    sent: dict[str, pa.Table] = field(default_factory=dict)

    @property
    def ok(self) -> int:
        """Requests answered with 200."""
        return self.requests - self.failed


def _inputs(table: pa.Table) -> list[triton.InferInput]:
    out = []
    for name in table.column_names:
        column = table.column(name)
        datatype = DATATYPES.get(str(column.type))
        if datatype is None:
            raise ValueError(f"column {name}: type {column.type} has no V2 datatype here")
        values = column.to_numpy(zero_copy_only=False)
        data = values.astype(object) if datatype == "BYTES" else np.ascontiguousarray(values)
        tensor = triton.InferInput(name, [table.num_rows], datatype)
        tensor.set_data_from_numpy(data, binary_data=False)
        out.append(tensor)
    return out


class V2Traffic:
    """Sends feature rows to one model over V2 and counts every answer."""

    def __init__(self, url: str, model: str, *, rows_per_request: int = 10) -> None:
        self.url = url
        self.model = model
        self.rows_per_request = rows_per_request
        self._sent = 0

    async def ready(self) -> bool:
        """Whether the model answers `GET /v2/models/<model>/ready` with 200."""
        client = triton.InferenceServerClient(host_port(self.url), conn_timeout=5.0)
        try:
            return bool(await client.is_model_ready(self.model))
        except Exception:  # any transport error means "not ready yet"
            return False
        finally:
            await client.close()

    async def _one(
        self, client: triton.InferenceServerClient, table: pa.Table, stats: TrafficStats, t0: float
    ) -> None:
        self._sent += 1
        request_id = f"{stats.phase}-{self._sent}"
        stats.requests += 1
        stats.rows += table.num_rows
        try:
            result = await client.infer(
                self.model,
                _inputs(table),
                outputs=[triton.InferRequestedOutput("predict", binary_data=False)],
                request_id=request_id,
                timeout=10,
            )
            labels = result.as_numpy("predict")
            if labels is None or len(labels) != table.num_rows:
                raise ValueError(f"answer has {0 if labels is None else len(labels)} labels")
            version = str(result.get_response().get("model_version", "?"))
        except Exception as exc:  # every failure is counted, none is retried
            stats.failed += 1
            if len(stats.errors) < MAX_ERRORS_KEPT:
                stats.errors.append(f"{request_id}: {type(exc).__name__}: {exc}"[:300])
            return
        stats.by_version[version] += 1
        stats.rows_ok += table.num_rows
        stats.answered[request_id] = version
        stats.sent[request_id] = table
        stats.timeline.append((time.monotonic() - t0, version))

    async def send(self, table: pa.Table, phase: str, *, concurrency: int = 4) -> TrafficStats:
        """Send every row of `table` once, `rows_per_request` rows a request."""
        stats = TrafficStats(phase)
        t0 = time.monotonic()
        chunks = [
            table.slice(start, self.rows_per_request)
            for start in range(0, table.num_rows, self.rows_per_request)
        ]
        client = triton.InferenceServerClient(host_port(self.url), conn_limit=concurrency)
        try:
            queue: asyncio.Queue[pa.Table] = asyncio.Queue()
            for chunk in chunks:
                queue.put_nowait(chunk)

            async def worker() -> None:
                while not queue.empty():
                    await self._one(client, queue.get_nowait(), stats, t0)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        finally:
            await client.close()
        stats.seconds = time.monotonic() - t0
        return stats

    async def loop(
        self,
        rows: Callable[[int], pa.Table],
        stop: asyncio.Event,
        phase: str,
        *,
        concurrency: int = 2,
        pause: float = 0.1,
    ) -> TrafficStats:
        """Send `rows(i)` for request i until `stop` is set (a steady load during a rollout)."""
        stats = TrafficStats(phase)
        t0 = time.monotonic()
        client = triton.InferenceServerClient(host_port(self.url), conn_limit=concurrency)
        counter = iter(range(1 << 62))
        try:

            async def worker() -> None:
                while not stop.is_set():
                    await self._one(client, rows(next(counter)), stats, t0)
                    await asyncio.sleep(pause)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        finally:
            await client.close()
        stats.seconds = time.monotonic() - t0
        return stats
