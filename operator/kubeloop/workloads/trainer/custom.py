"""A custom training run's two Kubeloop steps around the user's code (docs/byo.md).

`prepare` (init container before the user's): artifacts writable, the data read and split the
way the built-in trainer splits it and staged as Parquet, the SDK copied beside it, the run's
checkpoints restored, the context written. `publish` (main container after it): the model the
user's code wrote is loaded through its format class, scored on the validation split Kubeloop
reads itself (from the source, not from the staged copy the user's code could change), and
published like any version; nothing is claimed unless all of that worked.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from kubeloop.api.search import TrialAssignment
from kubeloop.api.training import TrainingPipelineSpec
from kubeloop.formats import LoadOptions, Signature, SignatureError, format_named
from kubeloop.modelformat import Feature, ModelFormatError
from kubeloop.storage import StorageError, join, store_for
from kubeloop.workloads.trainer.context import RunContext, check_artifacts_writable
from kubeloop.workloads.trainer.data import TrainingData, feature_columns, load_training_data
from kubeloop.workloads.trainer.errors import TrainingError, classify_storage_error
from kubeloop.workloads.trainer.trial import sample_rows, succeeded_outcome
from kubeloop_sdk.metrics import METRICS_FILE
from kubeloop_sdk.modelfiles import MODEL_MANIFEST

__all__ = ["CUSTOM_TRAINER", "Layout", "prepare_run", "publish_run"]

log = logging.getLogger("kubeloop.train")

CUSTOM_TRAINER = "custom-trainer"  # manifest `producedBy`: user code wrote the model files


@dataclass(frozen=True)
class Layout:
    """The shared folder of the run's pod (an emptyDir at /kubeloop)."""

    root: Path

    @classmethod
    def from_env(cls) -> Layout:
        """`KUBELOOP_DIR`, default /kubeloop (the operator mounts it there)."""
        return cls(Path(os.environ.get("KUBELOOP_DIR", "/kubeloop")))

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def sdk(self) -> Path:
        return self.root / "sdk"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def model(self) -> Path:
        return self.output / "model"

    @property
    def context(self) -> Path:
        return self.root / "context.json"


# --- prepare ------------------------------------------------------------------------------------


def prepare_run(spec: TrainingPipelineSpec, ctx: RunContext, layout: Layout) -> dict[str, Any]:
    """Stage everything the user's code needs; returns the context written.

    A search trial (ctx.trial) claims nothing of the run: no run marker, no checkpoints
    restored or copied out (parallel trials share the run id), and a `rows` budget stages
    only the trial's sample of the training rows."""
    trial = ctx.trial
    resumable = trial is None and _same_object_ran_before(spec, ctx)
    if trial is None:
        check_artifacts_writable(spec, ctx)
    data = sample_rows(load_training_data(spec), trial)
    layout.data.mkdir(parents=True, exist_ok=True)
    pq.write_table(data.train, layout.data / "train.parquet")
    pq.write_table(data.validation, layout.data / "validation.parquet")
    _copy_sdk(layout.sdk)
    restored = _restore_checkpoints(spec, ctx, layout.checkpoints) if resumable else 0
    for folder in (layout.checkpoints, layout.model):
        folder.mkdir(parents=True, exist_ok=True)
    context = {
        "runId": ctx.run_id,
        "pipeline": ctx.pipeline,
        "pipelineUid": ctx.pipeline_uid,
        "namespace": ctx.namespace,
        "task": spec.model.task,
        "target": data.target,
        "features": [f.to_dict() for f in data.features],
        "classes": list(data.classes) if data.classes is not None else None,
        "params": spec.model.params,
        "seed": spec.seed,
        "dataDir": str(layout.data),
        "train": spec.data.train,
        "validation": spec.data.validation,
        "rows": {"train": data.train.num_rows, "validation": data.validation.num_rows},
        "modelDir": str(layout.model),
        "checkpointDir": str(layout.checkpoints),
        "checkpointUri": spec.checkpoint_uri(ctx.run_id) if trial is None else None,
        "outputDir": str(layout.output),
        "trial": _trial_context(trial),
    }
    layout.context.write_text(json.dumps(context, indent=2, default=str))
    log.info(
        "prepared run %s: %d training rows, %d validation rows, %d checkpoint(s) restored",
        ctx.run_id,
        data.train.num_rows,
        data.validation.num_rows,
        restored,
    )
    return context


