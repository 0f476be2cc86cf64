"""`kubeloop monitor` end to end on payload logs in the server's layout: verdicts, NoData,
partition pruning, a Parquet reference, the report, and failures a person can act on."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kubeloop.workloads.result import MAX_BYTES

from .conftest import mixed_table, write_logs

Run = Callable[..., tuple[int, dict[str, Any]]]


def _env(logs: Path, reference: Path | str, **extra: str) -> dict[str, str]:
    ref = reference if isinstance(reference, str) else f"file://{reference}"
    return {"KUBELOOP_PAYLOAD_LOG_URI": f"file://{logs}", "KUBELOOP_REFERENCE_URI": ref, **extra}


def test_shifted_traffic_is_drift_and_exit_zero(
    tmp_path: Path, version_dir: Path, run_monitor: Run, hours_ago: Callable[[float], datetime]
) -> None:
    rng = np.random.default_rng(1)
    for h in (1, 5, 20):
        write_logs(tmp_path / "logs", mixed_table(rng, 1_000, shift=1.0), hours_ago(h), str(h))
    code, result = run_monitor(
        _env(tmp_path / "logs", version_dir, KUBELOOP_REPORT_URI=f"file://{tmp_path}/reports")
    )
    assert code == 0
    assert (result["kind"], result["verdict"], result["rows"]) == ("DriftResult", "Drift", 3_000)
    assert result["driftShare"] == 1.0
    assert result["modelVersion"] == "3"
    assert set(result["features"]) == {"tenure", "charges", "contract"}
    assert result["features"]["tenure"]["test"] == "psi"
    assert result["features"]["contract"]["test"] == "chi2"
    report = Path(result["reportUri"].removeprefix("file://")).read_text()
    assert report.count("<svg") == 3 and "Drift" in report


def test_same_distribution_is_no_drift(
    tmp_path: Path, version_dir: Path, run_monitor: Run, hours_ago: Callable[[float], datetime]
) -> None:
    write_logs(tmp_path / "logs", mixed_table(np.random.default_rng(2), 3_000), hours_ago(2))
    spec = {"deploymentRef": {"name": "churn"}, "tests": {"numeric": "wasserstein"}}
    code, result = run_monitor(
        _env(tmp_path / "logs", version_dir, KUBELOOP_MONITOR_SPEC=json.dumps(spec))
    )
    assert (code, result["verdict"], result["driftShare"]) == (0, "NoDrift", 0.0)
    assert result["features"]["tenure"]["test"] == "wasserstein"
    assert result["features"]["tenure"]["threshold"] == 0.1


def test_no_logs_at_all_is_nodata(tmp_path: Path, version_dir: Path, run_monitor: Run) -> None:
    code, result = run_monitor(_env(tmp_path / "never-written", version_dir))
    assert (code, result["ok"], result["verdict"], result["rows"]) == (0, True, "NoData", 0)


def test_window_below_min_rows_is_nodata(
    tmp_path: Path, version_dir: Path, run_monitor: Run, hours_ago: Callable[[float], datetime]
) -> None:
    rng = np.random.default_rng(3)
    write_logs(tmp_path / "logs", mixed_table(rng, 50, shift=2.0), hours_ago(1))
    write_logs(tmp_path / "logs", mixed_table(rng, 5_000, shift=2.0), hours_ago(30))  # too old
    code, result = run_monitor(_env(tmp_path / "logs", version_dir))
    assert (code, result["verdict"], result["rows"], result["features"]) == (0, "NoData", 50, {})


def test_partitions_outside_the_window_are_never_opened(
    tmp_path: Path, version_dir: Path, run_monitor: Run, hours_ago: Callable[[float], datetime]
) -> None:
    write_logs(tmp_path / "logs", mixed_table(np.random.default_rng(4), 500), hours_ago(1))
    old = hours_ago(48)
    folder = tmp_path / "logs" / f"dt={old:%Y-%m-%d}" / f"hour={old:%H}"
    folder.mkdir(parents=True)
    (folder / "part-broken.parquet").write_bytes(b"not parquet")  # reading it would fail
    code, result = run_monitor(_env(tmp_path / "logs", version_dir))
    assert (code, result["verdict"], result["rows"]) == (0, "NoDrift", 500)


def test_broken_file_inside_the_window_fails_instead_of_nodata(
    tmp_path: Path, version_dir: Path, run_monitor: Run, hours_ago: Callable[[float], datetime]
) -> None:
    write_logs(tmp_path / "logs", mixed_table(np.random.default_rng(4), 500), hours_ago(3))
    now = hours_ago(1)
    folder = tmp_path / "logs" / f"dt={now:%Y-%m-%d}" / f"hour={now:%H}"
    folder.mkdir(parents=True)
    (folder / "part-broken.parquet").write_bytes(b"not parquet")
    code, result = run_monitor(_env(tmp_path / "logs", version_dir))
    assert (code, result["verdict"]) == (1, "Failed")
    assert "part-broken.parquet" in result["message"]


def test_rows_outside_the_window_inside_a_kept_partition_are_filtered(
    tmp_path: Path, version_dir: Path, run_monitor: Run, hours_ago: Callable[[float], datetime]
) -> None:
    # Window 24h ending 10:30: the 10:xx partition of the day before is kept (10:30 - 24h),
    # but its rows stamped 10:00 are before the window start.
    write_logs(tmp_path / "logs", mixed_table(np.random.default_rng(5), 400), hours_ago(24.5))
    write_logs(tmp_path / "logs", mixed_table(np.random.default_rng(6), 300), hours_ago(23.9))
    code, result = run_monitor(_env(tmp_path / "logs", version_dir))
    assert (code, result["rows"]) == (0, 300)


@pytest.mark.parametrize("as_file", [False, True], ids=["folder", "single-file"])
def test_parquet_reference_is_profiled_and_extra_columns_ignored(
    tmp_path: Path, run_monitor: Run, hours_ago: Callable[[float], datetime], as_file: bool
) -> None:
    rng = np.random.default_rng(7)
    reference = mixed_table(rng, 5_000).append_column(
        "churned", pa.array(rng.integers(0, 2, 5_000))
    )
    (tmp_path / "train").mkdir()
    pq.write_table(reference, tmp_path / "train" / "part-0.parquet")
    write_logs(tmp_path / "logs", mixed_table(rng, 2_000, shift=1.0), hours_ago(1))
    # A folder of Parquet files, or one file (its URI has no profile.json under it).
    uri = tmp_path / "train" / "part-0.parquet" if as_file else tmp_path / "train"
    code, result = run_monitor(_env(tmp_path / "logs", uri))
    assert (code, result["verdict"]) == (0, "Drift")
    assert set(result["features"]) == {"tenure", "charges", "contract"}  # not the target


def test_spec_features_restrict_the_check(
    tmp_path: Path, version_dir: Path, run_monitor: Run, hours_ago: Callable[[float], datetime]
) -> None:
    write_logs(tmp_path / "logs", mixed_table(np.random.default_rng(8), 500), hours_ago(1))
    spec = json.dumps({"deploymentRef": {"name": "churn"}, "features": ["contract"]})
    _, result = run_monitor(_env(tmp_path / "logs", version_dir, KUBELOOP_MONITOR_SPEC=spec))
    assert set(result["features"]) == {"contract"}


def test_many_features_fit_the_termination_message(
    tmp_path: Path, run_monitor: Run, hours_ago: Callable[[float], datetime]
) -> None:
    rng = np.random.default_rng(9)
    names = [f"feature_with_a_long_name_{i:03d}" for i in range(120)]
    reference = pa.table({n: rng.normal(0, 1, 2_000) for n in names})
    (tmp_path / "train").mkdir()
    pq.write_table(reference, tmp_path / "train" / "part-0.parquet")
    current = pa.table({n: rng.normal(1.0 if i < 5 else 0.0, 1, 500) for i, n in enumerate(names)})
    write_logs(tmp_path / "logs", current, hours_ago(1))
    code, result = run_monitor(_env(tmp_path / "logs", tmp_path / "train"))
    text = (tmp_path / "termination-log").read_text()
    assert code == 0 and len(text.encode()) <= MAX_BYTES
    assert result["featuresOmitted"] == 120 - len(result["features"])
    # Drifted features are kept first.
    assert {f"feature_with_a_long_name_{i:03d}" for i in range(5)} <= set(result["features"])


def test_missing_reference_fails_with_a_reason(tmp_path: Path, run_monitor: Run) -> None:
    code, result = run_monitor(_env(tmp_path / "logs", tmp_path / "no-such-version"))
    assert code == 1
    assert (result["ok"], result["verdict"]) == (False, "Failed")
    assert "no-such-version" in result["message"]


def test_unknown_spec_feature_is_named(tmp_path: Path, version_dir: Path, run_monitor: Run) -> None:
    spec = json.dumps({"deploymentRef": {"name": "churn"}, "features": ["tenure", "age"]})
    code, result = run_monitor(_env(tmp_path / "logs", version_dir, KUBELOOP_MONITOR_SPEC=spec))
    assert code == 1 and "['age']" in result["message"]
