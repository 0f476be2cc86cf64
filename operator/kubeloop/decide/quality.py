"""Data quality: from counts measured per feature and the thresholds to a verdict.

The monitor (on its traffic window) and the trainer (on its training data) count, per feature
of the reference profile, the rows they looked at and how many of them lacked the column, had a
column of the wrong type, were missing, lay outside the reference's range or held a category
the reference never had. This turns those counts into shares and each share, against its
threshold (`kubeloop.api.quality.QualityThresholds`), into an issue (a share above it) or
not. The shares are taken of what each check can see: nulls of the rows that had a well-typed
column, range and categories of the non-missing values.

A QualityIssue verdict asks for no retrain: onDrift.retrain reacts to drift only. Two kinds of
issue differ in what they say about a retrain. A broken feed (`BROKEN_FEED_CHECKS`: a feature
gone, mistyped, or far more often null) reads as drift too, and training on it would bake the
breakage into the next model: a drift found in the same window is held (`holds_retrain`,
kubeloop.decide.retrain). Values outside the training range and new categories are the world
changing: they are reported, and a drift retrain goes ahead (the new data is what it needs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from kubeloop.api.quality import QUALITY_CHECKS, QualityFinding, QualityStatus, QualityThresholds

__all__ = [
    "BROKEN_FEED_CHECKS",
    "MAX_STATUS_ISSUES",
    "FeatureCounts",
    "QualityVerdict",
    "feature_shares",
    "holds_retrain",
    "quality_condition",
    "quality_verdict",
    "recorded_quality",
]

Verdict = Literal["OK", "QualityIssue", "NoData"]
# (status, reason, message) of a condition.
Condition = tuple[bool, str, str]
# The checks that say the feed is broken (not that the world changed): they hold a retrain.
BROKEN_FEED_CHECKS = frozenset({"missingColumnShare", "typeMismatchShare", "nullShare"})
# status.quality.issues is bounded (QualityStatus allows 32; the result carries fewer).
MAX_STATUS_ISSUES = 32


@dataclass(frozen=True)
class FeatureCounts:
    """What was counted for one feature of the reference. `out_of_range` is None for a
    categorical feature, `unseen` None for a numeric one or when the profile does not list
    every reference category (then a new value cannot be told from the reference's tail)."""

    feature: str
    rows: int
    missing_column: int = 0
    type_mismatch: int = 0
    nulls: int = 0
    reference_null_share: float = 0.0
    out_of_range: int | None = None
    unseen: int | None = None


@dataclass(frozen=True)
class QualityVerdict:
    """The verdict, its issues (broken-feed checks first, in QUALITY_CHECKS order, then the
    largest excess over the threshold first, so a bounded list keeps what holds a retrain) and
    every measured share per (feature, check)."""

    verdict: Verdict
    issues: tuple[QualityFinding, ...] = ()
    shares: dict[tuple[str, str], float] = field(default_factory=dict)


def _share(part: int | None, whole: int) -> float | None:
    return None if part is None or whole <= 0 else part / whole


def feature_shares(counts: FeatureCounts) -> dict[str, float]:
    """The share each check measures for one feature (a check it cannot measure is absent)."""
    typed = counts.rows - counts.missing_column - counts.type_mismatch
    values = typed - counts.nulls
    shares = {
        "missingColumnShare": _share(counts.missing_column, counts.rows),
        "typeMismatchShare": _share(counts.type_mismatch, counts.rows),
        "nullShare": _share(counts.nulls, typed),
        "outOfRangeShare": _share(counts.out_of_range, values),
        "unseenCategoryShare": _share(counts.unseen, values),
    }
    return {check: share for check, share in shares.items() if share is not None}


def _limit(check: str, thresholds: QualityThresholds, counts: FeatureCounts) -> float:
    threshold: float = {
        "missingColumnShare": thresholds.missing_column_share,
        "typeMismatchShare": thresholds.type_mismatch_share,
        "nullShare": thresholds.null_share,
        "outOfRangeShare": thresholds.out_of_range_share,
        "unseenCategoryShare": thresholds.unseen_category_share,
    }[check]
    if check == "nullShare":  # an allowance above the reference's own share of nulls
        return min(counts.reference_null_share + threshold, 1.0)
    return threshold


def quality_verdict(
    measured: list[FeatureCounts], thresholds: QualityThresholds, *, enough_rows: bool = True
) -> QualityVerdict:
    """OK, QualityIssue (some share above its threshold) or NoData (`enough_rows` False, or
    nothing measured); OK without a judgement when `thresholds.enabled` is False. A share
    cannot exceed 1, so a threshold of 1 is a check turned off."""
    if not enough_rows or not measured or not thresholds.enabled:
        return QualityVerdict("NoData" if thresholds.enabled else "OK", (), {})
    issues: list[tuple[float, QualityFinding]] = []
    shares: dict[tuple[str, str], float] = {}
    for counts in measured:
        for check, value in feature_shares(counts).items():
            shares[(counts.feature, check)] = value
            limit = _limit(check, thresholds, counts)
            if value > limit:
                finding = QualityFinding(
                    feature=counts.feature,
                    check=check,
                    value=round(value, 6),
                    threshold=round(limit, 6),
                )
                issues.append((value - limit, finding))
    order = {check: i for i, check in enumerate(QUALITY_CHECKS)}
    issues.sort(key=lambda item: (order[item[1].check], -item[0], item[1].feature))
    found = tuple(finding for _, finding in issues)
    return QualityVerdict("QualityIssue" if found else "OK", found, shares)


def recorded_quality(raw: Any) -> dict[str, Any] | None:
    """status.quality from a check's result entry (None: the check judged no quality, or the
    entry is malformed); at most MAX_STATUS_ISSUES issues."""
    if not isinstance(raw, Mapping):
        return None
    try:
        parsed = QualityStatus.model_validate(
            {**raw, "issues": list(raw.get("issues") or [])[:MAX_STATUS_ISSUES]}
        )
    except ValidationError:
        return None
    return parsed.to_wire()


def quality_condition(quality: Mapping[str, Any] | None, job: str | None) -> Condition | None:
    """The QualityIssue condition (status, reason, message) for status.quality; None: leave
    it as it is (NoData and an unchecked window say nothing about quality)."""
    verdict = (quality or {}).get("verdict")
    if verdict not in ("OK", "QualityIssue"):
        return None
    issues = (quality or {}).get("issues") or []
    if verdict == "OK":
        return False, "QualityOK", f"check {job}: every data-quality check passed"
    named = ", ".join(
        f"{i['feature']} {i['check']} {i['value']:g} > {i['threshold']:g}" for i in issues[:5]
    )
    more = len(issues) - 5 + int((quality or {}).get("issuesOmitted") or 0)
    tail = f" and {more} more" if more > 0 else ""
    return True, "QualityIssue", f"check {job}: {named}{tail}"


def holds_retrain(quality: Mapping[str, Any] | None) -> bool:
    """Whether status.quality says the feed is broken (an issue of BROKEN_FEED_CHECKS), so a
    drift retrain of the same window must wait for clean data."""
    if not quality or quality.get("verdict") != "QualityIssue":
        return False
    return any(
        isinstance(i, Mapping) and i.get("check") in BROKEN_FEED_CHECKS
        for i in quality.get("issues") or []
    )
