"""The metrics path for real: `kubeloop monitor` pushes to a Pushgateway, a Prometheus scrapes it
(honor_labels: true, 1 s interval), and Prometheus' HTTP API returns the drift series with the
grouping-key labels namespace and monitor. Both are the Debian binaries, on loopback."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.pushgateway import PUSHGATEWAY, start_pushgateway

from .conftest import mixed_table, write_logs

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(
    not (PUSHGATEWAY and PROMETHEUS),
    reason="needs the Debian packages prometheus and prometheus-pushgateway (make system-deps)",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _wait_ready(url: str, process: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(url)


@pytest.fixture(scope="module")
def prometheus_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(Pushgateway URL, Prometheus URL), both started here and stopped afterwards."""
    work = tmp_path_factory.mktemp("prometheus")
    push_url, pushgateway = start_pushgateway(work)  # its own persistence file
    push_port = int(push_url.rsplit(":", 1)[1])
    prom_port = _free_port()
    prom_url = f"http://127.0.0.1:{prom_port}"
    config = work / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: pushgateway\n"
        "    honor_labels: true\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{push_port}']}}]\n"
    )
    processes = [
        pushgateway,
        subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={config}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        deadline = time.monotonic() + 30
        _wait_ready(f"{prom_url}/-/ready", processes[1], deadline)
        yield push_url, prom_url
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def _query(prom_url: str, expr: str, want: Callable[[list[Any]], bool]) -> list[Any]:
    deadline = time.monotonic() + 30
    result: list[Any] = []
    while time.monotonic() < deadline:
        url = f"{prom_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        result = _get(url)["data"]["result"]
        if want(result):
            return result
        time.sleep(0.5)
    return result


def test_drift_scores_reach_prometheus_through_the_pushgateway(
    prometheus_stack: tuple[str, str],
    tmp_path: Path,
    version_dir: Path,
    run_monitor: Callable[..., tuple[int, dict[str, Any]]],
    hours_ago: Callable[[float], datetime],
) -> None:
    push_url, prom_url = prometheus_stack
    write_logs(tmp_path / "logs", mixed_table(np.random.default_rng(1), 2_000, 1.0), hours_ago(1))
    code, result = run_monitor(
        {
            "KUBELOOP_PAYLOAD_LOG_URI": f"file://{tmp_path / 'logs'}",
            "KUBELOOP_REFERENCE_URI": f"file://{version_dir}",
            "KUBELOOP_PUSHGATEWAY_URL": push_url,
        }
    )
    assert (code, result["verdict"], result["pushed"]) == (0, "Drift", True)

    scores = _query(
        prom_url,
        'kubeloop_drift_score{namespace="ml",monitor="churn-drift"}',
        lambda r: len(r) >= 14,
    )
    series = {(s["metric"]["feature"], s["metric"]["test"]): float(s["value"][1]) for s in scores}
    # Every test of every feature, with the p-value tests' effect sizes: 5 numeric scores x 2
    # + 4 categorical ones.
    assert set(series) == {
        *(
            (f, t)
            for f in ("tenure", "charges")
            for t in ("psi", "ks", "ks_statistic", "wasserstein", "jensenshannon")
        ),
        *(("contract", t) for t in ("chi2", "cramers_v", "jensenshannon", "psi")),
    }
    assert series[("tenure", "psi")] == pytest.approx(
        result["features"]["tenure"]["score"], abs=1e-6
    )
    assert all(s["metric"]["job"] == "kubeloop-drift-monitor" for s in scores)

    detected = _query(prom_url, 'kubeloop_drift_detected{monitor="churn-drift"}', bool)
    assert [float(s["value"][1]) for s in detected] == [1.0]
    rows = _query(prom_url, 'kubeloop_drift_rows{namespace="ml"}', bool)
    assert [float(s["value"][1]) for s in rows] == [2_000.0]
    share = _query(prom_url, "kubeloop_drift_share", bool)
    assert float(share[0]["value"][1]) == 1.0
    stamp = _query(prom_url, "kubeloop_drift_last_success_timestamp_seconds", bool)
    assert abs(float(stamp[0]["value"][1]) - time.time()) < 120
