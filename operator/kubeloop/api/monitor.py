"""DriftMonitor: a scheduled comparison of served traffic with the training data."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from kubeloop.api.common import (
    NAME_RULE,
    CelRule,
    Condition,
    CronSchedule,
    Duration,
    KubeModel,
    ListSet,
    LocalObjectReference,
    ObjectStoreUri,
    Placement,
    Quantity,
    SecretReference,
)
from kubeloop.api.quality import QualityStatus, QualityThresholds

__all__ = [
    "CLASSIFICATION_METRICS",
    "HIGHER_IS_BETTER",
    "PUSHGATEWAY_JOB",
    "REFERENCE_PATTERN",
    "REGRESSION_METRICS",
    "DriftMonitor",
    "DriftMonitorSpec",
    "DriftMonitorStatus",
    "DriftTests",
    "DriftThresholds",
    "FeatureDrift",
    "KSReferenceStatus",
    "LabelsSource",
    "MonitorResources",
    "OnDegradedSpec",
    "OnDriftSpec",
    "PerformanceSpec",
    "PerformanceStatus",
    "PerformanceThresholds",
    "PredictionDriftStatus",
    "ReportSpec",
    "pushgateway_group",
]

REFERENCE_PATTERN = (
    r"^(champion-training-data|s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?|file://.+)$"
)


class DriftTests(KubeModel):
    """Statistical test per feature type."""

    numeric: Literal["psi", "ks", "wasserstein", "jensenshannon"] = Field(
        default="psi", description="Test for numeric features."
    )
    categorical: Literal["chi2", "jensenshannon", "psi"] = Field(
        default="chi2", description="Test for categorical features."
    )
    psi_bins: Literal["quantile", "equalWidth"] = Field(
        default="quantile",
        description=(
            "Bins of numeric PSI and Jensen-Shannon: quantile (each holds an equal share of "
            "the reference) or equalWidth (Evidently's numeric PSI binning, but over the "
            "reference's 0.5-99.5% quantile range plus two open outer bins, so a long tail "
            "does not squeeze the mass into a few bins)."
        ),
    )
    psi_bin_count: int = Field(
        default=20,
        ge=2,
        le=1000,
        description=(
            "Number of numeric PSI / Jensen-Shannon bins; 20 quantile bins catch a 1.5x scale "
            "shift that 10 miss."
        ),
    )


class DriftThresholds(KubeModel):
    """When a feature, and the dataset, count as drifted."""

    psi: float = Field(default=0.2, gt=0, description="PSI above this is drift.")
    p_value: float = Field(
        default=0.05, gt=0, lt=1, description="KS / chi2 p-value below this is drift."
    )
    wasserstein: float = Field(
        default=0.1, gt=0, description="Normalised Wasserstein distance above this is drift."
    )
    jensenshannon: float = Field(
        default=0.1, gt=0, le=1, description="Jensen-Shannon distance above this is drift."
    )
    ks_statistic: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description=(
            "Effect-size floor of the KS test: a p-value below pValue is drift only when the "
            "largest ECDF gap is at least this (0 turns the floor off)."
        ),
    )
    cramers_v: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description=(
            "Effect-size floor of the chi2 test: a p-value below pValue is drift only when "
            "Cramer's V is at least this (0 turns the floor off)."
        ),
    )
    drift_share: float = Field(
        default=0.3,
        gt=0,
        le=1,
        description="The dataset drifted when at least this share of features drifted.",
    )


class OnDriftSpec(KubeModel):
    """What happens when drift is detected."""

    retrain: bool = Field(
        default=False,
        description="Request one run of the pipeline behind the deployment per drift episode.",
    )


class MonitorResources(Placement):
    """Compute for each check's pod, and where it may be scheduled."""

    cpu: Quantity = Field(default="1", description="CPU request and limit per pod.")
    memory: Quantity = Field(default="1Gi", description="Memory request and limit per pod.")


class ReportSpec(KubeModel):
    """The HTML report each check writes: verdicts, data quality, distributions side by side."""

    enabled: bool = Field(default=False, description="Write one HTML report per check.")
    destination: ObjectStoreUri | None = Field(
        default=None,
        description="Folder of the reports (s3://... or file://...); default `_reports/<monitor>/` "
        "under the deployment's payload-log destination. Each report is "
        "`<monitor>-<time>.html`; status.reportUri names the last one.",
    )


