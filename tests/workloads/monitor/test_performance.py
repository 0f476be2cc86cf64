"""Performance from delayed labels, in-process on small Parquet files on disk.

Real: payload-log files in the server's layout (schema version 2), labels as Parquet,
scikit-learn as the reference for every metric. The label-free estimate is compared with
NannyML's CBPE where its own venv exists (`make venv-nannyml`).
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn import metrics as skm
from tests.workloads.monitor.conftest import NOW, mixed_table

from kubeloop.api.monitor import PerformanceSpec
from kubeloop.workloads.monitor import cbpe
from kubeloop.workloads.monitor.labels import LabelsSchemaError
from kubeloop.workloads.monitor.performance import check_performance, measure

ROOT = Path(__file__).resolve().parents[3]
NANNYML_PYTHON = ROOT / ".venv-bench-nannyml" / "bin" / "python"


def _served(rng: np.random.Generator, rows: int) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """A binary classifier's log: x, its probability, prediction; the true labels aside."""
    x = rng.normal(0, 1, rows)
    p_true = 1 / (1 + np.exp(-2 * x))
    truth = (rng.random(rows) < p_true).astype(int)
    score = p_true**1.5  # miscalibrated on purpose: calibration has work to do
    table = pa.table(
        {
            "x": x,
            "_request_id": [f"r{i}" for i in range(rows)],
            "_row": pa.array(np.zeros(rows, np.int32)),
            "_prediction": [str(int(s >= 0.5)) for s in score],
            "_proba_0": 1 - score,
            "_proba_1": score,
        }
    )
    return table, truth, score


def _write_log(root: Path, table: pa.Table, when: datetime) -> None:
    table = table.append_column("_ts", pa.array([when] * table.num_rows, pa.timestamp("us", "UTC")))
    folder = root / f"dt={when:%Y-%m-%d}" / f"hour={when:%H}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / "part-0.parquet")


def _spec(labels: Path, **more: Any) -> PerformanceSpec:
    return PerformanceSpec.model_validate(
        {"labels": {"uri": f"file://{labels}"}, "minLabelledRows": 50, **more}
    )


@pytest.fixture
def served(tmp_path: Path, hours_ago: Callable[[float], datetime]) -> dict[str, Any]:
    rng = np.random.default_rng(3)
    table, truth, score = _served(rng, 4000)
    logs = tmp_path / "logs"
    _write_log(logs, table, hours_ago(2))
    return {"logs": logs, "table": table, "truth": truth, "score": score, "tmp": tmp_path}


