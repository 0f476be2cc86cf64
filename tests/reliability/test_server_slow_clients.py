"""Slow clients against the model server (slowloris-style, loopback, bounded): many connections
trickle their headers or body a byte at a time while normal clients send V2 requests. The
normal requests must all succeed, with latency of the same order as without the slow clients.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.workloads.server.conftest import Server, churn_version, start_server

SLOW_CLIENTS = 400 if os.environ.get("KUBELOOP_SOAK") == "1" else 100
SECONDS = 30 if os.environ.get("KUBELOOP_SOAK") == "1" else 8

_REQUEST = {
    "inputs": [
        {"name": "age", "shape": [2], "datatype": "FP64", "data": [34.0, 71.0]},
        {"name": "income", "shape": [2], "datatype": "FP64", "data": [52000.0, 31000.0]},
        {"name": "visits", "shape": [2], "datatype": "INT64", "data": [3, 12]},
        {"name": "plan", "shape": [2], "datatype": "BYTES", "data": ["basic", "pro"]},
    ]
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("slow")
    srv = start_server(tmp, churn_version(tmp / "models" / "versions" / "1"))
    yield srv
    srv.stop()


def _latencies(server: Server, n: int) -> tuple[list[float], int]:
    out, failed = [], 0
    for _ in range(n):
        started = time.perf_counter()
        status, _ = server.post("/v2/models/churn/infer", _REQUEST)
        out.append(time.perf_counter() - started)
        failed += status != 200
    return out, failed


def _trickle(port: int, stop: threading.Event, body: bool, opened: list[int]) -> None:
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        return
    opened.append(1)
    head = b"POST /v2/models/churn/infer HTTP/1.1\r\nHost: x\r\n"
    if body:  # headers complete, then a body that never finishes
        head += b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
    try:
        sock.sendall(head)
        while not stop.wait(1.0):
            sock.sendall(b" " if body else b"X")  # one byte a second
    except OSError:
        pass  # the server closed it: fine
    finally:
        sock.close()


def test_normal_requests_succeed_while_slow_clients_hold_connections(
    server: Server, tmp_path: Path
) -> None:
    server.post("/v2/models/churn/infer", _REQUEST)  # warm up
    baseline, failed = _latencies(server, 50)
    assert failed == 0
    stop = threading.Event()
    opened: list[int] = []
    threads = [
        threading.Thread(target=_trickle, args=(server.port, stop, i % 2 == 1, opened))
        for i in range(SLOW_CLIENTS)
    ]
    for t in threads:
        t.start()
    time.sleep(1.0)
    under_attack: list[float] = []
    failures = 0
    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline:
        latencies, failed = _latencies(server, 10)
        under_attack += latencies
        failures += failed
    stop.set()
    for t in threads:
        t.join(10)
    p50_base, p50_attack = statistics.median(baseline), statistics.median(under_attack)
    p99_attack = statistics.quantiles(under_attack, n=100)[98]
    print(
        f"\nRELIABILITY server-slow-clients: slow_connections={len(opened)}, "
        f"requests={len(under_attack)}, failed={failures}, p50_ms={p50_base * 1e3:.1f}->"
        f"{p50_attack * 1e3:.1f}, p99_ms={p99_attack * 1e3:.1f}, seconds={SECONDS}"
    )
    assert len(opened) == SLOW_CLIENTS
    assert failures == 0
    assert p99_attack < 1.0, "slow clients starve normal ones"
    status, _ = server.get("/v2/health/ready")
    assert status == 200


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def _read_response(sock: socket.socket) -> bytes:
    """One whole HTTP/1.1 response (head and Content-Length body) and nothing of the next: a
    single recv may return only part of it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"the server closed the connection mid-response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")[1:]
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(4096)
        assert chunk, f"the server closed the connection mid-body: {data!r}"
        body += chunk
    assert len(body) == length, "the server sent more than one response"
    return head + b"\r\n\r\n" + body


def _until_closed(sock: socket.socket, trickle: bytes) -> tuple[bytes, float]:
    """Send `trickle` a byte every 0.2 s (the slow client) until the server answers and closes;
    what it answered and after how long."""
    started = time.monotonic()
    sock.settimeout(0.2)
    answer = b""
    for byte in trickle:
        try:
            sock.sendall(bytes([byte]))
            answer = sock.recv(4096)  # waits 0.2 s: the client's pace
        except TimeoutError:
            continue
        except OSError:
            break
        if answer:
            break
    sock.settimeout(5)
    return answer + _read_all(sock), time.monotonic() - started


def test_headers_that_do_not_arrive_in_time_get_408_and_the_connection_closes(
    tmp_path: Path,
) -> None:
    """KUBELOOP_HEADER_TIMEOUT_S: from a connection's first byte (or its next request's first
    byte on keep-alive), the headers have 1 s here; a body may take its time."""
    srv = start_server(
        tmp_path,
        churn_version(tmp_path / "models" / "versions" / "1"),
        KUBELOOP_HEADER_TIMEOUT_S="1",
    )
    try:
        head = b"POST /v2/models/churn/infer HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
        # 1. headers a byte at a time: cut after the deadline, not before
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            answer, seconds = _until_closed(sock, head)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert 0.9 <= seconds < 10, seconds
        # 2. a connection that sends nothing at all
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            assert _read_all(sock).startswith(b"HTTP/1.1 408 ")
        # 3. keep-alive: a first request answered, then a second whose headers trickle
        body = json.dumps(_REQUEST).encode()
        fast = (
            b"POST /v2/models/churn/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            sock.sendall(fast)
            first = _read_response(sock)
            assert first.startswith(b"HTTP/1.1 200 "), first
            answer, _ = _until_closed(sock, head)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        # 4. headers at once, the body slower than the header deadline: answered
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            split = fast.index(b"\r\n\r\n") + 4
            started = time.monotonic()
            sock.sendall(fast[:split])
            for byte in fast[split : split + 8]:
                sock.sendall(bytes([byte]))
                time.sleep(0.2)  # the slow client's pace, not a wait for a state
            sock.sendall(fast[split + 8 :])
            answer = _read_response(sock)
        assert time.monotonic() - started >= 1.5
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    finally:
        srv.stop()
