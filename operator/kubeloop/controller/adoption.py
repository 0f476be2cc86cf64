"""A TrainingPipeline adopts what the registry holds before its first run.

The registry is the source of truth for versions and aliases; status only mirrors it. A pipeline
whose status starts empty (just created, or deleted and created again by Argo CD, or restored
from a backup without its status) may have a registry behind it already: before it starts its
`Create` run, a registry Job (`kubeloop registry inspect`, queued in `status.registryQueue` like
the alias writes) reads the aliases, the champion's manifest and the highest run id. Its result:

- run numbering continues after the registry's highest run (`lastRunId`, `lastRecordedRunId`),
  so a run id, and the version a run publishes, is never taken twice;
- a champion in the registry becomes `status.champion` again (with `status.aliases`), and no
  `Create` run starts: the same YAML applied again must not train and roll out a new version;
- an empty registry (a new pipeline) starts the `Create` run as before.

A read that fails (storage unreachable, credentials refused) says so in the Ready condition and
is tried again with backoff on a later resync (never in a hot loop); until one succeeds no run
starts, since a run then could reuse a run id the registry already holds.

The decisions are pure functions over status dicts; the queue's acting is in promotions.py.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ADOPTED",
    "INSPECT",
    "apply_inspect",
    "first_run",
    "inspect_due",
    "inspect_op",
    "inspect_pending",
    "reading_op",
    "ready_reason",
    "retry_delay",
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
    """Whether the registry must still be read before a run may start: the pipeline allocated
    no run and never read it. A status from before adoption existed has runs: nothing to read."""
    return not status.get("lastRunId") and not _sync(status).get("inspectedAt")


def _queued(status: Mapping[str, Any]) -> bool:
    return any(op.get("action") == INSPECT for op in status.get("registryQueue") or [])


def reading_op(status: Mapping[str, Any]) -> dict[str, Any] | None:
    """The queued registry read (its `job` names its Job) while it is pending, else None."""
    if not inspect_pending(status):
        return None
    for op in status.get("registryQueue") or []:
        if op.get("action") == INSPECT:
            return dict(op)
    return None


def inspect_due(status: Mapping[str, Any], now: datetime.datetime) -> bool:
    """Whether to queue a read of the registry now: pending, none queued, and the backoff of
    the last failed one has passed."""
    if not inspect_pending(status) or _queued(status):
        return False
    retry_at = _sync(status).get("retryAt")
    if not retry_at:
        return True
    when = datetime.datetime.strptime(retry_at, _FORMAT).replace(tzinfo=datetime.UTC)
    return now >= when


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


def apply_inspect(
    status: dict[str, Any],
    result: Mapping[str, Any] | None,
    *,
    artifacts: str,
    spec_hash: str,
    generation: int | None,
    metric: str | None,
    now: datetime.datetime,
) -> tuple[str, str, bool]:
    """What an inspect Job's result does to status; returns the Event (reason, message,
    warning). `spec_hash` and `generation` are the spec's now: an adopted champion stands for
    it, so that spec starts no run (`metric`: the gate's, for the champion's score)."""
    stamp = now.strftime(_FORMAT)
    sync = dict(_sync(status))
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
    last = int(result.get("lastRunId") or 0)
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
        status.update(lastRunGeneration=generation, lastRunSpecHash=spec_hash)
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
    or after a failed read; None once read."""
    if not inspect_pending(status):
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
