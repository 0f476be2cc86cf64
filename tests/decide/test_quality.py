"""The data-quality verdict from counted values and thresholds, the status it records and its
condition: table tests of the pure functions in kubeloop.decide.quality."""

from __future__ import annotations

from typing import Any

import pytest

from kubeloop.api.quality import DataValidationSpec, QualityThresholds
from kubeloop.decide.quality import (
    MAX_STATUS_ISSUES,
    FeatureCounts,
    feature_shares,
    holds_retrain,
    quality_condition,
    quality_verdict,
    recorded_quality,
)

MONITOR = QualityThresholds()
TRAINING = DataValidationSpec()


def _num(**counts: Any) -> FeatureCounts:
    return FeatureCounts(**{"feature": "tenure", "rows": 1000, "out_of_range": 0, **counts})


def _cat(**counts: Any) -> FeatureCounts:
    return FeatureCounts(**{"feature": "contract", "rows": 1000, "unseen": 0, **counts})


@pytest.mark.parametrize(
    ("counts", "thresholds", "issues"),
    [
        ([_num(), _cat()], MONITOR, []),  # clean
        # 40 % nulls where the reference had none: over 0 + 0.1
        ([_num(nulls=400)], MONITOR, [("tenure", "nullShare", 0.4, 0.1)]),
        # the allowance is above the reference's own share: 2 % + 10 % = 12 %
        ([_num(nulls=110, reference_null_share=0.02)], MONITOR, []),
        (
            [_num(nulls=130, reference_null_share=0.02)],
            MONITOR,
            [("tenure", "nullShare", 0.13, 0.12)],
        ),
        # the share equal to its threshold passes (above is an issue)
        ([_num(nulls=100)], MONITOR, []),
        # range and categories are shares of the non-missing values
        (
            [_num(nulls=500, out_of_range=30)],
            MONITOR,
            [("tenure", "nullShare", 0.5, 0.1), ("tenure", "outOfRangeShare", 0.06, 0.05)],
        ),
        ([_cat(unseen=200)], MONITOR, [("contract", "unseenCategoryShare", 0.2, 0.05)]),
        ([_cat(unseen=None)], MONITOR, []),  # the profile does not list every category
        # a missing column: every row lacks it; its nulls are not counted again
        (
            [_num(missing_column=1000, out_of_range=None)],
            MONITOR,
            [("tenure", "missingColumnShare", 1.0, 0.0)],
        ),
        ([_num(type_mismatch=250)], MONITOR, [("tenure", "typeMismatchShare", 0.25, 0.0)]),
        # 1 turns a check off
        ([_cat(unseen=900)], QualityThresholds(unseen_category_share=1), []),
        ([_num(nulls=1000)], QualityThresholds(null_share=1), []),
        # training defaults: nulls over 0.3 and schema only; range and categories off
        ([_num(nulls=250, out_of_range=700), _cat(unseen=500)], TRAINING, []),
        ([_num(nulls=350)], TRAINING, [("tenure", "nullShare", 0.35, 0.3)]),
        ([_num(missing_column=1000)], TRAINING, [("tenure", "missingColumnShare", 1.0, 0.0)]),
    ],
)
def test_quality_verdict(
    counts: list[FeatureCounts], thresholds: QualityThresholds, issues: list[tuple[Any, ...]]
) -> None:
    verdict = quality_verdict(counts, thresholds)
    got = [(i.feature, i.check, i.value, i.threshold) for i in verdict.issues]
    assert sorted(got) == sorted(issues)
    assert verdict.verdict == ("QualityIssue" if issues else "OK")


def test_broken_feed_issues_come_first_then_the_worst() -> None:
    counts = [
        _num(feature="a", nulls=200),
        _num(feature="b", nulls=900),
        _num(feature="c", out_of_range=900),
        _cat(unseen=100),
        _num(feature="d", missing_column=1000, out_of_range=None),
    ]
    verdict = quality_verdict(counts, MONITOR)
    assert [(i.feature, i.check) for i in verdict.issues] == [
        ("d", "missingColumnShare"),
        ("b", "nullShare"),
        ("a", "nullShare"),
        ("c", "outOfRangeShare"),
        ("contract", "unseenCategoryShare"),
    ]