CLASSIFICATION_METRICS = ("accuracy", "roc_auc", "f1")
REGRESSION_METRICS = ("rmse", "mae")
# The metrics a threshold is a floor for (higher is better); the others are ceilings.
HIGHER_IS_BETTER = frozenset(CLASSIFICATION_METRICS)
PerformanceMetric = Literal["accuracy", "roc_auc", "f1", "rmse", "mae"]


class LabelsSource(KubeModel):
    """Where the delayed ground truth arrives: Parquet with a request id and the true label."""

    uri: ObjectStoreUri = Field(
        description="Parquet file or folder of labels (s3://... or file://...), read with the "
        "monitor's storage credentials (spec.storageSecretRef)."
    )
    id_column: str = Field(
        default="request_id",
        min_length=1,
        max_length=256,
        description="Column holding the inference request id (the V2 request `id`, or the id "
        "the server assigned, as the payload log's `_request_id`).",
    )
    label_column: str = Field(
        default="label", min_length=1, max_length=256, description="Column of the true label."
    )
    row_column: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Column of the row's position inside its request (payload log `_row`), "
        "for requests of several rows; absent: a label belongs to row 0 of its request.",
    )


class PerformanceThresholds(KubeModel):
    """Per metric, the value that makes the verdict Degraded (unset: not judged)."""

    accuracy: float | None = Field(default=None, ge=0, le=1, description="Degraded below this.")
    roc_auc: float | None = Field(default=None, ge=0, le=1, description="Degraded below this.")
    f1: float | None = Field(default=None, ge=0, le=1, description="Degraded below this.")
    rmse: float | None = Field(default=None, ge=0, description="Degraded above this.")
    mae: float | None = Field(default=None, ge=0, description="Degraded above this.")

    def items(self) -> dict[str, float]:
        """The thresholds that are set, by metric name."""
        return {
            name: value
            for name in (*CLASSIFICATION_METRICS, *REGRESSION_METRICS)
            if (value := getattr(self, name)) is not None
        }


class OnDegradedSpec(KubeModel):
    """What happens when measured performance degrades."""

    retrain: bool = Field(
        default=False,
        description="Request one run of the pipeline behind the deployment per degradation "
        "episode (a run of Degraded verdicts).",
    )


def _metrics_one_task(p: PerformanceSpec) -> bool:
    return p.metrics is None or (
        set(p.metrics) <= set(CLASSIFICATION_METRICS) or set(p.metrics) <= set(REGRESSION_METRICS)
    )


def _thresholds_measured(p: PerformanceSpec) -> bool:
    return p.metrics is None or set(p.thresholds.items()) <= set(p.metrics)


