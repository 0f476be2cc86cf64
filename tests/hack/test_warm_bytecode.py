"""hack/warm_bytecode.py --seed-from: bytecode linked from another environment only for the
source files both hold as the very same file, and Python then loads it without compiling."""

from __future__ import annotations

import importlib.util
import os
import py_compile
import shutil
import subprocess
import sys
from pathlib import Path

from tests.hack.scripts import load

warm_bytecode = load("warm_bytecode")


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_only_the_pyc_of_shared_files_is_linked_and_python_loads_it(tmp_path: Path) -> None:
    source, target = tmp_path / "dev-site", tmp_path / "image-site"
    shared = _write(source / "shared" / "__init__.py", "VALUE = 1\n")
    copied = _write(source / "copied" / "__init__.py", "VALUE = 2\n")
    _write(source / "shared" / "only_here.py", "X = 3\n")
    for path in (shared, copied, source / "shared" / "only_here.py"):
        py_compile.compile(str(path), cfile=importlib.util.cache_from_source(str(path)))
    # uv links both environments' files to its cache: the same inode. A copied file (another
    # version, or another filesystem) is a different file, however equal its text.
    (target / "shared").mkdir(parents=True)
    os.link(shared, target / "shared" / "__init__.py")
    (target / "copied").mkdir()
    shutil.copy2(copied, target / "copied" / "__init__.py")

    assert warm_bytecode.seed(source, target) == {"shared"}
    linked = Path(importlib.util.cache_from_source(str(target / "shared" / "__init__.py")))
    assert linked.samefile(importlib.util.cache_from_source(str(shared)))
    assert not (target / "copied" / "__pycache__").exists()
    assert not (target / "shared" / "__pycache__" / "only_here.cpython-311.pyc").exists()
    assert warm_bytecode.seed(source, target) == set()  # again: nothing left to link

    # CPython takes the linked pyc as valid for the target's file (it records the source's
    # mtime and size, which the one inode shares), and compiles the copied module's source.
    proc = subprocess.run(
        [sys.executable, "-B", "-v", "-c", "import shared, copied"],
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"code object from '{linked}'" in proc.stderr
    assert f"code object from {target / 'copied' / '__init__.py'}\n" in proc.stderr
