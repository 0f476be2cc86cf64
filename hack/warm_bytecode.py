#!/usr/bin/env python3
"""Write the bytecode of the heavy libraries once, right after an install.

uv installs no bytecode, so the first import of torch or scikit-learn compiles them; when the
test suite starts, several processes would do that at once, each compiling the same modules.
Importing them here once, in this one process, writes it for all of them (only for what is
imported, not the thousands of modules of torch no process loads). A library the environment
does not have is skipped. Run with the environment's own Python:

    .venv-image-trainer/bin/python hack/warm_bytecode.py [--seed-from SITE_PACKAGES]

`--seed-from` first takes the bytecode another environment already wrote, for every source file
the two share: uv installs a package by hard-linking the files of its cache, so the image venvs
and the dev environment hold the *same* torch and scikit-learn files (one inode), and their
bytecode, which records the source's mtime and size, is valid in both. The pyc is linked, not
written again; what is left (packages at other versions, or copied rather than linked) is
compiled by the imports as before. Compiling torch and scikit-learn once per image venv was most
of `make image-venvs`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

# What the trainer, server, monitor and tests import, heaviest first.
MODULES = (
    "torch",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "skops.io",
    "xgboost",
    "lightgbm",
    "onnxruntime",
    "scipy.stats",
    "pandas",
    "pyarrow.parquet",
    "pyarrow.dataset",
    "kopf",
    "kubernetes",
    "kubeloop.cli",
)


def seed(source: Path, target: Path) -> set[str]:
    """Link into `target` (a site-packages folder) each pyc of `source` whose source file is the
    very same file in both (same device and inode); returns the top-level names it linked for."""
    linked: set[str] = set()
    for folder, _dirs, files in os.walk(source):
        here = Path(folder)
        if here.name != "__pycache__":
            continue
        rel = here.parent.relative_to(source)
        for pyc in files:
            module = pyc.split(".", 1)[0] + ".py"
            try:
                ours, theirs = (source / rel / module).stat(), (target / rel / module).stat()
            except OSError:
                continue
            if (ours.st_dev, ours.st_ino) != (theirs.st_dev, theirs.st_ino):
                continue
            cache = target / rel / "__pycache__"
            cache.mkdir(exist_ok=True)
            try:
                os.link(here / pyc, cache / pyc)
            except FileExistsError:
                continue
            except OSError:
                continue  # another filesystem: the import below compiles it
            linked.add((rel / module).parts[0].removesuffix(".py"))
    return linked


def _import(name: str) -> None:
    if name == "skops.io":  # as Kubeloop imports it: without torch (kubeloop_sdk.skopsio)
        try:
            skopsio = importlib.import_module("kubeloop_sdk.skopsio")
        except ImportError:
            pass
        else:
            skopsio.skops_io()
            return
    importlib.import_module(name)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed-from", type=Path, help="another environment's site-packages")
    parser.add_argument("--only", nargs="*", help="import these modules only")
    args = parser.parse_args(argv)
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        sys.dont_write_bytecode = False  # the point of this script
    seeded: set[str] = set()
    if args.seed_from is not None:
        target = Path(sysconfig.get_paths()["purelib"])
        if args.seed_from.resolve() != target.resolve():
            seeded = seed(args.seed_from, target)
            print(f"bytecode linked from {args.seed_from} for {len(seeded)} packages")
    todo = [m for m in args.only or MODULES if m.split(".")[0] not in seeded]
    # torch, the heaviest, compiles in a second process meanwhile: two cores, half the wait.
    # Nothing else here imports torch (skops is imported without it), so no file is compiled
    # twice; a pyc is written atomically anyway.
    helper = None
    if args.only is None and "torch" in todo:
        todo.remove("torch")
        helper = subprocess.Popen([sys.executable, __file__, "--only", "torch"])
    warmed = []
    for name in todo:
        try:
            _import(name)
        except ImportError:
            continue
        warmed.append(name)
    print(f"bytecode written for {', '.join(warmed) or 'nothing'} ({sys.prefix})")
    return helper.wait() if helper is not None else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
