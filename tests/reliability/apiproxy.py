"""A loopback proxy in front of the emulated Kubernetes API that injects API-server faults.

Per request, a seeded RNG picks one outcome:

- `ok`: relayed (watch streams are relayed chunk by chunk);
- `conflict`: 409 Conflict (a write lost a race), only for writes;
- `gone`: for watches only, the stream answers one ERROR event with a 410 `Expired` Status
  (the resourceVersion is too old), as kube-apiserver does;
- `throttle`: 429 Too Many Requests with `Retry-After: 1`;
- `error`: 500, `unavailable`: 503;
- `slow`: relayed after `delay` seconds;
- `drop`: the connection is closed without an answer (for a watch: after a few events).

`counts` and `requests_per_second` let a test prove convergence without a hot loop.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp import web

OUTCOMES = ("ok", "conflict", "gone", "throttle", "error", "unavailable", "slow", "drop")
_STATUS = {
    "conflict": (409, "Conflict", "the object has been modified; please apply your changes"),
    "gone": (410, "Expired", "too old resource version"),
    "throttle": (429, "TooManyRequests", "the server has received too many requests"),
    "error": (500, "InternalError", "an error on the server has prevented the request"),
    "unavailable": (503, "ServiceUnavailable", "the server is currently unable to respond"),
}
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}
# The mix the experiments inject: one request in three or four meets a fault.
WEIGHTS = {
    "ok": 0.70,
    "conflict": 0.05,
    "gone": 0.25,  # drawn for watch requests only (few, long-lived)
    "throttle": 0.04,
    "error": 0.04,
    "unavailable": 0.04,
    "slow": 0.04,
    "drop": 0.04,
}
# A healthy operator makes a few requests per second; a hot loop makes hundreds.
MAX_PEAK_PER_SECOND = 60


class ApiFaults:
    """Seeded fault plan plus what happened (counts, request timestamps)."""

    def __init__(self, weights: Mapping[str, float], seed: int = 0, delay: float = 1.0) -> None:
        unknown = set(weights) - set(OUTCOMES)
        if unknown:
            raise ValueError(f"unknown outcomes {sorted(unknown)}")
        self.weights = dict(weights)
        self.delay = delay
        self.enabled = True
        self._rng = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self.times: list[float] = []
        # (method, path with query) of every request but watches, in arrival order
        self.requests: list[tuple[str, str]] = []

    def draw(self, method: str, watch: bool) -> str:
        self.times.append(time.monotonic())
        if not self.enabled:
            return "ok"
        allowed = {
            k: w
            for k, w in self.weights.items()
            if (k != "conflict" or method in ("POST", "PATCH", "PUT")) and (k != "gone" or watch)
        }
        allowed.setdefault("ok", 0.0)
        outcome = self._rng.choices(list(allowed), weights=list(allowed.values()))[0]
        self.counts[outcome] += 1
        return outcome

    @property
    def faults(self) -> int:
        return sum(n for k, n in self.counts.items() if k != "ok")

    def peak_rate(self, window: float = 1.0) -> float:
        """The most requests seen in any `window` seconds (a hot loop shows up here)."""
        times, best, start = sorted(self.times), 0, 0
        for end, t in enumerate(times):
            while t - times[start] > window:
                start += 1
            best = max(best, end - start + 1)
        return best / window


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }
    headers = {"Retry-After": "1"} if code == 429 else {}
    return web.json_response(body, status=code, headers=headers)


class ApiFaultProxy:
    """Serve the proxy from a daemon thread; `url` once started."""

    def __init__(self, upstream: str, faults: ApiFaults) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults = faults
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, daemon=True, name="api-fault-proxy")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        watch = request.query.get("watch") in ("true", "1")
        outcome = self.faults.draw(request.method, watch)
        if not watch:
            self.faults.requests.append((request.method, request.path_qs))
        if outcome == "gone":
            # What kube-apiserver does when a watch's resourceVersion is too old: 200, then one
            # ERROR event carrying a 410 Status, then the end of the stream.
            code, reason, message = _STATUS["gone"]
            event = {
                "type": "ERROR",
                "object": {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "code": code,
                    "reason": reason,
                    "message": message,
                },
            }
            return web.Response(text=json.dumps(event) + "\n", content_type="application/json")
        if outcome in _STATUS:
            return _status(*_STATUS[outcome])
        if outcome == "slow":
            await asyncio.sleep(self.faults.delay)  # real time on purpose: a stalled API
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP | {"host"}}
        assert self._session is not None
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as upstream:
            if outcome == "drop" and not watch:
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=500)  # never reaches the client
            response = web.StreamResponse(status=upstream.status)
            for key, value in upstream.headers.items():
                if key.lower() not in _HOP:
                    response.headers[key] = value
            await response.prepare(request)
            lines = 0
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
                lines += chunk.count(b"\n")
                if outcome == "drop" and lines >= 2:
                    assert request.transport is not None
                    request.transport.close()  # a watch cut mid-stream
                    return response
            await response.write_eof()
            return response

    _session: aiohttp.ClientSession | None = None

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        self._session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # At exit the operator's watches are still open through it: close them at once (the
        # default waits 60 s for them, which the exit's join gave up on after 10).
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server: Any = site._server
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()
        # The watches it cut are handler tasks still waiting on the upstream: end them here,
        # not at the loop's garbage collection ("Task was destroyed but it is pending").
        handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await self._session.close()

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    def __enter__(self) -> ApiFaultProxy:
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError("the API fault proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
