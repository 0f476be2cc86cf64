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
EXAMPLES = sorted(p for p in (ROOT / "examples").rglob("*.yaml") if "kubeloop.io" in p.read_text())
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


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT / "examples")))
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
    # A canary with the default steps must not be refused at the default replicas: they are
    # servable by any replica count (the canary matches the stable side at 50%).
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


# --- `kubeloop validate` and the CRD give the same verdict ---------------------------------------


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_validate_refuses_each_sample_as_the_api_server_would(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Offline and in the cluster the verdict is the same: the CRD (schema, list sets, CEL)
    refuses every sample `kubeloop validate` refuses, so none is a refusal only the operator
    makes."""
    from kubeloop.cli import OPERATOR_ONLY, main

    assert not admit(yaml.safe_load(path.read_text())).allowed
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert _expected_field(path) in out
    assert OPERATOR_ONLY not in out


def _example(name: str, path: str, value: Any) -> dict[str, Any]:
    """The example `name` with the field at dotted `path` set to `value`."""
    doc = _docs(ROOT / "examples" / name)[0]
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return doc


TP, DM = "churn-pipeline.yaml", "churn-monitor.yaml"
# (kind's example, field, value, admitted): near misses on both sides of each rule the CRD
# and pydantic state separately, so neither layer is stricter than the other.
AGREEMENT = [
    (TP, "spec.schedule", "*/15 0-23 1,15 jan-jun MON-fri", True),
    (TP, "spec.schedule", "05 03 * 12 6", True),
    (TP, "spec.schedule", "0 0 1-31/7 * 0-6/2", True),
    (TP, "spec.schedule", "@midnight", True),
    (TP, "spec.schedule", "61 25 * * *", False),
    (TP, "spec.schedule", "0 24 * * *", False),
    (TP, "spec.schedule", "0 0 0 * *", False),
    (TP, "spec.schedule", "0 0 32 * *", False),
    (TP, "spec.schedule", "0 0 * 13 *", False),
    (TP, "spec.schedule", "0 0 * * 7", False),
    (TP, "spec.schedule", "*/0 * * * *", False),
    (TP, "spec.schedule", "0 0 * * jan", False),
    (TP, "spec.schedule", "@every 5m", False),
    (DM, "spec.window", "1h30m", True),
    (DM, "spec.window", "0h5m", True),
    (DM, "spec.window", "500ms", True),
    (DM, "spec.window", "0h", False),
    (DM, "spec.window", "0d0h0m", False),
    (DM, "spec.window", "1000000d", False),
    (DM, "spec.features", ["tenure", "contract"], True),
    (DM, "spec.features", ["tenure", "contract", "tenure"], False),
    (TP, "spec.data.features", ["tenure", "tenure"], False),
    (DM, "spec.quality.nullShare", 1, True),
    (DM, "spec.quality.nullShare", 1.01, False),
    (DM, "spec.quality.outOfRangeShare", 0, True),
    (DM, "spec.quality.outOfRangeShare", -0.01, False),
    (DM, "spec.report", {"enabled": True, "destination": "s3://reports/churn/"}, True),
    (DM, "spec.report", {"enabled": True, "destination": "ftp://reports/churn/"}, False),
    (TP, "spec.dataValidation.unseenCategoryShare", 0.2, True),
    (TP, "spec.dataValidation.nullShare", 2, False),
    (TP, "spec.resources.cpu", "500m", True),
    (TP, "spec.resources.cpu", 0, True),
    (TP, "spec.resources.cpu", "+1.5", True),
    (TP, "spec.resources.memory", "1e9", True),
    (TP, "spec.resources.cpu", -1, False),
    (TP, "spec.resources.cpu", "-0.5", False),
    (TP, "spec.resources.cpu", 1.5, False),
    (TP, "spec.resources.memory", "4 GiB", False),
    (TP, "spec.resources.nodeSelector", {"kubernetes.io/arch": "amd64", "gpu": ""}, True),
    (TP, "spec.resources.nodeSelector", {"Node_Type.x": "a-b_c.d"}, True),
    (TP, "spec.resources.nodeSelector", {"a/b/c": "x"}, False),
    (TP, "spec.resources.nodeSelector", {"-gpu": "x"}, False),
    (TP, "spec.resources.nodeSelector", {"x" * 64: "x"}, False),
    (TP, "spec.resources.nodeSelector", {"a" * 254 + "/gpu": "x"}, False),
    (TP, "spec.resources.nodeSelector", {"gpu": "x" * 64}, False),
    (TP, "spec.resources.nodeSelector", {"gpu": "-x"}, False),
    (TP, "spec.resources.tolerations", [{"operator": "Exists"}], True),
    (TP, "spec.resources.tolerations", [{"key": "gpu", "value": "a100"}], True),
    (TP, "spec.resources.tolerations", [{"key": "gpu", "operator": "Exists", "value": ""}], True),
    (
        TP,
        "spec.resources.tolerations",
        [{"key": "gpu", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}],
        True,
    ),
    (TP, "spec.resources.tolerations", [{"key": "gpu", "operator": "Exists", "value": "x"}], False),
    (TP, "spec.resources.tolerations", [{"value": "x"}], False),
    (TP, "spec.resources.tolerations", [{"key": "gpu", "tolerationSeconds": 60}], False),
    (TP, "spec.resources.tolerations", [{"key": "gpu", "value": "a 100"}], False),
    (TP, "spec.resources.tolerations", [{"key": "gpu/", "operator": "Exists"}], False),
]


@pytest.mark.parametrize(
    ("example", "field", "value", "admitted"),
    AGREEMENT,
    ids=[f"{f}={str(v)[:40]}" for _, f, v, _ in AGREEMENT],
)
def test_the_crd_and_pydantic_agree(example: str, field: str, value: Any, admitted: bool) -> None:
    doc = _example(example, field, value)
    result = admit(doc)
    assert result.allowed == admitted, result.errors
    try:
        parse_resource(doc)
        parsed = True
    except SpecError:
        parsed = False
    assert parsed == admitted


def test_validate_says_which_refusals_the_api_server_will_not_make(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A backwards cron range: croniter wraps it, the CronJob controller's parser refuses it, and
    # no regular expression in the CRD can compare the two numbers.
    from kubeloop.cli import OPERATOR_ONLY, main

    doc = _example(DM, "spec.schedule", "50-10 * * * *")
    assert admit(doc).allowed
    path = tmp_path / "monitor.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "spec.schedule: the range 50-10" in out
    assert OPERATOR_ONLY in out


def _churn() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "examples/churn-pipeline.yaml").read_text())
    return doc


@pytest.mark.parametrize(
    ("mode", "errors", "warnings"),
    [
        ("Strict", ['spec.sed: unknown field "sed"'], []),
        ("Warn", [], ['unknown field "spec.sed"']),
        ("Ignore", [], []),
    ],
)
def test_field_validation_decides_what_an_unknown_field_does(
    mode: str, errors: list[str], warnings: list[str]
) -> None:
    doc = _churn()
    doc["spec"]["sed"] = 1
    result = admit(doc, field_validation=mode)
    assert (result.errors, result.warnings) == (errors, warnings)
    assert "sed" not in result.obj["spec"]  # pruned whenever it is stored


def test_an_unknown_field_validation_mode_is_refused_naming_the_choices() -> None:
    with pytest.raises(ValueError, match="fieldValidation: 'strict' is not one of Ignore, Warn"):
        admit(_churn(), field_validation="strict")


def test_nulls_are_pruned_before_defaulting_and_kept_where_unknown_fields_are() -> None:
    doc = _churn()
    doc["spec"]["runPolicy"] = None  # has a default: defaulted as if absent
    doc["spec"]["seed"] = None
    doc["spec"]["model"]["params"] = {"max_depth": None}  # preserved unknown fields keep nulls
    doc["spec"]["data"]["validationFraction"] = None
    result = admit(doc)
    assert result.allowed, result.errors
    spec = result.obj["spec"]
    assert spec["runPolicy"]["historyLimit"] == 10
    assert spec["seed"] == 42
    assert spec["model"]["params"] == {"max_depth": None}
    assert spec["data"]["validationFraction"] == 0.2  # its default


def test_min_improvement_is_admitted_with_must_beat_champion_only() -> None:
    doc = yaml.safe_load(
        (ROOT / "tests/data/invalid/tp-promotion-min-improvement-without-champion.yaml").read_text()
    )
    doc["spec"]["promotion"]["mustBeatChampion"] = True
    result = admit(doc)
    assert result.errors == []
    parsed = parse_resource(result.obj)
    assert parsed.to_wire()["spec"]["promotion"]["minImprovement"] == 0.01
    doc["spec"]["promotion"]["minImprovement"] = -0.01  # a margin is never negative
    assert any(e.startswith("spec.promotion.minImprovement") for e in admit(doc).errors)
    with pytest.raises(SpecError, match=r"promotion\.minImprovement"):
        parse_resource(doc)


def test_admission_works_with_the_root_logger_at_debug() -> None:
    """celpy's DEBUG AST dump fails on long `||` rules; admission must not depend on the level."""
    import logging

    from kubeloop.api.admission import _cel_program

    _cel_program.cache_clear()
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.DEBUG)
    try:
        doc = yaml.safe_load((ROOT / "examples" / "churn-pipeline.yaml").read_text())
        assert admit(doc).errors == []
    finally:
        root.setLevel(previous)