_RANGE = {"feature": "calls", "check": "outOfRangeShare", "value": 0.06, "threshold": 0.05}


@pytest.mark.parametrize(
    ("quality", "held"),
    [
        (None, False),
        ({"verdict": "OK", "issues": []}, False),
        ({"verdict": "QualityIssue", "issues": [_RANGE]}, False),  # the world changed: retrain
        ({"verdict": "QualityIssue", "issues": [_RANGE, {**_RANGE, "check": "nullShare"}]}, True),
        ({"verdict": "QualityIssue", "issues": [{**_RANGE, "check": "missingColumnShare"}]}, True),
        ({"verdict": "QualityIssue", "issues": [{**_RANGE, "check": "typeMismatchShare"}]}, True),
    ],
)
def test_only_a_broken_feed_holds_a_retrain(quality: Any, held: bool) -> None:
    assert holds_retrain(quality) is held


@pytest.mark.parametrize(
    ("counts", "enough", "thresholds", "expected"),
    [
        ([_num(nulls=900)], False, MONITOR, "NoData"),  # too few rows say nothing
        ([], True, MONITOR, "NoData"),
        ([_num(nulls=900)], True, QualityThresholds(enabled=False), "OK"),
    ],
)
def test_no_judgement(
    counts: list[FeatureCounts], enough: bool, thresholds: QualityThresholds, expected: str
) -> None:
    verdict = quality_verdict(counts, thresholds, enough_rows=enough)
    assert (verdict.verdict, verdict.issues) == (expected, ())


def test_shares_are_taken_of_what_each_check_sees() -> None:
    counts = FeatureCounts(
        "tenure", rows=1000, missing_column=100, type_mismatch=100, nulls=200, out_of_range=60
    )
    assert feature_shares(counts) == {
        "missingColumnShare": 0.1,
        "typeMismatchShare": 0.1,
        "nullShare": 0.25,  # of the 800 rows with a well-typed column
        "outOfRangeShare": 0.1,  # of the 600 values
    }
    assert feature_shares(FeatureCounts("x", rows=0)) == {}


_ISSUE = {"feature": "tenure", "check": "nullShare", "value": 0.4, "threshold": 0.1}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),  # quality not checked
        ("QualityIssue", None),
        ({"verdict": "Broken"}, None),  # malformed: not recorded
        ({"verdict": "OK"}, {"verdict": "OK", "issues": []}),
        (
            {"verdict": "QualityIssue", "issues": [_ISSUE], "issuesOmitted": 3},
            {"verdict": "QualityIssue", "issues": [_ISSUE], "issuesOmitted": 3},
        ),
    ],
)
def test_recorded_quality(raw: Any, expected: Any) -> None:
    assert recorded_quality(raw) == expected


def test_recorded_quality_is_bounded() -> None:
    raw = {"verdict": "QualityIssue", "issues": [_ISSUE] * 100}
    recorded = recorded_quality(raw)
    assert recorded is not None and len(recorded["issues"]) == MAX_STATUS_ISSUES


@pytest.mark.parametrize(
    ("quality", "expected"),
    [
        (None, None),
        ({"verdict": "NoData", "issues": []}, None),  # says nothing: the condition stays
        ({"verdict": "OK", "issues": []}, (False, "QualityOK")),
        ({"verdict": "QualityIssue", "issues": [_ISSUE]}, (True, "QualityIssue")),
    ],
)
def test_quality_condition(quality: Any, expected: Any) -> None:
    condition = quality_condition(quality, "churn-29000")
    assert (condition[:2] if condition else None) == expected


def test_the_condition_names_the_failed_checks() -> None:
    quality = {"verdict": "QualityIssue", "issues": [_ISSUE] * 7, "issuesOmitted": 4}
    condition = quality_condition(quality, "churn-29000")
    assert condition is not None
    assert condition[2].startswith("check churn-29000: tenure nullShare 0.4 > 0.1, ")
    assert condition[2].endswith(" and 6 more")
