"""Data quality: the checks a DriftMonitor runs on its window and a trainer on its data.

Every check measures a share per feature against the reference profile (the training data's),
and a share above its threshold is an issue. One set of fields serves both places; only their
defaults differ: a monitor flags values outside the training range and new categories, while
new training data may legitimately widen both.

A share is at most 1, so a threshold of 1 turns its check off. (Not null: an API server drops a
null field and applies its default.)
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from kubeloop.api.common import KubeModel

__all__ = [
    "QUALITY_CHECKS",
    "DataValidationSpec",
    "QualityFinding",
    "QualityStatus",
    "QualityThresholds",
]

# The checks, named as their threshold fields (and as the `check` label of the metrics).
QUALITY_CHECKS = (
    "missingColumnShare",
    "typeMismatchShare",
    "nullShare",
    "outOfRangeShare",
    "unseenCategoryShare",
)

# A share of rows or values: 0..1.
Share = Annotated[float, Field(ge=0.0, le=1.0)]


class QualityThresholds(KubeModel):
    """Data-quality checks of the DriftMonitor's window against the reference profile."""

    enabled: bool = Field(default=True, description="Run the data-quality checks.")
    missing_column_share: Share = Field(
        default=0.0,
        description="Share of rows whose data lacks a feature of the reference above this is "
        "an issue (0: any; 1: off).",
    )
    type_mismatch_share: Share = Field(
        default=0.0,
        description="Share of rows whose feature column has a type the reference's kind cannot "
        "take (text where a number is expected) above this is an issue (0: any; 1: off).",
    )
    null_share: Share = Field(
        default=0.1,
        description="A feature's share of missing values may exceed the reference's own share "
        "by at most this (0.1: a feature 2% missing in the reference may reach 12%; 1: off).",
    )
    out_of_range_share: Share = Field(
        default=0.05,
        description="Share of a numeric feature's values outside the reference's [min, max] "
        "above this is an issue (1: off).",
    )
    unseen_category_share: Share = Field(
        default=0.05,
        description="Share of a categorical feature's values the reference never had above "
        "this is an issue (judged when the profile lists every reference category, at most "
        "200; 1: off).",
    )


class DataValidationSpec(QualityThresholds):
    """Checks of the training data against the champion's profile before any training: a
    failed check ends the run with reason DataValidationFailed, so bad data never trains a
    model. Range and category checks are off by default (new data may widen both)."""

    enabled: bool = Field(
        default=True,
        description="Validate the training data against the champion's profile (when a "
        "champion exists).",
    )
    null_share: Share = Field(
        default=0.3,
        description="A feature's share of missing values may exceed the champion's training "
        "data's share by at most this (1: off).",
    )
    out_of_range_share: Share = Field(
        default=1.0,
        description="Share of a numeric feature's values outside the champion's training range "
        "above this is an issue (default 1: off).",
    )
    unseen_category_share: Share = Field(
        default=1.0,
        description="Share of a categorical feature's values the champion's training data "
        "never had above this is an issue (default 1: off).",
    )


class QualityFinding(KubeModel):
    """One failed data-quality check."""

    feature: str = Field(max_length=253, description="The feature.")
    check: str = Field(max_length=64, description="The check (its threshold field's name).")
    value: Share = Field(description="The measured share.")
    threshold: Share = Field(description="The share it may reach.")


class QualityStatus(KubeModel):
    """The data-quality verdict of the last check, separate from drift."""

    verdict: Literal["OK", "QualityIssue", "NoData"] = Field(
        description="OK, QualityIssue (a check failed) or NoData (too few rows)."
    )
    issues: list[QualityFinding] = Field(
        default_factory=list, max_length=32, description="Failed checks, worst first (bounded)."
    )
    issues_omitted: int | None = Field(
        default=None, ge=0, description="Failed checks left out of `issues` for size."
    )
