"""ModelDeployment: an Open Inference Protocol (V2) server for one model version, with canaries."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from kubeloop.api.canary_split import (
    TOLERANCE,
    StepMiss,
    first_unservable_step,
    servable_steps_cel,
    stable_counts,
    unservable_step_message,
    unservable_step_message_cel,
)
from kubeloop.api.common import (
    NAME_RULE,
    CelRule,
    Condition,
    KubeModel,
    LocalObjectReference,
    NetworkPolicyPeer,
    ObjectStoreUri,
    Placement,
    Quantity,
    SecretKeyReference,
    SecretReference,
)

__all__ = [
    "AuthSpec",
    "AutoscalingSpec",
    "BatchingSpec",
    "CanaryAnalysis",
    "CanarySpec",
    "CanaryStatus",
    "FailedRollout",
    "ModelDeployment",
    "ModelDeploymentSpec",
    "ModelDeploymentStatus",
    "ModelReference",
    "NetworkPolicySpec",
    "PayloadLoggingSpec",
    "RolloutSpec",
    "ServerResources",
    "TlsSpec",
    "stable_replica_counts",
]


MAX_STEPS = 10  # canary steps at most


class ModelReference(KubeModel):
    """Which model to serve: a pipeline's version, or a version folder by URI."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            cel="has(self.uri) != has(self.pipelineRef)",
            check=lambda m: (m.uri is None) != (m.pipeline_ref is None),
            message="spec.model: set exactly one of spec.model.uri and spec.model.pipelineRef",
            field_path=".uri",
            reason="FieldValueInvalid",
        ),
        # `version` has a default, which the API server applies before CEL runs: "not both"
        # is therefore "alias only beside the default version".
        CelRule(
            cel="!has(self.alias) || (has(self.pipelineRef) && self.version == 'champion')",
            check=lambda m: (
                m.alias is None or (m.pipeline_ref is not None and m.version == "champion")
            ),
            message="spec.model.alias: follow an alias of spec.model.pipelineRef or pin "
            "spec.model.version, not both: remove spec.model.version (or the alias)",
            field_path=".alias",
            reason="FieldValueInvalid",
        ),
    )

    pipeline_ref: LocalObjectReference | None = Field(
        default=None, description="TrainingPipeline whose versions to serve."
    )
    version: str = Field(
        default="champion",
        pattern=r"^(champion|latest|[1-9][0-9]*)$",
        max_length=20,
        description="With pipelineRef: `champion` (follows promotions), `latest`, or a number.",
    )
    alias: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=63,
        description="With pipelineRef, instead of version: follow a named alias of the "
        "pipeline's registry, e.g. `production` (set with `kubectl annotate tp <name> "
        "alias.kubeloop.io/production=<version>`); the deployment rolls when it moves.",
    )
    uri: ObjectStoreUri | None = Field(
        default=None,
        description="A version folder written by `kubeloop train` (has manifest.json).",
    )
    allow_pickle: bool = Field(
        default=False,
        description="Load model pickles (format `sklearn` joblib, skops files with untrusted "
        "types) that Kubeloop's trainer did not write. A pickle runs any code when loaded: "
        "allow it only for models from a trusted source.",
    )
    allow_custom_code: bool = Field(
        default=False,
        description="Run the custom predictor a version ships in its `code/` folder (format "
        "`custom` from your own training code; docs/byo.md). Like a pickle it runs code that "
        "came with the model: allow it only for pipelines whose code you trust.",
    )


