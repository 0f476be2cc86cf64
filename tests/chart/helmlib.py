"""Helpers for the chart tests: the real helm 4 binary (`make tools` puts it in .tools/bin);
what it renders is validated with kubernetes-validate. Nothing is faked; no cluster."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kubeloop"


def find_tool(name: str) -> str:
    local = ROOT / ".tools" / "bin" / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found in .tools/bin or on PATH: run `make tools`")
    return found


def helm_path() -> str:
    path = find_tool("helm")
    version = subprocess.run(
        [path, "version", "--short"], capture_output=True, text=True, check=False
    )
    assert version.stdout.startswith("v4."), f"helm 4 expected, got {version.stdout!r}"
    return path


def render(helm: str, *args: str, namespace: str = "kubeloop-system") -> list[dict[str, Any]]:
    """`helm template` the chart; returns the objects, or raises with helm's stderr."""
    proc = subprocess.run(
        [helm, "template", "kubeloop", str(CHART), "--namespace", namespace, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RenderError(proc.stderr)
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


_AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"


def is_user_role(obj: dict[str, Any]) -> bool:
    """A ClusterRole for the people using the kinds (aggregated into view/edit/admin)."""
    labels = obj.get("metadata", {}).get("labels") or {}
    return obj["kind"] == "ClusterRole" and any(key.startswith(_AGGREGATE) for key in labels)


def operator_roles(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Roles and ClusterRoles of the operator itself."""
    return [o for o in objs if o["kind"] in ("ClusterRole", "Role") and not is_user_role(o)]


class RenderError(Exception):
    """helm refused to render (schema violation or template error)."""
