"""Server-side apply's ownership rules as pure functions (local.cluster.serverside_apply)."""

from __future__ import annotations

from typing import Any

import pytest

from kubeloop.local.cluster import serverside_apply as ssa

NOW = "2026-01-01T00:00:00Z"


def _tp(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "TrainingPipeline",
        "metadata": {"name": "churn", "namespace": "ml"},
        "spec": spec,
    }


def _owners(obj: dict[str, Any]) -> dict[tuple[str, str], set[tuple[str, ...]]]:
    return {
        (e["manager"], e["operation"]): ssa.decode(e["fieldsV1"])
        for e in obj["metadata"].get("managedFields", [])
    }


def test_fields_v1_round_trip_and_ignored_fields() -> None:
    obj = _tp(seed=1, model={"params": {}, "task": "classification"}, data={"features": ["a"]})
    obj["metadata"]["uid"] = "u"
    obj["status"] = {"phase": "Running"}
    paths = ssa.field_paths(obj, has_status=True)
    assert paths == {
        ("spec", "seed"),
        ("spec", "model", "params"),  # an empty map is owned as a field
        ("spec", "model", "task"),
        ("spec", "data", "features"),  # lists are atomic
    }
    assert ssa.encode(paths)["f:spec"]["f:model"] == {"f:params": {}, "f:task": {}}
    assert ssa.decode(ssa.encode(paths)) == paths


def test_apply_creates_and_records_the_manager() -> None:
    created = ssa.apply(None, _tp(seed=1), "kubectl", now=NOW)
    assert created["spec"] == {"seed": 1} and created["metadata"]["name"] == "churn"
    assert _owners(created) == {("kubectl", "Apply"): {("spec", "seed")}}
    assert created["metadata"]["managedFields"][0]["apiVersion"] == "kubeloop.io/v1alpha1"


@pytest.mark.parametrize(
    ("other_value", "force", "outcome"),
    [
        (7, False, "conflict"),  # another manager set it to another value
        (7, True, "taken"),  # forced: the applier takes it over
        (1, False, "shared"),  # same value: both own it
    ],
)
def test_a_field_another_manager_owns(other_value: int, force: bool, outcome: str) -> None:
    current = ssa.apply(None, _tp(seed=5, artifacts="s3://a/"), "kubectl", now=NOW)
    current = ssa.record_update(
        current, {**current, "spec": {**current["spec"], "seed": other_value}}, "kubectl-patch",
        now=NOW,
    )  # fmt: skip
    if outcome == "conflict":
        with pytest.raises(ssa.ApplyConflictError) as err:
            ssa.apply(current, _tp(seed=1, artifacts="s3://a/"), "kubectl", now=NOW, force=force)
        assert str(err.value) == (
            'Apply failed with 1 conflict: conflict with "kubectl-patch" using '
            "kubeloop.io/v1alpha1: .spec.seed"
        )
        return
    applied = ssa.apply(current, _tp(seed=1, artifacts="s3://a/"), "kubectl", now=NOW, force=force)
    assert applied["spec"]["seed"] == 1
    patch_owns = _owners(applied).get(("kubectl-patch", "Update"), set())
    assert (("spec", "seed") in patch_owns) is (outcome == "shared")


def test_a_field_left_out_of_the_config_is_removed_unless_someone_else_owns_it() -> None:
    current = ssa.apply(None, _tp(seed=1, artifacts="s3://a/", suspend=True), "kubectl", now=NOW)
    current = ssa.apply(current, _tp(suspend=True), "gitops", now=NOW)  # co-owns suspend
    applied = ssa.apply(current, _tp(seed=1), "kubectl", now=NOW)
    assert applied["spec"] == {"seed": 1, "suspend": True}
    assert _owners(applied) == {
        ("gitops", "Apply"): {("spec", "suspend")},
        ("kubectl", "Apply"): {("spec", "seed")},
    }


def test_an_update_takes_the_fields_it_changed() -> None:
    current = ssa.apply(None, _tp(seed=1, artifacts="s3://a/"), "kubectl", now=NOW)
    changed = {**current, "spec": {"seed": 2}}  # artifacts removed, seed changed
    updated = ssa.record_update(current, changed, "kubectl-edit", now=NOW)
    assert _owners(updated) == {("kubectl-edit", "Update"): {("spec", "seed")}}


def test_an_apply_that_changes_nothing_keeps_the_object_as_it_is() -> None:
    current = ssa.apply(None, _tp(seed=1), "kubeloop", now=NOW)
    assert ssa.apply(current, _tp(seed=1), "kubeloop", now="2026-01-02T00:00:00Z") == current
    changed = ssa.apply(current, _tp(seed=2), "kubeloop", now="2026-01-02T00:00:00Z")
    assert changed["metadata"]["managedFields"][0]["time"] == "2026-01-02T00:00:00Z"
