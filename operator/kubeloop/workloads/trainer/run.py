"""One training run, start to finish: check, read, fit, evaluate, write a version.

Order matters for the user's time and for safety: everything that can be checked without
data is checked first (estimator, params, artifacts writable), the data next (its types, then
against the champion's profile: spec.dataValidation), training after;
the version number is claimed only when the model is ready, and manifest.json goes last.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kubeloop.api.training import TORCH_ESTIMATOR, TrainingPipelineSpec
from kubeloop.formats import TRAINER, Signature, TorchMLP, format_named
from kubeloop.modelformat import Feature, Predictor, feature_matrix, write_manifest
from kubeloop.payload_schema import VALIDATION_OUTPUTS, VALIDATION_PREDICTIONS
from kubeloop.registry import Registry
from kubeloop.storage import StorageError
from kubeloop.workloads.monitor.validation import derive as derive_validation
from kubeloop.workloads.trainer.champion import gate_entry, score_champion, wanted
from kubeloop.workloads.trainer.checkpoints import CheckpointStore
from kubeloop.workloads.trainer.context import RunContext, check_artifacts_writable, now
from kubeloop.workloads.trainer.data import (
    TrainingData,
    feature_columns,
    load_training_data,
)
from kubeloop.workloads.trainer.errors import TrainingError, classify_storage_error
from kubeloop.workloads.trainer.metrics import evaluate
from kubeloop.workloads.trainer.mlp import params_dict, parse_params, train_mlp
from kubeloop.workloads.trainer.predictions import validation_predictions
from kubeloop.workloads.trainer.preprocess import build_preprocess
from kubeloop.workloads.trainer.validation import validate_training_data

__all__ = [
    "ModelPlan",
    "Trained",
    "fit_model",
    "plan_model",
    "publish",
    "run_training",
    "saved_by_format",
]

log = logging.getLogger("kubeloop.train")


@dataclass(frozen=True)
class Trained:
    """A fitted model with what the manifest says about it.

    `save(folder, signature)` writes the model files (the built-in trainer: its format class
    saves the fitted object; custom code: the files the user's code wrote are copied) and
    returns extra manifest fields.
    """

    save: Callable[[Path, Signature], dict[str, Any]]
    model_format: str
    produced_by: str
    estimator: str
    params: dict[str, Any]
    metrics: dict[str, float]
    rows: dict[str, int]
    extra: dict[str, Any]
    inputs: tuple[Feature, ...] | None = None  # default: every feature of the data
    # the validation rows' outputs (trainer/predictions.py); None: not kept (custom code)
    validation_predictions: pa.Table | None = None


def saved_by_format(model: Any, model_format: str) -> Callable[[Path, Signature], dict[str, Any]]:
    """The `save` of a fitted object: its format class writes it."""
    return lambda folder, signature: format_named(model_format).save(model, folder, signature)


def _versions() -> dict[str, str]:
    """The versions a model file may depend on, read from the installed distributions: a
    custom model's publish does not import scikit-learn (seconds) to name its version."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "unknown"

    return {
        "python": platform.python_version(),
        "scikit-learn": installed("scikit-learn"),
        "numpy": np.__version__,
        "pyarrow": pa.__version__,
        "joblib": installed("joblib"),
        "kubeloop": installed("kubeloop"),
    }


def _labels(table: pa.Table, target: str, classes: tuple[Any, ...]) -> np.ndarray[Any, Any]:
    index = pc.index_in(table.column(target), value_set=pa.array(list(classes)))
    labels: np.ndarray[Any, Any] = index.to_numpy(zero_copy_only=False).astype(np.int64)
    return labels


def _signature(spec: TrainingPipelineSpec, data: TrainingData, pipeline_uid: str | None) -> str:
    # The uid: a re-created pipeline's run 1 never resumes the old object's run 1.
    basis = json.dumps(
        [spec.model.model_dump(mode="json"), spec.seed, data.fingerprint, pipeline_uid],
        sort_keys=True,
    )
    return hashlib.sha256(basis.encode()).hexdigest()


@dataclass(frozen=True)
class ModelPlan:
    """The estimator to fit, built and checked before any data is read: an unfitted
    scikit-learn-API estimator, or the MLP's parsed params."""

    estimator_name: str
    estimator: Any = None
    mlp_params: Any = None


def plan_model(spec: TrainingPipelineSpec) -> ModelPlan:
    """Check the estimator and its params (TrainingError naming the field) without data."""
    if spec.model.framework == "custom":
        raise TrainingError(
            "InvalidSpec",
            "spec.model.framework 'custom' runs your own code (spec.trainer), not a built-in "
            "estimator: run `kubeloop train --prepare`, your code, then `kubeloop train "
            "--publish` (the operator's pods do; docs/byo.md), or `kubeloop local`",
        )
    # Here, not at the top: publishing a custom model imports this module too, and needs no
    # scikit-learn.
    from kubeloop.workloads.trainer.estimators import build_estimator

    name = spec.model.resolved_estimator()
    if name == TORCH_ESTIMATOR:
        return ModelPlan(name, mlp_params=parse_params(spec.model.params))
    return ModelPlan(name, estimator=build_estimator(name, spec.model.params, spec.seed))


def run_training(spec: TrainingPipelineSpec, ctx: RunContext) -> dict[str, Any]:
    """Train and publish; returns the TrainingResult dict or raises TrainingError."""
    started = time.monotonic()
    plan = plan_model(spec)
    if ctx.dist.rank == 0:
        check_artifacts_writable(spec, ctx)
    ctx.progress.report({"phase": "reading", "percent": 0})
    data = load_training_data(spec)
    log.info(
        "data: %d training rows, %d validation rows, %d features, fingerprint %s",
        data.train.num_rows,
        data.validation.num_rows,
        len(data.features),
        data.fingerprint,
    )
    validate_training_data(spec, ctx.champion, data)  # bad data never trains a model
    # every rank resumes; only rank 0 saves
    trained = fit_model(spec, ctx, data, plan, CheckpointStore(spec.artifacts, ctx.run_id))
    if ctx.dist.rank != 0:
        return {
            "kind": "TrainingResult",
            "ok": True,
            "rank": ctx.dist.rank,
            "metrics": trained.metrics,
        }
    return publish(spec, ctx, data, trained, started)


def fit_model(
    spec: TrainingPipelineSpec,
    ctx: RunContext,
    data: TrainingData,
    plan: ModelPlan,
    checkpoints: CheckpointStore | None,
) -> Trained:
    """Fit the planned model on `data.train` and score it on `data.validation`."""
    from kubeloop.workloads.trainer.estimators import ClassIndexClassifier

    estimator, mlp_params = plan.estimator, plan.mlp_params
    x_train = feature_matrix(feature_columns(data.train, data.features), data.features)
    val_columns = feature_columns(data.validation, data.features)
    preprocess = build_preprocess(data.features)
    extra: dict[str, Any] = {}
    if estimator is not None:
        from sklearn.pipeline import Pipeline

        y_train = data.train.column(data.target).to_numpy(zero_copy_only=False)
        model = Pipeline([("preprocess", preprocess), ("model", estimator)])
        ctx.progress.report({"phase": "fitting", "percent": 10})
        model.fit(x_train, y_train)
        predictor = Predictor(data.features, spec.model.task, data.classes, "sklearn", model)
        # The manifest records the library's own parameters, not a label-index wrapper's.
        configured = (
            estimator.estimator if isinstance(estimator, ClassIndexClassifier) else estimator
        )
        params = {
            k: v
            for k, v in configured.get_params(deep=False).items()
            if isinstance(v, str | int | float | bool | type(None) | list)
        }
    else:
        assert mlp_params is not None
        import torch

        from kubeloop.modelformat import build_mlp

        classification = spec.model.task == "classification"
        xt = preprocess.fit_transform(x_train)
        xv = preprocess.transform(feature_matrix(val_columns, data.features))
        if classification:
            assert data.classes is not None
            yt = _labels(data.train, data.target, data.classes)
            yv = _labels(data.validation, data.target, data.classes)
            outputs = len(data.classes)
        else:
            yt = pc.cast(data.train.column(data.target), pa.float64()).to_numpy()
            yv = pc.cast(data.validation.column(data.target), pa.float64()).to_numpy()
            outputs = 1
        result = train_mlp(
            xt,
            yt,
            xv,
            yv,
            task=spec.model.task,
            outputs=outputs,
            params=mlp_params,
            seed=spec.seed,
            signature=_signature(spec, data, ctx.pipeline_uid),
            checkpoints=checkpoints,
            dist=ctx.dist,
            on_epoch=ctx.progress.report,
        )
        net = build_mlp(xt.shape[1], mlp_params.hiddenSizes, mlp_params.dropout, outputs)
        net.load_state_dict(result.state_dict)
        net.eval()
        model = TorchMLP(net, preprocess, (result.target_mean, result.target_std))
        predictor = Predictor(data.features, spec.model.task, data.classes, "torch", model)
        params = params_dict(mlp_params)
        extra = {
            "architecture": {
                "inputs": int(xt.shape[1]),
                "hiddenSizes": list(mlp_params.hiddenSizes),
                "dropout": mlp_params.dropout,
                "outputs": outputs,
                "targetMean": result.target_mean,
                "targetStd": result.target_std,
            },
            "training": {
                "device": result.device,
                "amp": result.amp,
                "worldSize": ctx.dist.world_size,
                "startEpoch": result.start_epoch,
                "epochsRun": result.epochs_run,
                "bestEpoch": result.best_epoch,
                "stoppedEarly": result.stopped_early,
                "history": result.history,
                "torch": torch.__version__,
            },
        }
    prediction = predictor.predict(val_columns)
    y_val = data.validation.column(data.target).to_numpy(zero_copy_only=False)
    metrics = evaluate(
        spec.model.task, y_val, prediction.values, prediction.probabilities, data.classes
    )
    log.info("validation metrics: %s", json.dumps(metrics, sort_keys=True))
    return Trained(
        save=saved_by_format(model, spec.model.framework),
        model_format=spec.model.framework,
        produced_by=TRAINER,
        estimator=plan.estimator_name,
        params=params,
        metrics=metrics,
        rows={
            "train": data.train.num_rows,
            "validation": data.validation.num_rows,
            "droppedMissingTarget": data.dropped_missing_target,
        },
        extra=extra,
        validation_predictions=validation_predictions(
            spec.model.task, y_val, prediction.values, prediction.probabilities, data.classes
        ),
    )


def publish(
    spec: TrainingPipelineSpec,
    ctx: RunContext,
    data: TrainingData,
    trained: Trained,
    started: float,
) -> dict[str, Any]:
    """Claim the next version, write the model, profile and manifest, publish it (or report
    the version this very run already published)."""
    from kubeloop.profile import build_profile

    params = trained.params
    metrics, rows, extra = trained.metrics, trained.rows, trained.extra
    training = extra.get("training", {})

    registry = Registry(spec.artifacts)
    try:
        claim = registry.allocate(ctx.run_id, ctx.pipeline_uid)
        if claim.complete:
            # A restarted pod of this very run (same pipeline object, same run id) that
            # already published: report that version again.
            manifest = registry.read_manifest(claim.version)
            log.info("run %s already published version %s", ctx.run_id, claim.version)
            return _result(
                str(claim.version),
                claim.uri,
                manifest["metrics"],
                manifest["data"]["rows"],
                training,
                scored=_scored_from(manifest.get("gate")),
                data_fingerprint=manifest["data"].get("fingerprint"),
            )
        scored = (
            score_champion(spec, ctx.champion, data, ctx.work_dir)
            if ctx.champion is not None and wanted(spec, ctx.champion)
            else {}
        )
        folder = Path(tempfile.mkdtemp(prefix="version-", dir=ctx.work_dir))
        try:
            inputs = trained.inputs if trained.inputs is not None else tuple(data.features)
            signature = Signature(inputs, spec.model.task, data.classes)
            format_fields = trained.save(folder, signature)
            numeric = [f.name for f in data.features if f.kind == "numeric"]
            categorical = [f.name for f in data.features if f.kind == "categorical"]
            profile = build_profile(data.train, numeric, categorical)
            if data.source is not None:  # lets the monitor stream these rows again (exact KS)
                profile["source"] = data.source.to_dict()
            (folder / "profile.json").write_text(json.dumps(profile, sort_keys=True))
            if trained.validation_predictions is not None:
                pq.write_table(trained.validation_predictions, folder / VALIDATION_PREDICTIONS)
                _write_validation_outputs(trained.validation_predictions, folder)
            target_type = str(data.train.schema.field(data.target).type)
            versions = _versions()
            if spec.model.framework == "torch":
                versions["torch"] = str(training.get("torch", ""))
            write_manifest(
                folder,
                {
                    "version": str(claim.version),
                    "created": now(),
                    "pipeline": ctx.pipeline,
                    "pipelineUid": ctx.pipeline_uid,
                    "namespace": ctx.namespace,
                    "runId": ctx.run_id,
                    "trigger": ctx.trigger,
                    "framework": spec.model.framework,
                    "modelFormat": trained.model_format,
                    "producedBy": trained.produced_by,
                    "signature": signature.to_dict(),
                    "frameworkVersions": versions,
                    "task": spec.model.task,
                    "estimator": trained.estimator,
                    "params": params,
                    "metrics": metrics,
                    "data": {
                        "train": spec.data.train,
                        "validation": spec.data.validation,
                        "validationFraction": None
                        if spec.data.validation
                        else spec.data.validation_fraction,
                        "fingerprint": data.fingerprint,
                        "files": [
                            {"uri": f.uri, "size": f.size, "marker": f.marker} for f in data.files
                        ],
                        "rows": rows,
                    },
                    "features": [f.to_dict() for f in inputs],
                    "target": {
                        "name": data.target,
                        "dtype": target_type,
                        "classes": list(data.classes) if data.classes is not None else None,
                    },
                    "seed": spec.seed,
                    "image": ctx.image,
                    "profile": "profile.json",
                    "durationSeconds": round(time.monotonic() - started, 3),
                    **({"gate": gate_entry(scored, metrics, rows["validation"])} if scored else {}),
                    **({"search": ctx.search.to_wire()} if ctx.search is not None else {}),
                    **format_fields,
                    **extra,
                },
            )
            uri = registry.publish(folder, claim)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    except StorageError as exc:
        raise classify_storage_error(exc, writing=True) from exc
    log.info("published version %s at %s", claim.version, uri)
    return _result(
        str(claim.version),
        uri,
        metrics,
        rows,
        training,
        scored=scored,
        data_fingerprint=data.fingerprint,
    )


def _scored_from(gate: Any) -> dict[str, Any]:
    """The champion's result fields back from a published manifest's `gate` (a restarted pod
    of a run that already published reports what that run scored)."""
    champion = gate.get("champion") if isinstance(gate, dict) else None
    if not isinstance(champion, dict):
        return {}
    out: dict[str, Any] = {"championVersion": champion.get("version")}
    if "metrics" in champion:
        out["championMetrics"] = champion["metrics"]
    else:
        out["championError"] = champion.get("error")
    return out


def _result(
    version: str,
    uri: str,
    metrics: dict[str, Any],
    rows: dict[str, Any],
    training: dict[str, Any],
    *,
    scored: dict[str, Any],
    data_fingerprint: str | None,
) -> dict[str, Any]:
    # dataFingerprint: what the run trained on, for the new-data trigger (spec.dataTrigger).
    out: dict[str, Any] = {
        "kind": "TrainingResult",
        "ok": True,
        "version": version,
        "uri": uri,
        "metrics": metrics,
        "rows": rows,
        "dataFingerprint": data_fingerprint,
        **scored,
    }
    if training:
        out["startEpoch"] = training["startEpoch"]
        out["epochs"] = training["epochsRun"]
    return out


def _write_validation_outputs(predictions: pa.Table, folder: Path) -> None:
    """The validation outputs' drift profile and CBPE calibrator, derived once here so that no
    drift check profiles or calibrates them again. Best effort: a version without the file is
    still whole (a check derives both from the Parquet, as for versions from before it), so a
    derivation that fails is a warning, never a failed run."""
    try:
        derived = derive_validation(predictions)
        (folder / VALIDATION_OUTPUTS).write_text(json.dumps(derived, sort_keys=True))
    except Exception as exc:  # an optional artifact never fails training
        log.warning(
            "%s not written (checks derive it from %s): %s",
            VALIDATION_OUTPUTS,
            VALIDATION_PREDICTIONS,
            exc,
        )