class AutoscalingSpec(KubeModel):
    """A HorizontalPodAutoscaler on CPU."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            cel="self.minReplicas <= self.maxReplicas",
            check=lambda a: a.min_replicas <= a.max_replicas,
            message="spec.autoscaling.minReplicas must not exceed spec.autoscaling.maxReplicas",
            field_path=".minReplicas",
        ),
    )

    min_replicas: int = Field(default=1, ge=1, le=1000, description="Fewest replicas.")
    max_replicas: int = Field(ge=1, le=1000, description="Most replicas.")
    target_cpu_utilization_percentage: int = Field(
        default=70,
        ge=1,
        le=100,
        alias="targetCPUUtilizationPercentage",
        description="Average CPU use the HPA aims for.",
    )


class CanaryAnalysis(KubeModel):
    """What a canary step must show before traffic moves on."""

    max_error_rate: float = Field(
        default=0.01, ge=0, le=1, description="Highest share of failed requests allowed."
    )
    min_requests: int = Field(
        default=0,
        ge=0,
        description="Requests the canary must have served before a step passes; while its "
        "pods' metrics cannot be read, a step then waits (with 0 it moves on readiness).",
    )


class CanarySpec(KubeModel):
    """Traffic steps for a new version."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            cel="self.steps.isSorted() && self.steps.all(s, self.steps.exists_one(t, t == s)) "
            "&& self.steps[size(self.steps) - 1] == 100",
            check=lambda c: c.steps == sorted(set(c.steps)) and c.steps[-1] == 100,
            message="spec.rollout.canary.steps must be strictly ascending percentages "
            "ending at 100, e.g. [10, 50, 100]",
            field_path=".steps",
        ),
    )

    steps: list[Annotated[int, Field(ge=1, le=100)]] = Field(
        # [50, 100]: servable at every replica count (the canary matches the stable side), so
        # a canary with the default steps is admitted at the default single replica; [10, ...] needs
        # 4 or more stable pods.
        default_factory=lambda: [50, 100],
        min_length=1,
        max_length=MAX_STEPS,
        description="Percent of traffic on the new version at each step, ascending, last 100 "
        "(promotion). The canary's share of traffic is its share of serving pods: the stable "
        "Deployment keeps its replicas (the HPA's count with autoscaling) and the canary gets "
        "the pod count, at most as many as the stable Deployment may have (maxReplicas with "
        "autoscaling, else replicas), whose share is closest to the step; status.canary."
        "trafficPercent reports that share. A step must be servable within "
        f"{TOLERANCE} points at every replica count the spec allows: e.g. a 10% step needs "
        "4 or more stable pods, and a step before 100 at most 60%.",
    )
    step_seconds: int = Field(
        default=60, ge=1, le=86400, description="How long each step runs before the next."
    )
    analysis: CanaryAnalysis = Field(
        default_factory=CanaryAnalysis, description="Checks that gate each step."
    )


class RolloutSpec(KubeModel):
    """How a new model version replaces the serving one."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            cel="self.strategy != 'Canary' || has(self.canary)",
            check=lambda r: r.strategy != "Canary" or r.canary is not None,
            message="spec.rollout.canary is required when spec.rollout.strategy is 'Canary'",
            field_path=".canary",
            reason="FieldValueRequired",
        ),
    )

    strategy: Literal["RollingUpdate", "Canary"] = Field(
        default="RollingUpdate",
        description="`RollingUpdate` (zero-downtime replace) or `Canary` (traffic steps).",
    )
    canary: CanarySpec | None = Field(default=None, description="Steps for `Canary`.")
    progress_deadline_seconds: int = Field(
        default=600,
        ge=10,
        le=86400,
        description="How long a new version's pods may take to become ready (the Deployments' "
        "`progressDeadlineSeconds`). Past it a canary is rolled back; a rolling update keeps "
        "the old pods serving and reports ProgressDeadlineExceeded.",
    )


class BatchingSpec(KubeModel):
    """Adaptive batching: concurrent requests merged into one model call."""

    max_batch_size: int = Field(default=64, ge=1, le=4096, description="Most rows per call.")
    max_latency_ms: float = Field(
        default=2, ge=0, le=1000, description="Longest a request waits for others to join."
    )


class PayloadLoggingSpec(KubeModel):
    """Request/response logging to Parquet, the input of drift monitoring."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            cel="!self.enabled || has(self.destination)",
            check=lambda p: not p.enabled or p.destination is not None,
            message="spec.payloadLogging.destination is required when payload logging is enabled",
            field_path=".destination",
            reason="FieldValueRequired",
        ),
    )

    enabled: bool = Field(default=False, description="Log inputs and outputs.")
    sample_rate: float = Field(default=1.0, ge=0, le=1, description="Share of requests logged.")
    destination: ObjectStoreUri | None = Field(
        default=None,
        description="Folder for Parquet files, partitioned dt=YYYY-MM-DD/hour=HH.",
    )


