"""Operating the server: workers, startup time, size limits, /metrics, counted drops, readiness.

Real processes where the behaviour is the process's (workers, SIGTERM, metrics across workers);
the readiness flip during shutdown is checked on the ASGI app itself, in this process, since a
terminating uvicorn closes its listening socket and can no longer be asked.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.workloads.server.conftest import Server, numeric_version, start_server

from kubeloop.workloads.server.app import InferenceApp
from kubeloop.workloads.server.loading import load_model
from kubeloop.workloads.server.settings import ServerSettings

READY_LINE = re.compile(
    r"verified and loaded in [\d.]+s; ready ([\d.]+)s after start \(pid (\d+)\)"
)


def _row(rows: int = 1, features: int = 4) -> dict[str, Any]:
    data = [0.25] * rows * features
    return {"inputs": [{"name": "x", "shape": [rows, features], "datatype": "FP64", "data": data}]}


def _samples(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    _, text = server.get("/metrics")
    return {
        (s.name, tuple(sorted(s.labels.items()))): float(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Two worker processes on one port, small request limits, payload logging on."""
    tmp = tmp_path_factory.mktemp("workers")
    server = start_server(
        tmp,
        numeric_version(tmp / "v1", n_features=4),
        KUBELOOP_WORKERS="2",
        KUBELOOP_MAX_REQUEST_BYTES="4096",
        KUBELOOP_MAX_REQUEST_ROWS="10",
        KUBELOOP_PAYLOAD_LOG_URI=(tmp / "logs").as_uri(),
        KUBELOOP_PAYLOAD_FLUSH_SECONDS="0.2",
    )
    # ready answers once one worker is; wait for both to say they are
    deadline = time.monotonic() + 60
    while len(READY_LINE.findall(server.log())) < 2:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.1)
    yield server
    assert server.stop() == 0


def test_each_worker_loads_and_prints_its_startup_time(two_workers: Server) -> None:
    log = two_workers.log()
    assert f"kubeloop serve: 2 workers on 127.0.0.1:{two_workers.port}" in log
    ready = READY_LINE.findall(log)
    assert len({pid for _, pid in ready}) == 2
    assert all(0 < float(seconds) < 60 for seconds, _ in ready)


def test_oversized_requests_are_refused_with_413(two_workers: Server) -> None:
    status, body = two_workers.post("/v2/models/churn/infer", _row(rows=300))
    assert status == 413
    assert "above 4096 bytes" in body["error"]
    status, body = two_workers.post("/v2/models/churn/infer", _row(rows=11))
    assert status == 413
    assert "11 rows is above the limit of 10" in body["error"]


def test_metrics_count_every_request_across_workers(two_workers: Server) -> None:
    before = _samples(two_workers)
    for _ in range(20):
        assert two_workers.post("/v2/models/churn/infer", _row(rows=2))[0] == 200
    for _ in range(3):
        assert two_workers.post("/v2/models/churn/infer", {"inputs": []})[0] == 400
    deadline = time.monotonic() + 10
    written = ("kubeloop_payload_log_rows_written_total", (("model", "churn"),))
    while _samples(two_workers).get(written, 0) - before.get(written, 0) < 40:
        assert time.monotonic() < deadline, "payload-log rows were not counted as written"
        time.sleep(0.1)
    after = _samples(two_workers)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    requests = "kubeloop_inference_requests_total"
    assert delta(requests, model="churn", version="1", code="200", protocol="rest") == 20
    assert delta(requests, model="churn", version="1", code="400", protocol="rest") == 3
    assert delta("kubeloop_inference_request_duration_seconds_count", model="churn") == 23
    assert delta("kubeloop_inference_batch_size_sum", model="churn") == 40  # rows, not requests
    assert after[("kubeloop_inference_requests_in_flight", (("model", "churn"),))] == 0
    assert delta(written[0], model="churn") == 40


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_metrics_pass_promtool_lint(two_workers: Server) -> None:
    _, text = two_workers.get("/metrics")
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_full_payload_log_buffer_drops_and_counts(tmp_path: Path) -> None:
    server = start_server(
        tmp_path,
        numeric_version(tmp_path / "v1", n_features=4),
        KUBELOOP_PAYLOAD_LOG_URI=(tmp_path / "logs").as_uri(),
        KUBELOOP_PAYLOAD_MAX_PENDING_ROWS="5",
        KUBELOOP_PAYLOAD_FLUSH_SECONDS="600",
    )
    try:
        for rows in (3, 3, 2):  # 3 fit; 3 more would exceed 5: dropped; then 2 fit
            assert server.post("/v2/models/churn/infer", _row(rows=rows))[0] == 200
        dropped = _samples(server)[
            (
                "kubeloop_payload_log_rows_dropped_total",
                (("model", "churn"), ("reason", "buffer_full")),
            )
        ]
    finally:
        assert server.stop() == 0
    assert dropped == 3
    import pyarrow.dataset as ds

    table = ds.dataset(str(tmp_path / "logs"), format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 5  # what was kept is flushed on SIGTERM


async def _call(app: InferenceApp, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "method": method, "path": path, "headers": []}, receive, send)
    return sent[0]["status"], sent[1]["body"]


