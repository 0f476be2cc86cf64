"""Who runs a training step and where, and the check every run makes first: that the
artifacts are writable (docs/contracts.md).

Light on purpose: the custom trainer's prepare step needs only this, not the estimators
(scikit-learn alone is a second and a half of an init container's start).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kubeloop.api.search import SearchRecord, TrialAssignment
from kubeloop.api.training import TrainingPipelineSpec
from kubeloop.storage import StorageError, join, store_for
from kubeloop.workloads.trainer.data import preflight
from kubeloop.workloads.trainer.errors import TrainingError, classify_storage_error
from kubeloop.workloads.trainer.mlp import Distributed
from kubeloop.workloads.trainer.progress import ProgressReporter

__all__ = ["ChampionRef", "RunContext", "check_artifacts_writable", "now"]


@dataclass(frozen=True)
class ChampionRef:
    """The pipeline's champion when the run started: the run scores it on its own validation
    rows for the gate (env KUBELOOP_CHAMPION_VERSION and KUBELOOP_CHAMPION_URI)."""

    version: str
    uri: str

    @classmethod
    def from_env(cls) -> ChampionRef | None:
        version = os.environ.get("KUBELOOP_CHAMPION_VERSION")
        uri = os.environ.get("KUBELOOP_CHAMPION_URI")
        return cls(version, uri) if version and uri else None


@dataclass(frozen=True)
class RunContext:
    """Who runs and where: from env/flags (docs/contracts.md)."""

    run_id: str
    pipeline: str
    namespace: str
    image: str
    work_dir: Path
    dist: Distributed
    progress: ProgressReporter
    # The pipeline object's metadata.uid: a version claim, a checkpoint and a resume belong to
    # one run of one object (run ids restart when a pipeline is re-created). None on a laptop.
    pipeline_uid: str | None = None
    # What started the run (the Job's kubeloop.io/trigger: Manual, Schedule, Drift, ...).
    trigger: str = "Manual"
    champion: ChampionRef | None = None
    # spec.search: the trial this pod trains (KUBELOOP_TRIAL; no version is written), or the
    # finished search whose winner this run trains (KUBELOOP_SEARCH; kept in the manifest).
    trial: TrialAssignment | None = None
    search: SearchRecord | None = None


def check_artifacts_writable(spec: TrainingPipelineSpec, ctx: RunContext) -> None:
    preflight(spec.artifacts)
    marker = join(spec.artifacts, "runs", ctx.run_id, "run.json")
    body = {
        "runId": ctx.run_id,
        "pipeline": ctx.pipeline,
        "pipelineUid": ctx.pipeline_uid,
        "startedAt": now(),
    }
    try:
        store_for(spec.artifacts).write_bytes(marker, json.dumps(body).encode())
    except StorageError as exc:
        raise classify_storage_error(exc, writing=True) from exc
    except OSError as exc:  # file://: a path that cannot be created at all
        raise TrainingError(
            "ArtifactsNotWritable",
            f"spec.artifacts {spec.artifacts}: cannot write {marker}: {exc.strerror or exc}",
        ) from exc


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
