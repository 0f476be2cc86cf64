"""TrainingPipeline: data + model + resources -> training runs, immutable versions, a champion."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from kubeloop.api.common import (
    NAME_RULE,
    CelRule,
    Condition,
    CronSchedule,
    KubeModel,
    ListSet,
    ObjectStoreUri,
    Placement,
    Quantity,
    SecretReference,
)
from kubeloop.api.estimator_params import AUTO, BUDGET_PARAMS, ESTIMATOR_PARAMS, ROWS
from kubeloop.api.quality import DataValidationSpec
from kubeloop.api.search import SearchSpec, SearchStatus, SearchSummary

__all__ = [
    "CLASSIFICATION_METRICS",
    "CLASSIFIERS",
    "ESTIMATORS",
    "HIGHER_IS_BETTER",
    "REGRESSION_METRICS",
    "REGRESSORS",
    "TORCH_ESTIMATOR",
    "Champion",
    "DataCheck",
    "DataSpec",
    "DataTriggerSpec",
    "DistributedSpec",
    "ModelSpec",
    "PromotionRecord",
    "PromotionSpec",
    "RegistryOp",
    "RegistrySync",
    "ResourcesSpec",
    "RunPolicy",
    "RunProgress",
    "RunRecord",
    "RunRef",
    "TrainerEnvVar",
    "TrainerSpec",
    "TrainingPipeline",
    "TrainingPipelineSpec",
    "TrainingPipelineStatus",
]

# The allow-list: a spec names an estimator, never an import path.
CLASSIFIERS = (
    "LogisticRegression",
    "RandomForestClassifier",
    "ExtraTreesClassifier",
    "GradientBoostingClassifier",
    "HistGradientBoostingClassifier",
    "XGBClassifier",
    "LGBMClassifier",
)
REGRESSORS = (
    "LinearRegression",
    "Ridge",
    "Lasso",
    "ElasticNet",
    "RandomForestRegressor",
    "ExtraTreesRegressor",
    "GradientBoostingRegressor",
    "HistGradientBoostingRegressor",
    "XGBRegressor",
    "LGBMRegressor",
)
TORCH_ESTIMATOR = "TabularMLP"
ESTIMATORS = (*CLASSIFIERS, *REGRESSORS, TORCH_ESTIMATOR)
CLASSIFICATION_METRICS = ("accuracy", "roc_auc", "f1", "log_loss")
REGRESSION_METRICS = ("rmse", "mae", "r2")
HIGHER_IS_BETTER = {
    "accuracy": True,
    "roc_auc": True,
    "f1": True,
    "r2": True,
    "log_loss": False,
    "rmse": False,
    "mae": False,
}

Estimator = Literal[
    "LogisticRegression",
    "RandomForestClassifier",
    "ExtraTreesClassifier",
    "GradientBoostingClassifier",
    "HistGradientBoostingClassifier",
    "LinearRegression",
    "Ridge",
    "Lasso",
    "ElasticNet",
    "RandomForestRegressor",
    "ExtraTreesRegressor",
    "GradientBoostingRegressor",
    "HistGradientBoostingRegressor",
    "XGBClassifier",
    "XGBRegressor",
    "LGBMClassifier",
    "LGBMRegressor",
    "TabularMLP",
]
Metric = Literal["accuracy", "roc_auc", "f1", "log_loss", "rmse", "mae", "r2"]
ColumnName = Annotated[str, Field(min_length=1, max_length=256)]


def _cel_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


class DataSpec(KubeModel):
    """Where the training data lives and which columns to use."""

    train: ObjectStoreUri = Field(
        description="Parquet file or directory (a pyarrow dataset) with the training rows, "
        "as s3://bucket/path or file:///path."
    )
    validation: ObjectStoreUri | None = Field(
        default=None,
        description="Optional Parquet file or directory for validation. When empty, "
        "`validationFraction` of the training rows is held out, split deterministically by `seed`.",
    )
    validation_fraction: float = Field(
        default=0.2,
        gt=0,
        lt=1,
        description="Share of training rows held out for validation when `validation` is empty.",
    )
    target: ColumnName = Field(description="Name of the column to predict.")
    features: Annotated[list[ColumnName], ListSet()] | None = Field(
        default=None,
        max_length=1024,
        description="Feature columns to use, each once. Default: every column except `target`.",
    )


class ModelSpec(KubeModel):
    """What to train: a framework, a task and an estimator from the allow-list (or, with
    framework `custom`, the team's own code in `spec.trainer`)."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            cel="self.framework == 'torch' ? (!has(self.estimator) || "
            f"self.estimator == '{TORCH_ESTIMATOR}') : "
            f"(!has(self.estimator) || self.estimator != '{TORCH_ESTIMATOR}')",
            check=lambda m: (
                m.estimator is None or (m.estimator == TORCH_ESTIMATOR) == (m.framework == "torch")
            ),
            message="spec.model.estimator: framework 'torch' trains only "
            f"'{TORCH_ESTIMATOR}', and '{TORCH_ESTIMATOR}' needs framework 'torch'",
            field_path=".estimator",
        ),
        CelRule(
            cel="self.framework != 'custom' || !has(self.estimator)",
            check=lambda m: m.framework != "custom" or m.estimator is None,
            message="spec.model.estimator: framework 'custom' trains your own code "
            "(spec.trainer), not an estimator of the allow-list; remove estimator",
            field_path=".estimator",
            reason="FieldValueForbidden",
        ),
        CelRule(
            cel="!has(self.estimator) || (self.task == 'classification' ? "
            f"!(self.estimator in {_cel_list(REGRESSORS)}) : "
            f"!(self.estimator in {_cel_list(CLASSIFIERS)}))",
            check=lambda m: (
                m.estimator is None
                or m.estimator not in (REGRESSORS if m.task == "classification" else CLASSIFIERS)
            ),
            message="spec.model.estimator does not fit spec.model.task: a classifier "
            "(LogisticRegression, *Classifier) needs task 'classification', a regressor "
            "(*Regression, Ridge, Lasso, ElasticNet, *Regressor) needs task 'regression'",
            field_path=".estimator",
        ),
    )

    framework: Literal["sklearn", "torch", "custom"] = Field(
        default="sklearn",
        description="`sklearn`, `torch` (a tabular MLP, GPU-capable) or `custom` (your own "
        "training code and image in spec.trainer; docs/byo.md).",
    )
    task: Literal["classification", "regression"] = Field(
        description="`classification` (binary or multi-class) or `regression`."
    )
    estimator: Estimator | None = Field(
        default=None,
        description="Estimator from the allow-list. Default: HistGradientBoostingClassifier/"
        f"Regressor for sklearn, {TORCH_ESTIMATOR} for torch.",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True, "type": "object"},
        description="Keyword arguments of the estimator (checked against its signature). "
        f"For {TORCH_ESTIMATOR}: hiddenSizes, dropout, epochs, batchSize, lr, weightDecay, "
        "patience. For framework custom: anything; your code reads them (ctx.params).",
    )

    def resolved_estimator(self) -> str:
        """The estimator to train, with the defaults applied."""
        if self.estimator is not None:
            return self.estimator
        if self.framework == "torch":
            return TORCH_ESTIMATOR
        return (
            "HistGradientBoostingClassifier"
            if self.task == "classification"
            else "HistGradientBoostingRegressor"
        )


ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
RESERVED_ENV_PREFIXES = ("KUBELOOP_", "AWS_")


