"""Issue 19's acceptance on `kubeloop local`: concept drift found by delayed labels, and a broken
feed found by data quality, each doing exactly what it should to the training loop.

The real operator, `kubeloop train`, `kubeloop serve` and `kubeloop monitor` (as pods of the
emulated cluster), a real V2 client and a real Pushgateway; the monitor's CronJob is run on
demand (`kubectl create job --from=cronjob/...`), as the demo does.

Phase 1: v1 serves the same population it was trained on, but the label relation has flipped
(kubeloop.local.demo.datagen.churn_labels, flip). The client's delayed labels (keyed by the
request ids it sent: kubeloop.local.demo.labels) land in the labels location, and the same
labelled rows become the training data. The check: input drift NoDrift, performance Degraded,
exactly one retrain; v2, trained on the flipped rows, passes the gate and is rolled out.
Phase 2: v2 serves; then the feed breaks, 40 % of one column's logged values null. The check:
QualityIssue, no new run. Both alerts fire in a promtool test fed the values the monitor pushed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml
from tests.polling import until

from kubeloop.local.cluster.stack import LocalStack, apply_objects
from kubeloop.local.demo.datagen import FEATURES, TARGET, churn_labels, churn_table
from kubeloop.local.demo.scenario import CHURN, DM, TP, Scenario
from kubeloop.local.demo.traffic import TrafficStats, V2Traffic

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # slow: `make test` starts it first

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "charts" / "kubeloop" / "files" / "kubeloop-rules.yaml"
NAME, ROWS, BROKEN = "churn", 600, "monthly_charges"
STEP = 240.0  # seconds a step may take on a loaded machine; about 5 on an idle one


def manifests() -> list[dict[str, Any]]:
    meta = {"name": NAME, "namespace": "ml"}
    kind = {"apiVersion": "kubeloop.io/v1alpha1", "metadata": meta}
    return [
        kind
        | {
            "kind": "TrainingPipeline",
            "spec": {
                "data": {"train": "file://.demo/data/churn/train/", "target": TARGET},
                "model": {
                    "framework": "sklearn",
                    "task": "classification",
                    "estimator": "LogisticRegression",
                    "params": {"max_iter": 500},
                },
                "artifacts": "file://.demo/models/churn/",
                "promotion": {"metric": "accuracy", "minimum": 0.6, "mustBeatChampion": True},
                "runPolicy": {"backoffLimit": 0},
                "seed": 3,
            },
        },
        kind
        | {
            "kind": "ModelDeployment",
            "spec": {
                "model": {"pipelineRef": {"name": NAME}, "version": "champion"},
                "replicas": 1,
                "payloadLogging": {"enabled": True, "destination": "file://.demo/logs/churn/"},
            },
        },
        kind
        | {
            "kind": "DriftMonitor",
            "spec": {
                "deploymentRef": {"name": NAME},
                "schedule": "0 0 1 1 *",  # checks are run on demand
                "window": "1h",
                "minRows": 100,
                # one feature of six drifted is drift: the broken column alone asks for a
                # retrain, which only the broken-feed hold keeps from starting
                "thresholds": {"driftShare": 0.15},
                "onDrift": {"retrain": True},
                "performance": {
                    "labels": {"uri": "file://.demo/labels/churn/", "rowColumn": "row"},
                    "minLabelledRows": 100,
                    "thresholds": {"accuracy": 0.6},
                    "onDegraded": {"retrain": True},
                },
            },
        },
    ]


def _train_on(labelled: pa.Table, folder: Path) -> None:
    """The labelled requests become the training data (replacing what v1 trained on)."""
    table = labelled.select(FEATURES).append_column(TARGET, labelled.column("label"))
    shutil.rmtree(folder)
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "part-0.parquet")


def _break_feed(logs: Path, phase: str, column: str, share: float) -> int:
    """The upstream join breaks: `share` of `column` null in the logged rows of `phase`'s
    requests (the V2 server refuses NaN, so nulls cannot arrive through it: they are written
    into its Parquet files, as another writer of that log would). Returns the rows nulled."""
    nulled = 0
    for path in sorted(logs.rglob("*.parquet")):
        table = pq.read_table(path)
        ours = pc.starts_with(table.column("_request_id"), f"{phase}-").to_numpy(
            zero_copy_only=False
        )
        if not ours.any():
            continue
        rng = np.random.default_rng(nulled)
        mask = ours & (rng.uniform(size=table.num_rows) < share)
        values = table.column(column).to_numpy(zero_copy_only=False)
        broken = pa.array(values, type=table.schema.field(column).type, mask=mask)
        index = table.schema.get_field_index(column)
        pq.write_table(table.set_column(index, table.schema.field(column), broken), path)
        nulled += int(mask.sum())
    return nulled


def _pushed(url: str, metric: str) -> dict[str, float]:
    """`{labels: value}` of `metric` on the Pushgateway's /metrics."""
    text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    found = {}
    for line in text.splitlines():
        match = re.fullmatch(rf"{metric}(\{{[^}}]*\}}) (\S+)", line)
        if match:
            found[match.group(1)] = float(match.group(2))
    return found


