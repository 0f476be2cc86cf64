"""The demo's summary, HTML report (inline SVG) and plain live view, from known inputs."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from kubeloop.api.monitor import PerformanceStatus
from kubeloop.local.demo.liveview import PlainView
from kubeloop.local.demo.report import (
    DRIFTED,
    bar_chart,
    render_summary,
    rollout_buckets,
    write_html,
)
from kubeloop.local.demo.scenario import DemoResult, DriftCheck
from kubeloop.local.demo.traffic import TrafficStats

SVG = "{http://www.w3.org/2000/svg}"


def _bars(svg: str) -> list[ET.Element]:
    root = ET.fromstring(svg)
    # Bars carry a <title>; legend swatches do not.
    return [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]


def test_bar_chart_draws_one_bar_per_value_scaled_and_highlighted() -> None:
    svg = bar_chart(
        "t",
        ["a", "b", "c"],
        [("x", [1.0, 2.0, None]), ("y", [4.0, 0.5, 3.0])],
        threshold=2.0,
        highlight=[[False, False, False], [True, False, False]],
        ymax=4.0,
    )
    bars = _bars(svg)
    assert len(bars) == 5  # the None is not drawn
    heights = {b.find(f"{SVG}title").text: float(b.get("height")) for b in bars}  # type: ignore[union-attr]
    plot_h = 260 - 30 - 60
    assert heights["y a: 4"] == plot_h  # ymax -> full height
    assert heights["x b: 2"] == plot_h / 2
    assert [b.get("fill") for b in bars if b.get("fill") == DRIFTED] == [DRIFTED]
    assert "threshold 2" in svg


def test_a_drifted_zero_p_value_stays_visible_labelled_and_legends_do_not_overlap() -> None:
    svg = bar_chart(
        "chi2",
        ["contract"],
        [("churn-manual-j2x8v (NoDrift)", [0.59]), ("churn-manual-h7w8r (Drift)", [0.0])],
        threshold=0.05,
        highlight=[[False], [True]],
        labels=True,
    )
    drifted = [b for b in _bars(svg) if b.get("fill") == DRIFTED]
    assert len(drifted) == 1 and float(drifted[0].get("height", 0)) >= 3  # not a 0 px bar
    root = ET.fromstring(svg)
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "0.59" in texts and "0" in texts  # each value printed over its bar
    swatches = [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is None]
    first, second = (float(r.get("x", 0)) for r in swatches)
    assert second - first > 14 + 6 * len("churn-manual-j2x8v (NoDrift)")  # room for the label


def test_rollout_buckets_count_answers_per_second_by_version() -> None:
    seconds, counts = rollout_buckets([(0.1, "1"), (0.5, "1"), (1.2, "2"), (2.9, "2"), (2.1, "1")])
    assert seconds == ["0", "1", "2"]
    assert counts == {"1": [2, 0, 1], "2": [0, 1, 1]}
    assert rollout_buckets([]) == ([], {})


def _result(tmp_path: Path) -> DemoResult:
    result = DemoResult(tmp_path, seconds=97.0)
    metrics = {"roc_auc": 0.79, "accuracy": 0.77, "f1": 0.5, "log_loss": 0.5}
    result.pipeline = {
        "champion": {"version": "2"},
        "runs": [
            {"id": "2", "trigger": "Drift", "result": "Promoted", "modelVersion": "2",
             "metrics": {**metrics, "roc_auc": 0.81}, "championVersion": "1",
             "championMetrics": {**metrics, "roc_auc": 0.8, "accuracy": 0.76},
             "message": "roc_auc 0.81 beats champion v1's 0.8 on this run's validation data"},
            {"id": "1", "trigger": "Create", "result": "Promoted", "modelVersion": "1",
             "metrics": metrics},
        ],
    }  # fmt: skip
    psi = {"test": "psi", "threshold": 0.2}
    result.checks = [
        DriftCheck("churn-manual-a", "NoDrift", 0.0, 600, "1",
                   {"tenure": {**psi, "score": 0.01, "drifted": False}}, None),
        DriftCheck("churn-manual-b", "Drift", 1.0, 1800, "1",
                   {"tenure": {**psi, "score": 0.9, "drifted": True}}, "2026-01-01T00:00:00Z"),
    ]  # fmt: skip
    rollout = TrafficStats("rollout", requests=4, rows=40, rows_ok=40)
    rollout.by_version = Counter({"1": 2, "2": 2})
    rollout.timeline = [(0.2, "1"), (0.7, "1"), (1.1, "2"), (1.8, "2")]
    result.traffic = [TrafficStats("baseline", requests=60, rows=600, rows_ok=600), rollout]
    result.deployment_states = [
        (None, None, None),
        ("1", None, None),
        ("1", "2", 50),
        ("2", None, None),
    ]
    result.logged_rows = 640
    result.canary_messages = [
        "CanaryStarted: version 2: 50% of traffic",
        "CanaryStep: version 2: step 2/2, 100% (canary error rate 0.00% over 12 requests ...)",
    ]
    return result


def test_summary_lists_runs_oldest_first_and_marks_drift(tmp_path: Path) -> None:
    text = render_summary(_result(tmp_path))
    lines = text.splitlines()
    run_lines = [line for line in lines if re.match(r"^[12]\s+(Create|Drift)", line)]
    assert [line.split()[:4] for line in run_lines] == [
        ["1", "Create", "Promoted", "1"],
        ["2", "Drift", "Promoted", "2"],
    ]
    tenure = next(line for line in lines if line.startswith("tenure"))
    assert tenure.split()[-3:] == ["0.010", "0.900", "DRIFT"]
    assert "none -> v1 -> v1 + canary v2 50% -> v2" in text
    total = next(line for line in lines if line.startswith("total"))
    assert total.split()[:4] == ["total", "64", "640", "0"]
    assert "640 rows logged for 640 rows answered" in text
    # No check measured performance (no spec.performance): no performance rows.
    assert "performance" not in text and "label coverage" not in text
    # The rollout's Events, each step with the verdict that let it through.
    assert "Canary: CanaryStarted: version 2: 50% of traffic" in text
    assert "Canary: CanaryStep: version 2: step 2/2, 100% (canary error rate 0.00% over 12" in text


def test_summary_shows_both_versions_scored_on_the_same_validation_rows(tmp_path: Path) -> None:
    lines = render_summary(_result(tmp_path)).splitlines()
    at = lines.index(
        "Gate: the new version and the champion, scored on the same validation rows (the new run's)"
    )
    assert lines[at + 1].split() == ["RUN", "VERSION", "ROC_AUC", "ACCURACY", "F1", "RESULT"]
    assert lines[at + 3].split() == ["2", "v2", "(new)", "0.810", "0.770", "0.500", "Promoted"]
    assert lines[at + 4].split() == ["v1", "(champion)", "0.800", "0.760", "0.500"]
    assert lines[at + 5] == (
        "run 2: roc_auc 0.81 beats champion v1's 0.8 on this run's validation data"
    )


def test_html_report_has_well_formed_plots(tmp_path: Path) -> None:
    path = write_html(_result(tmp_path), tmp_path / "report.html")
    page = path.read_text()
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert len(svgs) == 3  # drift (psi), metrics per version, rollout
    drift, metrics, rollout = (_bars(s) for s in svgs)
    assert [b.get("fill") == DRIFTED for b in drift] == [False, True]
    assert len(metrics) == 6  # 3 metrics x 2 versions
    assert len(rollout) == 4  # 2 seconds x 2 versions


def test_plain_view_prints_a_row_only_when_its_columns_change() -> None:
    out = io.StringIO()
    view = PlainView(out)
    head = "NAME    VERDICT   LAST CHECK   AGE"
    view.render([("dm", f"{head}\nchurn   false     16s          2m46s")])
    view.render([("dm", f"{head}\nchurn   false     25s          2m55s")])
    view.render([("dm", f"{head}\nchurn   true      1s           3m1s")])
    printed = [line for line in out.getvalue().splitlines() if "churn" in line]
    assert len(printed) == 2
    assert "true" in printed[1]


def test_summary_shows_measured_performance_beside_the_estimate(tmp_path: Path) -> None:
    result = _result(tmp_path)
    ok = PerformanceStatus(
        verdict="OK",
        measured={"accuracy": 0.81},
        estimated={"accuracy": 0.8},
        rows=600,
        labelled_rows=600,
        coverage=1.0,
    ).to_wire()
    degraded = PerformanceStatus(
        verdict="Degraded", measured={"accuracy": 0.52}, breached=["accuracy"],
        rows=1800, labelled_rows=900, coverage=0.5,
    ).to_wire()  # fmt: skip
    result.checks[0].performance, result.checks[1].performance = ok, degraded
    lines = render_summary(result).splitlines()

    def row(label: str) -> list[str]:
        line = next(line for line in lines if line.startswith(label))
        return line[len(label) :].split()

    assert row("performance") == ["OK", "Degraded"]
    assert row("measured accuracy") == ["0.810", "(~0.800)", "0.520"]
    assert row("label coverage") == ["1.00", "0.50"]
