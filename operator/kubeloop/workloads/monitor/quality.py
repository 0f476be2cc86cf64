"""Data quality of a window (or of training data) against the reference profile.

Nothing here reads the data a second time: the drift accumulators already count missing values,
values below and above the reference's range (their fine histogram's outer bins) and values
outside the reference's categories. `SchemaTally` adds what only the batches show: a feature
column that is absent, or of a type the feature's kind cannot take (text where the reference
is numeric). Such rows count as missing for drift and are not fed to the accumulators, so a
broken column never stops the check. `measure` turns it all into the counts
`kubeloop.decide.quality.quality_verdict` judges. Memory: one dict entry per feature.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from kubeloop.api.quality import QualityThresholds
from kubeloop.decide.quality import FeatureCounts, QualityVerdict, quality_verdict
from kubeloop.profile import Profile
from kubeloop.workloads.monitor.accumulate import (
    CategoricalAccumulator,
    NumericAccumulator,
    accumulators_for,
)

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

# Threads folding a batch's features (kubeloop.workloads.monitor.quality.feed).
FEED_THREADS = min(os.cpu_count() or 1, 4)

__all__ = [
    "MAX_RESULT_ISSUES",
    "SchemaTally",
    "add_quality_metrics",
    "feed",
    "folds",
    "judge_quality",
    "measure",
    "measure_tables",
    "numeric_type",
    "quality_result",
    "run_all",
]

# Issues carried in the 4 KiB termination message (each ~90 bytes); status keeps them all up
# to its own bound.
MAX_RESULT_ISSUES = 8

Accumulator = NumericAccumulator | CategoricalAccumulator


def numeric_type(dtype: pa.DataType) -> bool:
    """Whether a column of `dtype` can feed a numeric feature (numbers, booleans, all-null)."""
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    return bool(
        pa.types.is_integer(dtype)
        or pa.types.is_floating(dtype)
        or pa.types.is_decimal(dtype)
        or pa.types.is_boolean(dtype)
        or pa.types.is_null(dtype)
    )


@dataclass
class SchemaTally:
    """Rows per feature whose batch lacked its column, or held it with a type its kind cannot
    take (any type can be a category: categorical features take every column)."""

    missing_column: dict[str, int] = field(default_factory=dict)
    type_mismatch: dict[str, int] = field(default_factory=dict)

    def usable(self, name: str, batch: pa.RecordBatch, *, numeric: bool) -> pa.Array | None:
        """The feature's column of `batch`, or None (counted) when it is absent or mistyped."""
        index = batch.schema.get_field_index(name)
        if index < 0:
            self.missing_column[name] = self.missing_column.get(name, 0) + batch.num_rows
            return None
        column = batch.column(index)
        if numeric and not numeric_type(column.type):
            self.type_mismatch[name] = self.type_mismatch.get(name, 0) + batch.num_rows
            return None
        return column


def feed(
    accumulators: dict[str, Accumulator],
    tally: SchemaTally,
    batch: pa.RecordBatch,
    more: Iterable[Callable[[], None]] = (),
) -> None:
    """Fold one batch into every feature's accumulator; an unusable column counts as missing.
    `more`: other work on the same batch (prediction drift, the label join), run alongside.

    The features are folded on FEED_THREADS threads: most of the work is numpy's sort and
    searches, which release the GIL, and each accumulator is touched by one task only."""
    run_all([*folds(accumulators, tally, batch), *more])


def folds(
    accumulators: dict[str, Accumulator], tally: SchemaTally, batch: pa.RecordBatch
) -> list[Callable[[], None]]:
    """The work of folding `batch` into each accumulator (`feed`); unusable columns are
    counted as missing here and now."""
    tasks: list[Callable[[], None]] = []
    for name, acc in accumulators.items():
        column = tally.usable(name, batch, numeric=isinstance(acc, NumericAccumulator))
        if column is None:
            acc.missing += batch.num_rows
        else:
            tasks.append(functools.partial(acc.add, column))
    return tasks