class ServerResources(Placement):
    """Compute per serving pod, and where it may be scheduled."""

    cpu: Quantity = Field(default="1", description="CPU request and limit per pod.")
    memory: Quantity = Field(default="1Gi", description="Memory request and limit per pod.")
    gpus: int = Field(
        default=0,
        ge=0,
        le=8,
        description="GPUs per pod: TorchScript and ONNX models then run on CUDA (the CUDA "
        "server image by default); other formats stay on CPU.",
    )
    gpu_resource_name: str = Field(
        default="nvidia.com/gpu",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$",
        max_length=253,
        description="Extended resource that provides GPUs on your nodes.",
    )


def stable_replica_counts(spec: ModelDeploymentSpec) -> range:
    """Every pod count the stable Deployment may have (spec.replicas, or the HPA's bounds);
    the largest is also the most pods a canary gets."""
    auto = spec.autoscaling
    bounds = (auto.min_replicas, auto.max_replicas) if auto is not None else None
    return stable_counts(spec.replicas, bounds)


def _unservable_step(spec: ModelDeploymentSpec) -> StepMiss | None:
    canary = spec.rollout.canary
    if spec.rollout.strategy != "Canary" or canary is None:
        return None
    return first_unservable_step(canary.steps, stable_replica_counts(spec))


def _unservable_step_message(spec: ModelDeploymentSpec) -> str:
    miss = _unservable_step(spec)
    assert miss is not None  # asked only when the rule failed
    return unservable_step_message(miss, autoscaling=spec.autoscaling is not None)


class AuthSpec(KubeModel):
    """Bearer-token auth on the V2 routes: clients send `Authorization: Bearer <token>`.

    The token reaches the server pods by `secretKeyRef` (env KUBELOOP_AUTH_TOKEN); it is never
    in the pod spec, status, events or logs. `/v2/health/*` and `/metrics` stay open: kubelet
    probes, Prometheus and the operator's canary analysis read them without a token.
    """

    token_secret_ref: SecretKeyReference = Field(
        description="The Secret key holding the token the server accepts."
    )


class TlsSpec(KubeModel):
    """HTTPS on the server port, with the certificate of a `kubernetes.io/tls` Secret
    (keys `tls.crt`, `tls.key`; e.g. one cert-manager issues), mounted read-only."""

    secret_ref: LocalObjectReference = Field(
        description="The kubernetes.io/tls Secret in this namespace (tls.crt and tls.key)."
    )


class NetworkPolicySpec(KubeModel):
    """A NetworkPolicy the operator owns, admitting to the serving pods' port only `allowFrom`,
    the operator's own pod (canary analysis reads `/metrics`) and the metrics scrapers the
    operator's chart names (`networkPolicy.metricsFrom`)."""

    enabled: bool = Field(default=False, description="Create the NetworkPolicy.")
    allow_from: list[NetworkPolicyPeer] = Field(
        default_factory=list,
        max_length=32,
        description="Who may call the model, besides the operator and the metrics scrapers; "
        "empty: nobody else.",
    )