def test_five_percent_coverage_duplicates_and_unknown_ids(served: dict[str, Any]) -> None:
    """5 % of requests labelled, a tenth of them twice (a corrected label: the last wins),
    and 30 labels for requests this deployment never served: each counted, and the metrics
    are sklearn's on exactly the joined rows."""
    rng = np.random.default_rng(4)
    truth = served["truth"]
    chosen = rng.choice(truth.size, 200, replace=False)  # 5 % of 4000
    corrected = chosen[:20]
    ids = [f"r{i}" for i in chosen] + [f"r{i}" for i in corrected] + [f"gone{i}" for i in range(30)]
    first = [int(truth[i]) for i in chosen]
    first[:20] = [1 - v for v in first[:20]]  # wrong at first ...
    values = first + [int(truth[i]) for i in corrected] + [1] * 30  # ... corrected later
    labels = served["tmp"] / "labels.parquet"
    pq.write_table(pa.table({"request_id": ids, "label": values}), labels)

    got = check_performance(_spec(labels), f"file://{served['logs']}", None, NOW)

    assert (got.rows, got.labelled_rows) == (4000, 200)
    assert got.coverage == pytest.approx(0.05)
    assert (got.duplicate_labels, got.unmatched_labels) == (20, 30)
    y = truth[chosen]
    pred = np.asarray(served["table"].column("_prediction").to_pylist())[chosen].astype(int)
    score = served["score"][chosen]
    order = np.argsort(chosen)  # the log's order, not the labels'
    y, pred, score = y[order], pred[order], score[order]
    assert got.measured["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    assert got.measured["f1"] == pytest.approx(skm.f1_score(y, pred), abs=1e-12)
    assert got.measured["roc_auc"] == pytest.approx(skm.roc_auc_score(y, score), abs=1e-12)
    assert got.verdict.verdict == "OK"
    assert got.calibration == "labels" and set(got.estimated) == {"accuracy", "f1", "roc_auc"}


def test_too_few_labels_and_too_little_coverage(served: dict[str, Any]) -> None:
    labels = served["tmp"] / "labels.parquet"
    pq.write_table(pa.table({"request_id": ["r1", "r2"], "label": [0, 1]}), labels)
    got = check_performance(_spec(labels), f"file://{served['logs']}", None, NOW)
    assert got.verdict.verdict == "InsufficientLabels"
    assert got.calibration == "none"  # two labels calibrate nothing: p taken as calibrated
    pq.write_table(
        pa.table({"request_id": [f"r{i}" for i in range(100)], "label": [0] * 100}), labels
    )
    covered = _spec(labels, minCoverage=0.1, thresholds={"accuracy": 0.99})
    assert check_performance(covered, f"file://{served['logs']}", None, NOW).verdict.verdict == (
        "InsufficientLabels"
    )


def test_a_flipped_label_relation_is_degraded(served: dict[str, Any]) -> None:
    """Inputs unchanged, the labels' relation to them flipped: measured accuracy collapses."""
    labels = served["tmp"] / "labels.parquet"
    flipped = 1 - served["truth"][:1000]
    pq.write_table(
        pa.table({"request_id": [f"r{i}" for i in range(1000)], "label": flipped}), labels
    )
    spec = _spec(labels, thresholds={"accuracy": 0.6})
    got = check_performance(spec, f"file://{served['logs']}", None, NOW)
    assert got.verdict.verdict == "Degraded" and got.verdict.breached == ("accuracy",)


@pytest.mark.parametrize(
    ("columns", "spec_field", "missing"),
    [
        ({"id": ["r1"], "label": [1]}, {}, "request_id"),
        ({"request_id": ["r1"], "truth": [1]}, {}, "label"),
        ({"request_id": ["r1"], "label": [1]}, {"rowColumn": "row"}, "row"),
    ],
)
def test_labels_with_the_wrong_schema_are_refused_naming_the_column(
    served: dict[str, Any], columns: dict[str, list[Any]], spec_field: dict[str, str], missing: str
) -> None:
    labels = served["tmp"] / "labels.parquet"
    pq.write_table(pa.table(columns), labels)
    spec = PerformanceSpec.model_validate({"labels": {"uri": f"file://{labels}", **spec_field}})
    with pytest.raises(LabelsSchemaError, match=rf"no column '{missing}' \(spec\.performance"):
        check_performance(spec, f"file://{served['logs']}", None, NOW)


def test_multiclass_and_regression_metrics_equal_sklearn() -> None:
    rng = np.random.default_rng(5)
    proba = rng.dirichlet([1.0, 1.0, 1.0], 500)
    classes = ["a", "b", "c"]
    predicted = np.asarray(classes)[proba.argmax(1)]
    truth = np.asarray(classes)[rng.integers(0, 3, 500)]
    got = measure(["accuracy", "f1", "roc_auc"], truth, predicted, proba, classes)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(truth, predicted), abs=1e-12)
    assert got["f1"] == pytest.approx(skm.f1_score(truth, predicted, average="macro"), abs=1e-12)
    want = skm.roc_auc_score(truth, proba, multi_class="ovr")
    assert got["roc_auc"] == pytest.approx(want, abs=1e-12)
    y, p = rng.normal(5, 2, 500), rng.normal(5, 2, 500)
    got = measure(["rmse", "mae"], y.astype(object), p.astype(object), None, None)
    assert got["rmse"] == pytest.approx(skm.root_mean_squared_error(y, p), abs=1e-12)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, p), abs=1e-12)