class SecretKeySelector(KubeModel):
    """One key of a Secret in the pipeline's namespace."""

    name: str = Field(min_length=1, max_length=253, description="Name of the Secret.")
    key: str = Field(
        min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$", description="Key in it."
    )


class EnvVarSource(KubeModel):
    """Where a value comes from: only a Secret key (credentials never sit in the spec)."""

    secret_key_ref: SecretKeySelector = Field(description="A key of a Secret.")


class TrainerEnvVar(KubeModel):
    """One environment variable of the user's training container."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            cel="!self.name.startsWith('KUBELOOP_') && !self.name.startsWith('AWS_')",
            check=lambda e: not e.name.startswith(RESERVED_ENV_PREFIXES),
            message="KUBELOOP_* and AWS_* are set by Kubeloop (the run's context and the "
            "storage Secret of spec.storageSecretRef); choose another name",
            field_path=".name",
        ),
        CelRule(
            cel="has(self.value) != has(self.valueFrom)",
            check=lambda e: (e.value is None) != (e.value_from is None),
            message="set exactly one of value and valueFrom",
            field_path=".value",
        ),
    )

    name: str = Field(
        min_length=1, max_length=256, pattern=ENV_NAME_PATTERN, description="Variable name."
    )
    value: str | None = Field(default=None, max_length=32768, description="Literal value.")
    value_from: EnvVarSource | None = Field(
        default=None, description="A Secret key, read by the kubelet (secretKeyRef)."
    )


class TrainerSpec(KubeModel):
    """Your training code in your image (framework custom). Kubeloop stages the data, gives
    the run its context and publishes what your code saves (docs/byo.md)."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            cel="!has(self.env) || self.env.all(e, self.env.exists_one(f, f.name == e.name))",
            check=lambda t: len({e.name for e in t.env}) == len(t.env),
            message="spec.trainer.env: each name once",
            field_path=".env",
        ),
    )

    image: str = Field(
        min_length=1,
        max_length=512,
        description="Your training image (needs Python 3.9+ for the SDK; nothing from "
        "Kubeloop). Pin it by digest for reproducible versions.",
    )
    command: list[Annotated[str, Field(max_length=4096)]] | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Entrypoint; default the image's. Run under torchrun --no-python when "
        "spec.distributed.workers > 1.",
    )
    args: list[Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=list, max_length=256, description="Arguments; default none."
    )
    env: list[TrainerEnvVar] = Field(
        default_factory=list,
        max_length=64,
        description="Extra environment (a PYTHONPATH here is kept, with the SDK's folder "
        "appended).",
    )
    working_dir: str | None = Field(
        default=None, max_length=4096, description="Working directory; default the image's."
    )
    code_ref: str | None = Field(
        default=None,
        max_length=512,
        description="Recorded in each version's lineage, e.g. a git commit or a tag.",
    )