async def _get(app: InferenceApp, path: str) -> tuple[int, bytes]:
    return await _call(app, "GET", path)


class _Failing:
    """A loaded predictor whose every call fails with text a client must not read."""

    def __init__(self, predictor: Any) -> None:
        self._predictor = predictor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._predictor, name)

    def predict(self, columns: Any) -> Any:
        raise RuntimeError("cannot read /var/run/secrets/db-password at 10.0.0.7")


async def test_a_model_error_is_a_500_that_keeps_its_text_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The client reads an error id, not the exception (paths, hosts, data); the log has both.
    Metadata does not tell where models are stored either."""
    version = numeric_version(tmp_path / "v1", n_features=4)

    def failing_loader(*args: Any) -> Any:
        loaded = load_model(*args)
        return dataclasses.replace(loaded, predictor=_Failing(loaded.predictor))

    settings = ServerSettings(model_uri=version.as_uri(), work_dir=str(tmp_path))
    app = InferenceApp(settings, loader=failing_loader)
    app.start_loading()
    deadline = time.monotonic() + 30
    while not app.ready:
        assert time.monotonic() < deadline, app.not_ready_reason
        await asyncio.sleep(0.05)
    status, metadata = await _get(app, "/v2/models/model")
    assert status == 200 and b"file://" not in metadata and str(tmp_path).encode() not in metadata
    inputs = [{"name": f"f{i}", "datatype": "FP64", "shape": [1], "data": [0.5]} for i in range(4)]
    body = orjson.dumps({"inputs": inputs})
    status, answer = await _call(app, "POST", "/v2/models/model/infer", body)
    error = orjson.loads(answer)["error"]
    assert status == 500 and "db-password" not in error and "10.0.0.7" not in error
    error_id = re.search(r"error id ([0-9a-f]{12})", error)
    assert error_id is not None, error
    logged = [r for r in caplog.records if error_id.group(1) in r.getMessage()]
    assert logged and "db-password" in caplog.text  # the traceback is in the log
    await app._shutdown()


async def test_readiness_is_false_until_loaded_and_from_shutdown_on(tmp_path: Path) -> None:
    version = numeric_version(tmp_path / "v1", n_features=4)
    settings = ServerSettings(model_uri=version.as_uri(), work_dir=str(tmp_path))
    app = InferenceApp(settings, loader=load_model)
    status, body = await _get(app, "/v2/health/ready")
    assert (status, b"model is loading" in body) == (503, True)
    app.start_loading()
    deadline = time.monotonic() + 30
    while not app.ready:
        assert time.monotonic() < deadline, app.not_ready_reason
        await asyncio.sleep(0.05)
    assert (await _get(app, "/v2/health/ready"))[0] == 200
    app.begin_shutdown()  # what the SIGTERM handler calls first
    status, body = await _get(app, "/v2/health/ready")
    assert status == 503 and b"shutting down" in body
    assert (await _get(app, "/v2/health/live"))[0] == 200  # not restarted while draining
    await app._shutdown()


async def test_with_several_workers_ready_waits_for_all_of_them(tmp_path: Path) -> None:
    import multiprocessing

    version = numeric_version(tmp_path / "v1", n_features=4)
    settings = ServerSettings(model_uri=version.as_uri(), work_dir=str(tmp_path), workers=2)
    loaded = multiprocessing.get_context("spawn").Value("i", 0)
    app = InferenceApp(settings, loader=load_model, loaded_workers=loaded)
    app.start_loading()
    deadline = time.monotonic() + 30
    while loaded.value < 1:
        assert time.monotonic() < deadline, app.not_ready_reason
        await asyncio.sleep(0.05)
    status, body = await _get(app, "/v2/health/ready")
    assert status == 503 and b"1 of 2 workers have loaded the model" in body
    assert (await _get(app, "/v2/models/model/ready"))[0] == 503
    with loaded.get_lock():
        loaded.value += 1  # the sibling worker finished loading
    assert (await _get(app, "/v2/health/ready"))[0] == 200
    await app._shutdown()
