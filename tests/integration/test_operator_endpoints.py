"""The operator's own endpoints, scraped over HTTP: Prometheus `/metrics` (reconciles by kind
and result, runs by result, drift checks by verdict) and kopf's liveness probe."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.integration.harness import JOBS, TP, Cluster, Operator, example, wait_for

from kubeloop.local.cluster.emulator import EmulatorThread


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with EmulatorThread() as thread:
        yield Cluster(thread)


@pytest.fixture(scope="module")
def ports() -> tuple[int, int]:
    return _free_port(), _free_port()


@pytest.fixture(scope="module")
def operator(cluster: Cluster, ports: tuple[int, int]) -> Iterator[Operator]:
    metrics, live = ports
    os.environ["KUBELOOP_METRICS_PORT"] = str(metrics)
    op = Operator(cluster.thread.url, liveness=f"http://127.0.0.1:{live}/healthz")
    try:
        op.start()
        yield op
    finally:
        op.stop()
        os.environ["KUBELOOP_METRICS_PORT"] = "0"


def _get(url: str) -> str | None:
    """The body, or None while nothing listens yet (kopf starts its liveness server, and the
    operator its metrics server, a moment after the operator starts: waits poll through it)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body: bytes = response.read()
            return body.decode()
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ConnectionRefusedError):
            return None
        raise


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_count_reconciles_and_runs(
    cluster: Cluster, operator: Operator, ports: tuple[int, int]
) -> None:
    cluster.create(example("churn-pipeline.yaml", name="tp-metrics"))
    wait_for(lambda: cluster.get(JOBS, "ml", "tp-metrics-run-1"), what="run 1")
    result: dict[str, Any] = {
        "kind": "TrainingResult",
        "ok": True,
        "version": "1",
        "uri": "s3://models/churn/versions/1",
        "metrics": {"roc_auc": 0.9},
    }
    cluster.finish_job("ml", "tp-metrics-run-1", result)
    wait_for(lambda: ((cluster.get(TP, "ml", "tp-metrics") or {}).get("status") or {}).get("runs"))
    url = f"http://127.0.0.1:{ports[0]}/metrics"
    text = wait_for(
        lambda: (
            (t := _get(url))
            and _samples(t).get(
                (
                    "kubeloop_training_runs_total",
                    (("namespace", "ml"), ("pipeline", "tp-metrics"), ("result", "Promoted")),
                )
            )
            and t
        ),
        what="the run in /metrics",
    )
    samples = _samples(text)
    assert (
        samples[
            (
                "kubeloop_training_runs_total",
                (("namespace", "ml"), ("pipeline", "tp-metrics"), ("result", "Promoted")),
            )
        ]
        == 1.0
    )
    ok = (
        "kubeloop_reconcile_total",
        (("kind", "TrainingPipeline"), ("namespace", "ml"), ("result", "ok")),
    )
    assert samples[ok] >= 2  # create, the Job's completion, timers
    count = (
        "kubeloop_reconcile_duration_seconds_count",
        (("kind", "TrainingPipeline"), ("namespace", "ml")),
    )
    assert samples[count] >= samples[ok]
    promtool = shutil.which("promtool")
    if promtool:  # the format, checked by Prometheus' own linter where it is installed
        checked = subprocess.run(
            [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
        )
        assert "error" not in (checked.stdout + checked.stderr).lower(), checked.stderr


def test_liveness_endpoint(operator: Operator, ports: tuple[int, int]) -> None:
    body = wait_for(lambda: _get(f"http://127.0.0.1:{ports[1]}/healthz"), what="liveness")
    # kopf's probe results: one probe, which says this process reconciles alone (no Lease).
    assert json.loads(body) == {"leadership": {"role": "standalone"}}