class ResourcesSpec(Placement):
    """Compute for each training pod, and where it may be scheduled."""

    gpus: int = Field(default=0, ge=0, le=16, description="GPUs per pod (0 trains on CPU).")
    gpu_resource_name: str = Field(
        default="nvidia.com/gpu",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$",
        max_length=253,
        description="Extended resource that provides GPUs on your nodes.",
    )
    cpu: Quantity = Field(default="1", description="CPU request and limit per pod, e.g. '2'.")
    memory: Quantity = Field(
        default="2Gi", description="Memory request and limit per pod, e.g. '4Gi'."
    )
    runtime_class_name: str | None = Field(
        default=None, max_length=253, description="RuntimeClass for the pods, e.g. 'nvidia'."
    )


class DistributedSpec(KubeModel):
    """Multi-node PyTorch DDP: an Indexed Job with one pod per worker."""

    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Number of pods. More than 1 starts torchrun on an Indexed Job + headless "
        "Service (framework 'torch' only).",
    )
    master_port: int = Field(
        default=29500, ge=1024, le=65535, description="Rendezvous port on worker 0."
    )


class PromotionSpec(KubeModel):
    """The gate a new version must pass to become the champion."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            cel="!has(self.minimum) || !has(self.maximum) || self.minimum <= self.maximum",
            check=lambda m: m.minimum is None or m.maximum is None or m.minimum <= m.maximum,
            message="spec.promotion.minimum must not exceed spec.promotion.maximum",
            field_path=".minimum",
        ),
        CelRule(
            cel="!has(self.minImprovement) || self.mustBeatChampion",
            check=lambda m: m.min_improvement is None or m.must_beat_champion,
            message="spec.promotion.minImprovement is a margin over the champion: it needs "
            "mustBeatChampion: true (or remove minImprovement)",
            field_path=".minImprovement",
            reason="FieldValueForbidden",
        ),
    )

    metric: Metric = Field(
        description="Validation metric the gate reads: accuracy, roc_auc, f1, log_loss "
        "(classification) or rmse, mae, r2 (regression)."
    )
    minimum: float | None = Field(
        default=None, description="The metric must be at least this (higher-is-better metrics)."
    )
    maximum: float | None = Field(
        default=None, description="The metric must be at most this (lower-is-better metrics)."
    )
    must_beat_champion: bool = Field(
        default=True,
        description="Also require a better metric than the current champion, both scored by "
        "this run on its own validation rows.",
    )
    min_improvement: float | None = Field(
        default=None,
        ge=0,
        description="With mustBeatChampion: the margin to beat the champion by, in the "
        "metric's own units (lower-is-better metrics: lower by at least this much).",
    )
    auto_promote: bool = Field(
        default=True,
        description="Promote automatically when the gate passes; false only records the verdict.",
    )


class DataTriggerSpec(KubeModel):
    """Start a run when the training data changes: a CronJob lists the data on `schedule`
    (keys, sizes, ETags: nothing is read) and a changed fingerprint starts one NewData run."""

    schedule: CronSchedule = Field(
        description="How often the data is checked: a cron (5 fields, UTC), e.g. '*/15 * * * *'."
    )
    skip_unchanged_schedule: bool = Field(
        default=False,
        description="A spec.schedule tick starts no run when the latest data check (newer than "
        "the latest run) found the data that run trained on: the tick is marked handled and an "
        "Event ScheduleSkipped says why. Needs spec.schedule.",
    )


class RunPolicy(KubeModel):
    """How each training Job behaves and how much history is kept."""

    backoff_limit: int = Field(
        default=2, ge=0, le=20, description="Pod retries before a run fails."
    )
    active_deadline_seconds: int | None = Field(
        default=None, ge=1, description="Wall-clock limit of a run; empty means none."
    )
    ttl_seconds_after_finished: int = Field(
        default=86400, ge=0, description="Finished Jobs are deleted this long after they end."
    )
    history_limit: int = Field(
        default=10, ge=1, le=100, description="Finished runs kept in status.runs."
    )


# --- spec.search checked against spec.model (cross-field: the spec's rules below) -----------

# The estimator a search candidate trains, in CEL (`c`: the candidate; defaults as
# ModelSpec.resolved_estimator) and in Python.
_CANDIDATE_ESTIMATOR_CEL = (
    "(has(c.estimator) ? c.estimator : has(self.model.estimator) ? self.model.estimator : "
    f"self.model.framework == 'torch' ? '{TORCH_ESTIMATOR}' : "
    "self.model.task == 'classification' ? 'HistGradientBoostingClassifier' : "
    "'HistGradientBoostingRegressor')"
)


def _cel_table(table: dict[str, tuple[str, ...]]) -> str:
    return "{" + ", ".join(f"'{k}': {_cel_list(v)}" for k, v in table.items()) + "}"


def _fitting_estimators(model: ModelSpec) -> tuple[str, ...]:
    if model.framework == "torch":
        return (TORCH_ESTIMATOR,)
    if model.framework == "custom":
        return ()
    return CLASSIFIERS if model.task == "classification" else REGRESSORS


def _search_problems(spec: TrainingPipelineSpec) -> list[tuple[str, str]]:
    """What of spec.search does not fit spec.model: (rule, message naming the field) pairs,
    rule one of estimator, params, budget (empty: all fits)."""
    search = spec.search
    if search is None:
        return []
    problems: list[tuple[str, str]] = []
    fitting = _fitting_estimators(spec.model)
    budget = search.budget
    if budget is not None and budget.parameter == AUTO and spec.model.framework == "custom":
        why = (
            "framework custom (your own code) cannot use 'auto' as a budget; it can use: a "
            "parameter your code reads (e.g. epochs), rows"
        )
        problems.append(("budget", f"spec.search.budget.parameter: {why}"))
    for i, cand in enumerate(search.space):
        at = f"spec.search.space[{i}]"
        if spec.model.framework == "custom":
            if cand.estimator is not None:
                why = "framework custom trains your own code; its candidates set params only"
                problems.append(("estimator", f"{at}.estimator: {why}"))
            continue
        name = cand.estimator or spec.model.resolved_estimator()
        if name not in fitting:
            problems.append(
                (
                    "estimator",
                    f"{at}.estimator: {name!r} is not an allow-listed estimator for framework "
                    f"{spec.model.framework} and task {spec.model.task}: {', '.join(fitting)}",
                )
            )
        if name not in ESTIMATOR_PARAMS:
            continue  # off the allow-list: the estimator problem says it (as the CEL rules)
        problems.extend(
            ("params", f"{at}.params.{key} is not a parameter of {name}; it accepts: "
             f"{', '.join(ESTIMATOR_PARAMS[name])}")
            for key in cand.params
            if key not in ESTIMATOR_PARAMS[name]
        )  # fmt: skip
        if budget is not None and budget.parameter not in (ROWS, AUTO, *BUDGET_PARAMS[name]):
            usable = ", ".join((*BUDGET_PARAMS[name], ROWS, AUTO))
            problems.append(
                (
                    "budget",
                    f"spec.search.budget.parameter: {name} ({at}) cannot grow "
                    f"{budget.parameter!r} as a budget; it can use: {usable}",
                )
            )
    return problems


def _search_fits(rule: str) -> Callable[[TrainingPipelineSpec], bool]:
    return lambda s: all(kind != rule for kind, _ in _search_problems(s))


def _explain_search(spec: TrainingPipelineSpec) -> str:
    return "; ".join(message for _, message in _search_problems(spec))


def _search_rule(kind: str) -> str:
    """The CEL of one of the search-vs-model rules (`kind`: estimator, params, budget)."""
    est = _CANDIDATE_ESTIMATOR_CEL
    head = "!has(self.search) || self.model.framework == 'custom' || "
    if kind == "estimator":
        return (
            "!has(self.search) || self.search.space.all(c, self.model.framework == 'custom' ? "
            "!has(c.estimator) : self.model.framework == 'torch' ? "
            f"{est} == '{TORCH_ESTIMATOR}' : self.model.task == 'classification' ? "
            f"{est} in {_cel_list(CLASSIFIERS)} : {est} in {_cel_list(REGRESSORS)})"
        )
    # An estimator off the allow-list is the estimator rule's to name; here it is skipped.
    known = _cel_list(tuple(ESTIMATOR_PARAMS))
    if kind == "params":
        table = _cel_table(ESTIMATOR_PARAMS)
        return (
            f"{head}self.search.space.all(c, !({est} in {known}) || !has(c.params) || "
            f"c.params.all(p, p in {table}[{est}]))"
        )
    table = _cel_table(BUDGET_PARAMS)
    return (
        "!has(self.search) || !has(self.search.budget) || "
        f"(self.model.framework == 'custom' ? self.search.budget.parameter != '{AUTO}' : "
        f"self.search.budget.parameter in ['{ROWS}', '{AUTO}'] || "
        f"self.search.space.all(c, !({est} in {known}) || "
        f"self.search.budget.parameter in {table}[{est}]))"
    )


def _search_cel_rule(kind: str, message: str, field_path: str = ".search.space") -> CelRule:
    """One of the search-vs-model rules (`kind`: estimator, params, budget); the Python side
    names the exact candidate and parameter."""
    return CelRule(
        cel=_search_rule(kind),
        check=_search_fits(kind),
        message=message,
        field_path=field_path,
        explain=_explain_search,
    )


class TrainingPipelineSpec(KubeModel):
    """Desired state of a TrainingPipeline."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            cel="!has(self.distributed) || self.distributed.workers <= 1 || "
            "self.model.framework in ['torch', 'custom']",
            check=lambda s: s.distributed.workers <= 1 or s.model.framework in ("torch", "custom"),
            message="spec.distributed.workers > 1 requires spec.model.framework 'torch' or "
            "'custom' (sklearn trains on one pod)",
            field_path=".distributed.workers",
            reason="FieldValueForbidden",
        ),
        CelRule(
            cel="!has(self.promotion) || (self.model.task == 'classification' ? "
            f"self.promotion.metric in {_cel_list(CLASSIFICATION_METRICS)} : "
            f"self.promotion.metric in {_cel_list(REGRESSION_METRICS)})",
            check=lambda s: (
                s.promotion is None
                or s.promotion.metric
                in (
                    CLASSIFICATION_METRICS
                    if s.model.task == "classification"
                    else REGRESSION_METRICS
                )
            ),
            message="spec.promotion.metric is not produced by spec.model.task: classification "
            "gives accuracy, roc_auc, f1, log_loss; regression gives rmse, mae, r2",
            field_path=".promotion.metric",
            reason="FieldValueNotSupported",
        ),
        CelRule(
            cel="(self.model.framework == 'custom') == has(self.trainer)",
            check=lambda s: (s.model.framework == "custom") == (s.trainer is not None),
            message="spec.trainer: set it exactly when spec.model.framework is 'custom' (your "
            "own code runs in spec.trainer.image; the built-in frameworks need no trainer)",
            field_path=".trainer",
        ),
        CelRule(
            cel="!has(self.trainer) || !has(self.distributed) || self.distributed.workers <= 1 "
            "|| has(self.trainer.command)",
            check=lambda s: (
                s.trainer is None or s.distributed.workers <= 1 or s.trainer.command is not None
            ),
            message="spec.trainer.command: a distributed custom run (spec.distributed.workers "
            "> 1) starts your command under torchrun, so name it (e.g. [python, train.py])",
            field_path=".trainer.command",
            reason="FieldValueRequired",
        ),
        CelRule(
            cel="!has(self.dataTrigger) || !has(self.dataTrigger.skipUnchangedSchedule) || "
            "!self.dataTrigger.skipUnchangedSchedule || has(self.schedule)",
            check=lambda s: (
                s.data_trigger is None
                or not s.data_trigger.skip_unchanged_schedule
                or s.schedule is not None
            ),
            message="spec.dataTrigger.skipUnchangedSchedule skips the ticks of spec.schedule "
            "when the data is unchanged: set spec.schedule, or remove skipUnchangedSchedule",
            field_path=".dataTrigger.skipUnchangedSchedule",
            reason="FieldValueForbidden",
        ),
        CelRule(
            cel="!has(self.data.features) || !(self.data.target in self.data.features)",
            check=lambda s: not s.data.features or s.data.target not in s.data.features,
            message="spec.data.features must not contain the target column spec.data.target",
            field_path=".data.features",
        ),
        CelRule(
            cel="!has(self.search) || has(self.promotion)",
            check=lambda s: s.search is None or s.promotion is not None,
            message="spec.search needs spec.promotion.metric: the trials are ranked by it",
            field_path=".promotion",
            reason="FieldValueRequired",
        ),
        CelRule(
            cel="!has(self.search) || !has(self.search.trialsPerJob) || "
            "self.search.trialsPerJob == 1 || self.model.framework != 'custom'",
            check=lambda s: (
                s.search is None or s.search.trials_per_job == 1 or s.model.framework != "custom"
            ),
            message="spec.search.trialsPerJob: framework custom trains one trial per process "
            "(your code runs once per pod): remove trialsPerJob or set it to 1",
            field_path=".search.trialsPerJob",
            reason="FieldValueForbidden",
        ),
        _search_cel_rule(
            "estimator",
            "spec.search.space: a candidate's estimator must be on the allow-list and fit "
            "spec.model.framework and spec.model.task (framework custom: no estimator)",
        ),
        _search_cel_rule(
            "params",
            "spec.search.space: a candidate searches a parameter its estimator does not take "
            "(only its own keyword arguments: e.g. max_iter for HistGradientBoosting, "
            "n_estimators for XGBoost)",
        ),
        _search_cel_rule(
            "budget",
            "spec.search.budget.parameter: an estimator of the space cannot use it as a budget: "
            "auto (each estimator's own iterations, else rows; not with framework custom), "
            "max_iter (HistGradientBoosting, LogisticRegression), n_estimators (forests, "
            "GradientBoosting, XGBoost, LightGBM), epochs (TabularMLP) or rows",
            field_path=".search.budget.parameter",
        ),
    )

    data: DataSpec = Field(description="Training (and validation) data.")
    model: ModelSpec = Field(description="What to train.")
    trainer: TrainerSpec | None = Field(
        default=None,
        description="Your own training code and image; only with model.framework 'custom'.",
    )
    resources: ResourcesSpec = Field(
        default_factory=ResourcesSpec, description="Compute per training pod."
    )
    distributed: DistributedSpec = Field(
        default_factory=DistributedSpec, description="Multi-node PyTorch DDP."
    )
    artifacts: ObjectStoreUri = Field(
        description="Where model versions go: <artifacts>/versions/<n>/ (never overwritten) "
        "and aliases such as <artifacts>/aliases/champion."
    )
    storage_secret_ref: SecretReference | None = Field(
        default=None, description="Secret with object-store credentials (AWS_* keys)."
    )
    schedule: CronSchedule | None = Field(
        default=None, description="Optional cron (5 fields, UTC) for periodic retraining."
    )
    data_trigger: DataTriggerSpec | None = Field(
        default=None,
        description="Start a run (trigger NewData) when the training data changes, checked on "
        "a cron by listing it.",
    )
    suspend: bool = Field(
        default=False,
        description="Stop starting runs (schedule, new-data, drift and manual triggers wait); "
        "a running Job finishes.",
    )
    promotion: PromotionSpec | None = Field(
        default=None,
        description="Gate for promotion. Without it every successful run becomes the champion.",
    )
    search: SearchSpec | None = Field(
        default=None,
        description="Search inside each run: trials of several estimators and parameter sets "
        "run as Jobs first, and the best (by spec.promotion.metric) is trained as the run's "
        "version.",
    )
    run_policy: RunPolicy = Field(
        default_factory=RunPolicy, description="Retries, deadlines and history."
    )
    queue_name: str | None = Field(
        default=None,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="Kueue LocalQueue; sets the kueue.x-k8s.io/queue-name label on the Jobs.",
    )
    image: str | None = Field(
        default=None,
        max_length=512,
        description="Kubeloop trainer image; default from the operator. With framework "
        "custom it runs the prepare and publish steps around spec.trainer.image.",
    )
    seed: int = Field(default=42, ge=0, le=2**31 - 1, description="Seed for splits and training.")
    data_validation: DataValidationSpec = Field(
        default_factory=DataValidationSpec,
        description="Checks of the training data against the champion's profile before "
        "training; a failure ends the run with reason DataValidationFailed.",
    )

    # The fields that decide what a run trains: an edit of one of them starts a run. The others
    # (promotion, schedule, dataTrigger, suspend, runPolicy, queueName, artifacts,
    # storageSecretRef, dataValidation) say
    # when, where to or whether; their edits apply to the next run and start none.
    RUN_FIELDS: ClassVar[tuple[str, ...]] = (
        "data", "model", "trainer", "resources", "distributed", "seed", "image", "search",
    )  # fmt: skip

    def run_hash(self) -> str:
        """A fingerprint of the fields that decide what a run trains (`RUN_FIELDS`). Fields at
        their defaults are left out, so a field added to the API with a default leaves every
        existing pipeline's fingerprint as it was (else an upgrade would count as an edit)."""
        trained = self.model_dump(
            mode="json", by_alias=True, include=set(self.RUN_FIELDS), exclude_defaults=True
        )
        return hashlib.sha256(json.dumps(trained, sort_keys=True).encode()).hexdigest()[:16]

    def checkpoint_uri(self, run_id: str) -> str:
        """Where a run's checkpoints live, for the built-in trainer and custom code alike."""
        return f"{self.artifacts.rstrip('/')}/runs/{run_id}/checkpoints"


