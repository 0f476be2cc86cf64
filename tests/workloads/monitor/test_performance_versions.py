"""Performance is measured on the monitored version's own answers (found by the issue-19
end-to-end test: after a retrain, the window's rows of the replaced version kept the new one
Degraded, and its episode open, for as long as the window reached back)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tests.workloads.monitor.conftest import NOW

from kubeloop.api.monitor import PerformanceSpec
from kubeloop.workloads.monitor.performance import LabelJoin, check_performance
from kubeloop.workloads.monitor.window import open_window


def _log(folder: Path, version: str, ids: range, right: bool, confidence: float) -> pa.Table:
    """`version` answered requests `ids`: predictions all right (or all wrong) for the truth
    `id % 2`, each with probability `confidence`."""
    truth = np.array([i % 2 for i in ids])
    predicted = truth if right else 1 - truth
    p1 = np.where(predicted == 1, confidence, 1 - confidence)
    when = NOW - timedelta(hours=1)
    table = pa.table(
        {
            "x": np.arange(len(ids), dtype=np.float64),
            "_ts": pa.array([when] * len(ids), pa.timestamp("us", "UTC")),
            "_model_version": [version] * len(ids),
            "_request_id": [f"r{i}" for i in ids],
            "_row": pa.array(np.zeros(len(ids), np.int32)),
            "_prediction": [str(p) for p in predicted],
            "_proba_0": 1 - p1,
            "_proba_1": p1,
        }
    )
    target = folder / f"dt={when:%Y-%m-%d}" / f"hour={when:%H}"
    target.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, target / f"v{version}.parquet")
    return table


def test_only_the_monitored_versions_rows_are_measured_and_estimated(tmp_path: Path) -> None:
    logs, labels = tmp_path / "logs", tmp_path / "labels.parquet"
    _log(logs, "1", range(0, 300), right=False, confidence=0.55)  # replaced: all wrong, unsure
    _log(logs, "2", range(300, 500), right=True, confidence=0.9)  # served: all right, sure
    ids = range(0, 500)
    truth = {"request_id": [f"r{i}" for i in ids], "label": [str(i % 2) for i in ids]}
    pq.write_table(pa.table(truth), labels)
    spec = PerformanceSpec.model_validate(
        {"labels": {"uri": labels.as_uri()}, "minLabelledRows": 50, "thresholds": {"accuracy": 0.8}}
    )
    uri = logs.as_uri()

    served = check_performance(spec, uri, None, NOW, "2")
    assert served.verdict.verdict == "OK"
    assert (served.rows, served.labelled_rows, served.unmatched_labels) == (200, 200, 0)
    assert served.measured["accuracy"] == 1.0
    # The estimate covers the same rows: calibrated on them, sure and right (version 1's
    # unsure answers would have pulled it down).
    assert served.estimated["accuracy"] == 1.0
    assert everything_estimate(spec, uri) < 0.9

    # Without a version (a laptop run) every row counts, as before.
    everything = check_performance(spec, uri, None, NOW)
    assert (everything.rows, everything.labelled_rows) == (500, 500)
    assert everything.measured["accuracy"] == 200 / 500
    assert everything.verdict.verdict == "Degraded"
    # A version that answered nothing in the window has nothing to be judged on.
    assert check_performance(spec, uri, None, NOW, "3").verdict.verdict == "InsufficientLabels"


def everything_estimate(spec: PerformanceSpec, uri: str) -> float:
    return check_performance(spec, uri, None, NOW).estimated["accuracy"]


def test_the_drift_scans_label_join_keeps_to_the_version_too(tmp_path: Path) -> None:
    """The join the drift check's scan feeds (small batches, `_model_version` read as a
    dictionary, as main.py's shared scan may) reaches what its own scan reaches."""
    logs, labels = tmp_path / "logs", tmp_path / "labels.parquet"
    _log(logs, "1", range(0, 300), right=False, confidence=0.55)
    _log(logs, "2", range(300, 500), right=True, confidence=0.9)
    pq.write_table(
        pa.table(
            {"request_id": [f"r{i}" for i in range(500)], "label": [str(i % 2) for i in range(500)]}
        ),
        labels,
    )
    spec = PerformanceSpec.model_validate(
        {"labels": {"uri": labels.as_uri()}, "minLabelledRows": 50, "thresholds": {"accuracy": 0.8}}
    )
    window = open_window(logs.as_uri(), NOW - timedelta(hours=24), NOW, ["_model_version"])
    assert window is not None
    join = LabelJoin(spec, window.schema, None, window.count_rows(), "2")
    for batch in window.to_batches(columns=join.columns, batch_size=64):
        join.add(batch)
    shared = join.result()
    own = check_performance(spec, logs.as_uri(), None, NOW, "2")
    assert shared.as_result() == own.as_result()
    assert (shared.rows, shared.labelled_rows, shared.unmatched_labels) == (200, 200, 0)
