"""Canary analysis: the canary pods' own request counters, read from their `/metrics`.

The server counts every answered request in `kubeloop_inference_requests_total{code}` (see
kubeloop.workloads.server.metrics). The canary's pods are fresh, so their counters cover exactly
the traffic the new version has served. Reading the pods directly needs no Prometheus; a pod
that cannot be reached (NetworkPolicy, no IP yet) is left out, and when none can be read the
verdict is `None`: without `analysis.minRequests` the rollout then moves on readiness only, with
`minRequests` set it holds until the requests can be counted; either way the condition says so.

A server with spec.tls answers only HTTPS (its probes say `scheme: HTTPS`). The operator then
reads `/metrics` without verifying the certificate: it connects to a pod IP, which is not among
the certificate's names, and it does not read the TLS Secret (it holds no Secret permissions).
What it reads is request counters, no credential goes out, and a forged answer could at worst
hold or pass one canary step, which a pod impersonating a pod IP could do anyway.

The pods are read at once (a thread each, up to 8), all within one deadline: a slow or
trickling pod is left out like an unreachable one, and never holds the reconcile longer.
"""

from __future__ import annotations

import concurrent.futures
import ssl
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from kubeloop.controller.podhttp import read_bounded
from kubeloop.decide.canary import Traffic

__all__ = ["REQUESTS_METRIC", "Traffic", "canary_traffic", "pod_metrics_url"]

REQUESTS_METRIC = "kubeloop_inference_requests_total"
_DEFAULT_PORT = 8080
_MAX_BYTES = 4 << 20  # a server's /metrics is some kilobytes
_READERS = 8


def pod_metrics_url(pod: dict[str, Any]) -> str | None:
    """`http(s)://<podIP>:<port named http>/metrics` (https when the container's readiness
    probe uses HTTPS), or None while the pod has no IP."""
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        return None
    port, scheme = _DEFAULT_PORT, "http"
    for container in (pod.get("spec") or {}).get("containers") or []:
        for declared in container.get("ports") or []:
            if declared.get("name") == "http" and declared.get("containerPort"):
                port = int(declared["containerPort"])
                probe = (container.get("readinessProbe") or {}).get("httpGet") or {}
                scheme = "https" if probe.get("scheme") == "HTTPS" else "http"
    host = f"[{ip}]" if ":" in ip else ip
    return f"{scheme}://{host}:{port}/metrics"


def _unverified() -> ssl.SSLContext:
    """TLS without certificate checks, for pod-IP reads only (see the module docstring)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _scrape(url: str, timeout: float) -> tuple[float, float] | None:
    context = _unverified() if url.startswith("https:") else None
    body = read_bounded(url, timeout, _MAX_BYTES, context)
    if body is None:
        return None
    text = body.decode("utf-8", "replace")
    requests = errors = 0.0
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name != REQUESTS_METRIC:
                    continue
                requests += sample.value
                if str(sample.labels.get("code", "")).startswith("5"):
                    errors += sample.value
    except ValueError:
        return None
    return requests, errors


def canary_traffic(pods: list[dict[str, Any]], timeout: float = 2.0) -> Traffic | None:
    """Summed request counters of the pods that answered within `timeout` (all of them read
    at once); None when none could be read."""
    urls = [
        url
        for pod in pods
        if (url := pod_metrics_url(pod)) is not None
        and not (pod.get("metadata") or {}).get("deletionTimestamp")
    ]
    if not urls:
        return None
    pool = concurrent.futures.ThreadPoolExecutor(min(_READERS, len(urls)), "kubeloop-canary")
    try:
        futures = [pool.submit(_scrape, url, timeout) for url in urls]
        done, _late = concurrent.futures.wait(futures, timeout=timeout)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a late read ends at its own deadline
    counts = [c for f in futures if f in done and (c := f.result()) is not None]
    if not counts:
        return None
    return Traffic(
        requests=sum(c[0] for c in counts), errors=sum(c[1] for c in counts), pods=len(counts)
    )