class RunProgress(KubeModel):
    """Live progress reported by the training pod."""

    percent: int = Field(default=0, ge=0, le=100, description="Share of the run done.")
    epoch: int | None = Field(default=None, ge=0, description="Epoch just finished.")
    epochs: int | None = Field(default=None, ge=0, description="Epochs planned.")
    loss: float | None = Field(default=None, description="Latest training loss.")
    eta_seconds: int | None = Field(default=None, ge=0, description="Estimated time left.")
    updated_at: str | None = Field(
        default=None, json_schema_extra={"format": "date-time"}, description="Report time."
    )
    run_id: str | None = Field(
        default=None,
        description="The run that reported it; a report of any other run than currentRun.id "
        "is dropped.",
    )


# Drift: a DriftMonitor's retrain request for input drift; Degraded: for measured performance
# below its thresholds (spec.performance.onDegraded.retrain).
Trigger = Literal["Create", "SpecChange", "Manual", "Schedule", "Drift", "Degraded", "NewData"]


class RunRef(KubeModel):
    """The run in progress."""

    id: str = Field(pattern=r"^[1-9][0-9]*$", description="Run number, increasing.")
    job: str = Field(description="Name of the Job, <pipeline>-run-<id>.")
    trigger: Trigger = Field(description="What started the run.")
    generation: int | None = Field(default=None, description="Spec generation it trains.")
    started_at: str = Field(json_schema_extra={"format": "date-time"}, description="Start time.")
    progress: RunProgress | None = Field(default=None, description="Live progress.")
    search: SearchStatus | None = Field(
        default=None, description="The run's search (spec.search): its trials and the best."
    )
    reads_registry: bool | None = Field(
        default=None,
        description="The run's Job reads the registry first (init container registry), "
        "before the pipeline's first run: a registry that holds runs or a champion of this "
        "pipeline withdraws the run (it is adopted instead); an empty one lets it train.",
    )


