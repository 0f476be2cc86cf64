"""The per-connection Service proxy (gRPC ports): which ports need it, round-robin over the
Ready endpoints, a drained endpoint gets no new connection, no endpoint closes at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from kubeloop.local.cluster.tcpproxy import TcpServiceProxy, is_l4_port


@pytest.mark.parametrize(
    ("port", "l4"),
    [
        ({"name": "grpc", "port": 8081, "appProtocol": "grpc"}, True),
        ({"name": "inference", "port": 9000, "appProtocol": "kubernetes.io/h2c"}, True),
        ({"name": "grpc-v2", "port": 9000}, True),  # named by the older convention
        ({"name": "http", "port": 8080}, False),
        ({"port": 80, "targetPort": "http"}, False),
        ({"name": "web", "port": 443, "appProtocol": "https"}, False),
    ],
)
def test_which_ports_are_proxied_per_connection(port: dict[str, object], l4: bool) -> None:
    assert is_l4_port(port) is l4


async def _named_server(name: bytes) -> asyncio.Server:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read(100)
        writer.write(name + b":" + data)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0)


@pytest.fixture
async def backends() -> AsyncIterator[dict[str, int]]:
    servers = {name: await _named_server(name.encode()) for name in ("pod-a", "pod-b")}
    yield {name: s.sockets[0].getsockname()[1] for name, s in servers.items()}
    for server in servers.values():
        server.close()


async def _ask(proxy: TcpServiceProxy) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(b"hi")
        await writer.drain()
        return await reader.read(100)
    except ConnectionResetError:  # closed unread: what a port without endpoints does
        return b""
    finally:
        writer.close()


async def test_connections_rotate_over_endpoints_and_a_drained_one_leaves(
    backends: dict[str, int],
) -> None:
    proxy = TcpServiceProxy("ml/churn")
    await proxy.start()
    try:
        assert proxy.url == f"127.0.0.1:{proxy.port}"
        assert await _ask(proxy) == b""  # no endpoint: closed at once
        proxy.set_endpoints(backends)
        answers = [await _ask(proxy) for _ in range(4)]
        assert sorted(answers) == [b"pod-a:hi"] * 2 + [b"pod-b:hi"] * 2
        await proxy.drain("pod-a")
        assert proxy.endpoints() == ["pod-b"]
        assert {await _ask(proxy) for _ in range(3)} == {b"pod-b:hi"}
        assert proxy.served() == {"pod-a": 2, "pod-b": 5}
        assert proxy.unavailable == 1
    finally:
        await proxy.stop()
