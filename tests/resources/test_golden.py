"""Golden files: each case's input CR and every manifest built from it, in tests/data/golden.

Regenerate after an intended change with `KUBELOOP_UPDATE_GOLDEN=1 pytest tests/resources`,
then read the diff.
"""

from __future__ import annotations

import os

import pytest
import yaml
from tests.resources.cases import GOLDEN, build_all, inputs

CASES = inputs()


@pytest.mark.parametrize("case", sorted(CASES))
def test_builder_output_matches_golden(case: str) -> None:
    doc = CASES[case]
    in_path = GOLDEN / f"{case}.input.yaml"
    out_path = GOLDEN / f"{case}.output.yaml"
    built = build_all(doc)
    if os.environ.get("KUBELOOP_UPDATE_GOLDEN"):
        in_path.write_text(yaml.safe_dump(doc, sort_keys=False))
        out_path.write_text(yaml.safe_dump_all(built, sort_keys=False))
    assert yaml.safe_load(in_path.read_text()) == doc, "input changed: regenerate and review"
    assert list(yaml.safe_load_all(out_path.read_text())) == built