class RunRecord(KubeModel):
    """A finished run."""

    id: str = Field(pattern=r"^[1-9][0-9]*$", description="Run number.")
    job: str = Field(description="Name of the Job.")
    trigger: Trigger = Field(description="What started the run.")
    result: Literal["Promoted", "AwaitingApproval", "Rejected", "Failed"] = Field(
        description="Promoted (new champion), AwaitingApproval (the gate passed; "
        "spec.promotion.autoPromote is false, so a person promotes it with the annotation "
        "kubeloop.io/promote=<version>), Rejected (gate not passed) or Failed."
    )
    model_version: str | None = Field(default=None, description="Version the run wrote.")
    uri: str | None = Field(default=None, description="URI of that version.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Validation metrics.")
    data_fingerprint: str | None = Field(
        default=None,
        max_length=128,
        description="Fingerprint of the data the run trained on (as its version records it).",
    )
    champion_version: str | None = Field(
        default=None, description="The champion this run scored beside its own version."
    )
    champion_metrics: dict[str, float] | None = Field(
        default=None,
        description="That champion's metrics on this run's validation rows (the gate compares "
        "them with metrics).",
    )
    message: str = Field(default="", max_length=4096, description="Why, in a sentence.")
    search: SearchStatus | None = Field(
        default=None,
        description="The run's search (spec.search): done/total and the best trial (every "
        "trial's params and score are in the version's manifest).",
    )
    started_at: str | None = Field(
        default=None, json_schema_extra={"format": "date-time"}, description="Start time."
    )
    finished_at: str | None = Field(
        default=None, json_schema_extra={"format": "date-time"}, description="End time."
    )
    reason: str | None = Field(
        default=None,
        max_length=64,
        description="Why a Failed run failed, as the trainer said (e.g. DataValidationFailed).",
    )


