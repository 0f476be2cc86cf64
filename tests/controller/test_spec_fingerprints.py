"""The fingerprints the operator keeps in status (`lastRunSpecHash` of a TrainingPipeline, a
failed rollout's `specHash`) must not move when the API gains a field: after an upgrade every
pipeline would count as edited (its next unrelated edit would start a run) and every rolled-back
version would be retried. Fields at their defaults are left out of both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import Field

from kubeloop.api.deployment import ModelDeploymentSpec, ServerResources
from kubeloop.api.training import ResourcesSpec, TrainingPipelineSpec
from kubeloop.decide.canary import spec_hash

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# The fingerprints of the examples as the operator records them. Update them only with a note in
# the release notes: a moved fingerprint is an edit of every existing resource.
RUN_HASHES = {
    "churn-pipeline.yaml": "1e89f05fbc588723",
    "gpu-distributed-pipeline.yaml": "83945220c0b46f13",
}
ROLLOUT_HASHES = {"churn-deployment.yaml": "0c6382d4b9ad61d6"}


def _spec(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())["spec"]
    return spec


@pytest.mark.parametrize(("name", "expected"), sorted(RUN_HASHES.items()))
def test_run_fingerprints_of_existing_pipelines_do_not_move(name: str, expected: str) -> None:
    assert TrainingPipelineSpec.model_validate(_spec(name)).run_hash() == expected


@pytest.mark.parametrize(("name", "expected"), sorted(ROLLOUT_HASHES.items()))
def test_rollout_fingerprints_of_existing_deployments_do_not_move(name: str, expected: str) -> None:
    assert spec_hash(ModelDeploymentSpec.model_validate(_spec(name))) == expected


class _NewerResources(ResourcesSpec):
    future_knob: str = Field(default="off")


class _NewerPipeline(TrainingPipelineSpec):
    resources: _NewerResources = Field(default_factory=_NewerResources)


class _NewerServerResources(ServerResources):
    future_knob: str = Field(default="off")


class _NewerDeployment(ModelDeploymentSpec):
    resources: _NewerServerResources = Field(default_factory=_NewerServerResources)
    future_section: dict[str, str] = Field(default_factory=dict)


@pytest.mark.parametrize("name", sorted(RUN_HASHES))
def test_a_field_added_with_a_default_leaves_the_run_fingerprint(name: str) -> None:
    spec = _spec(name)
    older = TrainingPipelineSpec.model_validate(spec).run_hash()
    assert _NewerPipeline.model_validate(spec).run_hash() == older
    spec.setdefault("resources", {})["futureKnob"] = "on"  # ... until it is used
    assert _NewerPipeline.model_validate(spec).run_hash() != older


@pytest.mark.parametrize("name", sorted(ROLLOUT_HASHES))
def test_a_field_added_with_a_default_leaves_the_rollout_fingerprint(name: str) -> None:
    spec = _spec(name)
    older = spec_hash(ModelDeploymentSpec.model_validate(spec))
    assert spec_hash(_NewerDeployment.model_validate(spec)) == older
    spec.setdefault("resources", {})["futureKnob"] = "on"
    assert spec_hash(_NewerDeployment.model_validate(spec)) != older
