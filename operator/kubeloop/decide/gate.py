"""The promotion gate: may a run's new version become the champion, and why, in a sentence.

The trainer scores the champion on the run's own validation rows (workloads/trainer/champion.py)
and leaves the scores in its TrainingResult; this judges them against spec.promotion.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from kubeloop.api.training import HIGHER_IS_BETTER, PromotionSpec, TrainingPipelineSpec

__all__ = ["gate"]


def gate(
    spec: TrainingPipelineSpec, result: Mapping[str, Any], champion: Mapping[str, Any] | None
) -> tuple[bool, str]:
    """Whether a run's new version may become the champion, and why, in a sentence.

    `result` is the run's TrainingResult: `metrics` (the new version's validation metrics) and,
    when the run scored the champion on the same validation rows, `championVersion` with
    `championMetrics` or `championError`. `champion` is status.champion.
    """
    promo = spec.promotion
    if promo is None:
        return True, "no promotion gate: every successful run is promoted"
    metrics = result.get("metrics") or {}
    if metrics.get(promo.metric) is None:
        return False, f"the run reported no {promo.metric}"
    value = float(metrics[promo.metric])
    if not math.isfinite(value):
        # NaN compares false with everything: without this a NaN would pass a minimum.
        return False, (
            f"the run reported {promo.metric} {value:g}, not a finite number: the model or the "
            "trainer's scoring is broken"
        )
    if promo.minimum is not None and value < promo.minimum:
        return False, f"{promo.metric} {value:g} is below the minimum {promo.minimum:g}"
    if promo.maximum is not None and value > promo.maximum:
        return False, f"{promo.metric} {value:g} is above the maximum {promo.maximum:g}"
    verdict = f"{promo.metric} {value:g} passed the gate"
    if promo.must_beat_champion and champion:
        beaten, verdict = _beats_champion(promo, value, result, champion)
        if not beaten:
            return False, verdict
    if not promo.auto_promote:
        return False, f"the gate passed ({verdict}) but spec.promotion.autoPromote is false"
    return True, verdict


def _beats_champion(
    promo: PromotionSpec, value: float, result: Mapping[str, Any], champion: Mapping[str, Any]
) -> tuple[bool, str]:
    """(beaten, sentence): the run's value against the champion's, like with like.

    The champion's score on this run's validation rows decides. A result without one and
    without an error comes from a trainer image older than that comparison: only then the
    score recorded when the champion was trained (on older validation rows) stands in, and the
    sentence says so. A champion that could not be scored fails closed.
    """
    metric = promo.metric
    version = str(champion.get("version"))
    scored = result.get("championVersion")
    if result.get("championError"):
        return False, (
            f"the champion could not be scored on this run's validation data, so it cannot be "
            f"compared: {result['championError']}"
        )
    same_data = result.get("championMetrics")
    if isinstance(same_data, Mapping):
        if scored is not None and str(scored) != version:
            return False, (
                f"this run scored champion v{scored}, but the champion is now v{version}: "
                "the next run compares with it"
            )
        best = same_data.get(metric)
        if best is None:
            return False, (
                f"champion v{version}, scored on this run's validation data, gave no {metric}"
            )
        where = "on this run's validation data"
    else:
        best = champion.get("score")
        if best is None:
            best = (champion.get("metrics") or {}).get(metric)
        if best is None:
            return True, f"{metric} {value:g} passed the gate (champion v{version} has no {metric})"
        where = (
            "as recorded when it was trained, on older validation data (this run's trainer "
            "did not score the champion)"
        )
    best = float(best)
    if not math.isfinite(best):
        return False, (
            f"champion v{version}'s {metric} is {best:g}, not a finite number, so it cannot be "
            "compared: promote a version by hand (annotate kubeloop.io/promote=<version>)"
        )
    gain = (value - best) if HIGHER_IS_BETTER[metric] else (best - value)
    margin = promo.min_improvement or 0.0
    enough = gain >= margin or math.isclose(gain, margin, rel_tol=1e-9, abs_tol=1e-12)
    by = f" by at least {margin:g}" if promo.min_improvement else ""
    if gain > 0 and enough:
        return True, f"{metric} {value:g} beats champion v{version}'s {best:g}{by} {where}"
    return False, f"{metric} {value:g} does not beat champion v{version}'s {best:g}{by} {where}"
