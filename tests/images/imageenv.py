"""Each image's Python environment, installed as its Dockerfile installs it, in `.venv-image-*`.

The Dockerfiles are the one source: the `pip` commands of their build stage are read from them
and replayed into a venv, in order, by `uv pip` set up as this machine's pip (hack/uvpip.py:
the same versions, in a fraction of the time), with exactly two translations for this machine:

- `--index-url https://download.pytorch.org/whl/<variant>` is dropped: the pinned torch comes
  from this machine's wheel folder, a CPU build (the pip config's find-links), which is what
  the CPU index serves; a CUDA build could not run here anyway;
- the project (`.` or `.[extras]`) is installed editable from this checkout, so the venv runs
  the code under test with exactly the image's dependencies.

Images whose translated commands are equal share one venv (trainer-cuda uses trainer's). A
venv is rebuilt only when its stamp (the commands, pyproject.toml, this Python) changes; the
stamp is written last, so an interrupted build is redone. `make image-venvs` runs this module;
tests/images/test_image_envs.py runs what the operator runs in each image inside them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "IMAGES",
    "ROOT",
    "ImageEnv",
    "build",
    "image_envs",
    "local_command",
    "pip_commands",
]

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"
STAMP = "kubeloop-image-env.json"
# The only index a Dockerfile may name: PyTorch's, for one pinned wheel of torch.
_TORCH_INDEX = "https://download.pytorch.org/whl/"
_PROJECT = re.compile(r"^\.(\[[a-z0-9_,-]+\])?$")
# uv (hack/uvpip.py, configured from this machine's pip settings) runs the commands: pip's own
# flags mean the same there; hack/warm_bytecode.py then writes the bytecode of what is used.
_UVPIP = ROOT / "hack" / "uvpip.py"


def pip_commands(dockerfile: str) -> list[list[str]]:
    """The `pip ...` commands of the build stage (the first FROM's), in order, as argv lists
    without the leading `pip`. Continuation lines are joined; `&&` chains are split."""
    text = re.sub(r"\\\n", " ", dockerfile)
    commands: list[list[str]] = []
    stages = 0
    for line in text.splitlines():
        words = line.strip().split(None, 1)
        if not words:
            continue
        instruction = words[0].upper()
        if instruction == "FROM":
            stages += 1
            if stages > 1:
                break
        elif instruction == "RUN" and len(words) > 1:
            for part in words[1].split("&&"):
                argv = shlex.split(part)
                if argv and argv[0] == "pip":
                    commands.append(argv[1:])
    return commands


def local_command(argv: Sequence[str], root: Path = ROOT) -> list[str]:
    """One Dockerfile pip command as it runs here (see the module docstring)."""
    out: list[str] = []
    words = list(argv)
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--index-url" or word.startswith("--index-url="):
            url = word.partition("=")[2] or (words[i + 1] if i + 1 < len(words) else "")
            if not url.startswith(_TORCH_INDEX):
                raise ValueError(f"unexpected package index {url!r}: decide how it maps here")
            i += 1 if "=" in word else 2
            continue
        project = _PROJECT.match(word)
        if project:
            out += ["-e", f"{root}{project.group(1) or ''}"]
        else:
            out.append(word)
        i += 1
    return out


@dataclass(frozen=True)
class ImageEnv:
    """One venv: the images it stands for and the pip commands that build it."""

    images: tuple[str, ...]
    commands: tuple[tuple[str, ...], ...]

    @property
    def name(self) -> str:
        return self.images[0]

    @property
    def path(self) -> Path:
        return ROOT / f".venv-image-{self.name}"

    def stamp(self) -> str:
        """What the venv was built from: a rebuild is due when this changes."""
        source = {
            "commands": self.commands,
            "pyproject": (ROOT / "pyproject.toml").read_text(),
            "python": sys.version,
            "installer": "uv, warm_bytecode --seed-from",
        }
        return hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()

    def is_current(self) -> bool:
        try:
            built = json.loads((self.path / STAMP).read_text())
        except (OSError, ValueError):
            return False
        return bool(built.get("stamp") == self.stamp())

    def bin(self, program: str) -> Path:
        return self.path / "bin" / program


def image_envs(images: Path = IMAGES) -> dict[str, ImageEnv]:
    """Image name -> its venv, for every images/<name>/Dockerfile."""
    by_commands: dict[tuple[tuple[str, ...], ...], list[str]] = {}
    for dockerfile in sorted(images.glob("*/Dockerfile")):
        commands = tuple(tuple(local_command(c)) for c in pip_commands(dockerfile.read_text()))
        if not any("-e" in c for c in commands):
            raise ValueError(f"{dockerfile}: no `pip install .` of the project found")
        by_commands.setdefault(commands, []).append(dockerfile.parent.name)
    out: dict[str, ImageEnv] = {}
    for commands, names in by_commands.items():
        env = ImageEnv(tuple(sorted(names)), commands)
        out.update(dict.fromkeys(names, env))
    return out


def build(env: ImageEnv, python: str = sys.executable) -> bool:
    """Build `env` unless it is current; returns True when it (re)built it."""
    if env.is_current():
        return False
    shutil.rmtree(env.path, ignore_errors=True)
    # No pip: uv installs, and each Dockerfile uninstalls pip and setuptools at the end anyway
    # (creating a venv with pip costs more CPU than installing torch into it from uv's cache).
    subprocess.run([python, "-m", "venv", "--without-pip", str(env.path)], check=True)
    for command in env.commands:
        verb, *rest = command
        argv = [python, str(_UVPIP), verb, "--python", str(env.bin("python")), *rest]
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
        if proc.returncode != 0:  # the installer's output only then
            raise RuntimeError(
                f"{env.path.name}: `{shlex.join(argv)}` failed:\n{proc.stdout}{proc.stderr}"
            )
    # The bytecode of files this environment shares with the one running this (hard links of
    # uv's cache) is linked from it, the rest compiled: see hack/warm_bytecode.py.
    seed = sysconfig.get_paths()["purelib"]
    subprocess.run(
        [str(env.bin("python")), str(ROOT / "hack" / "warm_bytecode.py"), "--seed-from", seed],
        cwd=ROOT, capture_output=True, check=True,
    )  # fmt: skip
    (env.path / STAMP).write_text(
        json.dumps({"images": env.images, "commands": env.commands, "stamp": env.stamp()})
    )
    return True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="venvs built at once")
    args = parser.parse_args(argv)
    envs = list(dict.fromkeys(image_envs().values()))

    def one(env: ImageEnv) -> str:
        built = build(env)
        return f"{env.path.name} ({', '.join(env.images)}): {'built' if built else 'up to date'}"

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for line in pool.map(one, envs):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
