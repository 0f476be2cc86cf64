"""Adaptive batching: merge, split back, no wait at concurrency 1, event loop never blocked."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from kubeloop.workloads.server.batching import (
    INLINE_CALL_SECONDS,
    INLINE_ROWS,
    Batcher,
    runs_inline,
)


@dataclass(frozen=True)
class _Prediction:
    values: np.ndarray[Any, Any]
    probabilities: np.ndarray[Any, Any] | None


class _Model:
    """Doubles `x`; records each call's batch size and the thread it ran on; can be slow."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[int] = []
        self.threads: set[int] = set()
        self.thread_of_call: list[int] = []
        self.delay = delay

    def __call__(self, columns: dict[str, np.ndarray[Any, Any]]) -> _Prediction:
        self.calls.append(len(columns["x"]))
        self.threads.add(threading.get_ident())
        self.thread_of_call.append(threading.get_ident())
        # real time on purpose: blocking, as sklearn is; must not stall the event loop
        time.sleep(self.delay)
        x = columns["x"]
        return _Prediction(x * 2, np.stack([x, -x], axis=1))


async def test_concurrent_requests_are_merged_and_split_back() -> None:
    model = _Model(delay=0.02)
    pending = 0
    batcher = Batcher(model, max_batch_size=64, max_latency_ms=5, in_flight=lambda: pending)
    batcher.start()
    requests = [np.arange(i, i + 1 + i % 3, dtype=np.float64) for i in range(40)]
    results = await asyncio.gather(*(batcher.submit({"x": x}, len(x)) for x in requests))
    await batcher.stop()
    for x, result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result.values, x * 2)
        assert result.probabilities is not None
        np.testing.assert_array_equal(result.probabilities[:, 1], -x)
    assert sum(model.calls) == sum(len(x) for x in requests)
    assert len(model.calls) < len(requests) / 4  # merged: far fewer calls than requests
    assert max(model.calls) <= 64
    assert threading.get_ident() not in model.threads  # never on the event loop's thread


async def test_max_batch_size_is_respected() -> None:
    model = _Model(delay=0.01)
    batcher = Batcher(model, max_batch_size=8, max_latency_ms=50, in_flight=lambda: 0)
    batcher.start()
    await asyncio.gather(*(batcher.submit({"x": np.ones(3)}, 3) for _ in range(20)))
    await batcher.stop()
    assert max(model.calls) <= 8  # two requests of 3 fit, a third would exceed 8
    assert sum(model.calls) == 60


async def test_lone_request_does_not_wait_for_company() -> None:
    model = _Model()
    batcher = Batcher(model, max_batch_size=64, max_latency_ms=500, in_flight=lambda: 1)
    batcher.start()
    started = time.perf_counter()
    for _ in range(5):
        await batcher.submit({"x": np.ones(1)}, 1)
    elapsed = time.perf_counter() - started
    await batcher.stop()
    assert elapsed < 0.25, "requests waited for max_latency_ms with nobody else in flight"


async def test_event_loop_keeps_running_during_a_slow_model_call() -> None:
    model = _Model(delay=0.3)
    batcher = Batcher(model, max_batch_size=4, max_latency_ms=1, in_flight=lambda: 0)
    batcher.start()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    await batcher.submit({"x": np.ones(1)}, 1)
    task.cancel()
    await batcher.stop()
    assert ticks >= 10


async def test_a_failing_model_fails_its_requests_not_the_batcher() -> None:
    calls = 0

    def flaky(columns: dict[str, np.ndarray[Any, Any]]) -> _Prediction:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("boom")
        return _Prediction(columns["x"], None)

    batcher = Batcher(flaky, max_batch_size=4, max_latency_ms=0, in_flight=lambda: 0)
    batcher.start()
    try:
        await batcher.submit({"x": np.ones(1)}, 1)
    except ValueError as exc:
        assert str(exc) == "boom"
    else:
        raise AssertionError("the model error did not reach the request")
    result = await batcher.submit({"x": np.ones(2)}, 2)
    await batcher.stop()
    assert result.values.tolist() == [1.0, 1.0]


FAST = INLINE_CALL_SECONDS / 10
SLOW = INLINE_CALL_SECONDS * 10


@pytest.mark.parametrize(
    ("requests", "rows", "queued", "others", "recent", "busy", "inline"),
    [
        (1, 1, 0, 0, FAST, False, True),  # concurrency 1, a fast model: no thread hop
        (1, INLINE_ROWS, 0, 0, FAST, False, True),
        (1, INLINE_ROWS + 1, 0, 0, FAST, False, False),  # a large request may take long
        (2, 2, 0, 0, FAST, False, False),  # a batch: others were waiting
        (1, 1, 1, 0, FAST, False, False),  # another request queued behind it
        (1, 1, 0, 1, FAST, False, False),  # another request being received
        (1, 1, 0, 0, SLOW, False, False),  # a slow model would stall the loop
        (1, 1, 0, 0, None, False, False),  # the first call: speed unknown
        (1, 1, 0, 0, FAST, True, False),  # came while a call ran: a burst, keep the loop free
    ],
)
def test_runs_inline(
    *,
    requests: int,
    rows: int,
    queued: int,
    others: int,
    recent: float | None,
    busy: bool,
    inline: bool,
) -> None:
    assert (
        runs_inline(
            requests=requests,
            rows=rows,
            queued=queued,
            others_in_flight=others,
            recent_call_s=recent,
            arrived_while_busy=busy,
        )
        is inline
    )


async def test_lone_requests_to_a_fast_model_run_on_the_event_loop() -> None:
    model = _Model()
    # The mechanism, not the 1 ms bar (the runs_inline table tests it): on a loaded machine a
    # trivial call can be preempted past 1 ms, so "fast" here is anything under 50 ms.
    batcher = Batcher(
        model, max_batch_size=64, max_latency_ms=2, in_flight=lambda: 1, fast_call_s=0.05
    )
    batcher.start()
    for i in range(5):
        result = await batcher.submit({"x": np.full(1, float(i))}, 1)
        np.testing.assert_array_equal(result.values, [2.0 * i])
    await batcher.stop()
    loop_thread = threading.get_ident()
    assert model.thread_of_call[0] != loop_thread  # unknown speed: the model thread
    assert model.thread_of_call[-1] == loop_thread  # known fast, alone: no thread hop


async def test_lone_requests_to_a_slow_model_stay_off_the_event_loop() -> None:
    model = _Model(delay=SLOW)
    batcher = Batcher(model, max_batch_size=64, max_latency_ms=2, in_flight=lambda: 1)
    batcher.start()
    for _ in range(4):
        await batcher.submit({"x": np.ones(1)}, 1)
    await batcher.stop()
    assert threading.get_ident() not in model.threads
