"""Alert rules (charts/kubeloop/files/kubeloop-rules.yaml, the one source) checked and
unit-tested by the real promtool (Debian `prometheus` package, `make system-deps`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "charts" / "kubeloop" / "files" / "kubeloop-rules.yaml"
DEPLOY = ROOT / "deploy" / "prometheus"
RUNBOOKS = "https://github.com/kubeloop/kubeloop/blob/main/docs/runbooks.md"
REQUIRED_ALERTS = {
    "KubeloopOperatorDown",
    "KubeloopTrainingRunFailed",
    "KubeloopModelDeploymentDegraded",
    "KubeloopInferenceErrorRateHigh",
    "KubeloopInferenceLatencyHigh",
    "KubeloopDriftDetected",
    "KubeloopDriftMonitorNotRun",
    "KubeloopDataQualityIssue",
    "KubeloopModelPerformanceDegraded",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: run `make system-deps` (Debian package prometheus)")
    return path


def _promtool(promtool: str, *args: str) -> str:
    proc = subprocess.run(
        [promtool, *args], cwd=DEPLOY, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def _alerts() -> list[dict[str, object]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_check_rules(promtool: str) -> None:
    out = _promtool(promtool, "check", "rules", str(RULES))
    assert f"SUCCESS: {len(_alerts())} rules found" in out


def test_promtool_test_rules(promtool: str) -> None:
    out = _promtool(promtool, "test", "rules", "kubeloop-rules_test.yaml")
    assert "SUCCESS" in out


def test_deploy_rules_file_is_the_chart_file() -> None:
    assert (DEPLOY / "kubeloop-rules.yaml").resolve() == RULES.resolve()


def test_every_required_alert_exists_with_severity_and_annotations() -> None:
    alerts = _alerts()
    assert {a["alert"] for a in alerts} >= REQUIRED_ALERTS
    for alert in alerts:
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}, alert["alert"]
        assert alert["annotations"]["summary"], alert["alert"]
        assert alert["annotations"]["description"], alert["alert"]


def test_every_alert_links_its_own_runbook_section() -> None:
    """`runbook_url` = the runbooks' URL + `#<alert in lower case>`, GitHub's anchor of the
    `## <Alert>` heading, which docs/runbooks.md has for each alert and for nothing else."""
    headings = {
        line.removeprefix("## ").strip()
        for line in (ROOT / "docs" / "runbooks.md").read_text().splitlines()
        if line.startswith("## ")
    }
    alerts = _alerts()
    assert headings == {a["alert"] for a in alerts}
    for alert in alerts:
        assert alert["annotations"]["runbook_url"] == f"{RUNBOOKS}#{alert['alert'].lower()}"


def test_every_alert_is_unit_tested_firing() -> None:
    tests = yaml.safe_load((DEPLOY / "kubeloop-rules_test.yaml").read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert fired == {a["alert"] for a in _alerts()}


def test_scrape_config_example_is_valid_and_honors_pushed_labels(promtool: str) -> None:
    _promtool(promtool, "check", "config", "scrape-config.yaml")
    config = yaml.safe_load((DEPLOY / "scrape-config.yaml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["pushgateway"]["honor_labels"] is True
    # The alert rules select the operator by this job name.
    assert 'job="kubeloop-operator"' in RULES.read_text()
    assert "kubeloop-operator" in jobs
