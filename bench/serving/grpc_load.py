"""A gRPC load generator for V2 ModelInfer: `concurrency` calls in flight for a fixed time.

The same client drives every server: one `grpc.aio` channel, `concurrency` tasks each sending
the next call as soon as its answer arrives (a closed loop, as `wrk -c` is for REST). The
request is serialized once and sent as bytes, and answers are not parsed, so the client's
own per-call work stays small and equal for every server.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import grpc

__all__ = ["INFER_METHOD", "LoadResult", "run_load"]

INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"


@dataclass(frozen=True)
class LoadResult:
    """What one run measured."""

    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        """Answered calls per second."""
        return self.requests / self.seconds if self.seconds else 0.0


def _identity(data: bytes) -> bytes:
    return data


async def _load(target: str, request: bytes, concurrency: int, seconds: float) -> LoadResult:
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(
            INFER_METHOD, request_serializer=_identity, response_deserializer=_identity
        )
        await call(request, timeout=10)  # connected and answering before the clock starts
        latencies: list[float] = []
        errors = 0
        started = time.perf_counter()
        deadline = started + seconds

        async def worker() -> None:
            nonlocal errors
            while (now := time.perf_counter()) < deadline:
                try:
                    await call(request, timeout=5)
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - now)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()

    def quantile(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return LoadResult(
        requests=len(latencies),
        errors=errors,
        seconds=elapsed,
        p50_ms=quantile(0.5) if latencies else 0.0,
        p99_ms=quantile(0.99) if latencies else 0.0,
    )


def run_load(target: str, request: bytes, *, concurrency: int, seconds: float) -> LoadResult:
    """Drive `target` (host:port) with the serialized ModelInferRequest `request`."""
    return asyncio.run(_load(target, request, concurrency, seconds))