def _firing(rule: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    """The alert `rule` raises for a series of `labels`, as promtool expects it."""
    where = {k: labels[k] for k in ("namespace", "monitor")}
    notes = {}
    for key, text in rule["annotations"].items():
        for name, value in where.items():
            text = text.replace(f"{{{{ $labels.{name} }}}}", value)  # noqa: PLW2901
        notes[key] = text
    return {"exp_labels": {**rule["labels"], **where}, "exp_annotations": notes}


def _alert_test(series: dict[str, dict[str, float]], work: Path) -> str:
    """A promtool rule test of the chart's rules over the pushed `series` ({metric: {labels:
    value}}), expecting each alert on a metric whose pushed value is 1; promtool's output."""
    rules = yaml.safe_load(RULES.read_text())["groups"]
    alerts = [r for group in rules for r in group["rules"] if "alert" in r]
    tests = []
    for metric, values in series.items():
        rule = next(r for r in alerts if f"({metric})" in r["expr"])
        expected = [
            _firing(rule, dict(re.findall(r'(\w+)="([^"]*)"', labels)))
            for labels, value in values.items()
            if value == 1
        ]
        tests.append(
            {
                "interval": "1m",
                "input_series": [
                    {"series": f"{metric}{labels}", "values": f"{value:g}x10"}
                    for labels, value in values.items()
                ],
                "alert_rule_test": [
                    {"eval_time": "2m", "alertname": rule["alert"], "exp_alerts": expected}
                ],
            }
        )
    path = work / "pushed_test.yaml"
    path.write_text(yaml.safe_dump({"rule_files": [str(RULES)], "tests": tests}))
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: run `make system-deps` (Debian package prometheus)"
    proc = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


async def _retrain_request(scenario: Scenario) -> str | None:
    """The pipeline's retrain-request annotation (`<time> <monitor>/<job>`), None without."""
    found = await scenario.api.get(TP, "ml", NAME) or {}
    annotations = found.get("metadata", {}).get("annotations") or {}
    return annotations.get("kubeloop.io/retrain-requested-at")


async def _events(scenario: Scenario, reason: str) -> list[str]:
    events = await scenario.api.list("v1/events", "ml")
    return [e.get("message", "") for e in events if e.get("reason") == reason]


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status.get("conditions") or [] if c["type"] == kind)


async def _send(scenario: Scenario, traffic: V2Traffic, rows: pa.Table, phase: str) -> TrafficStats:
    stats = await traffic.send(rows, phase)
    assert stats.failed == 0, stats.errors
    scenario.result.traffic.append(stats)
    await scenario.wait_logged(timeout=STEP)
    return stats


