"""Adaptive batching through a real `kubeloop serve`, for sklearn and torch alike; safe torch load.

A burst of single-row requests released together must be answered row for row as the model
answers offline, while the batch-size histogram shows fewer model calls than requests.
"""

from __future__ import annotations

import json
import os
import threading
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


def _burst(server: Server, rows: np.ndarray[Any, Any]) -> list[tuple[int, Any]]:
    """One thread per row, all released at once, each sending a [1, F] tensor."""
    barrier = threading.Barrier(len(rows))
    results: list[tuple[int, Any]] = [(0, None)] * len(rows)

    def send(i: int) -> None:
        doc = {
            "id": f"r{i}",
            "inputs": [
                {"name": "x", "shape": [1, rows.shape[1]], "datatype": "FP64", "data": [*rows[i]]}
            ],
        }
        barrier.wait()
        results[i] = server.post("/v2/models/churn/infer", doc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(rows))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


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
    # a generous wait, so that merging does not depend on how busy the test machine is
    server = start_server(tmp_path, version, KUBELOOP_MAX_LATENCY_MS="50")
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
