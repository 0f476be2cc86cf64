"""The run's context: what Kubeloop tells your training code, from `context.json`.

Kubeloop's `prepare` container writes the file (docs/byo.md) and points `KUBELOOP_CONTEXT` at
it; the rank comes from the env `torchrun` sets. Outside Kubeloop, `write_context` writes a
file of your own (paths default to folders beside it), so the same script runs on a laptop:

    kubeloop_sdk.write_context("run/context.json", target="label", params={"epochs": 2})
    KUBELOOP_CONTEXT=run/context.json python train.py
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CONTEXT_ENV",
    "DEFAULT_CONTEXT_PATH",
    "Context",
    "ContextError",
    "Feature",
    "Trial",
    "context",
    "context_path",
    "write_context",
]

CONTEXT_ENV = "KUBELOOP_CONTEXT"
DEFAULT_CONTEXT_PATH = "/kubeloop/context.json"

# context.json key -> Context field, in the order `write_context` writes them
_KEYS = {
    "runId": "run_id",
    "pipeline": "pipeline",
    "namespace": "namespace",
    "task": "task",
    "target": "target",
    "features": "features",
    "classes": "classes",
    "params": "params",
    "seed": "seed",
    "dataDir": "data_dir",
    "train": "train",
    "validation": "validation",
    "modelDir": "model_dir",
    "checkpointDir": "checkpoint_dir",
    "checkpointUri": "checkpoint_uri",
    "outputDir": "output_dir",
    "trial": "trial",
}
_REQUIRED = ("runId", "pipeline", "namespace", "task", "dataDir", "modelDir", "checkpointDir")
_TASKS = ("classification", "regression")


class ContextError(RuntimeError):
    """No usable run context: the message says which file or key, and how to fix it."""


@dataclass(frozen=True)
class Feature:
    """One model input: a column of the staged data."""

    name: str
    dtype: str = "float64"
    kind: str = "numeric"  # numeric | categorical
    categories: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """As context.json holds it."""
        return {
            "name": self.name,
            "dtype": self.dtype,
            "kind": self.kind,
            "categories": list(self.categories) if self.categories is not None else None,
        }


@dataclass(frozen=True)
class Trial:
    """The search trial this run is (spec.search): its params are already in `ctx.params`.

    Honour the budget: when `budget_parameter` is one of your params (epochs, trees...), it
    is in `ctx.params` set to `budget`; when it is `rows`, train.parquet already holds only
    that many rows. Kubeloop scores the model you save and publishes nothing for a trial.
    """

    number: int
    rung: int = 0
    budget_parameter: str | None = None
    budget: int | None = None
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """As context.json holds it."""
        budget = None
        if self.budget_parameter is not None:
            budget = {"parameter": self.budget_parameter, "value": self.budget}
        return {"number": self.number, "rung": self.rung, "budget": budget, "seed": self.seed}


@dataclass(frozen=True)
class Context:
    """Everything about the run your code needs; `rank`, `world_size`, `local_rank` come from
    the env that `torchrun` sets (0, 1, 0 when it is absent)."""

    run_id: str
    pipeline: str
    namespace: str
    task: str  # classification | regression
    target: str
    features: tuple[Feature, ...]
    classes: tuple[Any, ...] | None
    params: dict[str, Any]  # a copy: changing it changes nothing else
    seed: int | None
    data_dir: Path  # train.parquet and validation.parquet
    train: str | None  # the spec's data URIs, for information (read the staged files)
    validation: str | None
    model_dir: Path  # where save_model writes
    checkpoint_dir: Path  # restored before your code starts
    checkpoint_uri: str | None  # where save_checkpoint also copies (file:// or s3://)
    output_dir: Path  # metrics.json and anything else Kubeloop picks up
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    trial: Trial | None = None  # set when this run is one trial of a search (spec.search)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes metrics, checkpoints and the model."""
        return self.rank == 0

    @property
    def feature_names(self) -> list[str]:
        """The input columns, in order."""
        return [f.name for f in self.features]

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        base: Path,
        env: Mapping[str, str] | None = None,
        source: str = "context.json",
    ) -> Context:
        """Parse context.json's content (`source` names it in errors); relative paths are
        taken from `base` (its folder); the rank from `env` (default: os.environ)."""
        where = source
        missing = [k for k in _REQUIRED if data.get(k) in (None, "")]
        if missing:
            raise ContextError(
                f"{where}: missing {', '.join(missing)}; Kubeloop's prepare container writes "
                "them, kubeloop_sdk.write_context() fills them in for a run of your own"
            )
        task = _text(data, "task", where)
        if task not in _TASKS:
            raise ContextError(f"{where}: task: {task!r}; use 'classification' or 'regression'")
        classes = data.get("classes")
        if classes is not None and not isinstance(classes, list):
            raise ContextError(f"{where}: classes: a list of class labels or null")
        params = data.get("params") or {}
        if not isinstance(params, dict):
            raise ContextError(f"{where}: params: an object of name -> value")
        seed = data.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ContextError(f"{where}: seed: an integer or null, not {seed!r}")
        env = os.environ if env is None else env

        def path(key: str) -> Path:
            value = Path(_text(data, key, where))
            return value if value.is_absolute() else base / value

        return cls(
            run_id=_text(data, "runId", where),
            pipeline=_text(data, "pipeline", where),
            namespace=_text(data, "namespace", where),
            task=task,
            target=str(data.get("target") or ""),
            features=tuple(_feature(f, i, where) for i, f in enumerate(data.get("features") or [])),
            classes=tuple(classes) if classes is not None else None,
            params=dict(params),
            seed=seed,
            data_dir=path("dataDir"),
            train=_optional_text(data, "train", where),
            validation=_optional_text(data, "validation", where),
            model_dir=path("modelDir"),
            checkpoint_dir=path("checkpointDir"),
            checkpoint_uri=_optional_text(data, "checkpointUri", where),
            output_dir=path("outputDir") if data.get("outputDir") else path("modelDir").parent,
            rank=_rank(env, "RANK", 0),
            world_size=_rank(env, "WORLD_SIZE", 1),
            local_rank=_rank(env, "LOCAL_RANK", 0),
            trial=_trial(data.get("trial"), where),
        )