class ModelDeploymentSpec(KubeModel):
    """Desired state of a ModelDeployment."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            cel=servable_steps_cel(),
            check=lambda spec: _unservable_step(spec) is None,
            message="spec.rollout.canary.steps: every step before 100 must be servable within "
            f"{TOLERANCE} points as the canary's share of serving pods, with the stable "
            "Deployment at spec.replicas (at each of autoscaling.minReplicas..maxReplicas) and "
            "at most as many canary pods as it may have",
            field_path=".rollout.canary.steps",
            message_expression=unservable_step_message_cel(MAX_STEPS),
            explain=_unservable_step_message,
        ),
    )

    model: ModelReference = Field(description="The model to serve.")
    replicas: int = Field(
        default=1, ge=0, le=1000, description="Serving pods (ignored when autoscaling is set)."
    )
    autoscaling: AutoscalingSpec | None = Field(default=None, description="CPU autoscaling.")
    rollout: RolloutSpec = Field(default_factory=RolloutSpec, description="Version rollout.")
    batching: BatchingSpec = Field(default_factory=BatchingSpec, description="Adaptive batching.")
    payload_logging: PayloadLoggingSpec = Field(
        default_factory=PayloadLoggingSpec, description="Traffic logging for drift monitoring."
    )
    resources: ServerResources = Field(
        default_factory=ServerResources, description="Compute per pod."
    )
    workers: int = Field(default=1, ge=1, le=64, description="Server processes per pod.")
    storage_secret_ref: SecretReference | None = Field(
        default=None,
        description="Object-store credentials; default: the referenced pipeline's secret.",
    )
    image: str | None = Field(
        default=None, max_length=512, description="Server image; default from the operator."
    )
    auth: AuthSpec | None = Field(default=None, description="Bearer-token auth; default: off.")
    tls: TlsSpec | None = Field(default=None, description="HTTPS; default: plain HTTP.")
    network_policy: NetworkPolicySpec = Field(
        default_factory=NetworkPolicySpec, description="Who may reach the serving pods."
    )


class CanaryStatus(KubeModel):
    """A rollout in progress."""

    version: str = Field(description="Version being rolled out.")
    uri: str = Field(description="Its URI.")
    traffic_percent: int = Field(
        ge=0,
        le=100,
        description="Share of traffic it receives: its share of the serving pods, "
        "canary / (canary + stable), rounded; as close to stepPercent as pod counts allow.",
    )
    step_percent: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="The declared step, spec.rollout.canary.steps[step].",
    )
    step: int = Field(default=0, ge=0, description="Index of the current step.")
    step_started_at: str | None = Field(
        default=None, json_schema_extra={"format": "date-time"}, description="Step start."
    )


class FailedRollout(KubeModel):
    """A rollout that was rolled back; that version is not retried for the same spec."""

    version: str = Field(description="Version that was rolled back.")
    reason: str = Field(description="Why, in CamelCase (e.g. ErrorRateTooHigh).")
    message: str = Field(default="", max_length=1024, description="Why, in a sentence.")
    spec_hash: str = Field(
        description="Hash of the spec (without replicas) it failed with; a change retries."
    )
    failed_at: str | None = Field(
        default=None, json_schema_extra={"format": "date-time"}, description="When."
    )


class ModelDeploymentStatus(KubeModel):
    """Observed state of a ModelDeployment, written only by the operator."""

    observed_generation: int | None = Field(default=None, description="Generation reconciled.")
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        description="Ready, Progressing, Degraded.",
    )
    url: str | None = Field(default=None, description="In-cluster URL of the V2 endpoint.")
    model_version: str | None = Field(default=None, description="Version serving all traffic.")
    model_uri: str | None = Field(default=None, description="URI of that version.")
    canary: CanaryStatus | None = Field(default=None, description="Rollout in progress.")
    failed_rollout: FailedRollout | None = Field(
        default=None, description="The last rolled-back rollout, while its version is current."
    )
    replicas: int = Field(default=0, ge=0, description="Pods that exist.")
    ready_replicas: int = Field(default=0, ge=0, description="Pods ready to serve.")
    selector: str | None = Field(
        default=None, description="Label selector of the pods (for the scale subresource)."
    )


class ModelDeployment(KubeModel):
    """Serves a model version over the Open Inference Protocol (V2) with canary rollouts."""

    api_version: Literal["kubeloop.io/v1alpha1"] = Field(
        default="kubeloop.io/v1alpha1", alias="apiVersion"
    )
    kind: Literal["ModelDeployment"] = "ModelDeployment"
    cel_rules: ClassVar[tuple[CelRule, ...]] = (NAME_RULE,)
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus | None = None
