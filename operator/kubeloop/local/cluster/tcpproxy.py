"""A Service port on loopback balanced per connection (L4), as kube-proxy does.

For ports the HTTP/1 `ServiceProxy` cannot carry: gRPC (HTTP/2, `appProtocol: grpc`). Each new
connection goes to the next Ready endpoint, round-robin, and is relayed byte for byte; a pod
that starts terminating leaves the rotation at once, and its open connections stay until the
server closes them (a gRPC server finishes its in-flight calls and says GOAWAY). No endpoint:
the connection is closed at once, as a Service without endpoints refuses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools

from kubeloop.local.cluster.podnet import relay

__all__ = ["TcpServiceProxy", "is_l4_port"]


def is_l4_port(port: dict[str, object]) -> bool:
    """Whether a Service port needs the L4 proxy: gRPC or other HTTP/2 by appProtocol, or a
    port named `grpc...` (the convention before appProtocol existed)."""
    protocol = str(port.get("appProtocol") or "").lower()
    name = str(port.get("name") or "").lower()
    return protocol in ("grpc", "h2c", "kubernetes.io/h2c") or name.startswith("grpc")


class TcpServiceProxy:
    """Listens on 127.0.0.1:<port>; `set_endpoints` swaps the rotation atomically."""

    def __init__(self, name: str, port: int = 0) -> None:
        self.name = name
        self.port = port
        self._rotation: list[tuple[str, int]] = []
        self._counter = itertools.count()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._served: dict[str, int] = {}
        self.connections = 0
        self.unavailable = 0

    @property
    def url(self) -> str:
        """`host:port` of the Service port on loopback (what a gRPC client dials)."""
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Bind and serve."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and cut the connections still open."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    def set_endpoints(self, endpoints: dict[str, int]) -> None:
        """Replace the rotation with these `{pod name: port}` (ready, not terminating)."""
        self._rotation = sorted(endpoints.items())

    def endpoints(self) -> list[str]:
        """Pod names in the rotation."""
        return [key for key, _ in self._rotation]

    async def drain(self, key: str, timeout: float = 10.0) -> None:
        """Take a pod out of the rotation (its open connections end with the server)."""
        self._rotation = [item for item in self._rotation if item[0] != key]

    def served(self) -> dict[str, int]:
        """Connections relayed per pod since start."""
        return dict(self._served)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        rotation = self._rotation
        if not rotation:
            self.unavailable += 1
            writer.close()
            return
        key, port = rotation[next(self._counter) % len(rotation)]
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.close()
            return
        self._served[key] = self._served.get(key, 0) + 1
        self._writers.update((writer, upstream_writer))
        try:
            await asyncio.gather(relay(reader, upstream_writer), relay(upstream_reader, writer))
        finally:
            self._writers.difference_update((writer, upstream_writer))
            writer.close()
            upstream_writer.close()
