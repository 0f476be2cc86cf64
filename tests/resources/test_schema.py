"""Every manifest any builder makes is valid Kubernetes 1.33 (official schemas, strict)."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from tests.resources.cases import build_all, inputs

MANIFESTS = [
    pytest.param(m, id=f"{case}:{m['kind']}/{m['metadata']['name']}")
    for case, doc in sorted(inputs().items())
    for m in build_all(doc)
]


@pytest.mark.parametrize("manifest", MANIFESTS)
def test_manifest_validates_against_kubernetes_1_33(manifest: dict[str, Any]) -> None:
    kubernetes_validate.validate(manifest, "1.33", strict=True)


def test_validation_can_fail() -> None:
    bad = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"}, "spec": {"x": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.33", strict=True)
