"""The demo client's delayed labels: what it writes is what the monitor reads, row for row,
and the flipped label relation is the opposite of the one the churn data is drawn from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import roc_auc_score

from kubeloop.api.monitor import LabelsSource
from kubeloop.local.demo.datagen import FEATURES, churn_labels, churn_logit, churn_table
from kubeloop.local.demo.labels import labelled_requests, write_labels
from kubeloop.local.demo.traffic import TrafficStats
from kubeloop.workloads.monitor.labels import read_labels


def _stats(phase: str, rows: pa.Table, per_request: int) -> TrafficStats:
    stats = TrafficStats(phase)
    for i, start in enumerate(range(0, rows.num_rows, per_request)):
        stats.sent[f"{phase}-{i + 1}"] = rows.slice(start, per_request)
    return stats


def test_the_monitor_reads_each_sent_row_with_its_label(tmp_path: Path) -> None:
    rows = churn_table(25, seed=4).select(FEATURES)
    traffic = [_stats("a", rows.slice(0, 20), 10), _stats("b", rows.slice(20), 3)]
    labelled = labelled_requests(traffic, lambda t: pa.array(np.arange(t.num_rows) % 2))
    assert labelled.num_rows == 25
    assert labelled.column("request_id").to_pylist()[9:11] == ["a-1", "a-2"]
    assert labelled.column("row").to_pylist()[18:25] == [8, 9, 0, 1, 2, 0, 1]
    assert labelled.select(FEATURES).equals(rows)  # the features the label belongs to

    uri = write_labels(labelled, (tmp_path / "labels").as_uri(), "a")
    assert uri.endswith("/labels/a.parquet")
    read = read_labels(
        LabelsSource.model_validate({"uri": (tmp_path / "labels").as_uri(), "rowColumn": "row"}),
        classification=True,
    )
    assert read.duplicates == 0
    ids, positions, labels = (read.table.column(c).to_pylist() for c in read.table.column_names)
    got = {(i, r): v for i, r, v in zip(ids, positions, labels, strict=True)}
    assert got[("b-2", 1)] == "0" and got[("a-1", 1)] == "1" and len(got) == 25


def test_nothing_answered_is_nothing_to_label() -> None:
    with pytest.raises(ValueError, match="nothing to label"):
        labelled_requests([TrafficStats("a")], lambda t: pa.array([]))


def test_the_flipped_relation_is_the_opposite_one() -> None:
    features = churn_table(4000, seed=5).select(FEATURES)
    column = {n: features.column(n).to_numpy(zero_copy_only=False) for n in FEATURES}
    logit = churn_logit(
        column["tenure"],
        column["monthly_charges"],
        column["support_calls"],
        column["contract"],
        column["payment_method"],
    )
    same = churn_labels(features, seed=1).to_numpy()
    flipped = churn_labels(features, seed=1, flip=True).to_numpy()
    assert roc_auc_score(same, logit) > 0.75 and roc_auc_score(flipped, -logit) > 0.75
    # the same inputs, the table's own draw: churn_table's labels follow the unflipped relation
    table = churn_table(4000, seed=5)
    assert roc_auc_score(table.column("churned").to_numpy(), logit) > 0.75
