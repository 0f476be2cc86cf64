"""`kubeloop local get` prints exactly the CRDs' printer columns, evaluated like kubectl."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeloop.local.printer import evaluate, format_age, render_table, resolve_kind

NOW = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)


def crd_columns(repo_root: Path, plural: str) -> list[dict[str, Any]]:
    crd = yaml.safe_load((repo_root / "crds" / f"kubeloop.io_{plural}.yaml").read_text())
    columns: list[dict[str, Any]] = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    return columns


@pytest.mark.parametrize("alias", ["tp", "md", "dm"])
def test_header_is_the_committed_crds_printer_columns(repo_root: Path, alias: str) -> None:
    kind = resolve_kind(alias)
    columns = crd_columns(repo_root, kind.plural)
    header = render_table(kind, [], wide=True, now=NOW).split()
    assert header == ["NAME", *(w for c in columns for w in c["name"].upper().split())]
    narrow = render_table(kind, [], now=NOW)
    hidden = [c["name"].upper() for c in columns if c.get("priority", 0) > 0]
    assert all(name not in narrow.split() for name in hidden)


def test_evaluate_supports_the_filters_printer_columns_use() -> None:
    obj = {
        "status": {
            "conditions": [
                {"type": "Running", "status": "False"},
                {"type": "Ready", "status": "True"},
            ]
        },
        "spec": {"steps": [10, 50]},
    }
    assert evaluate(obj, '.status.conditions[?(@.type=="Ready")].status') == ["True"]
    assert evaluate(obj, ".spec.steps[1]") == [50]
    assert evaluate(obj, ".spec.steps[*]") == [10, 50]
    assert evaluate(obj, ".status.missing.deeper") == []


def test_rows_show_values_none_and_ages() -> None:
    created = (NOW - datetime.timedelta(minutes=5, seconds=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    pipeline = {
        "metadata": {"name": "churn", "namespace": "ml", "creationTimestamp": created},
        "spec": {"promotion": {"metric": "roc_auc"}},
        "status": {
            "phase": "Succeeded",
            "champion": {"version": "2", "score": 0.91},
            "currentRun": None,
        },
    }
    table = render_table(resolve_kind("trainingpipelines"), [pipeline], now=NOW)
    lines = table.splitlines()
    header = ["NAME", "PHASE", "CHAMPION", "METRIC", "SCORE", "PROGRESS", "TRIALS", "AGE"]
    assert lines[0].split() == header
    row = ["churn", "Succeeded", "2", "roc_auc", "0.91", "<none>", "<none>", "5m3s"]
    assert lines[1].split() == row
    # columns line up: every cell starts where its header does
    assert lines[1].index("Succeeded") == lines[0].index("PHASE")


def test_booleans_print_lowercase_and_namespace_column_with_all_namespaces() -> None:
    monitor = {
        "metadata": {
            "name": "churn",
            "namespace": "ml",
            "creationTimestamp": "2026-01-01T11:00:00Z",
        },
        "status": {"drifted": True, "driftShare": 0.5, "lastRunTime": "2026-01-01T11:59:30Z"},
    }
    table = render_table(resolve_kind("dm"), [monitor], all_namespaces=True, now=NOW)
    assert table.splitlines()[1].split() == ["ml", "churn", "true", "0.5", "30s", "60m"]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5, "5s"),
        (119, "119s"),
        (600, "10m"),
        (3 * 3600 + 60, "3h1m"),
        (30 * 3600, "30h"),
        (3 * 86400 + 3600, "3d1h"),
        (20 * 86400, "20d"),
    ],
)
def test_age_format_matches_kubectl(seconds: int, text: str) -> None:
    then = (NOW - datetime.timedelta(seconds=seconds)).isoformat()
    assert format_age(then, NOW) == text


def test_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="tp"):
        resolve_kind("pipelines")


def test_wide_rows_show_the_canarys_real_share_beside_the_declared_step() -> None:
    # status.canary as the operator writes it for the example's 25% step beside the HPA's
    # 2 stable pods: one canary pod, a third of the requests.
    deployment = {
        "metadata": {
            "name": "churn",
            "namespace": "ml",
            "creationTimestamp": "2026-01-01T11:00:00Z",
        },
        "status": {
            "modelVersion": "1",
            "readyReplicas": 3,
            "url": "http://churn.ml.svc:8080",
            "canary": {"version": "2", "uri": "s3://m/2/", "trafficPercent": 33, "stepPercent": 25},
        },
    }
    kind = resolve_kind("md")
    header, row = render_table(kind, [deployment], wide=True, now=NOW).splitlines()
    cells = dict(zip(header.split(), row.split(), strict=True))
    assert (cells["CANARY"], cells["STEP"]) == ("33", "25")
    narrow = render_table(kind, [deployment], now=NOW).splitlines()[0].split()
    assert "CANARY" not in narrow and "STEP" not in narrow  # -o wide only, like kubectl