def _quoted(names: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{n}'" for n in names) + "]"


class PerformanceSpec(KubeModel):
    """Model performance from delayed ground truth, joined to the payload log by request id."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            cel=f"!has(self.metrics) || self.metrics.all(m, m in "
            f"{_quoted(CLASSIFICATION_METRICS)}) || self.metrics.all(m, m in "
            f"{_quoted(REGRESSION_METRICS)})",
            check=_metrics_one_task,
            message="spec.performance.metrics: list classification metrics (accuracy, roc_auc, "
            "f1) or regression metrics (rmse, mae), not both",
            field_path=".metrics",
        ),
        CelRule(
            cel="!has(self.metrics) || "
            + " && ".join(
                f"(!has(self.thresholds.{camel}) || '{name}' in self.metrics)"
                for name, camel in (
                    ("accuracy", "accuracy"),
                    ("roc_auc", "rocAuc"),
                    ("f1", "f1"),
                    ("rmse", "rmse"),
                    ("mae", "mae"),
                )
            ),
            check=_thresholds_measured,
            message="spec.performance.thresholds: a threshold is set for a metric that "
            "spec.performance.metrics does not list; add the metric or remove the threshold",
            field_path=".thresholds",
        ),
    )

    labels: LabelsSource = Field(description="Where the delayed labels arrive.")
    window: Duration = Field(
        default="168h",
        description="How far back served requests are joined with labels (labels arrive late: "
        "longer than the drift window), e.g. 168h.",
    )
    metrics: Annotated[list[PerformanceMetric], ListSet()] | None = Field(
        default=None,
        min_length=1,
        max_length=5,
        description="Metrics to compute, with scikit-learn's definitions; default by the "
        "model's task: accuracy, roc_auc, f1 (classification) or rmse, mae (regression).",
    )
    min_labelled_rows: int = Field(
        default=100,
        ge=1,
        description="Fewer labelled rows in the window give verdict InsufficientLabels.",
    )
    min_coverage: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="A smaller share of labelled rows gives verdict InsufficientLabels.",
    )
    thresholds: PerformanceThresholds = Field(
        default_factory=PerformanceThresholds,
        description="Per metric, the value past which the verdict is Degraded.",
    )
    estimate: bool = Field(
        default=True,
        description="Classifiers: also estimate accuracy, roc_auc and f1 from the logged "
        "probabilities alone (confidence-based performance estimation, as NannyML's CBPE).",
    )
    on_degraded: OnDegradedSpec = Field(
        default_factory=OnDegradedSpec, description="Reaction to a Degraded verdict."
    )


class DriftMonitorSpec(KubeModel):
    """Desired state of a DriftMonitor."""

    deployment_ref: LocalObjectReference = Field(
        description="ModelDeployment whose payload logs to read."
    )
    reference: str = Field(
        default="champion-training-data",
        pattern=REFERENCE_PATTERN,
        max_length=1024,
        description="`champion-training-data` (the served version's training profile) or a "
        "Parquet URI (s3://... or file://...).",
    )
    schedule: CronSchedule = Field(
        default="*/30 * * * *", description="Cron (5 fields, UTC) of the checks."
    )
    window: Duration = Field(default="24h", description="How far back traffic is read, e.g. 24h.")
    min_rows: int = Field(
        default=100, ge=1, description="Fewer rows in the window give verdict NoData."
    )
    features: Annotated[list[str], ListSet()] | None = Field(
        default=None,
        max_length=1024,
        description="Features to test, each once; default all features of the model.",
    )
    tests: DriftTests = Field(default_factory=DriftTests, description="Tests per feature type.")
    thresholds: DriftThresholds = Field(default_factory=DriftThresholds, description="Thresholds.")
    on_drift: OnDriftSpec = Field(default_factory=OnDriftSpec, description="Reaction to drift.")
    suspend: bool = Field(default=False, description="Pause the schedule.")
    resources: MonitorResources = Field(
        default_factory=MonitorResources, description="Compute per check pod, and placement."
    )
    storage_secret_ref: SecretReference | None = Field(
        default=None, description="Object-store credentials; default: the deployment's."
    )
    image: str | None = Field(
        default=None, max_length=512, description="Monitor image; default from the operator."
    )
    quality: QualityThresholds = Field(
        default_factory=QualityThresholds,
        description="Data-quality checks of the window (nulls, range, new categories, schema) "
        "against the reference: a separate verdict in status.quality, never a retrain.",
    )
    report: ReportSpec = Field(default_factory=ReportSpec, description="The HTML report.")
    performance: PerformanceSpec | None = Field(
        default=None,
        description="Model performance from delayed labels (and, for classifiers, a "
        "label-free estimate); absent: not measured.",
    )


class FeatureDrift(KubeModel):
    """The verdict for one feature."""

    test: str = Field(description="Test used.")
    score: float = Field(description="Statistic (PSI, distance) or p-value.")
    threshold: float | None = Field(default=None, description="Threshold applied.")
    drifted: bool = Field(description="Whether this feature drifted.")
    p_value_exact: bool | None = Field(
        default=None,
        description="false: this feature's KS p-value comes from the reference profile's "
        "sketch, not the full reference data, so it may differ from scipy's by up to ~0.02 "
        "(status.ksReference.reason says why); absent: exact, or not a KS test.",
    )


class KSReferenceStatus(KubeModel):
    """What the deciding KS test (spec.tests.numeric: ks) was computed against."""

    exact: bool = Field(
        description="Whether the KS p-values come from the full reference data (scipy's)."
    )
    source: Literal["parquet", "profileSource", "profile"] = Field(
        description="parquet: a raw Parquet reference; profileSource: the data the version's "
        "profile.json was built from, streamed again (unchanged since); profile: the "
        "profile's sketch."
    )
    reason: str | None = Field(
        default=None,
        max_length=1024,
        description="Why the sketch was used (the profile records no source, or it moved, "
        "changed or cannot be read).",
    )


class PerformanceStatus(KubeModel):
    """Measured (and estimated) performance of the last check."""

    verdict: Literal["OK", "Degraded", "InsufficientLabels", "Failed"] = Field(
        description="Degraded: a measured metric is past its threshold; Failed: the labels "
        "could not be read (see message)."
    )
    message: str | None = Field(
        default=None, max_length=1024, description="Why the verdict is Failed."
    )
    measured: dict[str, float] = Field(
        default_factory=dict, description="Metrics on the labelled rows of the window."
    )
    estimated: dict[str, float] = Field(
        default_factory=dict,
        description="Label-free estimate (CBPE) over every row of the window (classifiers).",
    )
    breached: list[str] = Field(default_factory=list, description="Metrics past threshold.")
    rows: int = Field(default=0, ge=0, description="Served rows in the performance window.")
    labelled_rows: int = Field(default=0, ge=0, description="Rows joined with a label.")
    coverage: float = Field(default=0.0, ge=0, le=1, description="labelledRows / rows.")
    duplicate_labels: int = Field(
        default=0, ge=0, description="Label rows dropped as duplicates of an id (last wins)."
    )
    unmatched_labels: int = Field(
        default=0, ge=0, description="Labels whose id matched no served row in the window."
    )
    calibration: Literal["validation", "labels", "none"] | None = Field(
        default=None,
        description="What calibrated the estimate: the version's validation predictions, the "
        "window's labelled rows, or nothing (probabilities taken as calibrated).",
    )
    retrain_requested_at: str | None = Field(
        default=None,
        json_schema_extra={"format": "date-time"},
        description="When this degradation episode requested a retrain (cleared when it ends).",
    )


class PredictionDriftStatus(KubeModel):
    """The model's outputs compared with its predictions on the validation data."""

    drifted: bool = Field(description="Whether the prediction (or a probability) drifted.")
    features: dict[str, FeatureDrift] = Field(
        default_factory=dict,
        description="Per output (`_prediction`, `_proba_<class>`): test, score, verdict.",
    )


class DriftMonitorStatus(KubeModel):
    """Observed state of a DriftMonitor, written only by the operator."""

    observed_generation: int | None = Field(default=None, description="Generation reconciled.")
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        description="Ready, Stalled, DriftDetected, QualityIssue.",
    )
    verdict: Literal["Drift", "NoDrift", "NoData", "Failed"] | None = Field(
        default=None, description="Result of the last check."
    )
    drifted: bool | None = Field(
        default=None,
        description="Whether the last check found drift; absent after NoData (unknown).",
    )
    drift_share: float | None = Field(default=None, description="Share of features drifted.")
    rows: int | None = Field(default=None, ge=0, description="Rows in the last window.")
    model_version: str | None = Field(default=None, description="Version the check compared.")
    features: dict[str, FeatureDrift] = Field(
        default_factory=dict, description="Per-feature results of the last check."
    )
    ks_reference: KSReferenceStatus | None = Field(
        default=None,
        description="With spec.tests.numeric ks: what the KS test was computed against.",
    )
    last_run_time: str | None = Field(
        default=None, json_schema_extra={"format": "date-time"}, description="Last check."
    )
    last_job: str | None = Field(default=None, description="Job of the last check read.")
    retrain_requested_at: str | None = Field(
        default=None,
        json_schema_extra={"format": "date-time"},
        description="When this drift episode requested a retrain (cleared when drift ends).",
    )
    quality: QualityStatus | None = Field(
        default=None, description="Data-quality verdict of the last check (spec.quality)."
    )
    report_uri: str | None = Field(
        default=None, description="The HTML report of the last check (spec.report)."
    )
    performance: PerformanceStatus | None = Field(
        default=None, description="Performance from delayed labels (spec.performance)."
    )
    prediction_drift: PredictionDriftStatus | None = Field(
        default=None,
        description="Drift of the model's outputs, apart from input drift (absent: the served "
        "version has no validation predictions to compare with).",
    )


class DriftMonitor(KubeModel):
    """Compares recent traffic with training data on a schedule and can trigger retraining."""

    api_version: Literal["kubeloop.io/v1alpha1"] = Field(
        default="kubeloop.io/v1alpha1", alias="apiVersion"
    )
    kind: Literal["DriftMonitor"] = "DriftMonitor"
    cel_rules: ClassVar[tuple[CelRule, ...]] = (NAME_RULE,)
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: DriftMonitorSpec
    status: DriftMonitorStatus | None = None


# The Pushgateway group a monitor's checks push to (job + grouping key): one place for the check
# that pushes it and the operator that deletes it when the monitor is deleted or suspended.
PUSHGATEWAY_JOB = "kubeloop-drift-monitor"


def pushgateway_group(namespace: str, monitor: str) -> dict[str, str]:
    """The grouping key of one monitor's metrics on the Pushgateway."""
    return {"namespace": namespace, "monitor": monitor}
