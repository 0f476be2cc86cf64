"""`promtool check metrics` on what Kubeloop really exposes: the model server's GET /metrics
(the real ASGI app, after real requests) and the DriftMonitor's push registry. promtool is the
Debian `prometheus` package (`make system-deps`)."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
from prometheus_client import generate_latest

from kubeloop.workloads.monitor.metrics import build_registry
from kubeloop.workloads.monitor.verdict import DatasetVerdict, FeatureVerdict
from kubeloop.workloads.server.app import InferenceApp
from kubeloop.workloads.server.settings import ServerSettings


def promtool_check_metrics(text: bytes) -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: run `make system-deps` (Debian package prometheus)")
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, check=False
    )
    out = (proc.stdout + proc.stderr).decode()
    assert proc.returncode == 0, out
    assert out.strip() == "", f"promtool found problems:\n{out}"
    return out


async def _request(app: InferenceApp, method: str, path: str, body: bytes = b"") -> Any:
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
    }
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


async def test_server_metrics_endpoint_is_promtool_clean(tmp_path: Any) -> None:
    settings = ServerSettings(model_uri=f"file://{tmp_path}/missing", model_name="churn")
    app = InferenceApp(settings)
    # Real traffic before a model is loaded: health, a refused infer, an unknown route.
    assert (await _request(app, "GET", "/v2/health/live"))[0] == 200
    infer = b'{"inputs": [{"name": "tenure", "shape": [1], "datatype": "FP64", "data": [3]}]}'
    assert (await _request(app, "POST", "/v2/models/churn/infer", infer))[0] >= 400
    assert (await _request(app, "GET", "/nowhere"))[0] == 404
    status, body = await _request(app, "GET", "/metrics")
    assert status == 200
    text = body.decode()
    assert "# TYPE kubeloop_inference_requests_total counter" in text
    assert "# TYPE kubeloop_inference_request_duration_seconds histogram" in text
    promtool_check_metrics(body)


def test_drift_monitor_push_registry_is_promtool_clean() -> None:
    tenure = FeatureVerdict(
        name="tenure", kind="numeric", test="psi", score=0.31, threshold=0.2, drifted=True,
        scores={"psi": 0.31, "ks": 0.01}, rows=1000, missing=0,
    )  # fmt: skip
    contract = FeatureVerdict(
        name="contract", kind="categorical", test="chi2", score=0.4, threshold=0.05,
        drifted=False, scores={"chi2": 0.4}, rows=1000, missing=3,
    )  # fmt: skip
    verdict = DatasetVerdict(
        verdict="Drift", drift_share=0.5, rows=1000, features=[tenure, contract]
    )
    registry = build_registry(verdict, duration_seconds=1.5, schedule_interval_seconds=1800.0)
    text = generate_latest(registry)
    for name in (
        "kubeloop_drift_score",
        "kubeloop_drift_detected",
        "kubeloop_drift_share",
        "kubeloop_drift_rows",
        "kubeloop_drift_last_success_timestamp_seconds",
        "kubeloop_drift_schedule_interval_seconds",
    ):
        assert f"# TYPE {name} gauge" in text.decode(), name
    promtool_check_metrics(text)


def test_operator_metrics_endpoint_is_promtool_clean() -> None:
    """The operator's /metrics: every kubeloop_* collector that importing the controller
    registers (kopf handlers included), with samples, served by the same
    `prometheus_client.start_http_server` that `kubeloop operator` starts, fetched over HTTP."""
    import urllib.request

    from prometheus_client import REGISTRY, start_http_server

    import kubeloop.controller  # registers every handler module, and with them their metrics
    from kubeloop.controller import status

    status.RECONCILES.labels(namespace="ml", kind="TrainingPipeline", result="ok").inc()
    status.RECONCILES.labels(namespace="ml", kind="ModelDeployment", result="error").inc()
    status.RECONCILE_SECONDS.labels(namespace="ml", kind="TrainingPipeline").observe(0.25)
    # A pipeline of its own: the registry is the process's, and other tests record runs too.
    status.RUNS.labels(namespace="ml", pipeline="exposition", result="Promoted").inc()
    names = {
        metric.name
        for metric in REGISTRY.collect()
        if metric.name.startswith("kubeloop_") and "inference" not in metric.name
    }
    assert kubeloop.controller.__all__  # the import above is what registers them
    server, thread = start_http_server(0, addr="127.0.0.1")
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            assert response.status == 200
            body = response.read()
    finally:
        server.shutdown()
        thread.join(timeout=5)
    text = body.decode()
    assert "# TYPE kubeloop_reconcile_total counter" in text
    assert "# TYPE kubeloop_reconcile_duration_seconds histogram" in text
    assert (
        'kubeloop_training_runs_total{namespace="ml",pipeline="exposition",result="Promoted"} 1.0'
        in text
    )
    for name in names:
        assert f"# TYPE {name}" in text, name  # counters: family name without _total
    promtool_check_metrics(body)
