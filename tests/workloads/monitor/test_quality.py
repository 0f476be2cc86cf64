"""Data quality of the window, computed by the monitor on small in-memory data: each incident
the spec's checks name (nulls, out of range, unseen category, missing column, wrong type) gives
QualityIssue naming the feature; the result, the report and the metrics carry it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from kubeloop.api.monitor import DriftMonitorSpec
from kubeloop.workloads.monitor.main import run_check
from kubeloop.workloads.monitor.quality import SchemaTally, add_quality_metrics, judge_quality

from .conftest import NOW, mixed_table, write_logs

Run = Callable[..., tuple[int, dict[str, Any]]]


def _replace(table: pa.Table, name: str, values: list[Any]) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, pa.array(values))


def _forty_percent_nulls(table: pa.Table) -> pa.Table:
    tenure = table.column("tenure").to_pylist()
    return _replace(table, "tenure", [None if i % 5 < 2 else v for i, v in enumerate(tenure)])


def _out_of_range(table: pa.Table) -> pa.Table:
    charges = table.column("charges").to_numpy().copy()
    charges[::10] = 1e6  # 10 % far above the training maximum
    return _replace(table, "charges", charges.tolist())


def _unseen(table: pa.Table) -> pa.Table:
    contract = table.column("contract").to_pylist()
    return _replace(
        table, "contract", ["weekly" if i % 5 == 0 else c for i, c in enumerate(contract)]
    )


def _missing_column(table: pa.Table) -> pa.Table:
    return table.drop_columns(["charges"])


def _wrong_type(table: pa.Table) -> pa.Table:
    return _replace(
        table, "tenure", [f"{v:.1f} months" for v in table.column("tenure").to_pylist()]
    )


@pytest.mark.parametrize(
    ("incident", "expected"),
    [
        (None, []),
        (_forty_percent_nulls, [("tenure", "nullShare", 0.4)]),
        (_out_of_range, [("charges", "outOfRangeShare", 0.1)]),
        (_unseen, [("contract", "unseenCategoryShare", 0.2)]),
        (_missing_column, [("charges", "missingColumnShare", 1.0)]),
        (_wrong_type, [("tenure", "typeMismatchShare", 1.0)]),
    ],
    ids=["clean", "nulls", "out-of-range", "unseen-category", "missing-column", "wrong-type"],
)
def test_each_incident_is_a_quality_issue_naming_its_feature(
    tmp_path: Path,
    version_dir: Path,
    hours_ago: Callable[[float], datetime],
    incident: Callable[[pa.Table], pa.Table] | None,
    expected: list[tuple[str, str, float]],
) -> None:
    table = mixed_table(np.random.default_rng(3), 1_000)
    write_logs(tmp_path / "logs", incident(table) if incident else table, hours_ago(1))
    spec = DriftMonitorSpec.model_validate({"deploymentRef": {"name": "churn"}})
    tally = SchemaTally()
    drift, accumulators = run_check(
        spec, f"file://{tmp_path / 'logs'}", f"file://{version_dir}", NOW, tally
    )
    quality = judge_quality(accumulators, tally, spec.quality, enough_rows=True)
    got = [(i.feature, i.check, round(i.value, 3)) for i in quality.issues]
    assert got == expected
    assert quality.verdict == ("QualityIssue" if expected else "OK")
    assert drift.rows == 1_000  # a broken column never stops the drift check


def test_the_result_report_and_metrics_carry_the_quality_verdict(
    tmp_path: Path, version_dir: Path, run_monitor: Run, hours_ago: Callable[[float], datetime]
) -> None:
    table = _forty_percent_nulls(mixed_table(np.random.default_rng(4), 1_000))
    write_logs(tmp_path / "logs", table, hours_ago(1))
    code, result = run_monitor(
        {
            "KUBELOOP_PAYLOAD_LOG_URI": f"file://{tmp_path / 'logs'}",
            "KUBELOOP_REFERENCE_URI": f"file://{version_dir}",
            "KUBELOOP_REPORT_URI": f"file://{tmp_path}/reports/",
        }
    )
    assert code == 0
    assert result["quality"] == {
        "verdict": "QualityIssue",
        "issues": [{"feature": "tenure", "check": "nullShare", "value": 0.4, "threshold": 0.1}],
    }
    assert result["features"]["tenure"]["drifted"]  # nulls are drift too; quality says why
    report = Path(result["reportUri"].removeprefix("file://")).read_text()
    assert "<h2>Data quality</h2><p>Verdict <b>QualityIssue</b>" in report

    spec = {"deploymentRef": {"name": "churn"}, "quality": {"enabled": False}}
    code, result = run_monitor(
        {
            "KUBELOOP_PAYLOAD_LOG_URI": f"file://{tmp_path / 'logs'}",
            "KUBELOOP_REFERENCE_URI": f"file://{version_dir}",
            "KUBELOOP_MONITOR_SPEC": json.dumps(spec),
        }
    )
    assert code == 0 and "quality" not in result


def test_quality_metrics() -> None:
    from kubeloop.api.quality import QualityFinding
    from kubeloop.decide.quality import QualityVerdict

    issue = QualityFinding(feature="tenure", check="nullShare", value=0.4, threshold=0.1)
    shares = {("tenure", "nullShare"): 0.4, ("contract", "unseenCategoryShare"): 0.0}
    registry = CollectorRegistry()
    add_quality_metrics(registry, QualityVerdict("QualityIssue", (issue,), shares))
    text = generate_latest(registry).decode()
    assert 'kubeloop_data_quality{check="nullShare",feature="tenure"} 0.4' in text
    assert 'kubeloop_data_quality_check_failed{check="nullShare",feature="tenure"} 1.0' in text
    assert (
        'kubeloop_data_quality_check_failed{check="unseenCategoryShare",feature="contract"} 0.0'
        in text
    )
    assert "kubeloop_data_quality_issue 1.0" in text
