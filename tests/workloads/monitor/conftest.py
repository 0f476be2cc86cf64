"""Fixtures of the drift-monitor tests.

Real: Parquet payload logs on disk (the exact layout the server writes), profiles from
`kubeloop.profile`, scipy as the statistics reference, and a real Pushgateway scraped by a real
Prometheus on loopback. Nothing is mocked.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kubeloop.profile import build_profile

NOW = datetime(2026, 11, 23, 10, 30, tzinfo=UTC)


def write_logs(root: Path, table: pa.Table, when: datetime, part: str = "0") -> None:
    """Write `table` as one payload-log file in the hour partition of `when`."""
    rows = table.num_rows
    table = table.append_column("_ts", pa.array([when] * rows, pa.timestamp("us", tz="UTC")))
    table = table.append_column("_model_version", pa.array(["3"] * rows))
    table = table.append_column("_request_id", pa.array([f"r{i}" for i in range(rows)]))
    table = table.append_column("_prediction", pa.array(["0"] * rows))
    folder = root / f"dt={when:%Y-%m-%d}" / f"hour={when:%H}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / f"part-{part}.parquet")


def mixed_table(rng: np.random.Generator, rows: int, shift: float = 0.0) -> pa.Table:
    """Two numeric and one categorical feature; `shift` moves every distribution."""
    probabilities = np.array([0.5 - shift / 4, 0.3, 0.2 + shift / 4])
    return pa.table(
        {
            "tenure": rng.normal(10.0 + 3.0 * shift, 3.0, rows),
            "charges": rng.gamma(2.0, 30.0, rows) * (1.0 + shift),
            "contract": rng.choice(["monthly", "yearly", "two-year"], rows, p=probabilities),
        }
    )


@pytest.fixture
def version_dir(tmp_path: Path) -> Path:
    """A model version folder with a profile.json of 20k reference rows."""
    folder = tmp_path / "models" / "versions" / "3"
    folder.mkdir(parents=True)
    table = mixed_table(np.random.default_rng(7), 20_000)
    profile = build_profile(table, ["tenure", "charges"], ["contract"])
    (folder / "profile.json").write_text(json.dumps(profile))
    return folder


@pytest.fixture
def run_monitor(tmp_path: Path) -> Callable[..., tuple[int, dict[str, Any]]]:
    """Run `kubeloop monitor` in-process with env as the CronJob sets it; return (exit, result)."""
    from kubeloop.workloads.monitor.main import main

    def run(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
        result_path = tmp_path / "termination-log"
        base = {
            "KUBELOOP_MONITOR": "churn-drift",
            "KUBELOOP_NAMESPACE": "ml",
            "KUBELOOP_RESULT_PATH": str(result_path),
            "KUBELOOP_NOW": NOW.isoformat(),
            "KUBELOOP_MODEL_VERSION": "3",
        }
        saved = dict(os.environ)
        os.environ.update({**base, **env})
        try:
            code = main(list(args))
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return code, json.loads(result_path.read_text())

    return run


@pytest.fixture
def hours_ago() -> Callable[[float], datetime]:
    """A time `h` hours before the monitor's fixed now."""
    return lambda h: NOW - timedelta(hours=h)
