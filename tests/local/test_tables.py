"""The Table builder's pure parts: JSON paths, ages, Accept headers and row objects."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from kubeloop.local.cluster import tables

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
OBJ: dict[str, Any] = {
    "metadata": {"name": "churn", "creationTimestamp": "2026-01-02T03:00:00Z"},
    "status": {"conditions": [{"type": "Ready", "status": "True"}], "champion": {"score": 0.9}},
    "spec": {"items": [{"a": 1}]},
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (".metadata.name", "churn"),
        (".status.champion.score", 0.9),
        (".status.missing.deeper", None),
        ('.status.conditions[?(@.type=="Ready")].status', "True"),
        ('.status.conditions[?(@.type=="Other")].status', None),
        (".spec.items[0].a", 1),
        (".spec.items[3].a", None),
    ],
)
def test_json_path(path: str, expected: Any) -> None:
    assert tables.json_path(OBJ, path) == expected


def test_json_path_refuses_what_it_cannot_evaluate() -> None:
    with pytest.raises(ValueError, match=r"unsupported JSON path '\.spec\[\*\]'"):
        tables.json_path(OBJ, ".spec[*]")


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-5, "<invalid>"),
        (45, "45s"),
        (200, "3m20s"),
        (600, "10m"),
        (3 * 3600 + 60, "3h1m"),
        (20 * 3600, "20h"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (30 * 86400, "30d"),
        (3 * 365 * 86400, "3y0d"),
    ],
)
def test_human_duration(seconds: int, shown: str) -> None:
    assert tables.human_duration(seconds) == shown


@pytest.mark.parametrize(
    ("accept", "wanted"),
    [
        ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json", True),
        ("application/json, */*", False),
        ("application/json,application/json;as=Table;v=v1;g=meta.k8s.io", False),
        ("", False),
    ],
)
def test_wants_table(accept: str, wanted: bool) -> None:
    assert tables.wants_table(accept) is wanted


@pytest.mark.parametrize(
    ("include", "row_object"),
    [
        ("None", None),
        ("Metadata", {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1"}),
        ("Object", {"status": OBJ["status"]}),
    ],
)
def test_table_rows_embed_the_object_as_asked(
    include: str, row_object: dict[str, Any] | None
) -> None:
    columns = tables.columns_for("kubeloop.io/v1alpha1", "TrainingPipeline")
    built = tables.table(columns, [OBJ], include_object=include, now=NOW)
    assert built["kind"] == "Table" and built["apiVersion"] == "meta.k8s.io/v1"
    names = [c["name"] for c in built["columnDefinitions"]]
    assert names == ["Name", "Phase", "Champion", "Metric", "Score", "Progress", "Trials", "Age"]
    row = built["rows"][0]
    assert row["cells"] == ["churn", None, None, None, 0.9, None, None, "4m5s"]
    if row_object is None:
        assert "object" not in row
    else:
        assert row_object.items() <= row["object"].items()
        assert row["object"]["metadata"]["name"] == "churn"


def test_other_kinds_get_name_and_age() -> None:
    names = [c.name for c in tables.columns_for("v1", "ConfigMap")]
    assert names == ["Name", "Age"]