def _text(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ContextError(f"{where}: {key}: a string, not {value!r}")
    return value


def _optional_text(data: Mapping[str, Any], key: str, where: str) -> str | None:
    return _text(data, key, where) if data.get(key) not in (None, "") else None


def _feature(raw: Any, index: int, where: str) -> Feature:
    if isinstance(raw, str):
        return Feature(raw)
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise ContextError(f"{where}: features[{index}]: an object with a 'name', not {raw!r}")
    categories = raw.get("categories")
    return Feature(
        name=raw["name"],
        dtype=str(raw.get("dtype") or "float64"),
        kind=str(raw.get("kind") or "numeric"),
        categories=tuple(str(c) for c in categories) if categories is not None else None,
    )


def _trial(raw: Any, where: str) -> Trial | None:
    if raw is None:
        return None
    budget = raw.get("budget") if isinstance(raw, dict) else None
    number = raw.get("number") if isinstance(raw, dict) else None
    if (
        not isinstance(number, int)
        or isinstance(number, bool)
        or not (budget is None or isinstance(budget, dict))
    ):
        raise ContextError(
            f"{where}: trial: an object {{number, rung, budget: {{parameter, value}}, seed}} "
            f"or null, not {raw!r}"
        )
    return Trial(
        number=number,
        rung=int(raw.get("rung") or 0),
        budget_parameter=str(budget["parameter"]) if budget else None,
        budget=int(budget["value"]) if budget else None,
        seed=raw.get("seed"),
    )


def _rank(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ContextError(f"env {name}={raw!r}: an integer (torchrun sets it)") from None


def context_path() -> Path:
    """The context file: env KUBELOOP_CONTEXT, else /kubeloop/context.json."""
    return Path(os.environ.get(CONTEXT_ENV) or DEFAULT_CONTEXT_PATH)


def context() -> Context:
    """The run's context, read from `context_path()` (cheap: read on every call)."""
    path = context_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ContextError(
            f"no run context at {path} (env {CONTEXT_ENV}). Kubeloop's prepare container writes "
            "it when your code runs in a TrainingPipeline; to run this script elsewhere, write "
            "one with kubeloop_sdk.write_context('run/context.json', target=..., params=...) and "
            f"set {CONTEXT_ENV}=run/context.json"
        ) from None
    except OSError as exc:
        raise ContextError(f"cannot read the run context {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ContextError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ContextError(f"{path}: a JSON object, not {type(data).__name__}")
    return Context.from_dict(data, base=path.parent.resolve(), source=str(path))


def write_context(path: str | os.PathLike[str], **fields: Any) -> Path:
    """Write a context file for a run outside Kubeloop; returns its path.

    `fields` are context.json's keys, camelCase or snake_case (`data_dir=...`,
    `params={...}`); what is left out gets a default: run id `local`, task `classification`,
    `data/`, `output/model/`, `checkpoints/` and `output/` beside the file, no checkpoint
    copy. `features` may be column names or {name, dtype, kind,
    categories} objects. Put your `train.parquet` and `validation.parquet` in `data_dir`.
    """
    target = Path(path)
    root = target.parent.resolve()
    by_field = {field: key for key, field in _KEYS.items()}
    unknown = sorted(k for k in fields if k not in _KEYS and k not in by_field)
    if unknown:
        raise TypeError(
            f"write_context: unknown field(s) {', '.join(unknown)}; known: {', '.join(_KEYS)}"
        )
    given = {by_field.get(k, k): v for k, v in fields.items()}
    data: dict[str, Any] = {
        "runId": "local",
        "pipeline": "local",
        "namespace": "default",
        "task": "classification",
        "target": "",
        "features": [],
        "classes": None,
        "params": {},
        "seed": 0,
        "dataDir": root / "data",
        "train": None,
        "validation": None,
        "modelDir": root / "output" / "model",
        "checkpointDir": root / "checkpoints",
        "checkpointUri": None,
        "outputDir": root / "output",
        "trial": None,
        **given,
    }
    if isinstance(data["trial"], Trial):
        data["trial"] = data["trial"].to_dict()
    data["features"] = [
        f.to_dict() if isinstance(f, Feature) else Feature(f).to_dict() if isinstance(f, str) else f
        for f in data["features"] or []
    ]
    if isinstance(data["classes"], tuple):
        data["classes"] = list(data["classes"])
    out = {k: str(v) if isinstance(v, os.PathLike) else v for k, v in data.items()}
    # refuse now what context() would refuse later
    Context.from_dict(out, base=root, env={}, source=f"write_context({str(target)!r})")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return target
