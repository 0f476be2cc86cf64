"""Every example is admitted; every invalid sample is refused, naming its field, by both the
API-server layer (structural schema + CEL, evaluated with cel-python) and the pydantic layer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeloop.api.admission import admit
from kubeloop.api.common import KubeModel
from kubeloop.api.parse import SpecError, parse_resource

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.yaml") if "kubeloop.io" in p.read_text())
INVALID = sorted((ROOT / "tests" / "data" / "invalid").glob("*.yaml"))


def _docs(path: Path) -> list[dict[str, Any]]:
    return [
        d for d in yaml.safe_load_all(path.read_text()) if d and "kubeloop.io" in d["apiVersion"]
    ]


def _expected_field(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("# expect-field:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{path.name} has no '# expect-field:' line")


def test_there_are_enough_samples() -> None:
    assert len(EXAMPLES) >= 3
    assert len(INVALID) >= 20
    # one distinct mistake each
    assert len({_expected_field(p) + p.name.split("-")[0] for p in INVALID}) >= 20


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_admitted_and_parse(path: Path) -> None:
    for doc in _docs(path):
        result = admit(doc)
        assert result.errors == []
        parsed = parse_resource(result.obj)
        # Defaults the API server applies and the ones pydantic applies agree.
        assert isinstance(parsed, KubeModel)
        assert parse_resource(doc).to_wire()["spec"] == parsed.to_wire()["spec"]


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_refused_by_schema_and_cel(path: Path) -> None:
    field = _expected_field(path)
    result = admit(yaml.safe_load(path.read_text()))
    assert not result.allowed
    assert any(e.startswith(field) for e in result.errors), result.errors


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_refused_by_pydantic(path: Path) -> None:
    field = _expected_field(path)
    with pytest.raises(SpecError) as caught:
        parse_resource(yaml.safe_load(path.read_text()))
    assert any(field in m for m in caught.value.messages), caught.value.messages


def test_defaults_are_applied_like_the_api_server() -> None:
    doc = _docs(ROOT / "examples" / "churn-deployment.yaml")[0]
    del doc["spec"]["batching"]
    stored = admit(doc).obj
    assert stored["spec"]["batching"] == {"maxBatchSize": 64, "maxLatencyMs": 2}
    assert stored["spec"]["workers"] == 1


def test_cel_error_message_is_the_rules_message() -> None:
    doc = _docs(ROOT / "examples" / "churn-deployment.yaml")[0]
    doc["spec"]["model"]["uri"] = "s3://models/churn/versions/1/"
    errors = admit(doc).errors
    assert errors == [
        "spec.model.uri: Invalid value: spec.model: set exactly one of spec.model.uri "
        "and spec.model.pipelineRef"
    ]


def test_unknown_kind_is_refused() -> None:
    assert not admit({"apiVersion": "kubeloop.io/v1alpha1", "kind": "Pipeline"}).allowed


@pytest.mark.parametrize(
    ("sample", "step", "says"),
    [
        # The issue's example: an HPA of 2..10 and a 10% step, served at 33%.
        ("md-canary-step-unservable-hpa", 0, "closest is 33% (1 canary pod(s))"),
        ("md-canary-step-unservable", 1, "at most 60% before the last"),
    ],
)
def test_an_unservable_canary_step_is_named_by_both_layers(
    sample: str, step: int, says: str
) -> None:
    doc = yaml.safe_load((ROOT / "tests" / "data" / "invalid" / f"{sample}.yaml").read_text())
    field = f"spec.rollout.canary.steps[{step}]: "
    assert [e for e in admit(doc).errors if field in e], admit(doc).errors
    with pytest.raises(SpecError) as caught:
        parse_resource(doc)
    (message,) = caught.value.messages
    assert message.startswith(field) and says in message, message


@pytest.mark.parametrize("replicas", [1, 2, 3])
def test_canary_with_default_steps_is_admitted_at_the_default_replicas(replicas: int) -> None:
    # A canary with the default steps must not be refused at the default replicas: they are servable by any
    # replica count (the canary matches the stable side at 50%).
    doc = {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "churn", "namespace": "ml"},
        "spec": {
            "model": {"pipelineRef": {"name": "churn"}},
            "replicas": replicas,
            "rollout": {"strategy": "Canary", "canary": {}},
        },
    }
    result = admit(doc)
    assert result.allowed, result.errors
    assert result.obj["spec"]["rollout"]["canary"]["steps"] == [50, 100]
    parse_resource(result.obj)
