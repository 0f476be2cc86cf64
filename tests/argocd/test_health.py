"""Argo CD health checks (deploy/argocd/kubeloop.io/<Kind>/health.lua) run in Lua 5.1, the
language level of Argo CD's gopher-lua, against the test cases of each health_test.yaml, laid
out as in Argo CD's resource_customizations. Nothing is faked: the scripts run as Argo CD runs
them, with the resource as the global `obj` and the returned table as the health; the fixtures
are the objects the real operator wrote in each situation
(tests/integration/test_argocd_fixtures.py keeps them current)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

from kubeloop.api.admission import admit

ROOT = Path(__file__).resolve().parents[2]
CUSTOMIZATIONS = ROOT / "deploy" / "argocd" / "kubeloop.io"
KINDS = ["TrainingPipeline", "ModelDeployment", "DriftMonitor"]


def _cases() -> list[Any]:
    cases = []
    for kind in KINDS:
        spec = yaml.safe_load((CUSTOMIZATIONS / kind / "health_test.yaml").read_text())
        for test in spec["tests"]:
            cases.append(pytest.param(kind, test, id=f"{kind}-{Path(test['inputPath']).stem}"))
    return cases


def run_health(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    """Evaluate the kind's health.lua as Argo CD does: `obj` global in, `hs` table out."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    script = (CUSTOMIZATIONS / kind / "health.lua").read_text()
    result = lua.execute(script)
    return {"status": result["status"], "message": result["message"]}


@pytest.mark.parametrize(("kind", "test"), _cases())
def test_health_case(kind: str, test: dict[str, Any]) -> None:
    obj = yaml.safe_load((CUSTOMIZATIONS / kind / test["inputPath"]).read_text())
    assert obj["kind"] == kind
    assert run_health(kind, obj) == test["healthStatus"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_covers_healthy_progressing_degraded(kind: str) -> None:
    tests = yaml.safe_load((CUSTOMIZATIONS / kind / "health_test.yaml").read_text())["tests"]
    statuses = {t["healthStatus"]["status"] for t in tests}
    assert {"Healthy", "Progressing", "Degraded"} <= statuses
    if kind != "ModelDeployment":  # the only kind without spec.suspend
        assert "Suspended" in statuses
    # Every fixture is used, and every used fixture exists.
    used = {t["inputPath"] for t in tests}
    on_disk = {f"testdata/{p.name}" for p in (CUSTOMIZATIONS / kind / "testdata").glob("*.yaml")}
    assert used == on_disk


@pytest.mark.parametrize(("kind", "test"), _cases())
def test_fixture_is_a_resource_the_api_server_admits(kind: str, test: dict[str, Any]) -> None:
    """The fixtures are real custom resources (spec checked against the generated CRD); the
    InvalidSpec ones were made with admission off, as what only the operator can refuse."""
    obj = yaml.safe_load((CUSTOMIZATIONS / kind / test["inputPath"]).read_text())
    result = admit(obj)
    if Path(test["inputPath"]).stem == "degraded-invalid":
        assert not result.allowed
    else:
        assert result.allowed, result.errors


def _healthy(kind: str) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load(
        (CUSTOMIZATIONS / kind / "testdata/healthy.yaml").read_text()
    )
    return obj


@pytest.mark.parametrize("kind", KINDS)
def test_generation_ahead_of_status_is_progressing_even_when_ready(kind: str) -> None:
    obj = _healthy(kind)
    generation = obj["metadata"]["generation"] = obj["status"]["observedGeneration"] + 1
    assert run_health(kind, obj) == {
        "status": "Progressing",
        "message": f"Waiting for the operator to observe generation {generation}",
    }


@pytest.mark.parametrize("kind", KINDS)
def test_no_status_yet_is_progressing(kind: str) -> None:
    """An object the operator has not seen: as the API server stores it on create."""
    obj = _healthy(kind)
    del obj["status"]
    assert run_health(kind, obj) == {"status": "Progressing", "message": "Waiting for the operator"}


def test_script_uses_only_what_argocd_sandbox_offers() -> None:
    """Argo CD's Lua VM has the base, table, string and math libraries; no io, os, require."""
    for kind in KINDS:
        script = (CUSTOMIZATIONS / kind / "health.lua").read_text()
        for forbidden in ("io.", "os.", "require", "dofile", "loadfile"):
            assert forbidden not in script, f"{kind}/health.lua uses {forbidden}"
