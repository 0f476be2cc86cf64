"""Which immutable model version a ModelDeployment serves.

spec.model names a version folder (`uri`), or a TrainingPipeline and in it a version: a number,
`latest`, `champion`, or an alias. The pipeline's status (champion, runs, aliases) and its
spec.artifacts say where that version lives.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubeloop.api.common import SecretReference
from kubeloop.api.deployment import ModelDeploymentSpec

__all__ = ["ModelUnavailableError", "Target", "resolve", "version_of_uri"]

_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Target:
    """The concrete version to serve, and the credentials to read it with."""

    version: str
    uri: str
    secret: SecretReference | None


class ModelUnavailableError(Exception):
    """The model cannot be resolved yet; `reason` is the condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def version_of_uri(uri: str) -> str:
    """A label-safe version name for a version folder URI (`.../versions/3/` -> `3`)."""
    segment = uri.rstrip("/").rsplit("/", 1)[-1]
    if _LABEL_VALUE.match(segment):
        return segment
    return "uri-" + hashlib.sha256(uri.encode()).hexdigest()[:12]


def _known_uri(
    version: str, trained: list[dict[str, Any]], champion: Mapping[str, Any]
) -> str | None:
    """The URI status records for `version` (a run of it, or the champion), else None."""
    for run in trained:
        if str(run["modelVersion"]) == version:
            return str(run["uri"])
    if str(champion.get("version")) == version and champion.get("uri"):
        return str(champion["uri"])
    return None


def resolve(
    spec: ModelDeploymentSpec, namespace: str, pipeline: Mapping[str, Any] | None
) -> Target:
    """spec.model -> the version URI to serve; ModelUnavailableError while there is none.

    `pipeline` is the TrainingPipeline spec.model.pipelineRef names, as read (None: not found).
    """
    ref = spec.model
    if ref.uri is not None:
        return Target(version_of_uri(ref.uri), ref.uri, spec.storage_secret_ref)
    assert ref.pipeline_ref is not None  # the model's CEL rule: exactly one of uri/pipelineRef
    name = ref.pipeline_ref.name
    if pipeline is None:
        raise ModelUnavailableError(
            "PipelineNotFound",
            f"spec.model.pipelineRef: TrainingPipeline {name!r} does not exist in namespace "
            f"{namespace}; create it or fix the name",
        )
    pspec = pipeline.get("spec") or {}
    pstatus = pipeline.get("status") or {}
    secret = spec.storage_secret_ref
    if secret is None and (pspec.get("storageSecretRef") or {}).get("name"):
        secret = SecretReference(name=pspec["storageSecretRef"]["name"])
    champion = pstatus.get("champion") or {}
    trained = [
        r
        for r in pstatus.get("runs") or []
        if r.get("modelVersion") and r.get("uri") and str(r["modelVersion"]).isdigit()
    ]
    wanted, what = ref.version, f"spec.model.version: {ref.version}"
    if ref.alias is not None and ref.alias != "champion":
        aliased = (pstatus.get("aliases") or {}).get(ref.alias)
        if not aliased:
            raise ModelUnavailableError(
                "WaitingForModel",
                f"TrainingPipeline {name!r} has no alias {ref.alias!r} yet (spec.model.alias); "
                f"set it with `kubectl annotate tp {name} alias.kubeloop.io/{ref.alias}=<version>`",
            )
        wanted, what = str(aliased), f"spec.model.alias: {ref.alias}"
    if wanted == "champion":
        if not champion.get("version") or not champion.get("uri"):
            raise ModelUnavailableError(
                "WaitingForModel",
                f"TrainingPipeline {name!r} has no champion yet (spec.model.version: champion)",
            )
        return Target(str(champion["version"]), str(champion["uri"]), secret)
    if wanted == "latest":
        if not trained:
            raise ModelUnavailableError(
                "WaitingForModel",
                f"TrainingPipeline {name!r} has no trained version yet (spec.model.version: "
                "latest)",
            )
        newest = max(trained, key=lambda r: int(r["modelVersion"]))
        return Target(str(newest["modelVersion"]), str(newest["uri"]), secret)
    known = _known_uri(wanted, trained, champion)
    if known is not None:
        return Target(wanted, known, secret)
    artifacts = pspec.get("artifacts")
    if not artifacts:
        raise ModelUnavailableError(
            "WaitingForModel",
            f"TrainingPipeline {name!r} has no spec.artifacts to find version {wanted} in ({what})",
        )
    # Versions are immutable folders at a fixed place: older than the run history is fine. An
    # alias names the folder as the registry writes it (its runs report the same URI), so a
    # pipeline created again, whose runs are gone, resolves an alias to the URI that serves.
    folder = f"{str(artifacts).rstrip('/')}/versions/{wanted}"
    return Target(wanted, folder if ref.alias else f"{folder}/", secret)
