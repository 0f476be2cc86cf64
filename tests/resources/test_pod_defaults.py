"""The operator's workload-pod defaults against a resource's own placement, field by field
(`pod_defaults`, `pod_metadata`): which wins, which merges, and what is left out."""

from __future__ import annotations

from typing import Any

import pytest
from tests.resources.cases import ZONE_A

from kubeloop.api.common import Placement
from kubeloop.resources.common import WorkloadDefaults, pod_defaults, pod_metadata

SPREAD = {
    "podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {
                "weight": 100,
                "podAffinityTerm": {
                    "labelSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]},
                    "topologyKey": "kubernetes.io/hostname",
                },
            }
        ]
    }
}
DEFAULTS = WorkloadDefaults(
    placement=Placement.model_validate(
        {
            "nodeSelector": {"pool": "ml", "kubernetes.io/os": "linux"},
            "tolerations": [{"key": "dedicated", "value": "ml", "effect": "NoSchedule"}],
            "priorityClassName": "ml-batch",
            "affinity": ZONE_A,
        }
    )
)


@pytest.mark.parametrize(
    ("own", "field", "wanted"),
    [
        ({}, "affinity", ZONE_A),  # as given: no empty defaults added
        ({"affinity": SPREAD}, "affinity", SPREAD),  # replaced as a whole, never merged
        ({}, "priorityClassName", "ml-batch"),
        ({"priorityClassName": "critical"}, "priorityClassName", "critical"),
        (
            {"nodeSelector": {"pool": "gpu"}},
            "nodeSelector",
            {"pool": "gpu", "kubernetes.io/os": "linux"},  # merged key by key
        ),
        (
            {"tolerations": [{"key": "gpu", "operator": "Exists"}]},
            "tolerations",
            [{"key": "gpu", "operator": "Exists"}],
        ),
    ],
)
def test_a_resources_own_placement_wins(own: dict[str, Any], field: str, wanted: Any) -> None:
    assert pod_defaults(DEFAULTS, Placement.model_validate(own))[field] == wanted


def test_no_defaults_and_no_placement_add_no_field() -> None:
    assert pod_defaults(WorkloadDefaults(), Placement()) == {}
    assert pod_metadata(WorkloadDefaults(), {"app": "x"}) == {"labels": {"app": "x"}}


def test_pod_metadata_keeps_the_operators_own_labels_and_annotations() -> None:
    defaults = WorkloadDefaults(
        pod_labels={"team": "ml", "app": "theirs"},
        pod_annotations={"owner": "ml", "kubeloop.io/trigger": "theirs"},
    )
    meta = pod_metadata(defaults, {"app": "ours"}, {"kubeloop.io/trigger": "ours"})
    assert meta == {
        "labels": {"team": "ml", "app": "ours"},
        "annotations": {"owner": "ml", "kubeloop.io/trigger": "ours"},
    }
