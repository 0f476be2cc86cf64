"""End-to-end on a real cluster: kind + Docker. Nothing is faked; where Docker or kind is
missing every test here skips with the reason (`make e2e` prints it with -rs)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def missing_prerequisite() -> str | None:
    """Why the kind e2e cannot run here, or None when it can."""
    if shutil.which("docker") is None:
        return "docker is not on PATH: install Docker to run the kind e2e"
    try:
        info = subprocess.run(
            ["docker", "info"], capture_output=True, text=True, timeout=30, check=False
        )
    except subprocess.TimeoutExpired:
        return "`docker info` timed out: the Docker engine does not answer"
    if info.returncode != 0:
        lines = [line.strip() for line in info.stderr.splitlines() if line.strip()]
        detail = lines[-1] if lines else f"exit {info.returncode}"
        return f"no Docker engine (`docker info` failed: {detail})"
    if shutil.which("kind") is None:
        return "kind is not on PATH: install kind (https://kind.sigs.k8s.io) to run the e2e"
    return None


def find_tool(name: str) -> str:
    """helm and kubectl from .tools/bin (`make tools`), else PATH."""
    local = Path(__file__).resolve().parents[2] / ".tools" / "bin" / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found in .tools/bin or on PATH: run `make tools`")
    return found


@pytest.fixture(scope="session")
def e2e_prerequisites() -> None:
    reason = missing_prerequisite()
    if reason is not None:
        pytest.skip(reason)
