"""Loading, readiness, payload logs and SIGTERM drain of a real `kubeloop serve` process."""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from tests.workloads.server.conftest import (
    churn_version,
    numeric_version,
    sigterm_under_load,
    start_server,
)


def test_corrupted_model_is_never_served(tmp_path: Path) -> None:
    version = numeric_version(tmp_path / "v1")
    model = version / "model.joblib"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    model.write_bytes(bytes(data))
    server = start_server(tmp_path, version, wait_ready=False)
    try:
        deadline = time.monotonic() + 20
        while "model not ready" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        status, body = server.get("/v2/health/ready")
        assert status == 503
        assert "model.joblib: sha256 differs from the manifest" in body["error"]
        assert server.get("/v2/health/live")[0] == 200
        assert server.get("/v2/models/churn/ready")[0] == 503
        row = {"name": "x", "shape": [1, 20], "datatype": "FP64", "data": [0.0] * 20}
        status, body = server.post("/v2/models/churn/infer", {"inputs": [row]})
        assert status == 503
        assert "sha256" in body["error"]
        assert "model not ready" in server.log()  # the reason is logged too
    finally:
        assert server.stop() == 0


def test_missing_manifest_is_not_ready(tmp_path: Path) -> None:
    version = numeric_version(tmp_path / "v1")
    (version / "manifest.json").unlink()
    server = start_server(tmp_path, version, wait_ready=False)
    try:
        deadline = time.monotonic() + 20
        while server.get("/v2/health/ready")[1].get("error", "").endswith("loading"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        status, body = server.get("/v2/health/ready")
        assert status == 503
        assert "no manifest.json" in body["error"]
    finally:
        server.stop()


def _read_logs(folder: Path) -> pa.Table:
    return ds.dataset(str(folder), format="parquet", partitioning="hive").to_table()


def test_payload_logs_round_trip(tmp_path: Path) -> None:
    version = churn_version(tmp_path / "v3")
    logs = tmp_path / "logs"
    server = start_server(
        tmp_path,
        version,
        KUBELOOP_PAYLOAD_LOG_URI=logs.as_uri(),
        KUBELOOP_PAYLOAD_FLUSH_SECONDS="0.2",
    )
    try:
        sent = []
        for i in range(5):
            rows = i + 1
            doc = {
                "id": f"req-{i}",
                "inputs": [
                    {"name": "age", "shape": [rows], "datatype": "FP64", "data": [30.5 + i] * rows},
                    {"name": "income", "shape": [rows], "datatype": "FP32", "data": [1000] * rows},
                    {
                        "name": "visits",
                        "shape": [rows, 1],
                        "datatype": "INT64",
                        "data": [[i]] * rows,
                    },
                    {"name": "plan", "shape": [rows], "datatype": "BYTES", "data": ["pro"] * rows},
                ],
            }
            status, body = server.post("/v2/models/churn/infer", doc)
            assert status == 200, body
            sent.append((doc, body["outputs"][0]["data"]))
        # The counter moves once the file is written: wait for it, not only for the file (the
        # file showing first, a loaded machine read the metrics before the count).
        written = 'kubeloop_payload_log_rows_written_total{model="churn"} 15.0'
        deadline = time.monotonic() + 30
        _, metrics = server.get("/metrics")
        while written not in metrics and time.monotonic() < deadline:
            time.sleep(0.1)
            _, metrics = server.get("/metrics")
    finally:
        assert server.stop() == 0
    files = list(logs.rglob("*.parquet"))
    assert files
    for file in files:
        rel = file.relative_to(logs).as_posix()
        assert re.fullmatch(r"dt=\d{4}-\d{2}-\d{2}/hour=\d{2}/part-[0-9a-f-]{36}\.parquet", rel)
    table = ds.dataset([str(f) for f in files], format="parquet").to_table()
    assert table.num_rows == 15
    schema = table.schema
    assert schema.field("_ts").type == pa.timestamp("us", tz="UTC")
    assert schema.field("_model_version").type == pa.string()
    assert schema.field("_prediction").type == pa.string()
    assert schema.field("plan").type == pa.string()
    assert schema.field("age").type == pa.float64()
    rows = table.sort_by([("_request_id", "ascending")]).to_pylist()
    assert {r["_model_version"] for r in rows} == {"3"}
    for doc, labels in sent:
        mine = [r for r in rows if r["_request_id"] == doc["id"]]
        assert [r["age"] for r in mine] == doc["inputs"][0]["data"]
        assert [r["visits"] for r in mine] == [v[0] for v in doc["inputs"][2]["data"]]
        assert [r["plan"] for r in mine] == ["pro"] * len(mine)
        assert [r["_prediction"] for r in mine] == labels
        assert sorted(r["_row"] for r in mine) == list(range(len(mine)))
    # schema version 2: the row's position and each class's probability, for performance
    assert schema.metadata[b"kubeloop.payload_log_schema"] == b"2"
    proba = [n for n in schema.names if n.startswith("_proba_")]
    assert len(proba) >= 2
    for row in rows:
        chances = {name[len("_proba_") :]: row[name] for name in proba}
        assert sum(chances.values()) == pytest.approx(1.0)
        assert max(chances, key=lambda c: chances[c]) == row["_prediction"]
    assert 'kubeloop_payload_log_rows_written_total{model="churn"} 15.0' in metrics


def test_sigterm_under_load_loses_no_logged_rows(tmp_path: Path) -> None:
    version = numeric_version(tmp_path / "v1", n_features=4)
    logs = tmp_path / "logs"
    # A long flush interval: the rows can only reach Parquet through the shutdown flush.
    server = start_server(
        tmp_path,
        version,
        KUBELOOP_PAYLOAD_LOG_URI=logs.as_uri(),
        KUBELOOP_PAYLOAD_FLUSH_SECONDS="600",
        KUBELOOP_PAYLOAD_FLUSH_ROWS="1000000",
    )
    answered: list[tuple[str, int]] = []
    failures: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(worker: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        i = 0
        while not stop.is_set():
            rows = 1 + (i % 3)
            request_id = f"w{worker}-{i}"
            body = json.dumps(
                {
                    "id": request_id,
                    "inputs": [
                        {
                            "name": "m",
                            "shape": [rows, 4],
                            "datatype": "FP64",
                            "data": [0.5] * 4 * rows,
                        }
                    ],
                }
            )
            try:
                conn.request(
                    "POST", "/v2/models/churn/infer", body, {"Content-Type": "application/json"}
                )
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as exc:
                # the server closed: stop accepting is expected once SIGTERM arrived
                with lock:
                    failures.append(type(exc).__name__)
                conn.close()
                if stop.wait(0.01):
                    return
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
                continue
            if response.status == 200:
                with lock:
                    answered.append((request_id, rows))
            i += 1

    code = sigterm_under_load(server, client, workers=8, answered=answered, at_least=60, stop=stop)
    assert code == 0, server.log()
    assert len(answered) > 50, "the load did not run"
    table = _read_logs(logs)
    logged = table.column("_request_id").to_pylist()
    assert table.num_rows == sum(rows for _, rows in answered)
    assert sorted(set(logged)) == sorted(request_id for request_id, _ in answered)
    assert "payload log flushed" in server.log()