def test_isotonic_calibration_equals_sklearns() -> None:
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(6)
    score = np.round(rng.random(3000), 3)  # ties included
    truth = rng.random(3000) < score**2
    ours = cbpe.fit_isotonic(score, truth)
    theirs = IsotonicRegression(out_of_bounds="clip").fit(score, truth.astype(float))
    probe = np.linspace(-0.1, 1.1, 500)
    np.testing.assert_allclose(ours(probe), theirs.predict(probe), atol=1e-12)


def test_the_estimate_per_calibrator_segment_equals_the_sorted_curve() -> None:
    """Above SORTED_ROWS the expected ROC AUC sums rows per calibrator segment (no sort of the
    window): the same area as NannyML's sorted curve, up to that curve's 5-decimal rounding;
    and the same streamed batch by batch, as the label join feeds it."""
    rng = np.random.default_rng(7)
    reference = np.round(rng.random(3000), 3)  # ties: flat and sloping segments both
    calibrator = cbpe.fit_isotonic(reference, rng.random(3000) < reference**2)
    score = np.concatenate([rng.uniform(-0.1, 1.1, cbpe.SORTED_ROWS), reference])
    predicted = score >= 0.5
    got = cbpe.estimate(score, predicted, calibrator)
    sorted_curve = cbpe._expected_roc_auc(score, calibrator)
    assert got["roc_auc"] == pytest.approx(sorted_curve, abs=1e-9)
    p = calibrator(score)
    assert got["accuracy"] == pytest.approx(np.mean(np.where(predicted, p, 1 - p)), abs=1e-12)
    streamed = cbpe.Estimate(calibrator)  # batch by batch, past SORTED_ROWS in the middle one
    for part in np.array_split(np.arange(score.size), 3):
        streamed.add(score[part], predicted[part])
    assert streamed.result() == pytest.approx(got, abs=1e-12)


_NANNYML = """
import json, sys, warnings
import numpy as np, pandas as pd
from nannyml.performance_estimation.confidence_based import CBPE
warnings.filterwarnings("ignore")
data = json.load(sys.stdin)
def frame(part):
    return pd.DataFrame({"y_pred_proba": part["score"], "y_pred": part["pred"],
                         "y_true": part.get("truth", [np.nan] * len(part["score"]))})
ref, ana = frame(data["reference"]), frame(data["analysis"])
est = CBPE(y_pred_proba="y_pred_proba", y_pred="y_pred", y_true="y_true",
           problem_type="classification_binary", metrics=["roc_auc", "f1", "accuracy"],
           chunk_number=1)
est.fit(ref)
out = est.estimate(ana).to_df()
out = out[out[("chunk", "period")] == "analysis"]  # the result repeats the reference's chunks
print(json.dumps({m: float(out[(m, "value")].iloc[0]) for m in ["roc_auc", "f1", "accuracy"]}))
"""


@pytest.mark.slow  # NannyML's import alone is seconds of CPU
@pytest.mark.skipif(
    not NANNYML_PYTHON.exists(),
    reason="NannyML lives in its own venv .venv-bench-nannyml: `make venv-nannyml`",
)
def test_estimate_agrees_with_nannyml_cbpe() -> None:
    rng = np.random.default_rng(8)

    def part(rows: int, mean: float) -> dict[str, Any]:
        x = rng.normal(mean, 1, rows)
        p = 1 / (1 + np.exp(-2 * x))
        score = p**1.5
        truth = (rng.random(rows) < p).astype(int)
        return {"score": score, "pred": (score >= 0.5).astype(int), "truth": truth}

    reference, analysis = part(5000, 0.0), part(5000, 0.7)  # the inputs shifted
    calibrator = cbpe.fit_isotonic(reference["score"], reference["truth"] == 1)
    ours = cbpe.estimate(analysis["score"], analysis["pred"] == 1, calibrator)
    payload = {
        "reference": {k: v.tolist() for k, v in reference.items()},
        "analysis": {k: analysis[k].tolist() for k in ("score", "pred")},
    }
    out = subprocess.run(
        [str(NANNYML_PYTHON), "-c", _NANNYML],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        check=True,
        timeout=280,  # a bound, not a wait
    )
    theirs = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"CBPE ours {ours} NannyML {theirs}")
    for metric in ("accuracy", "f1", "roc_auc"):
        assert ours[metric] == pytest.approx(theirs[metric], abs=0.01), (metric, ours, theirs)


