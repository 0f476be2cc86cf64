"""Progress: one log line per report and the latest report served by the pod for the operator.

The pod has no Kubernetes API access: rank 0 serves its latest progress on the pod's progress
endpoint (`kubeloop_sdk.progressendpoint`), tagged with its `runId`, and the operator copies it
into `status.currentRun.progress` only while that run is the current one, so a late report of a
finished run never shows up as the next run's progress. Kubeloop's own trainer builds its value
and its log line here too. Progress is best effort: what cannot be served is a warning, and
training goes on.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from kubeloop_sdk.context import Context, ContextError, context
from kubeloop_sdk.progressendpoint import endpoint_from_env

__all__ = [
    "PROGRESS_FIELDS",
    "Publish",
    "Reporter",
    "progress_line",
    "progress_of",
    "progress_value",
    "publish_on_endpoint",
    "report",
]

log = logging.getLogger("kubeloop_sdk")
# RunProgress's fields (kubeloop.api), in the order the log line shows them
PROGRESS_FIELDS = ("epoch", "epochs", "percent", "loss", "etaSeconds")


def progress_line(progress: Mapping[str, Any]) -> str:
    """`kubeloop-progress k=v ...` (floats with 4 significant digits)."""
    parts = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in progress.items()]
    return "kubeloop-progress " + " ".join(parts)


def progress_value(
    progress: Mapping[str, Any], run_id: str | None, now: datetime | None = None
) -> dict[str, Any]:
    """What the endpoint serves: RunProgress's fields (kubeloop.api), the report time, and the
    run that reported it."""
    out: dict[str, Any] = {k: progress[k] for k in PROGRESS_FIELDS if progress.get(k) is not None}
    out["percent"] = max(0, min(100, int(out.get("percent", 0))))
    if "loss" in out:
        out["loss"] = float(out["loss"])
    stamp = (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    out["updatedAt"] = stamp.replace("+00:00", "Z")
    if run_id is not None:
        out["runId"] = run_id
    return out


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


Publish = Callable[[dict[str, Any]], bool]


def publish_on_endpoint(value: dict[str, Any]) -> bool:
    """Serve `value` on this process's progress endpoint; False when the container has none."""
    endpoint = endpoint_from_env()
    if endpoint is None:
        return False
    endpoint.publish(value)
    return True


class Reporter:
    """Prints every report (rank 0) and hands the latest to `publish`.

    `report()` uses one per process. `publish` serves one value and says whether it did
    (default: on the pod's progress endpoint, when Kubeloop gave the container one); it is a
    parameter so the reporter is testable alone.
    """

    def __init__(self, publish: Publish | None = None) -> None:
        self.publish = publish if publish is not None else publish_on_endpoint

    def report(self, progress: Mapping[str, Any], ctx: Context | None) -> bool:
        """Log the line (rank 0); serve it with the run's id. Returns whether it is served."""
        if ctx is not None and not ctx.is_main:
            return False
        print(progress_line(progress), flush=True)
        if ctx is None:
            return False
        try:
            return self.publish(progress_value(progress, ctx.run_id))
        except Exception as exc:  # progress is best effort; training goes on
            log.warning("kubeloop_sdk: progress of run %s not served: %s", ctx.run_id, exc)
            return False


_REPORTER = Reporter()


def report(
    percent: float | None = None,
    epoch: int | None = None,
    epochs: int | None = None,
    loss: float | None = None,
    eta_seconds: float | None = None,
) -> None:
    """Report progress (rank 0 only): a `kubeloop-progress` log line, and
    `status.currentRun.progress` when Kubeloop runs your code (the operator reads it from your
    pod). `epoch` counts the epochs done (report(epoch=1, epochs=8) after the first one gives
    12%). Never raises for progress that cannot be served; a wrong argument raises ValueError."""
    progress = progress_of(percent, epoch, epochs, loss, eta_seconds)
    try:
        ctx: Context | None = context()
    except ContextError:  # a run outside Kubeloop without a context: the line is enough
        ctx = None
    _REPORTER.report(progress, ctx)
