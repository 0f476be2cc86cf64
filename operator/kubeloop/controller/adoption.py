"""A TrainingPipeline adopts what the registry holds before its first run.

The registry is the source of truth for versions and aliases; status only mirrors it. A pipeline
whose status starts empty (just created, or deleted and created again by Argo CD, or restored
from a backup without its status) may have a registry behind it already: before its first run
trains, `kubeloop registry inspect` reads the aliases, the champion's manifest and the highest
run id.

Most pipelines are new, so the read rides in the first run's own Job (one Job, not two in a
row): run 1 is allocated at once with `currentRun.readsRegistry` (and `registrySync` saying the
read is under way), and its Job's first init container runs the read with `--require-empty`.
An empty registry lets the pod train; a registry holding more (runs, aliases, a champion), or a
read that fails, fails the Job at once (resources/registry.py `with_registry_read`). When the
Job ends, `settle_read` decides: empty, the run stands and is recorded as any; otherwise the run
is withdrawn (never in `status.runs`, its id never used again: `lastRecordedRunId` passes it)
and the result applies as below. A run that cannot carry the read (spec.search: its trials
would run before it), a spec with no run due (suspend), or a status that already queued one
(written by an older operator) reads it in a registry Job instead (action Inspect, queued in
`status.registryQueue` like the alias writes). The result of either:

- run numbering continues after the registry's highest run (`lastRunId`, `lastRecordedRunId`),
  so a run id, and the version a run publishes, is never taken twice;
- a champion in the registry becomes `status.champion` again (with `status.aliases`), and no
  `Create` run starts: the same YAML applied again must not train and roll out a new version;
- an empty registry (a new pipeline) starts the `Create` run as before.

A read that fails (storage unreachable, credentials refused) says so in the Ready condition and
is tried again with backoff on a later resync (never in a hot loop), again in a first run's Job
under a fresh run id; until one succeeds no run trains, since it could reuse a run id the
registry already holds.

The decisions are pure functions over status dicts; the queue's acting is in promotions.py.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubeloop.api.training import TrainingPipelineSpec

__all__ = [
    "ADOPTED",
    "INSPECT",
    "Adopter",
    "apply_inspect",
    "first_run",
    "fold_read",
    "holds_runs",
    "inspect_due",
    "inspect_op",
    "inspect_pending",
    "reading_op",
    "reading_run",
    "ready_reason",
    "retry_delay",
    "settle_read",
    "waiting",
]

INSPECT = "Inspect"  # the registry op's action
ADOPTED = "ChampionRestored"  # Ready's reason (and the Event) while the adopted champion serves
_RETRY_BASE_SECONDS = 30
_RETRY_MAX_SECONDS = 600
_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def _sync(status: Mapping[str, Any]) -> Mapping[str, Any]:
    return status.get("registrySync") or {}


def inspect_pending(status: Mapping[str, Any]) -> bool:
    """Whether the registry must still be read before a run may train: never read, and no run
    allocated or one allocated to read it (`registrySync` says so from then on). A status from
    before adoption existed has runs and no registrySync: nothing to read."""
    sync = _sync(status)
    if sync.get("inspectedAt"):
        return False
    return not status.get("lastRunId") or bool(sync)


def _queued(status: Mapping[str, Any]) -> bool:
    return any(op.get("action") == INSPECT for op in status.get("registryQueue") or [])


def reading_run(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The run in progress when its Job reads the registry first, else None."""
    current = status.get("currentRun")
    return current if isinstance(current, Mapping) and current.get("readsRegistry") else None


def _backoff_passed(status: Mapping[str, Any], now: datetime.datetime) -> bool:
    retry_at = _sync(status).get("retryAt")
    if not retry_at:
        return True
    when = datetime.datetime.strptime(retry_at, _FORMAT).replace(tzinfo=datetime.UTC)
    return now >= when


def holds_runs(status: Mapping[str, Any], now: datetime.datetime, *, foldable: bool) -> bool:
    """Whether the registry read still to do keeps a run from starting now: a read queued (its
    registry Job) or under way in a run's Job, the backoff of a failed one, or a run that
    cannot carry it (`foldable` False: spec.search, whose trials would run before the read)."""
    if not inspect_pending(status):
        return False
    busy = _queued(status) or reading_run(status) is not None
    return busy or not _backoff_passed(status, now) or not foldable