def _trial_context(trial: TrialAssignment | None) -> dict[str, Any] | None:
    """context.json's `trial` (kubeloop_sdk.Trial): its params are already in `params`."""
    if trial is None:
        return None
    budget = trial.budget
    return {
        "number": trial.trial,
        "rung": trial.rung,
        "budget": {"parameter": budget.parameter, "value": budget.value} if budget else None,
        "seed": trial.seed,
    }


def _same_object_ran_before(spec: TrainingPipelineSpec, ctx: RunContext) -> bool:
    """Whether this run id's marker names this pipeline object: checkpoints of a deleted and
    re-created pipeline's run with the same number are never resumed."""
    marker = join(spec.artifacts, "runs", ctx.run_id, "run.json")
    try:
        body = json.loads(store_for(spec.artifacts).read_bytes(marker))
    except (StorageError, OSError, ValueError):
        return False
    return isinstance(body, dict) and body.get("pipelineUid") == ctx.pipeline_uid


def _copy_sdk(target: Path) -> None:
    import kubeloop_sdk

    source = Path(kubeloop_sdk.__file__).parent
    destination = target / source.name
    shutil.rmtree(destination, ignore_errors=True)
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _restore_checkpoints(spec: TrainingPipelineSpec, ctx: RunContext, folder: Path) -> int:
    prefix = spec.checkpoint_uri(ctx.run_id)
    store = store_for(spec.artifacts)
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    try:
        for obj in store.list(prefix + "/"):
            name = obj.uri.rsplit("/", 1)[-1]
            if not name or name.startswith("."):
                continue
            (folder / name).write_bytes(store.read_bytes(obj.uri))
            count += 1
    except StorageError as exc:
        raise classify_storage_error(exc, writing=False) from exc
    return count


# --- publish ------------------------------------------------------------------------------------


def publish_run(spec: TrainingPipelineSpec, ctx: RunContext, layout: Layout) -> dict[str, Any]:
    """Check, score and publish what the user's code wrote; returns the TrainingResult."""
    # Scoring and publishing need the estimators' stack (scikit-learn); prepare does not.
    from kubeloop.workloads.trainer.metrics import evaluate
    from kubeloop.workloads.trainer.run import Trained, publish

    started = time.monotonic()
    if ctx.dist.rank != 0:
        return {"kind": "TrainingResult", "ok": True, "rank": ctx.dist.rank}
    descriptor = _descriptor(layout.model)
    model_format = str(descriptor.get("modelFormat", ""))
    try:
        fmt = format_named(model_format)
    except ModelFormatError as exc:
        raise TrainingError(
            "ModelDoesNotLoad", f"{layout.model}/{MODEL_MANIFEST}: modelFormat: {exc}"
        ) from exc
    data = load_training_data(spec)
    inputs = _inputs(descriptor, data)
    signature = Signature(inputs, spec.model.task, data.classes)
    fields = {k: descriptor[k] for k in ("predictor",) if descriptor.get(k)}
    candidate = Path(tempfile.mkdtemp(prefix="candidate-", dir=ctx.work_dir))
    try:
        _copy_model_files(layout.model, candidate)
        manifest = {"modelFormat": model_format, "signature": signature.to_dict(), **fields}
        model = _load(fmt, candidate, manifest, signature, model_format)
        columns = feature_columns(data.validation, data.features)
        try:
            prediction = fmt.predict(model, signature, columns)
        except Exception as exc:  # the user's model: any failure is theirs to see
            raise TrainingError(
                "SignatureMismatch",
                f"the {model_format} model written by your code fails on the validation rows "
                f"(inputs {', '.join(f.name for f in inputs)}; task {spec.model.task}"
                f"{'; classes ' + ', '.join(map(str, data.classes)) if data.classes else ''}):"
                f" {type(exc).__name__}: {exc}",
            ) from exc
    finally:
        shutil.rmtree(candidate, ignore_errors=True)
    y_val = data.validation.column(data.target).to_numpy(zero_copy_only=False)
    metrics = evaluate(
        spec.model.task, y_val, prediction.values, prediction.probabilities, data.classes
    )
    log.info("validation metrics (scored by Kubeloop): %s", json.dumps(metrics, sort_keys=True))
    if ctx.trial is not None:  # a trial's model is scored, never published
        # No training time: the user's code ran in its own container, before this step.
        return succeeded_outcome(spec, ctx.trial, metrics, None)
    trainer = spec.trainer
    extra: dict[str, Any] = {
        "trainer": {
            "image": ctx.image,
            "command": list(trainer.command) if trainer and trainer.command else None,
            "args": list(trainer.args) if trainer else [],
            "codeRef": trainer.code_ref if trainer else None,
        },
        "reportedMetrics": _reported_metrics(layout.output),
    }
    if descriptor.get("sdkVersion"):
        extra["sdkVersion"] = descriptor["sdkVersion"]

    def save(folder: Path, _: Signature) -> dict[str, Any]:
        _copy_model_files(layout.model, folder)
        return fields

    trained = Trained(
        save=save,
        model_format=model_format,
        produced_by=CUSTOM_TRAINER,
        estimator="custom",
        params=dict(spec.model.params),
        metrics=metrics,
        rows={
            "train": data.train.num_rows,
            "validation": data.validation.num_rows,
            "droppedMissingTarget": data.dropped_missing_target,
        },
        extra=extra,
        inputs=inputs,
    )
    return publish(spec, ctx, data, trained, started)


