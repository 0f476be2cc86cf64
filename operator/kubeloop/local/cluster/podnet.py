"""Pod IPs on loopback: each pod gets its own 127.x.y.z, where its container ports answer.

In a cluster every pod has an IP and its containers listen on their declared ports there, so
the operator reaches a pod at `podIP:containerPort` (the canary analysis scrapes `/metrics`
that way). Locally the processes share one network namespace, so each one is started on a free
loopback port instead (`kubeloop.local.cluster.podspec`); this module gives the pod an address
of its own in 127.0.0.0/8 and forwards `address:containerPort` to that free port, byte for byte.

Linux routes the whole 127.0.0.0/8 to the loopback interface; systems that only configure
127.0.0.1 (macOS) fail the probe in `PodNetwork`, and every pod then reports 127.0.0.1 without
forwards, as before: the operator's pod-IP clients then find nothing there and say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket

__all__ = ["PodNetwork", "PortForward", "relay"]

log = logging.getLogger(__name__)

_FIRST = 1 << 16  # 127.1.0.0: leave 127.0.x.x to the machine's own services
_LAST = (1 << 24) - 1
_CHUNK = 64 * 1024


def _address(n: int) -> str:
    return f"127.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def _can_bind(host: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, 0))
        except OSError:
            return False
    return True


def _first_of_block(block: int) -> int:
    """The address before the first of /16 block `block` (1..254): 127.<block>.0.0."""
    return block << 16


class PodNetwork:
    """Hands out pod addresses: 127.B.0.1, 127.B.0.2, ... (skipping .0 and .255).

    Each network starts in a /16 block B drawn at random, so that two clusters on one machine
    (parallel test workers, a demo beside a test run) do not hand their pods the same address
    and fight over `address:containerPort`.
    """

    def __init__(self, block: int | None = None) -> None:
        self._next = _first_of_block(block if block is not None else random.randint(1, 254))
        self.enabled = _can_bind(_address(_FIRST + 1))
        if not self.enabled:
            log.info("only 127.0.0.1 is bindable here: pods share it and get no port forwards")

    def allocate(self) -> str:
        """A new pod's IP (127.0.0.1 when per-pod addresses are not available)."""
        if not self.enabled:
            return "127.0.0.1"
        while True:
            self._next = self._next + 1 if self._next < _LAST else _FIRST + 1
            if self._next & 255 not in (0, 255):
                return _address(self._next)


class PortForward:
    """Listens on `host:port` and relays every connection to `127.0.0.1:target`."""

    def __init__(self, host: str, port: int, target: int) -> None:
        self.host, self.port, self.target = host, port, target
        self._server: asyncio.Server | None = None
        self._streams: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Bind; raises OSError when the address is taken."""
        self._server = await asyncio.start_server(self._accept, self.host, self.port)

    async def close(self) -> None:
        """Stop listening and cut the connections still open."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._streams):
            writer.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target
            )
        except OSError:  # nothing listens there (yet): refuse, as a closed port would
            writer.close()
            return
        self._streams.update((writer, upstream_writer))
        try:
            await asyncio.gather(relay(reader, upstream_writer), relay(upstream_reader, writer))
        finally:
            self._streams.difference_update((writer, upstream_writer))
            writer.close()
            upstream_writer.close()


async def relay(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy one direction of a TCP connection until it ends, then half-close the other side."""
    try:
        while chunk := await source.read(_CHUNK):
            sink.write(chunk)
            await sink.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if sink.can_write_eof():
                sink.write_eof()
            else:
                sink.close()
