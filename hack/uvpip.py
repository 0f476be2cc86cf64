#!/usr/bin/env python3
"""`uv pip ...` configured as this machine's pip is: every install of `make` goes through here.

pip takes 3-4 minutes to install the dev environment on a 2-core machine (one core resolving,
unpacking and compiling bytecode); uv does the same install, to the same versions, in about
15 s. uv does not read pip's configuration, so the settings that decide *what* gets installed
are carried over from `pip config list` (which also reports PIP_* variables):

    index-url -> UV_INDEX_URL          extra-index-url -> UV_EXTRA_INDEX_URL
    find-links -> UV_FIND_LINKS        constraint      -> UV_CONSTRAINT
    cert       -> SSL_CERT_FILE

plus UV_INDEX_STRATEGY=unsafe-best-match, which is pip's rule (the best version from any index;
uv's default takes the first index that has the package at all). A UV_* variable already set
wins. Checked when this was written: `pip install --dry-run --report` and `uv pip compile` of
the dev extra pinned the same 155 packages at the same versions (pip takes 90 s to resolve it,
too long to repeat in every `make test`). uv itself is pinned and installed once into
`.tools/uv` (git-ignored).

    hack/uvpip.py install --python .venv/bin/python -e '.[dev]'
    hack/uvpip.py uninstall --python .venv/bin/python pip setuptools
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["UV_VERSION", "ensure_uv", "main", "parse_pip_config", "uv_argv", "uv_environment"]

UV_VERSION = "0.13.8"
ROOT = Path(__file__).resolve().parents[1]
TOOLS = Path(os.environ.get("KUBELOOP_TOOLS", ROOT / ".tools"))

# pip setting -> (uv variable, separator uv expects between several values)
_SETTINGS = {
    "index-url": ("UV_INDEX_URL", " "),
    "extra-index-url": ("UV_EXTRA_INDEX_URL", " "),
    "find-links": ("UV_FIND_LINKS", ","),
    "constraint": ("UV_CONSTRAINT", " "),
    "cert": ("SSL_CERT_FILE", " "),
}
# A higher scope overrides a lower one, as in pip: environment > site > user > global.
_SCOPES = {"global": 0, "user": 1, "site": 2, ":env:": 3}


def parse_pip_config(text: str) -> dict[str, str]:
    """`pip config list` output -> {setting: value} after pip's precedence of scopes.

    Lines look like `global.find-links='/opt/wheels'` or `:env:.find-links='/opt/wheels'`."""
    found: dict[str, tuple[int, str]] = {}
    for line in text.splitlines():
        key, sep, raw = line.partition("=")
        if not sep:
            continue
        scope, _, name = key.rpartition(".")
        rank = _SCOPES.get(scope, -1)
        value = raw.strip().strip("'\"")
        if name in found and found[name][0] > rank:
            continue
        found[name] = (rank, value)
    return {name: value for name, (_, value) in found.items()}


def uv_environment(pip_config: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """The UV_* variables that make uv install what pip would here (set ones are kept)."""
    out: dict[str, str] = {"UV_INDEX_STRATEGY": "unsafe-best-match"}
    for setting, (variable, separator) in _SETTINGS.items():
        value = pip_config.get(setting)
        if value:
            out[variable] = separator.join(value.split())
    return {key: value for key, value in out.items() if key not in environ}


def uv_argv(uv: Path, argv: Sequence[str]) -> list[str]:
    """`uv pip <argv>`, translating the one pip flag uv spells differently in our Dockerfiles:
    `pip uninstall --yes` (uv never asks)."""
    words = list(argv)
    if words[:1] == ["uninstall"]:
        words = [w for w in words if w not in ("--yes", "-y")]
    return [str(uv), "pip", *words]


def _is_pinned(uv: Path) -> bool:
    if not uv.exists():
        return False
    version = subprocess.run([str(uv), "--version"], capture_output=True, text=True, check=False)
    return version.returncode == 0 and version.stdout.split()[1:2] == [UV_VERSION]


def ensure_uv(tools: Path = TOOLS, python: str = sys.executable) -> Path:
    """The pinned uv under `tools`, installed with pip on first use (about 4 s). Several
    installs at once (`make image-venvs` builds two venvs in parallel) take turns."""
    venv = tools / "uv"
    uv = venv / "bin" / "uv"
    if _is_pinned(uv):
        return uv
    tools.mkdir(parents=True, exist_ok=True)
    with open(tools / "uv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _is_pinned(uv):
            subprocess.run([python, "-m", "venv", "--clear", str(venv)], check=True)
            pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
            subprocess.run([*pip, f"uv=={UV_VERSION}"], check=True)
    return uv


def _pip_config(python: str) -> dict[str, str]:
    proc = subprocess.run(
        [python, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    )
    return parse_pip_config(proc.stdout) if proc.returncode == 0 else {}


def main(argv: Sequence[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    uv = ensure_uv()
    env = dict(os.environ)
    env.update(uv_environment(_pip_config(sys.executable), os.environ))
    return subprocess.run(uv_argv(uv, argv), env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
