"""Which version a ModelDeployment serves, from spec.model and its pipeline as read."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from kubeloop.api.deployment import ModelDeploymentSpec
from kubeloop.decide.resolve import ModelUnavailableError, resolve

_ARTIFACTS = "s3://models/churn/"
_V = "s3://models/churn/versions/"
_CHAMPION = {"version": "3", "uri": f"{_V}3/"}
_RUNS = [
    {"id": "5", "modelVersion": "5", "uri": f"{_V}5/"},
    {"id": "4", "result": "Failed"},  # no version: never a candidate
    {"id": "3", "modelVersion": "3", "uri": f"{_V}3/"},
    {"id": "2", "modelVersion": "uri-abc", "uri": "s3://elsewhere/"},  # not a number
]


def _pipeline(secret: str | None = None, **status: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"artifacts": _ARTIFACTS}
    if secret:
        spec["storageSecretRef"] = {"name": secret}
    return {"metadata": {"name": "churn"}, "spec": spec, "status": status}


_FULL = _pipeline(champion=_CHAMPION, runs=_RUNS, aliases={"production": "3", "old": "1"})
_REF = {"pipelineRef": {"name": "churn"}}

# (case, spec.model, the pipeline as read, (version, uri) served)
_SERVED: list[tuple[str, dict[str, Any], dict[str, Any] | None, tuple[str, str]]] = [
    ("a version folder by URI", {"uri": f"{_V}7/"}, None, ("7", f"{_V}7/")),
    ("the champion", _REF, _FULL, ("3", f"{_V}3/")),
    ("the newest trained version", {**_REF, "version": "latest"}, _FULL, ("5", f"{_V}5/")),
    ("a pinned version a run made", {**_REF, "version": "5"}, _FULL, ("5", f"{_V}5/")),
    (
        "a pinned version only the champion still names (its run left the history)",
        {**_REF, "version": "3"},
        _pipeline(champion=_CHAMPION),
        ("3", f"{_V}3/"),
    ),
    (
        "a pinned version older than the history: its immutable folder",
        {**_REF, "version": "1"},
        _FULL,
        ("1", f"{_V}1/"),
    ),
    ("an alias to a version a run made", {**_REF, "alias": "production"}, _FULL, ("3", f"{_V}3/")),
    (
        "an alias to an older version: the folder as the registry writes it",
        {**_REF, "alias": "old"},
        _FULL,
        ("1", f"{_V}1"),
    ),
    ("the alias champion is the champion", {**_REF, "alias": "champion"}, _FULL, ("3", f"{_V}3/")),
]


@pytest.mark.parametrize(
    ("model", "pipeline", "served"), [c[1:] for c in _SERVED], ids=[c[0] for c in _SERVED]
)
def test_resolve(
    model: dict[str, Any], pipeline: dict[str, Any] | None, served: tuple[str, str]
) -> None:
    target = resolve(ModelDeploymentSpec.model_validate({"model": model}), "ml", pipeline)
    assert (target.version, target.uri) == served


# (case, spec.model, the pipeline as read, condition reason, the message says)
_WAITING: list[tuple[str, dict[str, Any], dict[str, Any] | None, str, str]] = [
    (
        "no such pipeline",
        _REF,
        None,
        "PipelineNotFound",
        "TrainingPipeline 'churn' does not exist in namespace ml; create it or fix the name",
    ),
    ("no champion yet", _REF, _pipeline(runs=_RUNS), "WaitingForModel", "has no champion yet"),
    (
        "nothing trained yet",
        {**_REF, "version": "latest"},
        _pipeline(runs=[{"id": "1", "result": "Failed"}]),
        "WaitingForModel",
        "has no trained version yet (spec.model.version: latest)",
    ),
    (
        "an alias not set yet",
        {**_REF, "alias": "staging"},
        _FULL,
        "WaitingForModel",
        "`kubectl annotate tp churn alias.kubeloop.io/staging=<version>`",
    ),
    (
        "a pinned version and nowhere to find it",
        {**_REF, "version": "9"},
        {"metadata": {"name": "churn"}, "spec": {}, "status": {}},
        "WaitingForModel",
        "has no spec.artifacts to find version 9 in (spec.model.version: 9)",
    ),
]


@pytest.mark.parametrize(
    ("model", "pipeline", "reason", "says"), [c[1:] for c in _WAITING], ids=[c[0] for c in _WAITING]
)
def test_resolve_waits(
    model: dict[str, Any], pipeline: dict[str, Any] | None, reason: str, says: str
) -> None:
    spec = ModelDeploymentSpec.model_validate({"model": model})
    with pytest.raises(ModelUnavailableError) as waiting:
        resolve(spec, "ml", pipeline)
    assert waiting.value.reason == reason
    assert says in waiting.value.message


@pytest.mark.parametrize(
    ("model", "deployment_secret", "pipeline_secret", "secret"),
    [
        (_REF, None, "s3-pipeline", "s3-pipeline"),  # the pipeline's credentials read its models
        (_REF, "s3-serving", "s3-pipeline", "s3-serving"),  # the deployment's own win
        (_REF, None, None, None),
        ({"uri": f"{_V}7/"}, "s3-serving", None, "s3-serving"),
    ],
)
def test_resolve_credentials(
    model: dict[str, Any],
    deployment_secret: str | None,
    pipeline_secret: str | None,
    secret: str | None,
) -> None:
    spec: dict[str, Any] = {"model": model}
    if deployment_secret:
        spec["storageSecretRef"] = {"name": deployment_secret}
    pipeline = _pipeline(pipeline_secret, champion=_CHAMPION)
    target = resolve(ModelDeploymentSpec.model_validate(spec), "ml", pipeline)
    assert (target.secret.name if target.secret else None) == secret


def test_a_folder_name_no_label_can_hold_is_hashed() -> None:
    uri = "s3://models/churn/best model@2026/"
    target = resolve(ModelDeploymentSpec.model_validate({"model": {"uri": uri}}), "ml", None)
    assert target.version == "uri-" + hashlib.sha256(uri.encode()).hexdigest()[:12]
