"""A Service on loopback: an HTTP proxy balancing requests over the Service's ready pods.

Fidelity: kube-proxy balances *connections* (L4); this balances *requests* round-robin over the
endpoints that are Ready and not terminating, so keep-alive clients spread like a mesh would.
An endpoint leaves the rotation the moment its pod starts terminating, and the pod runner waits
for the requests already sent to it (`drain`) before it signals the process: a rolling update
loses no request here when the server itself finishes what it accepted. The proxy never
retries: a request a backend fails is a failed request to the client. No endpoint -> 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field

import aiohttp
import aiohttp.web

__all__ = ["Endpoint", "ServiceProxy"]

_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}


@dataclass
class Endpoint:
    """One ready pod's port."""

    key: str  # pod name
    port: int
    in_flight: int = 0
    served: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)


class ServiceProxy:
    """Listens on 127.0.0.1:<port>; `set_endpoints` swaps the rotation atomically."""

    def __init__(self, name: str, port: int = 0) -> None:
        self.name = name
        self.port = port
        self._endpoints: dict[str, Endpoint] = {}
        self._rotation: list[Endpoint] = []
        self._counter = itertools.count()
        self._runner: aiohttp.web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self.requests = 0
        self.unavailable = 0

    @property
    def url(self) -> str:
        """Base URL of the Service on loopback."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Bind and serve."""
        app = aiohttp.web.Application(client_max_size=64 * 1024**2)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = aiohttp.web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        server = site._server
        if self.port == 0 and server is not None:
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._client = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=120),
            # Idle backend connections are dropped after 2 s, before the server's own 5 s
            # keep-alive timeout (uvicorn's default) closes them: reusing a connection the
            # backend is closing at that very moment fails the request ("Can not write request
            # body"), the classic keep-alive race a proxy must avoid from its side.
            connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=2.0),
            auto_decompress=False,
        )

    async def stop(self) -> None:
        """Stop listening and close backend connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._client is not None:
            await self._client.close()
            self._client = None

    def set_endpoints(self, endpoints: dict[str, int]) -> None:
        """Replace the rotation with these `{pod name: port}` (ready, not terminating)."""
        for key, port in endpoints.items():
            current = self._endpoints.get(key)
            if current is None or current.port != port:
                endpoint = Endpoint(key, port)
                endpoint.idle.set()
                self._endpoints[key] = endpoint
        self._rotation = [self._endpoints[k] for k in sorted(endpoints)]

    def endpoints(self) -> list[str]:
        """Pod names in the rotation."""
        return [e.key for e in self._rotation]

    async def drain(self, key: str, timeout: float = 10.0) -> None:
        """Take a pod out of the rotation and wait until its in-flight requests finish."""
        self._rotation = [e for e in self._rotation if e.key != key]
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(endpoint.idle.wait(), timeout)

    def served(self) -> dict[str, int]:
        """Requests answered per pod since start."""
        return {k: e.served for k, e in self._endpoints.items()}

    async def _handle(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        self.requests += 1
        rotation = self._rotation
        if not rotation or self._client is None:
            self.unavailable += 1
            return aiohttp.web.Response(status=503, text=f"service {self.name}: no ready endpoints")
        endpoint = rotation[next(self._counter) % len(rotation)]
        endpoint.in_flight += 1
        endpoint.idle.clear()
        try:
            body = await request.read()
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
            url = f"http://127.0.0.1:{endpoint.port}{request.rel_url}"
            try:
                async with self._client.request(
                    request.method, url, data=body, headers=headers, allow_redirects=False
                ) as upstream:
                    payload = await upstream.read()
                    out_headers = {
                        k: v for k, v in upstream.headers.items() if k.lower() not in _HOP
                    }
                    endpoint.served += 1
                    return aiohttp.web.Response(
                        status=upstream.status, body=payload, headers=out_headers
                    )
            except (aiohttp.ClientError, TimeoutError) as exc:
                return aiohttp.web.Response(
                    status=502, text=f"service {self.name}: backend {endpoint.key}: {exc}"
                )
        finally:
            endpoint.in_flight -= 1
            if endpoint.in_flight == 0:
                endpoint.idle.set()
