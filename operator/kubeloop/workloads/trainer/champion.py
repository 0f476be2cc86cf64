"""Score the champion on this run's validation rows, so the gate compares like with like.

The champion's own recorded metrics were computed on the validation rows of its run (older,
other data). The gate (spec.promotion.mustBeatChampion) needs both versions scored on the same
rows: this loads the champion the way the server does (download, every sha256 verified before
anything is unpickled, its format class) and scores it with the same `evaluate()` on exactly the
rows the new version was scored on.

A champion that cannot be scored never fails the run: the result says why (`championError`,
a sentence naming the version and the cause) and the gate, not the trainer, decides.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from kubeloop.api.training import TrainingPipelineSpec
from kubeloop.formats import LoadOptions
from kubeloop.modelformat import ChecksumError, Predictor, load_predictor, read_manifest
from kubeloop.workloads.server.loading import fetch_version
from kubeloop.workloads.trainer.context import ChampionRef
from kubeloop.workloads.trainer.data import TrainingData, feature_columns

__all__ = ["UnscorableError", "gate_entry", "score_champion", "wanted"]

log = logging.getLogger("kubeloop.train")

MAX_ERROR = 600


class UnscorableError(Exception):
    """Why the champion cannot be scored on this run's rows, in a sentence."""


def wanted(spec: TrainingPipelineSpec, champion: ChampionRef | None) -> bool:
    """Whether the gate compares with a champion, so this run must score it."""
    return champion is not None and spec.promotion is not None and spec.promotion.must_beat_champion


def score_champion(
    spec: TrainingPipelineSpec, champion: ChampionRef, data: TrainingData, work_dir: Path
) -> dict[str, Any]:
    """`championVersion` with `championMetrics` (its metrics on `data.validation`) or
    `championError`: the TrainingResult's fields of the champion."""
    from kubeloop.workloads.trainer.metrics import evaluate

    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="champion-", dir=work_dir))
    try:
        predictor = _load(spec, champion, scratch)
        _check_fits(spec, champion, predictor, data)
        try:
            columns = feature_columns(data.validation, predictor.features)
            prediction = predictor.predict(columns)
        except Exception as exc:
            raise UnscorableError(
                f"it fails on this run's validation rows: {type(exc).__name__}: {exc}"
            ) from exc
        y_val = data.validation.column(data.target).to_numpy(zero_copy_only=False)
        metrics = evaluate(
            spec.model.task, y_val, prediction.values, prediction.probabilities, data.classes
        )
    except UnscorableError as exc:
        error = f"champion v{champion.version} ({champion.uri}) could not be scored: {exc}"
        if len(error) > MAX_ERROR:
            # The result travels in a 4 KiB termination message: the metrics must fit too.
            error = error[: MAX_ERROR - 3] + "..."
        log.warning("%s", error)
        return {"championVersion": champion.version, "championError": error}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info(
        "champion v%s on this run's %d validation rows (%.2fs): %s",
        champion.version,
        data.validation.num_rows,
        time.monotonic() - started,
        metrics,
    )
    return {"championVersion": champion.version, "championMetrics": metrics}


def gate_entry(scored: dict[str, Any], metrics: dict[str, float], rows: int) -> dict[str, Any]:
    """The manifest's `gate`: both versions' metrics on the same validation rows."""
    champion = {"version": scored["championVersion"]}
    if "championMetrics" in scored:
        champion["metrics"] = scored["championMetrics"]
    else:
        champion["error"] = scored["championError"]
    return {"validationRows": rows, "metrics": metrics, "champion": champion}


def _load(spec: TrainingPipelineSpec, champion: ChampionRef, scratch: Path) -> Predictor:
    try:
        local = fetch_version(champion.uri, scratch)
        manifest = read_manifest(local)
    except Exception as exc:
        raise UnscorableError(f"its files cannot be read: {type(exc).__name__}: {exc}") from exc
    if spec.model.framework == "custom":
        # This pod already runs the pipeline's own code, which wrote the champion's files:
        # loading them grants nothing new (as for the model it just wrote, custom.py).
        predictor = manifest.get("predictor")
        options = LoadOptions(
            allow_pickle=True,
            allow_custom_code=True,
            custom_predictors=frozenset({predictor}) if isinstance(predictor, str) else frozenset(),
        )
    else:
        options = LoadOptions()  # the built-in trainer loads only what a server would
    try:
        return load_predictor(local, options)  # every sha256 verified before any unpickling
    except ChecksumError as exc:
        raise UnscorableError(f"it failed checksum verification: {exc}") from exc
    except Exception as exc:
        raise UnscorableError(f"it does not load: {type(exc).__name__}: {exc}") from exc


def _check_fits(
    spec: TrainingPipelineSpec, champion: ChampionRef, predictor: Predictor, data: TrainingData
) -> None:
    """The champion's signature must take this run's columns and give its labels."""
    if predictor.task != spec.model.task:
        raise UnscorableError(f"its task {predictor.task!r} is not this run's {spec.model.task!r}")
    names = set(data.validation.column_names)
    missing = [f.name for f in predictor.features if f.name not in names or f.name == data.target]
    if missing:
        raise UnscorableError(
            f"its signature does not fit the new data: inputs {', '.join(missing)} are not "
            "feature columns of this run's data"
        )
    ours = [str(c) for c in data.classes or ()]
    theirs = [str(c) for c in predictor.classes or ()]
    if spec.model.task == "classification" and ours != theirs:
        raise UnscorableError(
            f"its signature does not fit the new data: it predicts classes {theirs}, this "
            f"run's data has {ours}"
        )
