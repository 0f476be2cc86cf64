"""`kubeloop monitor`: one drift check, what the DriftMonitor's CronJob runs.

Reads the window of payload logs, compares it feature by feature with the reference profile,
judges its data quality (spec.quality: a verdict of its own, in the result's `quality`),
pushes metrics to the Pushgateway, optionally writes an HTML report, and leaves a DriftResult
for the operator (docs/contracts.md). Exit 0 whenever a verdict was reached, drift included;
exit 1 only when the check itself failed (then the result says why).

Every setting comes from env (what the operator sets) or the equal flag (a laptop):

| flag | env |
| --- | --- |
| --monitor | KUBELOOP_MONITOR |
| --namespace | KUBELOOP_NAMESPACE |
| --spec (JSON text or a file) | KUBELOOP_MONITOR_SPEC |
| --payload-log-uri | KUBELOOP_PAYLOAD_LOG_URI |
| --reference-uri | KUBELOOP_REFERENCE_URI |
| --model-version | KUBELOOP_MODEL_VERSION |
| --report-uri | KUBELOOP_REPORT_URI |
| --pushgateway-url | KUBELOOP_PUSHGATEWAY_URL |
| --result-path | KUBELOOP_RESULT_PATH |
| --now (ISO time, end of the window) | KUBELOOP_NOW |
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.dataset as ds

from kubeloop.api.common import parse_duration
from kubeloop.api.monitor import DriftMonitorSpec, PerformanceSpec
from kubeloop.profile import Profile
from kubeloop.storage import StorageError, join, store_for
from kubeloop.workloads.monitor.accumulate import (
    CategoricalAccumulator,
    NumericAccumulator,
    accumulators_for,
)
from kubeloop.workloads.monitor.allocator import tune_allocator
from kubeloop.workloads.monitor.exact_reference import (
    ExactReference,
    KSReference,
    exact_ks_features,
    open_exact_reference,
)
from kubeloop.workloads.monitor.performance import LabelJoin, check_performance, no_predictions
from kubeloop.workloads.monitor.prediction_drift import OutputDrift
from kubeloop.workloads.monitor.quality import (
    SchemaTally,
    add_quality_metrics,
    feed,
    judge_quality,
    quality_result,
)
from kubeloop.workloads.monitor.reference import load_reference
from kubeloop.workloads.monitor.validation import Validation, open_validation
from kubeloop.workloads.monitor.verdict import DatasetVerdict, dataset_verdict, judge
from kubeloop.workloads.monitor.window import open_window, window_batches
from kubeloop.workloads.result import write_result

__all__ = ["main", "run_check"]

# Room left in the 4 KiB termination message for per-feature detail.
FEATURE_BUDGET = 3300
# Batches the riders' lane may lag behind the scan (each one held until its work is done).
RIDERS_BEHIND = 2

Accumulator = NumericAccumulator | CategoricalAccumulator


class Rider(Protocol):
    """Work that rides on the drift check's scan of the window: it names the columns it reads,
    prepares (reads labels, builds profiles: once, thread-safe; started off the main thread
    while the reference loads) and gives each batch's work, run on the riders' lane."""

    def columns(self, window: ds.Dataset) -> list[str]: ...

    def prepare(self, window: ds.Dataset) -> None: ...

    def tasks(self, batch: pa.RecordBatch) -> list[Callable[[], None]]: ...


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="kubeloop monitor", description=__doc__.split("\n")[0])
    parser.add_argument("--monitor", default=env("KUBELOOP_MONITOR", "drift"))
    parser.add_argument("--namespace", default=env("KUBELOOP_NAMESPACE", "default"))
    parser.add_argument("--spec", default=env("KUBELOOP_MONITOR_SPEC"))
    parser.add_argument("--payload-log-uri", default=env("KUBELOOP_PAYLOAD_LOG_URI"))
    parser.add_argument("--reference-uri", default=env("KUBELOOP_REFERENCE_URI"))
    parser.add_argument("--model-version", default=env("KUBELOOP_MODEL_VERSION"))
    parser.add_argument("--report-uri", default=env("KUBELOOP_REPORT_URI") or None)
    parser.add_argument("--pushgateway-url", default=env("KUBELOOP_PUSHGATEWAY_URL") or None)
    parser.add_argument("--result-path", default=env("KUBELOOP_RESULT_PATH"))
    parser.add_argument("--now", default=env("KUBELOOP_NOW") or None)
    return parser


def _spec(text: str | None, monitor: str) -> DriftMonitorSpec:
    if not text:
        return DriftMonitorSpec.model_validate({"deploymentRef": {"name": monitor}})
    if not text.lstrip().startswith("{"):
        text = Path(text).read_text()
    data = json.loads(text)
    data = data.get("spec", data)  # a whole DriftMonitor is fine too
    data.setdefault("deploymentRef", {"name": monitor})
    return DriftMonitorSpec.model_validate(data)


def _schedule_interval(schedule: str, now: datetime) -> float | None:
    try:
        from croniter import croniter

        it = croniter(schedule, now)
        first = it.get_next(datetime)
        return float((it.get_next(datetime) - first).total_seconds())
    except (ImportError, ValueError, KeyError):
        return None


def run_check(
    spec: DriftMonitorSpec,
    payload_log_uri: str,
    reference_uri: str,
    now: datetime,
    tally: SchemaTally | None = None,
    *,
    riders: Sequence[Rider] = (),
    dictionary_columns: Sequence[str] = (),
) -> tuple[DatasetVerdict, dict[str, Accumulator]]:
    """Stream the window through the accumulators and reach a verdict; `tally` counts the
    rows whose feature columns are absent or mistyped (for the data-quality verdict).
    `riders` read their columns in the same scan; `dictionary_columns` of theirs are decoded
    as dictionaries, as the categorical features are."""
    start = now - parse_duration(spec.window)
    dataset = open_window(payload_log_uri, start, now)
    # The riders prepare (read labels, build their profiles) while the reference loads.
    prepared = (
        _preparer().submit(_prepare, riders, dataset) if dataset is not None and riders else None
    )
    served = [n for n in dataset.schema.names if not n.startswith("_")] if dataset else None
    try:
        profile = load_reference(reference_uri, spec.features, served)
        dictionary = [*profile.categorical, *dictionary_columns]
        if dataset is not None and dictionary:
            dataset = open_window(payload_log_uri, start, now, dictionary)
        # KS deciding: computed exactly from the reference data (raw Parquet, or the rows the
        # profile was built from), else from the sketch, and the result says which.
        exact = open_exact_reference(reference_uri, profile) if spec.tests.numeric == "ks" else None
        return judge_window(
            spec, dataset, profile, start, now, tally=tally, exact=exact, riders=riders
        )
    finally:
        if prepared is not None:
            wait([prepared])  # a failure there recurs where the rider prepares again


def _prepare(riders: Sequence[Rider], window: ds.Dataset) -> None:
    for rider in riders:
        rider.prepare(window)


@functools.cache
def _preparer() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(1, thread_name_prefix="kubeloop-prepare")


@functools.cache
def _rider_lane() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(1, thread_name_prefix="kubeloop-riders")


def _ride(riders: Sequence[Rider], window: ds.Dataset, batch: pa.RecordBatch) -> None:
    """One batch's work of every rider, in order (on the riders' lane)."""
    for rider in riders:
        rider.prepare(window)  # done already, unless the scan outran the preparation
        for task in rider.tasks(batch):
            task()


def judge_window(
    spec: DriftMonitorSpec,
    dataset: ds.Dataset | None,
    profile: Profile,
    start: datetime,
    now: datetime,
    *,
    tally: SchemaTally | None = None,
    exact: ExactReference | None = None,
    riders: Sequence[Rider] = (),
) -> tuple[DatasetVerdict, dict[str, Accumulator]]:
    """Compare the window's columns named in `profile` with it, with the spec's tests; with
    `exact`, the reference data for the KS test, it is computed exactly where that allows.
    `riders` get every batch of the same scan (their columns read with the features', once)."""
    accumulators = accumulators_for(profile)
    tally = tally if tally is not None else SchemaTally()
    rows = 0
    if dataset is not None:
        columns = list(accumulators)
        for rider in riders:
            columns += rider.columns(dataset)
        # The riders' work runs in order on a lane of its own, a few batches behind at most,
        # rather than inside each batch's wait for the features: a lookup of the label join
        # (a chunk's worth of ids) then never holds up the next batch.
        behind: deque[Future[None]] = deque()
        for batch in window_batches(dataset, list(dict.fromkeys(columns)), start, now):
            rows += batch.num_rows
            if riders:
                while len(behind) >= RIDERS_BEHIND:
                    behind.popleft().result()
                behind.append(_rider_lane().submit(_ride, riders, dataset, batch))
            # A feature the server did not log, or logged with the wrong type: missing.
            feed(accumulators, tally, batch)
        while behind:
            behind.popleft().result()
    ks_reference = None
    if exact is not None and dataset is not None and rows >= spec.min_rows:
        ks_reference = exact_ks_features(accumulators, dataset, exact, start, now)
    return judge_accumulators(spec, accumulators, rows, ks_reference), accumulators


def judge_accumulators(
    spec: DriftMonitorSpec,
    accumulators: dict[str, Accumulator],
    rows: int,
    ks_reference: KSReference | None = None,
) -> DatasetVerdict:
    """The verdict of what `accumulators` counted over a window of `rows` rows (`ks_reference`:
    what the KS tests were computed from, when it was asked for)."""
    features = []
    if rows >= spec.min_rows:
        for name, acc in accumulators.items():
            test = (
                spec.tests.numeric
                if isinstance(acc, NumericAccumulator)
                else spec.tests.categorical
            )
            features.append(
                judge(
                    name,
                    acc,
                    test,
                    spec.thresholds,
                    binning=spec.tests.psi_bins,
                    bins=spec.tests.psi_bin_count,
                )
            )
    verdict = dataset_verdict(features, rows, spec.min_rows, spec.thresholds.drift_share)
    if ks_reference is not None and verdict.features:
        verdict = replace(verdict, ks_reference=ks_reference)
    return verdict


def _features_result(
    verdict: DatasetVerdict, budget: int = FEATURE_BUDGET
) -> tuple[dict[str, Any], int]:
    """Per-feature entries, drifted first, within `budget` bytes of the termination message."""
    ordered = sorted(verdict.features, key=lambda f: (not f.drifted, f.name))
    out: dict[str, Any] = {}
    size = 0
    for feature in ordered:
        entry = feature.as_result()
        cost = len(json.dumps({feature.name: entry}, separators=(",", ":")))
        if size + cost > budget:
            break
        out[feature.name] = entry
        size += cost
    return out, len(ordered) - len(out)


def output_drift(validation: Validation | None) -> OutputDrift | None:
    """Prediction drift's accumulators; None without validation predictions."""
    if validation is None or not validation.has_prediction:
        return None
    return OutputDrift(validation)


class SharedPerformance:
    """spec.performance's label join fed by the drift check's scan (both windows equal); a
    labels problem fails this section only, not the check."""

    def __init__(
        self,
        spec: PerformanceSpec,
        validation: Validation | None,
        model_version: str | None = None,
    ) -> None:
        self.spec = spec
        self.validation = validation
        self.model_version = model_version
        self.join: LabelJoin | None = None
        self.failed: dict[str, Any] | None = None
        self._prepared = threading.Lock()
        self._ready = False

    def columns(self, window: ds.Dataset) -> list[str]:
        if "_prediction" not in window.schema.names:
            return []
        return LabelJoin.columns_of(window.schema, self.model_version)

    def prepare(self, window: ds.Dataset) -> None:
        with self._prepared:  # reads the labels (and calibrates the estimate): once
            if self._ready:
                return
            self._ready = True
            if "_prediction" not in window.schema.names:
                return
            try:
                rows = window.count_rows()  # from the files' metadata
                self.join = LabelJoin(
                    self.spec, window.schema, self.validation, rows, self.model_version
                )
            except (StorageError, ValueError, OSError) as exc:
                self.failed = _failed(exc)

    def tasks(self, batch: pa.RecordBatch) -> list[Callable[[], None]]:
        return [functools.partial(self._add, batch)] if self.join is not None else []

    def _add(self, batch: pa.RecordBatch) -> None:
        if self.join is None:
            return
        try:
            self.join.add(batch)
        except (StorageError, ValueError, OSError) as exc:
            self.join, self.failed = None, _failed(exc)

    def result(self) -> dict[str, Any]:
        """The performance section."""
        if self.failed is not None:
            return self.failed
        try:
            found = self.join.result() if self.join is not None else no_predictions(self.spec)
        except (StorageError, ValueError, OSError) as exc:
            return _failed(exc)
        return found.as_result()


def _failed(exc: Exception) -> dict[str, Any]:
    return {"verdict": "Failed", "message": str(exc)[:1000]}


def _performance(
    spec: DriftMonitorSpec, args: argparse.Namespace, now: datetime, validation: Validation | None
) -> dict[str, Any]:
    """The performance section from a scan of its own window; a labels problem fails this
    section only, not the check."""
    assert spec.performance is not None
    try:
        found = check_performance(
            spec.performance,
            args.payload_log_uri,
            args.reference_uri,
            now,
            args.model_version or None,
            validation=validation,
        )
    except (StorageError, ValueError, OSError) as exc:
        return _failed(exc)
    return found.as_result()


def _outputs_result(verdict: DatasetVerdict) -> dict[str, Any]:
    return {
        "drifted": any(f.drifted for f in verdict.features),
        "features": {f.name: f.as_result() for f in verdict.features[:8]},
    }


def _report_target(uri: str, monitor: str, now: datetime) -> str:
    if uri.endswith(".html"):
        return uri
    return join(uri, f"{monitor}-{now.strftime('%Y%m%dT%H%M%SZ')}.html")


def main(argv: list[str]) -> int:
    """Entry point of `kubeloop monitor`."""
    tune_allocator()  # before any thread of the check allocates
    args = _parser().parse_args(argv)
    started = time.monotonic()
    try:
        now = datetime.fromisoformat(args.now) if args.now else datetime.now(UTC)
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        if not args.payload_log_uri or not args.reference_uri:
            raise ValueError("set KUBELOOP_PAYLOAD_LOG_URI and KUBELOOP_REFERENCE_URI")
        spec = _spec(args.spec, args.monitor)
        tally = SchemaTally()
        # The version's validation outputs (prediction drift's reference, the estimate's
        # calibrator): as the trainer derived them, else from its validation predictions.
        validation = open_validation(args.reference_uri)
        drift_of_outputs = output_drift(validation)
        riders: list[Rider] = [drift_of_outputs] if drift_of_outputs is not None else []
        shared = None
        if spec.performance is not None and parse_duration(
            spec.performance.window
        ) == parse_duration(spec.window):
            shared = SharedPerformance(spec.performance, validation, args.model_version or None)
            riders.append(shared)
        verdict, accumulators = run_check(
            spec,
            args.payload_log_uri,
            args.reference_uri,
            now,
            tally,
            riders=riders,
            dictionary_columns=drift_of_outputs.dictionary_columns if drift_of_outputs else [],
        )
        quality = (
            judge_quality(
                accumulators, tally, spec.quality, enough_rows=verdict.rows >= spec.min_rows
            )
            if spec.quality.enabled
            else None
        )
        outputs = (
            judge_accumulators(spec, drift_of_outputs.accumulators, verdict.rows)
            if drift_of_outputs is not None
            else None
        )
    except (StorageError, ValueError, OSError) as exc:
        write_result(
            {
                "kind": "DriftResult",
                "ok": False,
                "verdict": "Failed",
                "reason": type(exc).__name__,
                "message": str(exc),
            },
            args.result_path,
        )
        return 1
    duration = time.monotonic() - started
    result: dict[str, Any] = {
        "kind": "DriftResult",
        "ok": True,
        "verdict": verdict.verdict,
        "driftShare": round(verdict.drift_share, 6),
        "rows": verdict.rows,
        "modelVersion": args.model_version,
        "window": {
            "start": (now - parse_duration(spec.window)).isoformat(),
            "end": now.isoformat(),
        },
    }
    budget = FEATURE_BUDGET
    if quality is not None:
        result["quality"] = quality_result(quality)
        budget -= len(json.dumps(result["quality"], separators=(",", ":")))
    if shared is not None:
        result["performance"] = shared.result()
    elif spec.performance is not None:
        result["performance"] = _performance(spec, args, now, validation)
    if outputs is not None and outputs.features:
        result["predictionDrift"] = _outputs_result(outputs)
    budget -= len(json.dumps({k: result.get(k) for k in ("performance", "predictionDrift")}))
    if verdict.ks_reference is not None:
        result["ksReference"] = verdict.ks_reference.as_result()
        budget -= len(json.dumps(result["ksReference"], separators=(",", ":")))
        if not verdict.ks_reference.exact:
            print(
                f"KS p-values from the profile's sketch, not the full reference: "
                f"{verdict.ks_reference.reason}",
                file=sys.stderr,
                flush=True,
            )
    features, omitted = _features_result(verdict, budget)
    result["features"] = features
    if omitted:
        result["featuresOmitted"] = omitted
    for feature in verdict.features:
        print(
            f"drift {feature.name}: {feature.test}={feature.score:.6g} "
            f"(threshold {feature.threshold:g}) drifted={feature.drifted}",
            flush=True,
        )
    if args.report_uri:
        target = _report_target(args.report_uri, args.monitor, now)
        from kubeloop.workloads.monitor.report import render_report  # only when asked for

        try:
            page = render_report(
                args.monitor, verdict, accumulators, now, args.model_version, quality=quality
            )
            store_for(target).write_bytes(target, page.encode())
            result["reportUri"] = target
        except StorageError as exc:  # a missing picture must not hide the verdict
            print(f"report not written: {exc}", file=sys.stderr, flush=True)
    if args.pushgateway_url:
        # Imported here: prometheus_client costs a tenth of a second, for nothing without a push.
        from kubeloop.workloads.monitor.metrics import (
            add_performance,
            add_prediction_drift,
            build_registry,
            push_metrics,
        )

        registry = build_registry(verdict, duration, _schedule_interval(spec.schedule, now))
        if quality is not None:
            add_quality_metrics(registry, quality)
        if "performance" in result:
            add_performance(registry, result["performance"])
        if outputs is not None and outputs.features:
            add_prediction_drift(registry, outputs)
        try:
            push_metrics(args.pushgateway_url, args.namespace, args.monitor, registry)
            result["pushed"] = True
        except OSError as exc:  # the operator still gets the verdict; the alert on staleness fires
            print(f"Pushgateway push failed: {exc}", file=sys.stderr, flush=True)
            result["pushed"] = False
    if "performance" in result:
        print(f"performance {json.dumps(result['performance'], sort_keys=True)}", flush=True)
    print(
        f"drift verdict={verdict.verdict} share={verdict.drift_share:.3f} rows={verdict.rows} "
        f"seconds={duration:.2f}",
        flush=True,
    )
    if quality is not None:
        for issue in quality.issues:
            print(
                f"quality {issue.feature}: {issue.check}={issue.value:.6g} "
                f"(threshold {issue.threshold:g})",
                flush=True,
            )
        print(f"quality verdict={quality.verdict} issues={len(quality.issues)}", flush=True)
    write_result(result, args.result_path)
    return 0
