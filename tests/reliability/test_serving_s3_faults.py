"""Serving through S3 faults: `kubeloop serve` downloads its model version and writes its
payload log to S3 through the fault proxy in front of moto, under a stream of V2 requests and a
SIGTERM at the end. Every answered request's rows must reach S3, or be counted as dropped —
never lost silently.
"""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tests.reliability.faultproxy import FaultPlan, fault_proxy
from tests.workloads.server.conftest import churn_version, start_server

from kubeloop.storage import S3Store, join

_REQUEST = {
    "inputs": [
        {"name": "age", "shape": [2], "datatype": "FP64", "data": [34.0, 71.0]},
        {"name": "income", "shape": [2], "datatype": "FP64", "data": [52000.0, 31000.0]},
        {"name": "visits", "shape": [2], "datatype": "INT64", "data": [3, 12]},
        {"name": "plan", "shape": [2], "datatype": "BYTES", "data": ["basic", "pro"]},
    ]
}


def test_model_download_and_payload_log_through_s3_faults(
    bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    store = S3Store()
    version = churn_version(tmp_path / "v3")
    for path in sorted(version.rglob("*")):
        if path.is_file():
            rel = path.relative_to(version).as_posix()
            store.write_bytes(join(bucket, f"models/churn/versions/3/{rel}"), path.read_bytes())
    plan = FaultPlan(
        {"ok": 0.8, "throttle": 0.07, "error": 0.07, "lost": 0.06}, seed=29
    )  # a file every 50 ms: dozens of writes
    with fault_proxy(s3_endpoint, plan) as proxy:
        server = start_server(
            tmp_path,
            version,
            KUBELOOP_MODEL_URI=join(bucket, "models/churn/versions/3"),
            KUBELOOP_PAYLOAD_LOG_URI=join(bucket, "logs/churn/"),
            KUBELOOP_PAYLOAD_FLUSH_SECONDS="0.05",
            AWS_ENDPOINT_URL=proxy,
            AWS_MAX_ATTEMPTS="10",
            AWS_RETRY_MODE="standard",
        )
        answered = 0
        try:
            for i in range(120):
                status, _ = server.post("/v2/models/churn/infer", {**_REQUEST, "id": f"r{i}"})
                answered += status == 200
                time.sleep(0.02)  # spread over ~3 s: many small log files
            _, metrics = server.get("/metrics")
        finally:
            code = server.stop()
    assert code == 0, server.log()[-2000:]
    dropped = sum(
        float(m)
        for m in re.findall(r"kubeloop_payload_log_rows_dropped_total\{[^}]*\} ([0-9.]+)", metrics)
    )
    tables = [
        pq.read_table(io.BytesIO(store.read_bytes(obj.uri)))
        for obj in store.list(join(bucket, "logs/churn/"))
        if obj.uri.endswith(".parquet")
    ]
    logged = pa.concat_tables(tables).num_rows if tables else 0
    print(
        f"\nRELIABILITY serving-s3-faults: requests={sum(plan.counts.values())}, "
        f"faults={plan.faults}, answered={answered}, rows_answered={2 * answered}, "
        f"rows_logged={logged}, rows_dropped_counted={dropped:.0f}, exit={code}"
    )
    assert answered == 120
    assert plan.faults > 0
    assert logged + dropped == 2 * answered  # nothing lost silently
    assert logged == 2 * answered  # and with retries, nothing dropped either
