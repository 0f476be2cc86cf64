"""The SDK stands alone: it imports nothing but the standard library (it is copied into user
images that have only Python 3.9+ and their own libraries), and `sdk/pyproject.toml` builds
the `kubeloop-sdk` wheel from the same source."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import kubeloop_sdk

ROOT = Path(__file__).resolve().parents[2]
SDK = Path(kubeloop_sdk.__file__).parent


def _python39() -> str | None:
    """A Python 3.9 that runs (pyenv's shim answers 127 when 3.9 is not selected)."""
    found = [
        shutil.which("python3.9"),
        *map(str, Path.home().glob(".pyenv/versions/3.9*/bin/python3.9")),
    ]
    for python in filter(None, found):
        probe = subprocess.run([python, "-c", "print(1)"], capture_output=True, check=False)
        if probe.returncode == 0:
            return python
    return None


PYTHON39 = _python39()
STDLIB = json.dumps(sorted(sys.stdlib_module_names))

# Run with -I -S: no site-packages, no PYTHONPATH; only the stdlib and the copied package.
# It uses every part of the SDK that needs no ML library, then lists what got imported.
SCRIPT = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
import kubeloop_sdk as kl
from kubeloop_sdk import checkpoints, context, files, metrics, modelfiles, modelsave
from kubeloop_sdk import progress, progressendpoint, remotes, tables, version

run = os.path.join(sys.argv[2], "run")
path = kl.write_context(os.path.join(run, "context.json"), target="y", features=["a"],
                        checkpoint_uri="file://" + os.path.join(run, "remote"))
os.environ["KUBELOOP_CONTEXT"] = str(path)
os.environ["KUBELOOP_PROGRESS_PORT"], os.environ["KUBELOOP_PROGRESS_HOST"] = "0", "127.0.0.1"
ctx = kl.context()
kl.report(epoch=1, epochs=2, loss=0.5)
import urllib.request
served = urllib.request.urlopen(
    "http://127.0.0.1:%d/progress" % progressendpoint.endpoint_from_env().port, timeout=10)
assert json.loads(served.read())["epoch"] == 1
kl.log_metrics({"loss": 0.5})
kl.save_checkpoint(b"state", step=1)
assert kl.load_checkpoint().data == b"state"
try:
    kl.read_table("train")
except ImportError as exc:
    assert "needs pyarrow" in str(exc)
stdlib = set(json.loads(sys.argv[3]))  # sys.stdlib_module_names (3.10+) of the test's Python
third_party = sorted(
    m for m in sys.modules
    if m.split(".")[0] not in stdlib and m.split(".")[0] != "kubeloop_sdk" and m != "__main__"
)
print(json.dumps({"third_party": third_party, "version": sys.version_info[:2]}))
"""


def _run_alone(python: str, tmp_path: Path) -> dict[str, object]:
    copy = tmp_path / "sdk-copy"
    shutil.copytree(SDK, copy / "kubeloop_sdk", ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run(
        [python, "-I", "-S", "-c", SCRIPT, str(copy), str(tmp_path), STDLIB],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "kubeloop-progress epoch=1 epochs=2 percent=50 loss=0.5" in done.stdout
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_sdk_imports_only_the_standard_library(tmp_path: Path) -> None:
    result = _run_alone(sys.executable, tmp_path)
    assert result["third_party"] == []


@pytest.mark.skipif(PYTHON39 is None, reason="no python3.9 on this machine")
def test_the_sdk_runs_on_python_3_9(tmp_path: Path) -> None:
    assert PYTHON39 is not None
    result = _run_alone(PYTHON39, tmp_path)
    assert result == {"third_party": [], "version": [3, 9]}


def test_the_sdk_wheel_builds_from_the_one_source(tmp_path: Path) -> None:
    """Built from a copy of sdk/ and operator/kubeloop_sdk (the build writes beside its
    pyproject.toml), without build isolation (no index here)."""
    shutil.copytree(ROOT / "sdk", tmp_path / "sdk")
    shutil.copytree(SDK, tmp_path / "operator" / "kubeloop_sdk")
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"),
            *(str(tmp_path / "sdk"), "-w", str(tmp_path / "dist")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp_path / "dist").glob("kubeloop_sdk-*.whl")
    assert wheel.name == f"kubeloop_sdk-{kubeloop_sdk.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"kubeloop_sdk-{kubeloop_sdk.__version__}.dist-info/METADATA")
    expected = {f"kubeloop_sdk/{p.name}" for p in SDK.iterdir() if p.suffix in (".py", ".typed")}
    assert expected <= names and "kubeloop_sdk/__init__.py" in names
    assert not any(n.startswith("kubeloop/") for n in names)
    assert b"Requires-Python: >=3.9" in metadata and b"Requires-Dist" not in metadata