class DataCheck(KubeModel):
    """The latest check of the training data by the data-watch CronJob."""

    cron_job: str | None = Field(default=None, description="The data-watch CronJob.")
    job: str | None = Field(
        default=None, description="The Job of the latest finished check (none: none finished)."
    )
    checked_at: str | None = Field(
        default=None, json_schema_extra={"format": "date-time"}, description="When it finished."
    )
    fingerprint: str | None = Field(
        default=None,
        max_length=128,
        description="Fingerprint of the data listed (paths, sizes, ETags or MD5s); empty when "
        "the check failed.",
    )
    files: int | None = Field(default=None, ge=0, description="Files listed.")
    bytes: int | None = Field(default=None, ge=0, description="Their total size.")
    message: str = Field(default="", max_length=1024, description="Why the check failed.")


class Champion(KubeModel):
    """The version that serves."""

    version: str = Field(description="Model version number.")
    uri: str = Field(description="URI of the version folder.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Its metrics.")
    score: float | None = Field(default=None, description="Its value of the gate metric.")
    run_id: str | None = Field(default=None, description="Run that produced it.")
    promoted_at: str | None = Field(
        default=None, json_schema_extra={"format": "date-time"}, description="Promotion time."
    )


RegistryAction = Literal["Promote", "Rollback", "Gate", "Alias", "Inspect"]


