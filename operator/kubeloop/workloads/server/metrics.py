"""Prometheus metrics of the server (names per DESIGN.md: base units, `_total`, `_seconds`).

With several worker processes, prometheus_client's multiprocess mode (env
PROMETHEUS_MULTIPROC_DIR, set by `main` before the workers start) sums them at `/metrics`.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["CONTENT_TYPE_LATEST", "ServerMetrics"]

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class ServerMetrics:
    """The server's metric families, on a registry of its own (one per app, so tests can run
    several servers in one process)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        reg = self.registry
        self.requests = Counter(
            "kubeloop_inference_requests",
            "Inference requests answered, by model, version, HTTP status code (gRPC answers "
            "count under the HTTP code of the same meaning) and protocol (rest, grpc).",
            ["model", "version", "code", "protocol"],
            registry=reg,
        )
        self.duration = Histogram(
            "kubeloop_inference_request_duration_seconds",
            "Time from request received to response sent, for infer requests.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        ).labels(model)
        self.batch_size = Histogram(
            "kubeloop_inference_batch_size",
            "Rows per model call after adaptive batching.",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=reg,
        ).labels(model)
        self.in_flight = Gauge(
            "kubeloop_inference_requests_in_flight",
            "Infer requests received and not yet answered.",
            ["model"],
            registry=reg,
            multiprocess_mode="livesum",
        ).labels(model)
        self.unauthorized = Counter(
            "kubeloop_inference_unauthorized_requests",
            "Requests refused with 401: no bearer token, or a wrong one.",
            ["model"],
            registry=reg,
        ).labels(model)
        self.log_written = Counter(
            "kubeloop_payload_log_rows_written",
            "Payload-log rows written to Parquet.",
            ["model"],
            registry=reg,
        ).labels(model)
        self.log_dropped = Counter(
            "kubeloop_payload_log_rows_dropped",
            "Payload-log rows dropped (memory bound reached, or a write failed), by reason.",
            ["model", "reason"],
            registry=reg,
        )

    def exposition(self) -> bytes:
        """The text format for GET /metrics (summed over workers in multiprocess mode)."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
