"""A new pipeline's first run Job reads the registry first (resources/registry.py
`with_registry_read`): the registry Job's own inspect container, first of the init containers
(before a custom run's prepare), and a FailJob rule for its exit codes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from tests.resources.cases import DEFAULTS, UID

from kubeloop.api.training import TrainingPipelineSpec
from kubeloop.resources.common import Owner
from kubeloop.resources.registry import build_registry_job, with_registry_read
from kubeloop.resources.training import build_training_job

OWNER = Owner("kubeloop.io/v1alpha1", "TrainingPipeline", "churn", "ml", UID)


def _spec(**extra: Any) -> TrainingPipelineSpec:
    return TrainingPipelineSpec.model_validate(
        {
            "data": {"train": "s3://data/train/", "target": "y"},
            "model": {"framework": "sklearn", "task": "classification"},
            "artifacts": "s3://models/churn/",
            "storageSecretRef": {"name": "s3-credentials"},
            **extra,
        }
    )


@pytest.mark.parametrize(
    ("extra", "after"),
    [
        ({}, []),
        (
            {
                "model": {"framework": "custom", "task": "classification"},
                "trainer": {"image": "t:1"},
            },
            ["prepare", "trainer"],
        ),
    ],
    ids=["built-in", "custom"],
)
def test_the_first_run_reads_the_registry_before_anything_else(
    extra: dict[str, Any], after: list[str]
) -> None:
    spec = _spec(**extra)
    run = build_training_job(
        OWNER, spec, run_id=1, trigger="Create", generation=1, defaults=DEFAULTS
    )
    before = copy.deepcopy(run)
    job = with_registry_read(run, OWNER, spec, run_id=1, defaults=DEFAULTS)
    assert run == before  # the run's Job as built is left as it is
    pod = job["spec"]["template"]["spec"]
    read, *rest = pod["initContainers"]
    assert [c["name"] for c in rest] == after
    assert read["args"][-3:] == ["--require-empty", "--run-id", "1"]
    # The registry Job's container, as it is: args (but the flag), env, resources, shape.
    inspect = build_registry_job(OWNER, spec, {"action": "Inspect", "id": "1"}, defaults=DEFAULTS)[
        "spec"
    ]["template"]["spec"]["containers"][0]
    assert {**read, "args": read["args"][:-3]} == inspect
    assert job["spec"]["podFailurePolicy"]["rules"][0] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "registry", "operator": "In", "values": [60, 61]},
    }
    assert {k: v for k, v in job.items() if k != "spec"} == {
        k: v for k, v in run.items() if k != "spec"
    }