class RegistryOp(KubeModel):
    """An alias write the operator asked of a registry Job (the operator itself holds no
    object-store credentials). Queued in decision order; the first one's Job runs."""

    id: str = Field(pattern=r"^[1-9][0-9]*$", description="Operation number, increasing.")
    job: str = Field(description="Name of its Job, <pipeline>-registry-<id>.")
    action: RegistryAction = Field(
        description="Promote (annotation kubeloop.io/promote), Rollback (annotation "
        "kubeloop.io/rollback-to), Gate (the promotion gate promoted a run), Alias (annotation "
        "alias.kubeloop.io/<alias>: a named alias such as production) or Inspect (read "
        "the aliases, the champion and the run numbering a pipeline of this name left in the "
        "registry, before its first run)."
    )
    version: str | None = Field(
        default=None,
        pattern=r"^[1-9][0-9]*$",
        description="Model version to point at (every action but Inspect).",
    )
    alias: str | None = Field(
        default=None,
        max_length=63,
        description="The alias to write, e.g. champion (every action but Inspect).",
    )
    by: str = Field(max_length=256, description="Who or what asked for it.")
    reason: str = Field(default="", max_length=1024, description="Why, in a sentence.")
    requested_at: str | None = Field(
        default=None, json_schema_extra={"format": "date-time"}, description="Request time."
    )


class RegistrySync(KubeModel):
    """What the operator learnt from the registry when the pipeline had no status yet."""

    inspected_at: str | None = Field(
        default=None,
        json_schema_extra={"format": "date-time"},
        description="When the registry was read; until then only a run whose Job reads it "
        "first (currentRun.readsRegistry) starts.",
    )
    last_run_id: int = Field(
        default=0,
        ge=0,
        description="The highest run id taken then: the registry's, or a run's withdrawn "
        "because of the read.",
    )
    latest_version: int | None = Field(
        default=None,
        ge=1,
        description="The highest complete version the registry held then (an annotation may "
        "promote any version up to it: the registry Job checks it).",
    )
    failures: int = Field(default=0, ge=0, description="Failed reads in a row.")
    retry_at: str | None = Field(
        default=None,
        json_schema_extra={"format": "date-time"},
        description="After a failed read: when the next one starts (backoff).",
    )
    champion: str | None = Field(
        default=None, description="The champion version adopted from the registry, if any."
    )
    message: str = Field(default="", max_length=1024, description="What the read found.")


