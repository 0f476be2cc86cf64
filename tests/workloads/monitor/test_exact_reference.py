"""The exact KS test against a profile reference: the rows it was built from, streamed again.

The trainer records in profile.json the files it read and the rows it kept (missing targets
dropped, the seeded hold-out left out). The monitor streams exactly those rows when every file
is unchanged, and its KS is then scipy's on the training rows; when it cannot (no recorded
source, a file gone or changed), the sketch's KS stands and the result says so, never silently.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats as sps
from tests.workloads.monitor.conftest import NOW, write_logs

from kubeloop.api.monitor import DriftMonitorSpec
from kubeloop.api.training import TrainingPipelineSpec
from kubeloop.profile import build_profile
from kubeloop.profile_source import ProfileSource
from kubeloop.storage import ObjectInfo
from kubeloop.workloads.monitor.exact_reference import source_problem
from kubeloop.workloads.monitor.main import run_check
from kubeloop.workloads.monitor.report import render_report
from kubeloop.workloads.trainer.data import load_training_data

A = ObjectInfo("s3://b/train/a.parquet", 100, "etag-a")
B = ObjectInfo("s3://b/train/b.parquet", 200, "etag-b")
RECORDED = ProfileSource(files=(A, B), rows=250, target="y", holdout_seed=42, holdout_fraction=0.2)


@pytest.mark.parametrize(
    ("source", "found", "error", "expected"),
    [
        (RECORDED, {A.uri: A, B.uri: B}, None, None),
        # A file added beside them does not matter: the profile's rows are still all there.
        (RECORDED, {A.uri: A, B.uri: B, "s3://b/train/c.parquet": A}, None, None),
        (None, None, None, "records no source data"),
        (ProfileSource(files=(), rows=0), {}, None, "records no source data"),
        (RECORDED, None, "AccessDenied", "cannot be read: AccessDenied"),
        (RECORDED, {A.uri: A}, None, "b.parquet is gone"),
        (RECORDED, {A.uri: A, B.uri: ObjectInfo(B.uri, 201, "etag-b")}, None, "200 -> 201 bytes"),
        (RECORDED, {A.uri: ObjectInfo(A.uri, 100, "etag-x"), B.uri: B}, None, "marker differs"),
    ],
)
def test_when_the_profile_source_stands_for_its_rows(
    source: ProfileSource | None,
    found: dict[str, ObjectInfo] | None,
    error: str | None,
    expected: str | None,
) -> None:
    problem = source_problem(source, found, error)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem


def test_profile_source_round_trips_through_json() -> None:
    assert ProfileSource.from_dict(json.loads(json.dumps(RECORDED.to_dict()))) == RECORDED


def _trained_version(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, np.ndarray]:
    """Training files as the trainer reads them (two files, some missing targets and values),
    and a version folder with the profile of the training split and its recorded source;
    returns the folder and the training rows' non-missing x."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        x = rng.normal(0.0, 1.0, 6_000)
        x[rng.random(x.size) < 0.01] = np.nan
        y = pa.array(rng.integers(0, 2, x.size), mask=rng.random(x.size) < 0.05)
        pq.write_table(pa.table({"x": x, "y": y}), data / f"part-{i}.parquet")
    spec = TrainingPipelineSpec.model_validate(
        {
            "data": {"train": f"file://{data}", "target": "y", "validationFraction": 0.25},
            "model": {"task": "classification", "framework": "sklearn"},
            "artifacts": f"file://{tmp_path / 'models'}",
            "seed": 7,
        }
    )
    trained = load_training_data(spec)
    assert trained.source is not None
    profile = build_profile(trained.train, ["x"], [])
    profile["source"] = trained.source.to_dict()  # what the trainer's publish writes
    version = tmp_path / "version"
    version.mkdir()
    (version / "profile.json").write_text(json.dumps(profile))
    x = trained.train.column("x").to_numpy(zero_copy_only=False)
    return version, x[~np.isnan(x)]


def test_a_profile_reference_gives_scipys_ks_on_the_rows_it_was_built_from(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(19)
    version, reference = _trained_version(tmp_path, rng)
    window = rng.normal(0.03, 1.0, 8_000)
    logs = tmp_path / "logs"
    write_logs(logs, pa.table({"x": window}), NOW - timedelta(hours=1))
    spec = DriftMonitorSpec.model_validate(
        {"deploymentRef": {"name": "m"}, "window": "24h", "tests": {"numeric": "ks"}}
    )
    verdict, _ = run_check(spec, f"file://{logs}", f"file://{version}", NOW)
    expected = sps.ks_2samp(reference, window)
    (feature,) = verdict.features
    assert verdict.ks_reference is not None and verdict.ks_reference.exact
    assert verdict.ks_reference.source == "profileSource"
    assert feature.p_value_exact is True and "pValueExact" not in feature.as_result()
    assert feature.scores["ks_statistic"] == float(expected.statistic)
    assert feature.score == pytest.approx(float(expected.pvalue), abs=1e-9)

    # The source changed since: the sketch's KS, and the result says why.
    part = tmp_path / "data" / "part-1.parquet"
    table = pq.read_table(part)
    pq.write_table(table.slice(0, table.num_rows - 1), part)
    verdict, accumulators = run_check(spec, f"file://{logs}", f"file://{version}", NOW)
    (feature,) = verdict.features
    assert verdict.ks_reference is not None and not verdict.ks_reference.exact
    assert "part-1.parquet changed" in (verdict.ks_reference.reason or "")
    assert feature.as_result()["pValueExact"] is False
    page = render_report("m", verdict, accumulators, NOW, "3")
    assert "KS p-values are approximate" in page and "part-1.parquet changed" in page