def run_all(tasks: list[Callable[[], None]]) -> None:
    """Run `tasks` on the FEED_THREADS threads and wait for all of them."""
    for future in [_feeder().submit(task) for task in tasks]:
        future.result()


@functools.cache
def _feeder() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(FEED_THREADS, thread_name_prefix="kubeloop-feed")


def measure(accumulators: dict[str, Accumulator], tally: SchemaTally) -> list[FeatureCounts]:
    """The counts each feature's quality is judged on."""
    out = []
    for name, acc in accumulators.items():
        absent = tally.missing_column.get(name, 0)
        mistyped = tally.type_mismatch.get(name, 0)
        ref_rows = acc.ref.count + acc.ref.missing
        counts: dict[str, Any] = {}
        if isinstance(acc, NumericAccumulator):
            if acc.ref.fine_edges.size:  # the outer fine bins: below the min, above the max
                counts["out_of_range"] = int(acc.fine[0] + acc.fine[-1])
        elif acc.ref.other == 0:
            # Every reference category is listed: what is not among them is new.
            counts["unseen"] = acc.unseen
        out.append(
            FeatureCounts(
                feature=name,
                rows=acc.count + acc.missing,
                missing_column=absent,
                type_mismatch=mistyped,
                nulls=acc.missing - absent - mistyped,
                reference_null_share=acc.ref.missing / ref_rows if ref_rows else 0.0,
                **counts,
            )
        )
    return out


def judge_quality(
    accumulators: dict[str, Accumulator],
    tally: SchemaTally,
    thresholds: QualityThresholds,
    *,
    enough_rows: bool,
) -> QualityVerdict:
    """The quality verdict of what the accumulators and the tally counted."""
    return quality_verdict(measure(accumulators, tally), thresholds, enough_rows=enough_rows)


def measure_tables(tables: Iterable[pa.Table], profile: Profile) -> list[FeatureCounts]:
    """The counts of whole tables (a trainer's data) against `profile`, batch by batch."""
    accumulators = accumulators_for(profile)
    tally = SchemaTally()
    for table in tables:
        for batch in table.to_batches():
            feed(accumulators, tally, batch)
    return measure(accumulators, tally)


def quality_result(verdict: QualityVerdict) -> dict[str, Any]:
    """The `quality` entry of the DriftResult: the verdict and its worst issues."""
    issues = [i.to_wire() for i in verdict.issues[:MAX_RESULT_ISSUES]]
    out: dict[str, Any] = {"verdict": verdict.verdict, "issues": issues}
    if len(verdict.issues) > len(issues):
        out["issuesOmitted"] = len(verdict.issues) - len(issues)
    return out


def add_quality_metrics(registry: CollectorRegistry, verdict: QualityVerdict) -> None:
    """`kubeloop_data_quality{feature,check}` (the measured share), the failed checks and the
    verdict flag, beside the drift metrics in the same Pushgateway group."""
    # Imported here: a check that pushes nothing does not pay for prometheus_client.
    from prometheus_client import Gauge

    share = Gauge(
        "kubeloop_data_quality",
        "Data-quality share per feature and check (nullShare, outOfRangeShare, "
        "unseenCategoryShare, missingColumnShare, typeMismatchShare).",
        ["feature", "check"],
        registry=registry,
    )
    failed = Gauge(
        "kubeloop_data_quality_check_failed",
        "1 when the feature's share is above the check's threshold.",
        ["feature", "check"],
        registry=registry,
    )
    issues = {(i.feature, i.check) for i in verdict.issues}
    for (feature, check), value in sorted(verdict.shares.items()):
        share.labels(feature, check).set(value)
        failed.labels(feature, check).set(int((feature, check) in issues))
    Gauge(
        "kubeloop_data_quality_issue",
        "1 when the last check's data-quality verdict is QualityIssue.",
        registry=registry,
    ).set(int(verdict.verdict == "QualityIssue"))
