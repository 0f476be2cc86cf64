"""Where a DriftMonitor's checks write their HTML reports (spec.report)."""

from __future__ import annotations

from typing import Any

import pytest

from kubeloop.api.monitor import DriftMonitorSpec
from kubeloop.resources.monitoring import report_folder


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ({}, None),  # off by default: no KUBELOOP_REPORT_URI
        ({"enabled": True}, "s3://logs/churn/_reports/churn-drift/"),
        ({"enabled": True, "destination": "s3://reports/churn/"}, "s3://reports/churn/"),
        ({"enabled": False, "destination": "s3://reports/churn/"}, None),
    ],
)
def test_report_folder(report: dict[str, Any], expected: str | None) -> None:
    spec = DriftMonitorSpec.model_validate({"deploymentRef": {"name": "churn"}, "report": report})
    assert report_folder(spec, "s3://logs/churn/", "churn-drift") == expected
