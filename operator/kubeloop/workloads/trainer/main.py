"""`kubeloop train`: the entry point the training Job runs (and a laptop, with --spec).

Input (docs/contracts.md): `--spec FILE` (a TrainingPipeline YAML, or just its spec) or env
`KUBELOOP_SPEC` (the spec as camelCase JSON); `--run-id` / `KUBELOOP_RUN_ID`,
`KUBELOOP_PIPELINE`, `KUBELOOP_PIPELINE_UID` (the object's metadata.uid: a version is reused
only by the same run of the same object), `KUBELOOP_NAMESPACE`, `KUBELOOP_IMAGE`,
`KUBELOOP_TRIGGER` (what started the run, recorded in the manifest; default Manual),
`KUBELOOP_WORK_DIR`, `KUBELOOP_RESULT_PATH`, `KUBELOOP_PUSHGATEWAY_URL`,
`KUBELOOP_PROGRESS_PORT` (where rank 0 serves its progress), `KUBELOOP_CHAMPION_VERSION` and
`KUBELOOP_CHAMPION_URI` (the champion to score on this run's validation rows for the gate,
and whose profile the data is validated against: spec.dataValidation);
with spec.search `KUBELOOP_TRIAL` (a trial: no version, a TrialOutcome as the result),
`KUBELOOP_TRIALS` (several trials in this process, spec.search.trialsPerJob: a
TrialBatchOutcome) or
`KUBELOOP_SEARCH` (the run that trains the search's winner; `trial.py`); under torchrun
`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`.

Output: a version under `<artifacts>/versions/<n>/` and a TrainingResult JSON in the
termination message. Exit codes: see `kubeloop.workloads.trainer.errors` (0 ok, 1 internal
error, 10-12 spec, 20-27 data, 30-33 storage).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
import traceback
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubeloop.api.training import ESTIMATORS, TrainingPipelineSpec
from kubeloop.workloads.logsetup import configure_logging
from kubeloop.workloads.result import write_result
from kubeloop.workloads.trainer.errors import TrainingError
from kubeloop.workloads.trainer.mlp import Distributed
from kubeloop.workloads.trainer.progress import ProgressReporter

__all__ = ["load_spec", "main"]

log = logging.getLogger("kubeloop.train")


def load_spec(path: str | None) -> TrainingPipelineSpec:
    """The spec from a YAML file or KUBELOOP_SPEC; raises TrainingError(InvalidSpec)."""
    from pydantic import ValidationError

    try:
        if path:
            import yaml

            doc: Any = _pick_pipeline(list(yaml.safe_load_all(Path(path).read_text())))
            source = path
        elif os.environ.get("KUBELOOP_SPEC"):
            doc = json.loads(os.environ["KUBELOOP_SPEC"])
            source = "KUBELOOP_SPEC"
        else:
            raise TrainingError("InvalidSpec", "no spec: pass --spec FILE or set KUBELOOP_SPEC")
        if isinstance(doc, dict) and (
            doc.get("kind") == "TrainingPipeline" or ("spec" in doc and "data" not in doc)
        ):
            doc = doc.get("spec")  # a whole TrainingPipeline (or {spec: ...}): take its spec
        return TrainingPipelineSpec.model_validate(doc)
    except ValidationError as exc:
        for error in exc.errors():
            if tuple(error["loc"]) == ("model", "estimator") and error["type"] == "literal_error":
                raise TrainingError(
                    "UnknownEstimator",
                    f"spec.model.estimator {error.get('input')!r} is not on the allow-list: "
                    f"{', '.join(sorted(ESTIMATORS))}",
                ) from exc
        problems = "; ".join(
            f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise TrainingError("InvalidSpec", f"{source}: {problems}") from exc
    except (OSError, ValueError) as exc:
        if isinstance(exc, TrainingError):
            raise
        raise TrainingError("InvalidSpec", f"cannot read the spec: {exc}") from exc


def _pick_pipeline(docs: list[Any]) -> Any:
    """The TrainingPipeline of a multi-document file (KUBELOOP_PIPELINE picks by name)."""
    if len(docs) == 1:
        return docs[0]
    pipelines = [d for d in docs if isinstance(d, dict) and d.get("kind") == "TrainingPipeline"]
    wanted = os.environ.get("KUBELOOP_PIPELINE")
    named = [d for d in pipelines if (d.get("metadata") or {}).get("name") == wanted]
    if named or pipelines:
        return (named or pipelines)[0]
    raise TrainingError("InvalidSpec", "the spec file holds no TrainingPipeline document")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubeloop train", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", help="TrainingPipeline YAML (or its spec); else KUBELOOP_SPEC")
    parser.add_argument("--run-id", default=os.environ.get("KUBELOOP_RUN_ID"))
    parser.add_argument("--work-dir", default=os.environ.get("KUBELOOP_WORK_DIR"))
    parser.add_argument("--result-path", default=None, help="default KUBELOOP_RESULT_PATH")
    step = parser.add_mutually_exclusive_group()
    step.add_argument(
        "--prepare",
        action="store_true",
        help="custom code, step 1: stage data, SDK, checkpoints and context (docs/byo.md)",
    )
    step.add_argument(
        "--publish",
        action="store_true",
        help="custom code, step 3: check, score and publish the model it wrote",
    )
    return parser


def main(argv: list[str]) -> int:
    """Run one training; returns the exit code (0 when a version was written)."""
    args = _parser().parse_args(argv)
    configure_logging()
    started = time.monotonic()
    dist = Distributed.from_env()
    if args.publish and os.environ.get("NODE_RANK"):
        # The publish step runs once per worker pod, outside torchrun: pod 0 publishes.
        dist = Distributed(rank=int(os.environ["NODE_RANK"]), world_size=1, local_rank=0)
    # Unique without --run-id: a run id names a version claim (a rerun with the same id gets
    # the same version back), so two laptop runs in one second must not share one.
    run_id = args.run_id or (
        "local-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    )
    pipeline = os.environ.get("KUBELOOP_PIPELINE", "local")
    namespace = os.environ.get("KUBELOOP_NAMESPACE", "default")
    work_dir = Path(args.work_dir) if args.work_dir else Path(tempfile.gettempdir())
    result: dict[str, Any]
    code = 0
    process_group = False
    trial = batch = None
    try:
        from kubeloop.workloads.trainer.trial import batch_from_env, from_env, step_spec

        trial, search = from_env()
        batch = batch_from_env()
        spec = step_spec(load_spec(args.spec), trial, search)
        if dist.world_size > 1:
            process_group = _init_process_group(dist)
        from kubeloop.workloads.trainer.context import ChampionRef, RunContext

        ctx = RunContext(
            run_id=run_id,
            pipeline=pipeline,
            namespace=namespace,
            image=os.environ.get("KUBELOOP_IMAGE", "local"),
            work_dir=work_dir,
            dist=dist,
            # In a trial (KUBELOOP_TRIAL) the endpoint serves nothing: kubeloop_sdk.progressendpoint
            progress=ProgressReporter.from_env(run_id)
            if dist.rank == 0
            else ProgressReporter(None, None),
            pipeline_uid=os.environ.get("KUBELOOP_PIPELINE_UID") or None,
            trigger=os.environ.get("KUBELOOP_TRIGGER") or "Manual",
            champion=ChampionRef.from_env(),
            trial=trial,
            search=search,
        )
        work_dir.mkdir(parents=True, exist_ok=True)
        if args.prepare or args.publish:
            from kubeloop.workloads.trainer.custom import Layout, prepare_run, publish_run

            if args.prepare:
                prepare_run(spec, ctx, Layout.from_env())
                # No TrainingResult: the run's result is the publish step's.
                return 0
            result = publish_run(spec, ctx, Layout.from_env())
        elif batch is not None:
            from kubeloop.workloads.trainer.trial import run_trials

            result = run_trials(spec, ctx, batch)
        elif trial is not None:
            from kubeloop.workloads.trainer.trial import run_trial

            result = run_trial(spec, ctx)
        else:
            # The built-in trainer's stack (scikit-learn, torch) only here: a custom run's
            # prepare and publish steps start without it.
            from kubeloop.workloads.trainer.run import run_training

            result = run_training(spec, ctx)
    except TrainingError as exc:
        log.error("%s: %s", exc.reason, exc.message)
        result = _failure(exc.reason, exc.message, trial, batch)
        code = exc.exit_code
    except Exception as exc:
        log.error("training failed:\n%s", traceback.format_exc())
        result = _failure("InternalError", f"{type(exc).__name__}: {exc}", trial, batch)
        code = 1
    finally:
        if process_group:
            import torch.distributed as torch_dist

            torch_dist.destroy_process_group()
    a_trial = trial is not None or batch is not None
    if not a_trial:  # a trial's outcome is the contract's model and its kind, nothing more
        result["runId"] = run_id
    if dist.rank == 0 and not a_trial:
        url = os.environ.get("KUBELOOP_PUSHGATEWAY_URL")
        if url:
            # Imported here: prometheus_client reads PROMETHEUS_MULTIPROC_DIR at import, and
            # `kubeloop local` preloads this module in the fork server every pod forks from.
            from kubeloop.workloads.trainer.pushmetrics import push_training_metrics

            push_training_metrics(url, namespace, pipeline, result, time.monotonic() - started)
    if dist.local_rank == 0:
        write_result(result, args.result_path)
    else:  # one termination log per pod: the pod's first process owns it
        log.info("rank %d result: %s", dist.rank, json.dumps(result, sort_keys=True, default=str))
    return code


def _failure(reason: str, message: str, trial: Any, batch: Any) -> dict[str, Any]:
    """A failed run's TrainingResult, or a failed trial's TrialOutcome (of every trial of a
    batch: a TrialBatchOutcome)."""
    if batch is not None:
        from kubeloop.workloads.trainer.trial import batch_failure

        return batch_failure(batch, reason, message)
    if trial is not None:
        from kubeloop.workloads.trainer.trial import failed_outcome

        return failed_outcome(trial, reason, message)
    return {"kind": "TrainingResult", "ok": False, "reason": reason, "message": message}


def _init_process_group(dist: Distributed) -> bool:
    """gloo on CPU, nccl on GPU; torchrun has set MASTER_ADDR/PORT, RANK and WORLD_SIZE."""
    import torch
    import torch.distributed as torch_dist

    gpu = torch.cuda.is_available() and os.environ.get("KUBELOOP_DEVICE", "") != "cpu"
    if gpu:
        # Bind this process to its GPU before NCCL starts: otherwise every rank's first
        # collective runs on GPU 0 (a hang or an out-of-memory on multi-GPU pods).
        torch.cuda.set_device(dist.local_rank)
    torch_dist.init_process_group(backend="nccl" if gpu else "gloo")
    log.info("DDP rank %d of %d (%s)", dist.rank, dist.world_size, "nccl" if gpu else "gloo")
    return True
