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
import fcntl
import logging
import os
import random
import socket
import tempfile
from pathlib import Path
from typing import IO

__all__ = ["BlockClaim", "PodNetwork", "PortForward", "claims_dir", "relay"]

log = logging.getLogger(__name__)

_FIRST = 1 << 16  # 127.1.0.0: leave 127.0.x.x to the machine's own services
_BLOCKS = 254  # 127.1.x.x .. 127.254.x.x
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


def claims_dir() -> Path:
    """Where the clusters of this machine's user claim their blocks (one lock file each)."""
    return Path(tempfile.gettempdir()) / f"kubeloop-podnet-{os.getuid()}"


class BlockClaim:
    """An exclusive claim on one /16 block of 127.0.0.0/8, held until `release` (or until the
    process ends: the kernel drops a dead process's `flock`).

    Every cluster on the machine claims its block in the same directory, so no two of them,
    in this process or another (parallel test workers, a demo beside a test run), hand their
    pods the same address and fight over `address:containerPort`.
    """

    def __init__(self, block: int, handle: IO[bytes]) -> None:
        self.block = block
        self._handle: IO[bytes] | None = handle

    @classmethod
    def take(cls, directory: Path, start: int) -> BlockClaim | None:
        """The first free block from `start` on (wrapping at 254); None when all are claimed."""
        directory.mkdir(parents=True, exist_ok=True)
        for offset in range(_BLOCKS):
            block = (start - 1 + offset) % _BLOCKS + 1
            handle = (directory / f"{block}.lock").open("ab")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # another cluster holds it
                handle.close()
                continue
            return cls(block, handle)
        return None

    def release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.close()  # closing the last descriptor drops the flock


class PodNetwork:
    """Hands out pod addresses: 127.B.0.1, 127.B.0.2, ... (skipping .0 and .255) within the
    /16 block B that this cluster claims (`BlockClaim`), wrapping around inside it.

    `block` fixes the block without claiming it (tests of the numbering); `claims` is the
    directory the claim is taken in, `start` the block tried first (random by default, so that
    clusters seldom even try the same lock).
    """

    def __init__(
        self,
        block: int | None = None,
        *,
        claims: Path | None = None,
        start: int | None = None,
    ) -> None:
        self.enabled = _can_bind(_address(_FIRST + 1))
        self._claim: BlockClaim | None = None
        if not self.enabled:
            log.info("only 127.0.0.1 is bindable here: pods share it and get no port forwards")
        elif block is None:
            first = start if start is not None else random.randint(1, _BLOCKS)
            self._claim = BlockClaim.take(claims or claims_dir(), first)
            if self._claim is None:
                log.warning(
                    "all %d pod address blocks are claimed by other clusters on this machine: "
                    "this one shares block %d and its pods' ports may clash",
                    _BLOCKS,
                    first,
                )
            block = self._claim.block if self._claim is not None else first
        self.block = block if block is not None else 0
        self._next = _first_of_block(self.block)

    def allocate(self) -> str:
        """A new pod's IP (127.0.0.1 when per-pod addresses are not available)."""
        if not self.enabled:
            return "127.0.0.1"
        first = _first_of_block(self.block)
        while True:
            self._next = self._next + 1 if self._next < first + 0xFFFF else first + 1
            if self._next & 255 not in (0, 255):
                return _address(self._next)

    def close(self) -> None:
        """Give the block back for another cluster."""
        if self._claim is not None:
            self._claim.release()
            self._claim = None


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