class PromotionRecord(KubeModel):
    """A change of an alias, as the registry recorded it (newest first in status)."""

    version: str = Field(description="The version the alias points at since.")
    alias: str = Field(max_length=63, description="The alias, e.g. champion.")
    previous: str | None = Field(default=None, description="The version it pointed at before.")
    by: str = Field(
        max_length=256,
        description="gate, annotation kubeloop.io/promote, annotation kubeloop.io/rollback-to "
        "or annotation alias.kubeloop.io/<alias>.",
    )
    reason: str = Field(default="", max_length=1024, description="Why, in a sentence.")
    at: str | None = Field(
        default=None, json_schema_extra={"format": "date-time"}, description="When."
    )


class TrainingPipelineStatus(KubeModel):
    """Observed state of a TrainingPipeline, written only by the operator."""

    observed_generation: int | None = Field(
        default=None, description="The metadata.generation last reconciled."
    )
    phase: (
        Literal[
            "Pending", "Queued", "Running", "Succeeded", "AwaitingApproval", "Failed", "Invalid"
        ]
        | None
    ) = Field(
        default=None,
        description="Summary for people: the state of the latest run (Queued: its Job waits "
        "for admission, e.g. by Kueue; AwaitingApproval: its version passed the gate and waits "
        "for the annotation kubeloop.io/promote).",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        description="Ready, Running, Succeeded, Reconciling, Stalled, PromotionRefused.",
    )
    current_run: RunRef | None = Field(default=None, description="The run in progress.")
    search: SearchSummary | None = Field(
        default=None,
        description="The latest run's search (spec.search): done/planned and the best trial, "
        "kept after the run ends (the Trials printer column).",
    )
    runs: list[RunRecord] = Field(
        default_factory=list, max_length=100, description="Finished runs, newest first."
    )
    champion: Champion | None = Field(default=None, description="The promoted version.")
    last_run_id: int = Field(default=0, ge=0, description="Highest run number allocated.")
    last_recorded_run_id: int | None = Field(
        default=None,
        ge=0,
        description="Highest run number recorded: runs are recorded in order, each once, "
        "however short runs is; a Job of a run at or below it is never recorded again.",
    )
    last_run_generation: int | None = Field(
        default=None, description="The metadata.generation the latest run was started for."
    )
    last_run_spec_hash: str | None = Field(
        default=None,
        max_length=64,
        description="Fingerprint of what the latest run trained (data, model, trainer, "
        "resources, distributed, seed, image): only an edit that changes it starts a run.",
    )
    last_schedule_time: str | None = Field(
        default=None, json_schema_extra={"format": "date-time"}, description="Last cron tick."
    )
    data_check: DataCheck | None = Field(
        default=None, description="The latest check of the training data (spec.dataTrigger)."
    )
    last_run_data_fingerprint: str | None = Field(
        default=None,
        max_length=128,
        description="Fingerprint of the data the latest successful run trained on: a data "
        "check that finds another one starts a NewData run.",
    )
    handled_data_fingerprint: str | None = Field(
        default=None,
        max_length=128,
        description="The data fingerprint last acted on (a run started, or a scheduled run "
        "skipped, for it): the same data never starts two runs.",
    )
    handled_run_request: str | None = Field(
        default=None, description="Last kubeloop.io/run-requested-at value acted on."
    )
    handled_retrain_request: str | None = Field(
        default=None, description="Last kubeloop.io/retrain-requested-at value acted on."
    )
    handled_promote_request: str | None = Field(
        default=None, description="Last kubeloop.io/promote value acted on."
    )
    handled_rollback_request: str | None = Field(
        default=None, description="Last kubeloop.io/rollback-to value acted on."
    )
    handled_alias_requests: dict[str, str] = Field(
        default_factory=dict,
        description="Alias -> the last alias.kubeloop.io/<alias> value acted on.",
    )
    aliases: dict[str, str] = Field(
        default_factory=dict,
        description="Alias -> version, as the registry holds them (mirrored from the results "
        "of registry Jobs).",
    )
    promotions: list[PromotionRecord] = Field(
        default_factory=list,
        max_length=20,
        description="The latest alias changes, newest first (the full history is in the registry).",
    )
    registry_queue: list[RegistryOp] = Field(
        default_factory=list,
        max_length=20,
        description="Alias writes waiting for a registry Job, in decision order; the first "
        "one's Job runs.",
    )
    last_registry_op_id: int = Field(
        default=0, ge=0, description="Highest registry operation number allocated."
    )
    registry_sync: RegistrySync | None = Field(
        default=None,
        description="The registry read before the first run: a pipeline created again under "
        "a name whose registry holds a champion adopts it and its run numbering.",
    )


class TrainingPipeline(KubeModel):
    """Trains a model from Parquet data into immutable versions and promotes a champion."""

    api_version: Literal["kubeloop.io/v1alpha1"] = Field(
        default="kubeloop.io/v1alpha1", alias="apiVersion"
    )
    kind: Literal["TrainingPipeline"] = "TrainingPipeline"
    cel_rules: ClassVar[tuple[CelRule, ...]] = (NAME_RULE,)
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: TrainingPipelineSpec
    status: TrainingPipelineStatus | None = None
