"""Drift monitoring through S3 faults: `kubeloop monitor` reads a day of payload logs and the
version's reference profile from S3 through the fault proxy in front of moto. It must reach the
same verdict and row count as without faults, or fail with a clear reason.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from tests.reliability.faultproxy import FaultPlan, fault_proxy
from tests.workloads.monitor.conftest import (  # the last two are fixtures, used below
    NOW,
    mixed_table,
    run_monitor,
    version_dir,
    write_logs,
)

from kubeloop.storage import S3Store, join

__all__ = ["run_monitor", "version_dir"]


def _upload(folder: Path, prefix: str) -> None:
    store = S3Store()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            store.write_bytes(join(prefix, path.relative_to(folder).as_posix()), path.read_bytes())


def test_monitoring_through_s3_faults_reaches_the_same_verdict(
    bucket: str,
    s3_endpoint: str,
    tmp_path: Path,
    version_dir: Path,
    run_monitor: Any,
) -> None:
    rng = np.random.default_rng(11)
    logs = tmp_path / "logs"
    for hours in (1, 3, 6, 12, 20):
        write_logs(logs, mixed_table(rng, 800, shift=1.0), NOW - timedelta(hours=hours), str(hours))
    _upload(logs, join(bucket, "logs/churn"))
    _upload(version_dir, join(bucket, "models/churn/versions/3"))
    env = {
        "KUBELOOP_PAYLOAD_LOG_URI": join(bucket, "logs/churn/"),
        "KUBELOOP_REFERENCE_URI": join(bucket, "models/churn/versions/3"),
    }
    code, clean = run_monitor(env)
    assert (code, clean["verdict"], clean["rows"]) == (0, "Drift", 4_000)
    plan = FaultPlan({"ok": 0.8, "throttle": 0.07, "error": 0.07, "lost": 0.06}, seed=23)
    with fault_proxy(s3_endpoint, plan) as proxy:
        saved = os.environ.get("AWS_ENDPOINT_URL")
        os.environ.update(AWS_ENDPOINT_URL=proxy, AWS_MAX_ATTEMPTS="10")
        try:
            code, faulty = run_monitor(env)
        finally:
            os.environ["AWS_ENDPOINT_URL"] = saved or ""
            os.environ.pop("AWS_MAX_ATTEMPTS", None)
    print(
        f"\nRELIABILITY monitoring-s3-faults: requests={sum(plan.counts.values())}, "
        f"faults={plan.faults}, exit={code}, verdict={faulty['verdict']}, rows={faulty['rows']}"
    )
    assert plan.faults > 0
    assert code == 0
    assert (faulty["verdict"], faulty["rows"], faulty["driftShare"]) == (
        clean["verdict"],
        clean["rows"],
        clean["driftShare"],
    )
