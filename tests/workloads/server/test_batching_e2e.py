"""Adaptive batching through a real `kubeloop serve`, for sklearn and torch alike; safe torch load.

A burst of single-row requests released together must be answered row for row as the model
answers offline, while the batch-size histogram shows fewer model calls than requests.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families
from tests.workloads.server.conftest import (
    Server,
    numeric_version,
    single_thread,
    start_server,
    torch_version,
)

from kubeloop.modelformat import load_predictor, write_manifest

BURST = 48


def _metric(server: Server, name: str) -> float:
    _, text = server.get("/metrics")
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} not in /metrics:\n{text}")


def _request(i: int, row: np.ndarray[Any, Any]) -> bytes:
    doc = {
        "id": f"r{i}",
        "inputs": [{"name": "x", "shape": [1, len(row)], "datatype": "FP64", "data": [*row]}],
    }
    body = json.dumps(doc).encode()
    head = (
        "POST /v2/models/churn/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


def _read_response(sock: socket.socket) -> tuple[int, Any]:
    """Status and JSON body of a `Connection: close` response (read to the end)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


def _wait_in_flight(server: Server, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while (seen := _metric(server, "kubeloop_inference_requests_in_flight")) < count:
        assert time.monotonic() < deadline, f"only {seen} of {count} requests ever in flight"
        time.sleep(0.02)  # the poll interval, not a wait for a state


def _burst(server: Server, rows: np.ndarray[Any, Any]) -> list[tuple[int, Any]]:
    """One connection per row, each sending a [1, F] tensor, all concurrent at the server.

    Threads released by a barrier are not enough: on a starved machine the server can answer
    each request before the next one arrives, and then there is nothing to merge (the batcher
    rightly waits for no company that is not coming). So each request is sent but its last
    byte, the test waits until the server counts all of them in flight (headers read, body
    still arriving), and only then sends the last bytes."""
    socks: list[socket.socket] = []
    try:
        requests = [_request(i, row) for i, row in enumerate(rows)]
        for request in requests:
            socks.append(socket.create_connection(("127.0.0.1", server.port), timeout=30))
            socks[-1].sendall(request[:-1])
        _wait_in_flight(server, len(rows))
        for sock, request in zip(socks, requests, strict=True):
            sock.sendall(request[-1:])
        return [_read_response(sock) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.parametrize(
    "make_version",
    [
        pytest.param(lambda p: numeric_version(p, n_features=4), id="sklearn"),
        pytest.param(torch_version, id="torch"),
    ],
)
def test_concurrent_requests_share_model_calls(
    tmp_path: Path, make_version: Callable[[Path], Path]
) -> None:
    version = make_version(tmp_path / "version")
    # a generous wait: the last bytes of 48 requests may arrive over a while on a busy machine
    server = start_server(tmp_path, version, KUBELOOP_MAX_LATENCY_MS="1000")
    try:
        calls_before = _metric(server, "kubeloop_inference_batch_size_count")
        rows = np.round(np.random.default_rng(3).normal(size=(BURST, 4)), 3)
        results = _burst(server, rows)
        calls = _metric(server, "kubeloop_inference_batch_size_count") - calls_before
        batched_rows = _metric(server, "kubeloop_inference_batch_size_sum")
    finally:
        assert server.stop() == 0
    assert [status for status, _ in results] == [200] * BURST, results
    with single_thread(1):
        offline = load_predictor(version).predict({f"f{j}": rows[:, j] for j in range(4)})
    assert offline.probabilities is not None
    for i, (_, body) in enumerate(results):
        outputs = {o["name"]: o for o in body["outputs"]}
        assert body["id"] == f"r{i}"
        assert outputs["predict"]["data"] == [offline.values[i].item()]
        np.testing.assert_allclose(
            outputs["predict_proba"]["data"], offline.probabilities[i], rtol=1e-6
        )
    assert batched_rows == BURST
    assert calls < BURST / 2, f"{BURST} concurrent requests took {calls} model calls"


class _RunsCode:
    """Unpickling this runs a shell command: what a hostile model.pt would carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[[str], int], tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_torch_weights_that_would_run_code_are_refused(tmp_path: Path) -> None:
    version = torch_version(tmp_path / "v2")
    marker = tmp_path / "code-ran"
    weights = torch.load(version / "model.pt", weights_only=True)
    torch.save({**weights, "payload": _RunsCode(marker)}, version / "model.pt")
    manifest = json.loads((version / "manifest.json").read_text())
    (version / "manifest.json").unlink()
    write_manifest(version, manifest)  # checksums match: only weights_only protects
    server = start_server(tmp_path, version, wait_ready=False)
    try:
        deadline = time.monotonic() + 30
        while "model not ready" not in server.log():
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
        status, body = server.get("/v2/health/ready")
    finally:
        assert server.stop() == 0
    assert status == 503
    assert "UnpicklingError" in body["error"] and "weights_only" in body["error"]
    assert not marker.exists(), "loading the model ran code from model.pt"
