"""Validate the training data against the champion's profile before anything is trained.

The champion's version folder holds the profile of the data it was trained on (profile.json,
kubeloop.profile). This run's training and validation rows are counted against it with the
drift monitor's own accumulators and judged by the same pure decision
(kubeloop.decide.quality) under spec.dataValidation: a feature far more often missing than in
the champion's data, a feature column gone or of the wrong type (by default; range and new
categories when asked). A failure raises TrainingError DataValidationFailed naming the columns,
so bad data never trains a model. Without a champion, or without a profile to compare with,
there is nothing to validate against: the run goes on and says so in its log.
"""

from __future__ import annotations

import logging
from typing import Any

from kubeloop.api.training import TrainingPipelineSpec
from kubeloop.decide.quality import QualityVerdict, quality_verdict
from kubeloop.profile import Profile, load_profile
from kubeloop.storage import NotFoundError, StorageError, join, store_for
from kubeloop.workloads.monitor.quality import measure_tables
from kubeloop.workloads.trainer.context import ChampionRef
from kubeloop.workloads.trainer.data import TrainingData
from kubeloop.workloads.trainer.errors import TrainingError

__all__ = ["MAX_NAMED", "champion_profile", "validate_training_data"]

log = logging.getLogger("kubeloop.train")

# Issues named in the message (the result travels in a 4 KiB termination message).
MAX_NAMED = 8


def champion_profile(spec: TrainingPipelineSpec, champion: ChampionRef) -> Profile | None:
    """The champion's training-data profile, restricted to spec.data.features when the spec
    names them (a feature dropped on purpose is not a missing column); None when it has none."""
    uri = join(champion.uri, "profile.json")
    try:
        profile = load_profile(store_for(uri).read_bytes(uri))
    except (NotFoundError, ValueError) as exc:
        log.warning(
            "data validation skipped: champion v%s has no profile: %s", champion.version, exc
        )
        return None
    except StorageError as exc:
        log.warning("data validation skipped: %s cannot be read: %s", uri, exc)
        return None
    if spec.data.features is None:
        return profile
    keep = set(spec.data.features)
    return Profile(
        rows=profile.rows,
        numeric={k: v for k, v in profile.numeric.items() if k in keep},
        categorical={k: v for k, v in profile.categorical.items() if k in keep},
    )


def _message(verdict: QualityVerdict, champion: ChampionRef) -> str:
    named = "; ".join(
        f"{i.feature}: {i.check} {i.value:.4g} > {i.threshold:.4g}"
        for i in verdict.issues[:MAX_NAMED]
    )
    more = len(verdict.issues) - MAX_NAMED
    columns = sorted({i.feature for i in verdict.issues})
    return (
        f"the training data fails validation against champion v{champion.version}'s training "
        f"data in columns {', '.join(columns)} ({named}{f'; and {more} more' if more > 0 else ''})"
        ": fix the data, or loosen spec.dataValidation if the change is intended"
    )


def validate_training_data(
    spec: TrainingPipelineSpec, champion: ChampionRef | None, data: TrainingData
) -> dict[str, Any] | None:
    """Raise TrainingError DataValidationFailed when the data fails spec.dataValidation
    against the champion's profile; else a summary for the log (None: nothing to compare)."""
    if champion is None or not spec.data_validation.enabled:
        return None
    profile = champion_profile(spec, champion)
    if profile is None or not profile.features:
        return None
    counts = measure_tables([data.train, data.validation], profile)
    verdict = quality_verdict(counts, spec.data_validation)
    if verdict.verdict == "QualityIssue":
        raise TrainingError("DataValidationFailed", _message(verdict, champion))
    log.info(
        "data validation against champion v%s: %s on %d features",
        champion.version,
        verdict.verdict,
        len(counts),
    )
    return {"champion": champion.version, "verdict": verdict.verdict}
