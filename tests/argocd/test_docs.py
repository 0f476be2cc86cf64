"""docs/argocd.md and hack/argocd-cm-patch.sh say what the health checks need: the argocd-cm
keys Argo CD looks up, the scripts themselves, Applications that sync CRDs server-side."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
KINDS = ["TrainingPipeline", "ModelDeployment", "DriftMonitor"]


def _yaml_blocks() -> list[dict[str, object]]:
    text = (ROOT / "docs" / "argocd.md").read_text()
    return [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)]


def test_argocd_cm_snippet_names_the_keys_argocd_reads() -> None:
    (cm,) = [b for b in _yaml_blocks() if b.get("kind") == "ConfigMap"]
    assert cm["metadata"] == {
        "name": "argocd-cm",
        "namespace": "argocd",
        "labels": {"app.kubernetes.io/part-of": "argocd"},
    }
    assert set(cm["data"]) == {f"resource.customizations.health.kubeloop.io_{k}" for k in KINDS}


def test_patch_script_carries_the_tested_scripts() -> None:
    proc = subprocess.run(
        [str(ROOT / "hack" / "argocd-cm-patch.sh")], capture_output=True, text=True, check=True
    )
    data = yaml.safe_load(proc.stdout)["data"]
    for kind in KINDS:
        script = (ROOT / "deploy" / "argocd" / "kubeloop.io" / kind / "health.lua").read_text()
        assert data[f"resource.customizations.health.kubeloop.io_{kind}"] == script


def test_application_examples() -> None:
    apps = [b for b in _yaml_blocks() if b.get("kind") == "Application"]
    assert len(apps) == 2
    operator = next(a for a in apps if a["spec"]["source"].get("path") == "charts/kubeloop")
    assert "ServerSideApply=true" in operator["spec"]["syncPolicy"]["syncOptions"]
    assert int(operator["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) < 0
    for app in apps:
        assert app["apiVersion"] == "argoproj.io/v1alpha1"
        assert app["spec"]["destination"]["namespace"]