@pytest.mark.parametrize("window", ["168h", "24h"], ids=["own-scan", "drift-scan"])
def test_the_check_reports_performance_and_prediction_drift_apart(
    tmp_path: Path,
    version_dir: Path,
    run_monitor: Callable[..., tuple[int, dict[str, Any]]],
    hours_ago: Callable[[float], datetime],
    pushgateway: str,
    *,
    window: str,
) -> None:
    """`kubeloop monitor` as the CronJob runs it: input drift, prediction drift and performance
    side by side in the result and on the Pushgateway (namespace and monitor labels). With the
    drift check's window (24h) the label join rides on its scan; otherwise it scans its own."""
    rng = np.random.default_rng(9)
    served, truth, _ = _served(rng, 3000)
    validation, validation_truth, _ = _served(rng, 3000)
    reference = validation.select(["_prediction", "_proba_0", "_proba_1"])
    reference = reference.append_column("_label", pa.array([str(v) for v in validation_truth]))
    pq.write_table(reference, version_dir / "validation-predictions.parquet")
    features = mixed_table(rng, 3000)
    for name in features.column_names:
        served = served.append_column(name, features.column(name))
    logs = tmp_path / "logs"
    _write_log(logs, served.drop(["x"]), hours_ago(1))
    labels = tmp_path / "labels.parquet"
    ids = [f"r{i}" for i in range(0, 3000, 10)]
    pq.write_table(pa.table({"request_id": ids, "label": truth[::10]}), labels)
    spec = {
        "performance": {
            "labels": {"uri": f"file://{labels}"},
            "minLabelledRows": 100,
            "window": window,
        }
    }
    code, result = run_monitor(
        {
            "KUBELOOP_PAYLOAD_LOG_URI": f"file://{logs}",
            "KUBELOOP_REFERENCE_URI": f"file://{version_dir}",
            "KUBELOOP_MONITOR_SPEC": json.dumps(spec),
            "KUBELOOP_PUSHGATEWAY_URL": pushgateway,
        }
    )
    assert code == 0, result
    assert result["verdict"] == "NoDrift"
    perf = result["performance"]
    assert (perf["verdict"], perf["labelledRows"], perf["calibration"]) == ("OK", 300, "validation")
    assert perf["coverage"] == pytest.approx(0.1)
    assert abs(perf["estimated"]["accuracy"] - perf["measured"]["accuracy"]) < 0.05
    outputs = result["predictionDrift"]
    assert outputs["drifted"] is False
    # a binary classifier's _proba_0 is 1 - _proba_1: only the positive class's is tested
    assert set(outputs["features"]) == {"_prediction", "_proba_1"}
    with urllib.request.urlopen(f"{pushgateway}/metrics", timeout=10) as response:
        text = response.read().decode()
    measured = [
        line
        for line in text.splitlines()
        if line.startswith("kubeloop_model_performance{") and 'source="measured"' in line
    ]
    assert any('metric="accuracy"' in m and 'namespace="ml"' in m for m in measured), measured
    assert "kubeloop_model_performance_label_coverage{" in text
    assert "kubeloop_prediction_drift_score{" in text and 'output="_prediction"' in text


def test_version_one_logs_without_row_nor_probabilities(
    tmp_path: Path, hours_ago: Callable[[float], datetime]
) -> None:
    """Files written before schema 2: every row is row 0, roc_auc and the estimate are absent."""
    logs, labels = tmp_path / "logs", tmp_path / "labels.parquet"
    predictions = ["1", "0", "1", "1"] * 50
    table = pa.table({"_request_id": [f"r{i}" for i in range(200)], "_prediction": predictions})
    _write_log(logs, table, hours_ago(1))
    truth = ["1"] * 200
    pq.write_table(pa.table({"request_id": [f"r{i}" for i in range(200)], "label": truth}), labels)
    got = check_performance(_spec(labels), f"file://{logs}", None, NOW)
    assert got.labelled_rows == 200 and got.measured["accuracy"] == pytest.approx(0.75)
    assert got.measured["roc_auc"] is None and got.estimated == {}
