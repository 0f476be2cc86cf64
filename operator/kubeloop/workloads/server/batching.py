"""Adaptive batching: concurrent requests merged into one model call, off the event loop.

One consumer task per worker process. A request never waits for company that is not coming:
the consumer dispatches at once when nothing else is in flight (concurrency 1 pays no added
latency); otherwise it gives requests already received a chance to join, up to
`max_batch_size` rows or `max_latency_ms` after the oldest one arrived. While one batch runs
in the model thread, new requests queue up and form the next batch, so batch size grows with
load by itself. The model runs in a single thread: sklearn spends most of a small call in
per-call Python overhead, so one call of 64 rows costs about what one call of 1 row does.

One exception keeps concurrency 1 fast: a lone small request (nothing else queued or being
received) whose model has lately answered small batches within `INLINE_CALL_SECONDS` runs on
the event loop itself. Handing it to the model thread and back costs two thread wake-ups,
more than such a call (measured at concurrency 1 on a busy 2-core machine: 1.2x-1.5x the
requests per second for a small TorchScript CNN, less steadily for a 200-tree XGBoost model),
and nobody is waiting on the loop meanwhile. A slow model, a batch, or a first call never
runs inline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kubeloop.workloads.server.predictor import PredictionLike

__all__ = ["INLINE_CALL_SECONDS", "INLINE_ROWS", "BatchResult", "Batcher", "runs_inline"]

log = logging.getLogger("kubeloop.serve")

Columns = dict[str, np.ndarray[Any, Any]]

INLINE_ROWS = 16  # a lone request up to this many rows may run on the event loop
INLINE_CALL_SECONDS = 0.001  # ... if recent calls of that size took at most this long
_RECENT_WEIGHT = 0.2  # of the newest call in the moving average of call times


def runs_inline(
    *,
    requests: int,
    rows: int,
    queued: int,
    others_in_flight: int,
    recent_call_s: float | None,
    arrived_while_busy: bool = False,
    fast_call_s: float = INLINE_CALL_SECONDS,
) -> bool:
    """Whether a batch runs on the event loop instead of the model thread: a single small
    request, nobody else queued or in flight, a model known to answer such batches fast, and
    a server that was idle when it arrived. A request that came while a model call ran is
    part of a burst: its followers may still be on their way, and the loop must stay free to
    read them so that they share the next call (blocking it would serve a burst one by one)."""
    return (
        requests == 1
        and rows <= INLINE_ROWS
        and queued == 0
        and others_in_flight <= 0
        and not arrived_while_busy
        and recent_call_s is not None
        and recent_call_s <= fast_call_s
    )


@dataclass(frozen=True)
class BatchResult:
    """One request's share of a batch's predictions."""

    values: np.ndarray[Any, Any]
    probabilities: np.ndarray[Any, Any] | None


@dataclass
class _Pending:
    columns: Columns
    rows: int
    future: asyncio.Future[BatchResult]
    arrived: float = field(default_factory=time.perf_counter)


class Batcher:
    """Queue of validated requests in front of `predict`; `submit` returns this request's part."""

    def __init__(
        self,
        predict: Callable[[Columns], PredictionLike],
        *,
        max_batch_size: int,
        max_latency_ms: float,
        in_flight: Callable[[], int],
        observe_batch: Callable[[int], None] = lambda _rows: None,
        fast_call_s: float = INLINE_CALL_SECONDS,
    ) -> None:
        self._predict = predict
        self._fast_call_s = fast_call_s  # a model call this short counts as fast (runs_inline)
        self._max_rows = max_batch_size
        self._max_wait = max_latency_ms / 1000.0
        self._in_flight = in_flight
        self._observe_batch = observe_batch
        self._queue: deque[_Pending] = deque()
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kubeloop-model")
        self._task: asyncio.Task[None] | None = None
        # moving average of the model's calls on <= INLINE_ROWS rows; None before the first
        self._recent_call_s: float | None = None
        # when the latest model call ended (a request that arrived before it came in a burst)
        self._busy_until = 0.0

    def start(self) -> None:
        """Start the consumer on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="kubeloop-batcher")

    async def stop(self) -> None:
        """Finish queued work, then stop the consumer and the model thread."""
        while self._queue:
            await asyncio.sleep(0.001)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)

    async def submit(self, columns: Columns, rows: int) -> BatchResult:
        """Queue one validated request and wait for its predictions."""
        future: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(columns, rows, future))
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = await self._collect()
            inline = runs_inline(
                requests=len(batch),
                rows=sum(item.rows for item in batch),
                queued=len(self._queue),
                others_in_flight=self._in_flight() - len(batch),
                recent_call_s=self._recent_call_s,
                arrived_while_busy=batch[0].arrived < self._busy_until,
                fast_call_s=self._fast_call_s,
            )
            try:
                if inline:
                    result = self._call(batch)
                else:
                    result = await loop.run_in_executor(self._executor, self._call, batch)
            except Exception as exc:  # the model failed: every request of the batch hears why
                self._busy_until = time.perf_counter()
                log.exception("model call failed for %d request(s)", len(batch))
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            self._busy_until = time.perf_counter()
            for item, part in zip(batch, result, strict=True):
                if not item.future.done():  # the client may have gone away
                    item.future.set_result(part)

    async def _collect(self) -> list[_Pending]:
        batch: list[_Pending] = []
        rows = 0
        deadline = self._queue[0].arrived + self._max_wait
        while True:
            while self._queue and rows + self._queue[0].rows <= self._max_rows:
                item = self._queue.popleft()
                batch.append(item)
                rows += item.rows
            if not batch:  # one request larger than max_batch_size runs alone
                item = self._queue.popleft()
                return [item]
            full = rows >= self._max_rows or bool(self._queue)
            # Requests received but not yet queued are still being read or validated on this
            # loop: yielding lets them join. Nobody else in flight means nobody to wait for.
            others = self._in_flight() - len(batch)
            if full or others <= 0 or time.perf_counter() >= deadline:
                return batch
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), deadline - time.perf_counter())

    def _call(self, batch: list[_Pending]) -> list[BatchResult]:
        """Runs in the model thread (or inline, see `runs_inline`): merge, predict once, split."""
        if len(batch) == 1:
            merged = batch[0].columns
        else:
            merged = {
                name: np.concatenate([item.columns[name] for item in batch])
                for name in batch[0].columns
            }
        total = sum(item.rows for item in batch)
        self._observe_batch(total)
        started = time.perf_counter()
        prediction = self._predict(merged)
        if total <= INLINE_ROWS:
            took = time.perf_counter() - started
            recent = self._recent_call_s
            self._recent_call_s = (
                took if recent is None else recent + _RECENT_WEIGHT * (took - recent)
            )
        values = np.asarray(prediction.values)
        proba = prediction.probabilities
        if values.shape[0] != total:
            raise RuntimeError(f"model returned {values.shape[0]} predictions for {total} rows")
        out = []
        start = 0
        for item in batch:
            end = start + item.rows
            out.append(BatchResult(values[start:end], None if proba is None else proba[start:end]))
            start = end
        return out