def _descriptor(model_dir: Path) -> dict[str, Any]:
    path = model_dir / MODEL_MANIFEST
    if not path.is_file():
        found = sorted(p.name for p in model_dir.iterdir()) if model_dir.is_dir() else []
        raise TrainingError(
            "NoModelWritten",
            f"your code exited 0 but wrote no model: {path} is missing"
            f"{' (found: ' + ', '.join(found[:10]) + ')' if found else ''}; save it with "
            "kubeloop_sdk.save_model(model, format=...) (docs/byo.md)",
        )
    try:
        body = json.loads(path.read_text())
    except ValueError as exc:
        raise TrainingError("ModelDoesNotLoad", f"{path}: not JSON ({exc})") from exc
    if not isinstance(body, dict):
        raise TrainingError("ModelDoesNotLoad", f"{path}: must be a JSON object")
    return body


def _inputs(descriptor: dict[str, Any], data: TrainingData) -> tuple[Feature, ...]:
    names = descriptor.get("inputs")
    if names is None:
        return tuple(data.features)
    by_name = {f.name: f for f in data.features}
    unknown = [n for n in names if n not in by_name]
    if not isinstance(names, list) or not names or unknown:
        raise TrainingError(
            "SignatureMismatch",
            f"{MODEL_MANIFEST}: inputs {names!r} must be a non-empty list of feature columns "
            f"of spec.data ({', '.join(by_name)})"
            + (f"; unknown: {', '.join(unknown)}" if unknown else ""),
        )
    return tuple(by_name[n] for n in names)


def _copy_model_files(source: Path, target: Path) -> None:
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if relative.name == MODEL_MANIFEST or "__pycache__" in relative.parts:
            continue
        if path.is_symlink():
            raise TrainingError(
                "ModelDoesNotLoad", f"{path}: a symlink; write the model files themselves"
            )
        if path.is_file():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target / relative)


def _load(fmt: Any, folder: Path, manifest: dict[str, Any], signature: Signature, name: str) -> Any:
    # The publish step runs in the same pod as the code that wrote these files, with the same
    # credentials: loading its pickle or its predictor class grants nothing new. The server
    # never takes that for granted (ModelDeployment spec.model.allowPickle).
    predictor = manifest.get("predictor")
    options = LoadOptions(
        allow_pickle=True,
        allow_custom_code=True,
        custom_predictors=frozenset({predictor}) if isinstance(predictor, str) else frozenset(),
    )
    try:
        return fmt.load(folder, {**manifest, "producedBy": CUSTOM_TRAINER}, signature, options)
    except SignatureError as exc:
        raise TrainingError(
            "SignatureMismatch", f"the {name} model your code wrote does not fit: {exc}"
        ) from exc
    except Exception as exc:
        raise TrainingError(
            "ModelDoesNotLoad",
            f"the model your code wrote does not load as {name!r}: {type(exc).__name__}: {exc}",
        ) from exc


def _reported_metrics(output: Path) -> dict[str, float]:
    path = output / METRICS_FILE
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(body, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in body.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