async def test_concept_drift_retrains_once_and_a_broken_feed_does_not(
    tmp_path: Path, pushgateway: str
) -> None:
    state = tmp_path / "state"
    example = tmp_path / "loop.yaml"
    example.write_text(yaml.safe_dump_all(manifests()))
    train = state / "data" / "churn" / "train"
    # The demo's churn data, whose client now labels by the flipped relation.
    flipped = replace(CHURN, label=lambda rows: churn_labels(rows, seed=7, flip=True))
    scenario = Scenario(state, _Quiet(), example, flipped)
    train.mkdir(parents=True)
    pq.write_table(churn_table(ROWS, seed=1), train / "part-0.parquet")
    async with LocalStack(
        state,
        resync_seconds=1.0,
        operator_env={"KUBELOOP_RESYNC_SECONDS": "1", "KUBELOOP_PUSHGATEWAY_URL": pushgateway},
        workload_env={"KUBELOOP_PAYLOAD_FLUSH_SECONDS": "0.5"},
    ) as stack:
        scenario.stack = stack
        await apply_objects(scenario.api, scenario.docs)
        await scenario.wait_champion("1", runs=1, timeout=STEP)
        traffic = await scenario.wait_serving("1", timeout=STEP)

        # Phase 1: the same inputs, the label relation flipped.
        sent = await _send(scenario, traffic, churn_table(ROWS, seed=100).select(FEATURES), "p1")
        labelled = scenario.deliver_labels(sent)
        assert labelled is not None
        _train_on(labelled, train)
        check = await scenario.check_drift(timeout=STEP)
        status = await scenario.get(DM)
        performance = status["performance"]
        assert check.verdict == "NoDrift", check.features
        assert performance["verdict"] == "Degraded", performance
        assert performance["labelledRows"] == ROWS and performance["coverage"] == 1.0
        assert performance["measured"]["accuracy"] < 0.6
        assert _condition(status, "PerformanceDegraded")["status"] == "True"
        assert _condition(status, "DriftDetected")["status"] == "False"
        degraded = _pushed(pushgateway, "kubeloop_model_performance_degraded")
        request = await _retrain_request(scenario)
        assert request and request.endswith(f"{NAME}/{check.job}"), request

        pipeline = await scenario.wait_champion("2", runs=2, timeout=STEP)
        run = pipeline["runs"][0]
        assert (run["id"], run["trigger"], run["result"]) == ("2", "Degraded", "Promoted")
        assert run["metrics"]["accuracy"] >= 0.6 > run["championMetrics"]["accuracy"]
        traffic = await scenario.wait_serving("2", timeout=STEP)

        # Phase 2: v2 serves the same population; then the feed breaks.
        sent = await _send(scenario, traffic, churn_table(ROWS, seed=101).select(FEATURES), "p2")
        assert set(sent.by_version) == {"2"}
        scenario.deliver_labels(sent)
        nulled = _break_feed(state / "logs" / "churn", "p2", BROKEN, 0.4)
        assert 0.3 * ROWS < nulled < 0.5 * ROWS
        check = await scenario.check_drift(timeout=STEP)
        status = await scenario.get(DM)
        quality = status["quality"]
        assert quality["verdict"] == "QualityIssue", quality
        assert {(i["feature"], i["check"]) for i in quality["issues"]} == {(BROKEN, "nullShare")}
        assert _condition(status, "QualityIssue")["status"] == "True"
        # The nulls read as drift of that column (Drift, with onDrift.retrain), held: no model
        # is trained on a broken feed.
        assert check.verdict == "Drift" and check.features[BROKEN]["drifted"], check.features
        assert check.retrain_requested_at is None
        await until(lambda: _events(scenario, "RetrainHeld"), STEP, "Event RetrainHeld")
        # v2 is judged on its own answers (v1's stay in the window): it learned the new relation.
        performance = status["performance"]
        assert performance["verdict"] == "OK", performance
        assert performance["labelledRows"] == ROWS and performance["measured"]["accuracy"] >= 0.6
        assert "retrainRequestedAt" not in performance  # the degradation episode is over
        pushed = {
            "kubeloop_model_performance_degraded": degraded,
            "kubeloop_data_quality_issue": _pushed(pushgateway, "kubeloop_data_quality_issue"),
        }
        # No run on that data: the pipeline still has the two runs (a request would have been
        # written by the same reconcile that recorded the check).
        assert await _retrain_request(scenario) == request  # nobody asked again
        pipeline = await scenario.get(TP)
        assert [r["id"] for r in pipeline["runs"]] == ["2", "1"], pipeline["runs"]
        assert pipeline["lastRunId"] == 2 and not pipeline.get("currentRun"), pipeline
    assert all(v == {next(iter(v)): 1.0} for v in pushed.values()), pushed
    assert "SUCCESS" in _alert_test(pushed, tmp_path)


class _Quiet:
    """The scenario's observer: prints the steps (kept by pytest on failure)."""

    def step(self, text: str) -> None:
        print(text, flush=True)

    async def attach(self, api: object) -> None:
        pass

    async def detach(self) -> None:
        pass