def fold_read(status: dict[str, Any], run: dict[str, Any]) -> None:
    """Make the run being allocated (`run`, not yet in status) the one whose Job reads the
    registry first; registrySync says so, which keeps the read pending until a result."""
    run["readsRegistry"] = True
    message = (
        f"reading the registry in run {run['id']}'s Job (init container registry) before it "
        "trains: a registry that holds runs or a champion of this pipeline is adopted instead"
    )
    status["registrySync"] = {**_sync(status), "message": message}


def reading_op(status: Mapping[str, Any]) -> dict[str, Any] | None:
    """The queued registry read (its `job` names its Job) while it is pending, else None."""
    if not inspect_pending(status):
        return None
    for op in status.get("registryQueue") or []:
        if op.get("action") == INSPECT:
            return dict(op)
    return None


def inspect_due(status: Mapping[str, Any], now: datetime.datetime) -> bool:
    """Whether to queue a read of the registry in a registry Job now (when no run that could
    carry it starts): pending, none queued or under way, and the backoff of the last failed
    one has passed."""
    if not inspect_pending(status) or _queued(status) or reading_run(status) is not None:
        return False
    return _backoff_passed(status, now)


def retry_delay(failures: int) -> int:
    """Seconds before the next read after `failures` failed ones in a row: 30 s, doubling,
    at most 10 minutes."""
    if failures <= 0:
        return 0
    return int(min(_RETRY_BASE_SECONDS * 2 ** (failures - 1), _RETRY_MAX_SECONDS))


def inspect_op(pipeline: str) -> dict[str, Any]:
    """The registry operation that reads the registry (its id and Job are allocated later)."""
    return {
        "action": INSPECT,
        "by": "operator",
        "reason": f"TrainingPipeline {pipeline} has no status yet: adopt what the registry holds",
    }


def first_run(status: Mapping[str, Any]) -> bool:
    """Whether the next run is the pipeline's `Create` run: no run since the registry was read
    (or ever) and no champion adopted from it."""
    adopted_up_to = int(_sync(status).get("lastRunId") or 0)
    return int(status.get("lastRunId") or 0) <= adopted_up_to and not status.get("champion")


@dataclass(frozen=True)
class Adopter:
    """What of the pipeline a read's result is applied for: its artifacts, and the spec now
    (`spec_hash`, `generation`: an adopted champion stands for it, so that spec starts no run;
    `metric`: the gate's, for the champion's score)."""

    artifacts: str
    spec_hash: str
    generation: int | None
    metric: str | None

    @classmethod
    def of(cls, spec: TrainingPipelineSpec, generation: int | None) -> Adopter:
        """The pipeline's, from its spec and metadata.generation."""
        metric = spec.promotion.metric if spec.promotion else None
        return cls(spec.artifacts, spec.run_hash(), generation, metric)


def apply_inspect(
    status: dict[str, Any],
    result: Mapping[str, Any] | None,
    adopter: Adopter,
    *,
    now: datetime.datetime,
    withdrawn: int = 0,
) -> tuple[str, str, bool]:
    """What an inspect Job's result does to status; returns the Event (reason, message,
    warning). `withdrawn`: the id of the run withdrawn because of this read: taken, as the
    registry's."""
    artifacts, metric = adopter.artifacts, adopter.metric
    stamp = now.strftime(_FORMAT)
    sync = dict(_sync(status))
    if withdrawn:
        sync["lastRunId"] = max(int(sync.get("lastRunId") or 0), withdrawn)
    if not result or not result.get("ok"):
        failures = int(sync.get("failures") or 0) + 1
        delay = retry_delay(failures)
        why = (result or {}).get("reason") or "NoResult"
        cause = (result or {}).get("message") or "the registry Job ended without a result"
        message = (
            f"reading the registry at {artifacts} failed ({why}): {cause}; no run starts until "
            f"it is read (its run numbering and champion decide); attempt {failures}, the next "
            f"in {delay} s"
        )
        retry_at = (now + datetime.timedelta(seconds=delay)).strftime(_FORMAT)
        sync.update(failures=failures, retryAt=retry_at, message=message[:1024])
        status["registrySync"] = sync
        return "RegistryReadFailed", message, True
    last = max(int(result.get("lastRunId") or 0), withdrawn)
    aliases = {str(k): str(v) for k, v in (result.get("aliases") or {}).items()}
    champion = result.get("champion")
    status["lastRunId"] = max(last, int(status.get("lastRunId") or 0))
    status["lastRecordedRunId"] = max(last, int(status.get("lastRecordedRunId") or 0))
    if aliases:
        status["aliases"] = {**(status.get("aliases") or {}), **aliases}
    sync = {"inspectedAt": stamp, "lastRunId": last, "failures": 0, "retryAt": None}
    versions = [int(v) for v in result.get("versions") or [] if str(v).isdigit()]
    if versions:
        sync["latestVersion"] = max(versions)
    if isinstance(champion, Mapping) and champion.get("version"):
        metrics = {k: float(v) for k, v in (result.get("metrics") or {}).items()}
        version = str(champion["version"])
        status["champion"] = {
            "version": version,
            "uri": str(champion.get("uri") or f"{artifacts.rstrip('/')}/versions/{version}"),
            "metrics": metrics,
            "score": metrics.get(metric) if metric else None,
            "runId": champion.get("runId"),
            "promotedAt": champion.get("promotedAt") or stamp,
        }
        # The spec applied again is the one the champion stands for: no SpecChange run.
        status.update(lastRunGeneration=adopter.generation, lastRunSpecHash=adopter.spec_hash)
        message = (
            f"version {version} is the champion again, adopted from the registry at "
            f"{artifacts}; run numbering continues after run {last}"
        )
        sync.update(champion=version, message=message)
        status["registrySync"] = sync
        return ADOPTED, message, False
    where = f"after run {last}" if last else "at run 1"
    message = f"the registry at {artifacts} holds no champion: the first run starts {where}"
    sync.update(message=message)
    status["registrySync"] = sync
    return "RegistryRead", message, False


