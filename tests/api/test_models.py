"""Behaviour of the API models beyond the schema: defaults, helpers, durations, property checks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubeloop.api.admission import admit
from kubeloop.api.common import CRON_MESSAGE, CRON_PATTERN, parse_duration
from kubeloop.api.parse import SpecError, parse_resource
from kubeloop.api.training import ModelSpec, TrainingPipelineSpec


def _pipeline(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "data": {"train": "file:///data/train.parquet", "target": "y"},
        "model": {"task": "classification"},
        "artifacts": "file:///models/x/",
    }
    base.update(spec)
    return {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "TrainingPipeline",
        "metadata": {"name": "x"},
        "spec": base,
    }


@pytest.mark.parametrize(
    ("framework", "task", "expected"),
    [
        ("sklearn", "classification", "HistGradientBoostingClassifier"),
        ("sklearn", "regression", "HistGradientBoostingRegressor"),
        ("torch", "regression", "TabularMLP"),
    ],
)
def test_default_estimator(framework: str, task: str, expected: str) -> None:
    spec = ModelSpec.model_validate({"framework": framework, "task": task})
    assert spec.resolved_estimator() == expected


def test_minimal_pipeline_gets_defaults() -> None:
    spec = TrainingPipelineSpec.model_validate(_pipeline()["spec"])
    assert spec.resources.gpus == 0
    assert spec.distributed.workers == 1
    assert spec.run_policy.history_limit == 10
    assert spec.seed == 42
    assert spec.to_wire()["runPolicy"]["ttlSecondsAfterFinished"] == 86400


def test_quantities_accept_numbers() -> None:
    spec = TrainingPipelineSpec.model_validate(_pipeline(resources={"cpu": 2})["spec"])
    assert spec.resources.cpu == "2"
    assert admit(_pipeline(resources={"cpu": 2})).allowed


def test_cron_ranges_checked_by_both_layers() -> None:
    # The CRD checks each field's range too (CEL matches()), not only the shape.
    with pytest.raises(SpecError, match=r"spec\.schedule: must be a 5-field cron"):
        parse_resource(_pipeline(schedule="61 * * * *"))
    assert admit(_pipeline(schedule="61 * * * *")).errors == [
        f"spec.schedule: Invalid value: {CRON_MESSAGE}"
    ]


@pytest.mark.parametrize(
    ("text", "seconds"), [("24h", 86400), ("90m", 5400), ("1h30m", 5400), ("7d", 604800)]
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_parse_duration_refuses_words() -> None:
    with pytest.raises(ValueError, match="24h"):
        parse_duration("one day")


@settings(max_examples=150, deadline=None)
@given(
    gpus=st.integers(-3, 20),
    workers=st.integers(0, 70),
    framework=st.sampled_from(["sklearn", "torch", "jax"]),
    fraction=st.floats(-0.5, 1.5, allow_nan=False),
)
def test_both_layers_agree(gpus: int, workers: int, framework: str, fraction: float) -> None:
    """Property: the API-server layer and the pydantic layer accept exactly the same specs."""
    doc = _pipeline(
        resources={"gpus": gpus},
        distributed={"workers": workers},
        model={"task": "classification", "framework": framework},
        data={"train": "s3://bucket/train/", "target": "y", "validationFraction": fraction},
    )
    admitted = admit(doc).allowed
    try:
        parse_resource(doc)
        parsed = True
    except SpecError:
        parsed = False
    assert admitted == parsed


def _deployment(replicas: int, autoscaling: tuple[int, int] | None, steps: list[int]) -> Any:
    spec: dict[str, Any] = {
        "model": {"uri": "s3://models/churn/versions/1/"},
        "replicas": replicas,
        "rollout": {"strategy": "Canary", "canary": {"steps": steps}},
    }
    if autoscaling is not None:
        spec["autoscaling"] = {"minReplicas": autoscaling[0], "maxReplicas": autoscaling[1]}
    return {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "x"},
        "spec": spec,
    }


@settings(max_examples=150, deadline=None)
@given(
    replicas=st.integers(0, 30),
    autoscaling=st.none() | st.tuples(st.integers(1, 30), st.integers(1, 40)),
    steps=st.lists(st.integers(1, 99), max_size=4, unique=True).map(sorted),
)
def test_canary_step_rule_both_layers_agree(
    replicas: int, autoscaling: tuple[int, int] | None, steps: list[int]
) -> None:
    """Property: the CRD's CEL rule on servable canary steps and the pydantic check accept
    exactly the same specs, and both name the same step when they refuse one."""
    doc = _deployment(replicas, autoscaling, [*steps, 100])
    errors = admit(doc).errors
    try:
        parse_resource(doc)
        messages: list[str] = []
    except SpecError as error:
        messages = error.messages
    assert (errors == []) == (messages == []), (errors, messages)
    named = [m.split(":")[0] for m in messages if m.startswith("spec.rollout.canary.steps[")]
    for name in named:
        assert any(f"Invalid value: {name}:" in e for e in errors), (errors, messages)


@settings(max_examples=60, deadline=None)
@given(schedule=st.from_regex(CRON_PATTERN, fullmatch=True).filter(lambda s: len(s) <= 128))
def test_the_operator_refuses_only_backwards_ranges_past_the_crd(schedule: str) -> None:
    """Property: of the crons the CRD admits, the operator refuses only backwards ranges
    (croniter would wrap them, the CronJob controller refuses them), which `kubeloop validate`
    reports as a check the API server does not make."""
    try:
        parse_resource(_pipeline(schedule=schedule))
    except SpecError as exc:
        assert exc.messages == [m for m in exc.messages if "runs backwards" in m]
