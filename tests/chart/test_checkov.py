"""checkov on the rendered chart (five value sets) and on the Dockerfiles in images/.

checkov lives in its own venv (hack/install-checkov.sh, ~45 s once). Offline and without a
Prisma Cloud key checkov reports no severities, so "0 failed HIGH/CRITICAL" is enforced as
"0 failed checks of any severity"; every skip must carry its reason inline."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .helmlib import CHART, ROOT
from .test_chart import VALUE_SETS

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
IMAGES = ["operator", "trainer", "trainer-cuda", "server", "monitor"]


@pytest.fixture(scope="module")
def checkov() -> Path:
    proc = subprocess.run(
        [str(ROOT / "hack" / "install-checkov.sh")], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, f"hack/install-checkov.sh failed:\n{proc.stderr}"
    return CHECKOV


def _scan(checkov: Path, directory: Path, framework: str) -> dict[str, Any]:
    proc = subprocess.run(
        [
            str(checkov),
            "--skip-download",
            "-d",
            str(directory),
            "--framework",
            framework,
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    report = json.loads(proc.stdout)
    (result,) = report if isinstance(report, list) else [report]
    assert result["check_type"] == framework
    return result


def _assert_clean(result: dict[str, Any]) -> None:
    failed = result["results"]["failed_checks"]
    summary = [
        f"{f['check_id']} {f['check_name']} ({f['resource']}, severity {f['severity']})"
        for f in failed
    ]
    assert not failed, "\n".join(summary)


def _skip_reasons(objs: list[dict[str, Any]]) -> dict[tuple[str, str, str], str]:
    """(kind, name, check id) -> reason, from the checkov.io/skipN annotations."""
    reasons = {}
    for obj in objs:
        for key, value in obj["metadata"].get("annotations", {}).items():
            if key.startswith("checkov.io/skip"):
                check, _, reason = value.partition("=")
                reasons[(obj["kind"], obj["metadata"]["name"], check)] = reason
    return reasons


def test_checkov_rendered_chart(checkov: Path, helm: str, tmp_path: Path) -> None:
    reasons: dict[tuple[str, str, str], str] = {}
    for name, args in VALUE_SETS.items():
        proc = subprocess.run(
            [helm, "template", "kubeloop", str(CHART), "-n", "kubeloop-system", *args],
            capture_output=True,
            text=True,
            check=True,
        )
        (tmp_path / f"{name}.yaml").write_text(proc.stdout)
        reasons.update(_skip_reasons([d for d in yaml.safe_load_all(proc.stdout) if d]))
    result = _scan(checkov, tmp_path, "kubernetes")
    _assert_clean(result)
    assert result["summary"]["passed"] > 300
    # Only these, each with its reason in the annotation that skips it (kubeloop.checkovSkips).
    allowed = {"CKV_K8S_8", "CKV_K8S_9", "CKV_K8S_15", "CKV_K8S_38", "CKV_K8S_40", "CKV_K8S_43"}
    for skipped in result["results"]["skipped_checks"]:
        kind, _, name = skipped["resource"].split(".", 2)
        check = skipped["check_id"]
        assert check in allowed, skipped["resource"]
        assert len(reasons.get((kind, name, check), "")) > 30, f"{check} on {name}: no reason"


def test_checkov_dockerfiles(checkov: Path) -> None:
    result = _scan(checkov, ROOT / "images", "dockerfile")
    _assert_clean(result)
    passed = {
        (c["check_id"], Path(c["file_path"]).parent.name)
        for c in result["results"]["passed_checks"]
    }
    for image in IMAGES:
        # non-root USER, no `latest` base, a HEALTHCHECK instruction, no sudo, no ADD of URLs
        for check in ("CKV_DOCKER_3", "CKV_DOCKER_7", "CKV_DOCKER_2", "CKV_DOCKER_8"):
            assert (check, image) in passed, f"{check} not passed by images/{image}/Dockerfile"