def waiting(status: Mapping[str, Any]) -> tuple[str, str] | None:
    """(reason, message) of Ready=False while the registry is being read before the first run,
    or after a failed read; None once read, and while a first run reads it in its own Job (it
    is training, as far as a reader can tell)."""
    if not inspect_pending(status) or reading_run(status) is not None:
        return None
    sync = _sync(status)
    if sync.get("failures"):
        return "RegistryReadFailed", str(sync.get("message") or "reading the registry failed")
    return "ReadingRegistry", (
        "reading the registry (aliases, champion, run numbering) before the first run"
    )


def ready_reason(status: Mapping[str, Any]) -> str:
    """Ready's reason with a champion: ChampionRestored while it is the one adopted from the
    registry and no run has been recorded since, else ChampionAvailable."""
    adopted = _sync(status).get("champion")
    champion = (status.get("champion") or {}).get("version")
    if adopted and str(adopted) == str(champion) and not status.get("runs"):
        return ADOPTED
    return "ChampionAvailable"


def settle_read(
    status: dict[str, Any],
    run: Mapping[str, Any],
    result: Mapping[str, Any] | None,
    adopter: Adopter,
    *,
    now: datetime.datetime,
) -> tuple[bool, str, str, bool]:
    """What the end of a run whose Job read the registry first (`result`: its init container's
    RegistryResult) does to status; returns (the run stands, Event reason, message, warning).

    Empty (nothing but this run there): the read is recorded as for an empty registry and the
    run stands, to be recorded as any. Otherwise the run is withdrawn: never recorded (the
    watermark passes it, so its Job never is either), its id taken, and the result applies as
    a registry Job's would: a champion adopted, run numbering continued, or a failed read's
    backoff, after which the next run reads again under a fresh id."""
    run_id = int(run["id"])
    if result is not None and result.get("ok") and result.get("empty") is True:
        # This run's own traces (a retried pod's marker and claim) are not the registry's.
        empty = {**result, "lastRunId": 0, "versions": [], "aliases": {}, "champion": None}
        apply_inspect(status, empty, adopter, now=now)
        where = adopter.artifacts
        message = f"the registry at {where} holds nothing of this pipeline: run {run_id} trains"
        status["registrySync"] = {**_sync(status), "message": message}
        return True, "RegistryRead", message, False
    if result is None:  # its pod never ran, or the container died before writing (OOM, signal)
        result = {
            "ok": False,
            "reason": "NoResult",
            "message": f"run {run_id}'s init container registry ended without a result",
        }
    reason, message, warning = apply_inspect(status, result, adopter, now=now, withdrawn=run_id)
    status["lastRecordedRunId"] = max(run_id, int(status.get("lastRecordedRunId") or 0))
    status["currentRun"] = None
    return False, reason, f"run {run_id} withdrawn before it trained: {message}", warning
