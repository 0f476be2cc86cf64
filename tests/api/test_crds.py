"""The committed CRDs are exactly what the models generate, and carry what users rely on."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import Field

from kubeloop.api import training
from kubeloop.api.crd import KINDS, build_crd, render_crds

ROOT = Path(__file__).resolve().parents[2]


def _crds() -> dict[str, dict[str, Any]]:
    return {c["spec"]["names"]["kind"]: c for c in map(build_crd, KINDS)}


def test_committed_crds_are_current() -> None:
    for name, text in render_crds().items():
        committed = (ROOT / "crds" / name).read_text()
        assert committed == text, f"crds/{name} is stale: run `make crds`"


class _RunPolicyWithNewField(training.RunPolicy):
    extra_knob: int = Field(default=1, description="A field added without `make crds`.")


class _SpecWithNewField(training.TrainingPipelineSpec):
    run_policy: _RunPolicyWithNewField = Field(
        default_factory=_RunPolicyWithNewField, description="Retries, deadlines and history."
    )


def test_staleness_check_fails_when_a_field_changes() -> None:
    committed = (ROOT / "crds" / "kubeloop.io_trainingpipelines.yaml").read_text()
    changed = yaml.safe_dump(
        build_crd(replace(KINDS[0], spec=_SpecWithNewField)), sort_keys=False, width=100
    )
    assert "extraKnob" in changed
    assert committed.split("\n", 1)[1] != changed


def test_names_categories_and_subresources() -> None:
    crds = _crds()
    assert {k: c["spec"]["names"]["shortNames"] for k, c in crds.items()} == {
        "TrainingPipeline": ["tp"],
        "ModelDeployment": ["md"],
        "DriftMonitor": ["dm"],
    }
    for crd in crds.values():
        assert crd["spec"]["names"]["categories"] == ["kubeloop"]
        version = crd["spec"]["versions"][0]
        assert version["subresources"]["status"] == {}
    scale = crds["ModelDeployment"]["spec"]["versions"][0]["subresources"]["scale"]
    assert scale == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }


@pytest.mark.parametrize(
    ("kind", "columns"),
    [
        ("TrainingPipeline", ["Phase", "Champion", "Metric", "Score", "Progress", "Trials", "Age"]),
        ("ModelDeployment", ["Version", "Ready", "Canary", "Step", "URL", "Age"]),
        ("DriftMonitor", ["Drifted", "Share", "Last Run", "Age"]),
    ],
)
def test_printer_columns(kind: str, columns: list[str]) -> None:
    version = _crds()[kind]["spec"]["versions"][0]
    assert [c["name"] for c in version["additionalPrinterColumns"]] == columns


def test_the_trials_column_reads_a_field_that_outlives_the_run() -> None:
    """status.search (the latest search's summary), not status.currentRun.search: the column
    still shows the search once its run has ended and currentRun is gone."""
    version = _crds()["TrainingPipeline"]["spec"]["versions"][0]
    (trials,) = [c for c in version["additionalPrinterColumns"] if c["name"] == "Trials"]
    assert trials["jsonPath"] == ".status.search.progress"
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert "progress" in status["search"]["properties"]


def _walk(node: Any, path: str = "") -> Any:
    if isinstance(node, dict):
        yield path, node
        for key in ("properties", "additionalProperties"):
            value = node.get(key)
            if isinstance(value, dict) and key == "properties":
                for name, sub in value.items():
                    yield from _walk(sub, f"{path}.{name}")
            elif isinstance(value, dict):
                yield from _walk(value, f"{path}.*")
        if isinstance(node.get("items"), dict):
            yield from _walk(node["items"], f"{path}[]")


def test_schemas_are_structural_and_described() -> None:
    cel_rules = 0
    for kind, crd in _crds().items():
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in _walk(schema):
            assert "$ref" not in node and "$defs" not in node, (kind, path)
            assert node.get("additionalProperties") is not False, (kind, path)
            # Structural schemas let these two go untyped (a search's choice of any values).
            untyped = node.get("x-kubernetes-int-or-string") or node.get(
                "x-kubernetes-preserve-unknown-fields"
            )
            if not untyped:
                assert "type" in node, f"{kind}{path} has no type"
                assert "anyOf" not in node, f"{kind}{path} is a union"
            if path.startswith(".spec") or path.startswith(".status"):
                assert node.get("description") or path.endswith("[]") or path.endswith(".*"), (
                    f"{kind}{path} has no description"
                )
            cel_rules += len(node.get("x-kubernetes-validations", []))
    assert cel_rules >= 5


def test_every_cel_rule_names_a_field() -> None:
    """The API server reports a refusal at the rule's node plus its fieldPath: that must be a
    field of the spec, or the rule must say which field (whole-object rules on metadata)."""
    for crd in _crds().values():
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in _walk(schema):
            for rule in node.get("x-kubernetes-validations", []):
                assert rule.get("fieldPath", ".").startswith("."), rule
                where = path + rule.get("fieldPath", "")
                if not where:
                    assert rule["message"].startswith("metadata."), rule
                else:
                    assert where.startswith(".spec."), rule


def test_cli_check_reports_stale_files(tmp_path: Path) -> None:
    from kubeloop.cli import main

    assert main(["crds", "--out", str(tmp_path), "--docs", str(tmp_path / "api.md")]) == 0
    assert (
        main(["crds", "--check", "--out", str(tmp_path), "--docs", str(tmp_path / "api.md")]) == 0
    )
    (tmp_path / "kubeloop.io_driftmonitors.yaml").write_text("stale")
    assert (
        main(["crds", "--check", "--out", str(tmp_path), "--docs", str(tmp_path / "api.md")]) == 1
    )


def test_committed_api_reference_is_current() -> None:
    from kubeloop.api.reference import render_reference

    assert (ROOT / "docs" / "api.md").read_text() == render_reference()


@pytest.mark.parametrize("name", sorted(render_crds()), ids=str)
def test_crd_is_a_valid_kubernetes_object(name: str) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(
        yaml.safe_load((ROOT / "crds" / name).read_text()), "1.33", strict=True
    )


def test_kubeloop_validate_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from kubeloop.cli import main

    assert main(["validate", str(ROOT / "examples" / "churn-pipeline.yaml")]) == 0
    bad = ROOT / "tests" / "data" / "invalid" / "md-both-model-refs.yaml"
    assert main(["validate", str(bad)]) == 1
    assert "spec.model.uri" in capsys.readouterr().out
