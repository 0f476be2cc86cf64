"""Canary analysis reads the canary pods' own /metrics, over HTTPS when the server has TLS.

The server is a real `kubeloop serve` with a test certificate and a token (as a pod with
spec.auth and spec.tls runs it); the pod the analysis reads is the one the real builder makes.
"""

from __future__ import annotations

import contextlib
import copy
import http.server
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
from tests.workloads.server.conftest import churn_version, make_certificate, start_server

from kubeloop.api.deployment import ModelDeploymentSpec
from kubeloop.controller.canary_analysis import canary_traffic, pod_metrics_url
from kubeloop.resources.common import Owner, WorkloadDefaults
from kubeloop.resources.serving import build_server_deployment

OWNER = Owner("kubeloop.io/v1alpha1", "ModelDeployment", "churn", "ml", "uid-1")
SECURED = {
    "auth": {"tokenSecretRef": {"name": "churn-token", "key": "token"}},
    "tls": {"secretRef": {"name": "churn-tls"}},
}


def _pod(spec: dict[str, Any], ip: str | None = "10.0.0.7", port: int = 8080) -> dict[str, Any]:
    model = ModelDeploymentSpec.model_validate({"model": {"uri": "s3://models/v/1"}, **spec})
    template = build_server_deployment(
        OWNER, model, model_uri="s3://models/v/1", model_version="1",
        defaults=WorkloadDefaults(), track="canary",
    )["spec"]["template"]  # fmt: skip
    pod_spec = copy.deepcopy(template["spec"])
    pod_spec["containers"][0]["ports"][0]["containerPort"] = port
    return {"metadata": template["metadata"], "spec": pod_spec, "status": {"podIP": ip}}


@pytest.mark.parametrize(
    ("spec", "ip", "url"),
    [
        ({}, "10.0.0.7", "http://10.0.0.7:8080/metrics"),
        ({"auth": SECURED["auth"]}, "10.0.0.7", "http://10.0.0.7:8080/metrics"),
        (SECURED, "10.0.0.7", "https://10.0.0.7:8080/metrics"),
        (SECURED, "fd00::7", "https://[fd00::7]:8080/metrics"),
        (SECURED, None, None),
    ],
)
def test_pod_metrics_url(spec: dict[str, Any], ip: str | None, url: str | None) -> None:
    assert pod_metrics_url(_pod(spec, ip)) == url


def test_reads_the_counters_of_a_tls_server_with_auth(tmp_path: Path) -> None:
    cert, key, ca = make_certificate(tmp_path / "tls")
    server = start_server(
        tmp_path,
        churn_version(tmp_path / "versions" / "3"),
        tls=ssl.create_default_context(cadata=ca.decode()),
        KUBELOOP_TLS_CERT_FILE=str(cert),
        KUBELOOP_TLS_KEY_FILE=str(key),
        KUBELOOP_AUTH_TOKEN="t0ken",
    )
    try:
        for _ in range(3):
            status, _doc = server.post(
                "/v2/models/churn/infer", b"{}", {"Authorization": "Bearer t0ken"}
            )
            assert status == 400  # answered (and counted) by the model server
        traffic = canary_traffic([_pod(SECURED, "127.0.0.1", server.port)])
        assert traffic is not None, "the analysis could not read the TLS server's /metrics"
        assert (traffic.requests, traffic.errors, traffic.pods) == (3, 0, 1)
    finally:
        server.stop()


class _Metrics(http.server.BaseHTTPRequestHandler):
    """`/metrics` as the model server's prometheus_client writes it, 7 requests, 2 of them 5xx."""

    def do_GET(self) -> None:
        registry = prometheus_client.CollectorRegistry()
        counter = prometheus_client.Counter(
            "kubeloop_inference_requests", "Requests.", ["code"], registry=registry
        )
        counter.labels("200").inc(5)
        counter.labels("503").inc(2)
        body = prometheus_client.generate_latest(registry)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _trickler(stop: threading.Event) -> socket.socket:
    """A pod that accepts, then sends its answer a byte every 50 ms, forever."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n#")
            while not stop.wait(0.05):
                conn.sendall(b" ")

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener


def test_pods_are_read_at_once_and_a_trickling_pod_is_left_out_at_the_deadline() -> None:
    """Two healthy canary pods and three that trickle their answer: the healthy ones count,
    the others are left out, and the whole read ends near one deadline (read one after another,
    three trickling pods alone would take three)."""
    stop = threading.Event()
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Metrics) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    trickling = [_trickler(stop) for _ in range(3)]
    ports = [s.server_address[1] for s in servers] + [t.getsockname()[1] for t in trickling]
    try:
        started = time.monotonic()
        traffic = canary_traffic([_pod({}, "127.0.0.1", int(port)) for port in ports], 1.0)
        took = time.monotonic() - started
        assert traffic is not None
        assert (traffic.requests, traffic.errors, traffic.pods) == (14, 4, 2)
        assert took < 2.5, f"{took:.1f} s: the pods were not read within one deadline"
    finally:
        stop.set()
        for server in servers:
            server.shutdown()
        for listener in trickling:
            listener.close()
