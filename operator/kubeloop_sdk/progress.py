"""Progress: one log line per report and, when the context asks, `status.currentRun.progress`.

The status write is a JSON patch that first tests `status.currentRun.id` is this run's id,
and the progress carries its `runId`: a report that arrives after the run was recorded (the
next run may be current by then) is refused by the API server instead of showing up as the
next run's progress. Kubeloop's own trainer builds its patch and its log line here too.
Progress is best effort: a failed patch logs a warning and training goes on.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from kubeloop_sdk.context import Context, ContextError, context
from kubeloop_sdk.kubeapi import ApiEndpoint, find_endpoint, patch_status

__all__ = [
    "PROGRESS_FIELDS",
    "Reporter",
    "progress_line",
    "progress_of",
    "progress_patch_body",
    "report",
]

log = logging.getLogger("kubeloop_sdk")
# RunProgress's fields (kubeloop.api), in the order the log line shows them
PROGRESS_FIELDS = ("epoch", "epochs", "percent", "loss", "etaSeconds")


def progress_line(progress: Mapping[str, Any]) -> str:
    """`kubeloop-progress k=v ...` (floats with 4 significant digits)."""
    parts = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in progress.items()]
    return "kubeloop-progress " + " ".join(parts)


def progress_patch_body(
    progress: Mapping[str, Any], run_id: str | None, now: datetime | None = None
) -> list[dict[str, Any]]:
    """The JSON patch: status.currentRun.progress in RunProgress's fields, tagged with the run,
    written only while `run_id` is the current run (a failed `test` writes nothing)."""
    out: dict[str, Any] = {k: progress[k] for k in PROGRESS_FIELDS if progress.get(k) is not None}
    out["percent"] = max(0, min(100, int(out.get("percent", 0))))
    if "loss" in out:
        out["loss"] = float(out["loss"])
    stamp = (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    out["updatedAt"] = stamp.replace("+00:00", "Z")
    ops: list[dict[str, Any]] = []
    if run_id is not None:
        out["runId"] = run_id
        ops.append({"op": "test", "path": "/status/currentRun/id", "value": run_id})
    ops.append({"op": "add", "path": "/status/currentRun/progress", "value": out})
    return ops


def progress_of(
    percent: float | None = None,
    epoch: int | None = None,
    epochs: int | None = None,
    loss: float | None = None,
    eta_seconds: float | None = None,
) -> dict[str, Any]:
    """The progress fields given; `percent` from epoch/epochs when not given."""
    for name, value in (("percent", percent), ("loss", loss), ("eta_seconds", eta_seconds)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value)
        ):
            raise ValueError(f"report({name}=...): a number, not {value!r}")
    for name, count in (("epoch", epoch), ("epochs", epochs)):
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
            raise ValueError(f"report({name}=...): an int, not {count!r}")
    if epochs is not None and epochs < 1:
        raise ValueError(f"report(epochs={epochs}): the number of epochs, at least 1")
    if percent is None and epoch is not None and epochs is not None:
        percent = 100 * epoch / epochs
    given = {
        "epoch": epoch,
        "epochs": epochs,
        "percent": max(0, min(100, int(percent))) if percent is not None else None,
        "loss": float(loss) if loss is not None else None,
        "etaSeconds": int(eta_seconds) if eta_seconds is not None else None,
    }
    return {k: v for k, v in given.items() if v is not None}


Send = Callable[[Context, list[dict[str, Any]]], None]


class Reporter:
    """Prints every report; patches status at most every `interval` seconds (always at 100%).

    `report()` uses one per process. `send` writes one patch (default: to the API server
    found by `kubeapi.find_endpoint`); it is a parameter so the throttle is testable alone.
    """

    def __init__(
        self,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        send: Send | None = None,
    ) -> None:
        self.interval = interval
        self.clock = clock
        self.send = send if send is not None else self._send_to_api
        self._last = -math.inf
        self._endpoint: ApiEndpoint | None = None

    def _send_to_api(self, ctx: Context, body: list[dict[str, Any]]) -> None:
        if self._endpoint is None:
            self._endpoint = find_endpoint()
        patch_status(self._endpoint, ctx.namespace, ctx.pipeline, body)

    def report(self, progress: Mapping[str, Any], ctx: Context | None) -> bool:
        """Log the line (rank 0); patch when due. Returns whether a patch was sent."""
        if ctx is not None and not ctx.is_main:
            return False
        print(progress_line(progress), flush=True)
        if ctx is None or not ctx.progress_patch:
            return False
        now = self.clock()
        if now - self._last < self.interval and progress.get("percent", 0) < 100:
            return False
        self._last = now
        body = progress_patch_body(progress, ctx.run_id)
        try:
            self.send(ctx, body)
        except Exception as exc:  # progress is best effort; training goes on
            log.warning("kubeloop_sdk: progress of run %s not written: %s", ctx.run_id, exc)
            return False
        log.debug("patched progress %s", json.dumps(body))
        return True


_REPORTER = Reporter()


def report(
    percent: float | None = None,
    epoch: int | None = None,
    epochs: int | None = None,
    loss: float | None = None,
    eta_seconds: float | None = None,
) -> None:
    """Report progress (rank 0 only): a `kubeloop-progress` log line, and
    `status.currentRun.progress` when Kubeloop runs your code. `epoch` counts the epochs done
    (report(epoch=1, epochs=8) after the first one gives 12%). Never raises for a failed
    write; a wrong argument raises ValueError."""
    progress = progress_of(percent, epoch, epochs, loss, eta_seconds)
    try:
        ctx: Context | None = context()
    except ContextError:  # a run outside Kubeloop without a context: the line is enough
        ctx = None
    _REPORTER.report(progress, ctx)
