"""Resume points: `save_checkpoint` after each epoch, `load_checkpoint` when the run starts.

A checkpoint is your bytes (what `torch.save` or `pickle` gave you, or a file you wrote) named
`step-00000007.ckpt` in the context's checkpoint folder, and copied to its checkpoint URI, where
a retried pod's `prepare` container restores it from. Two are kept, local and remote: a crash
while one is written still leaves the one before it whole.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from kubeloop_sdk.context import context
from kubeloop_sdk.files import write_atomic
from kubeloop_sdk.remotes import remote_for

__all__ = [
    "KEEP",
    "Checkpoint",
    "checkpoint_name",
    "load_checkpoint",
    "save_checkpoint",
    "stale",
    "step_of",
]

log = logging.getLogger("kubeloop_sdk")
KEEP = 2
_NAME = re.compile(r"^step-(\d{8,})\.ckpt$")

Data = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Checkpoint:
    """The newest checkpoint: the step it was saved at and your bytes."""

    step: int
    data: bytes
    path: Path


def checkpoint_name(step: int) -> str:
    """`step-00000007.ckpt`."""
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"save_checkpoint(step={step!r}): a step number, an int >= 0")
    return f"step-{step:08d}.ckpt"


def step_of(name: str) -> int | None:
    """The step of a checkpoint file name, or None for any other file."""
    match = _NAME.match(name)
    return int(match.group(1)) if match else None


def stale(names: Iterable[str], keep: int = KEEP) -> list[str]:
    """The checkpoint files to delete: all but the `keep` newest steps."""
    steps = sorted((s, n) for n in names if (s := step_of(n)) is not None)
    return [n for _, n in steps[: max(0, len(steps) - keep)]]


def save_checkpoint(data: Data, step: int) -> Path | None:
    """Save a checkpoint (rank 0 only: others return None); returns its local path.

    `data`: bytes, or the path of a file you wrote. The copy to the checkpoint URI is best
    effort: if it fails, a warning says so and the local checkpoint stays.
    """
    name = checkpoint_name(step)
    ctx = context()
    if not ctx.is_main:
        return None
    if isinstance(data, (bytes, bytearray, memoryview)):
        content = bytes(data)
    elif isinstance(data, (str, os.PathLike)):
        source = Path(data)
        if not source.is_file():
            raise ValueError(f"save_checkpoint: {source} is not a file (pass bytes or a path)")
        content = source.read_bytes()
    else:
        raise ValueError(
            f"save_checkpoint: bytes or the path of a file, not {type(data).__name__} "
            "(torch.save(state, buffer) into an io.BytesIO, then buffer.getvalue())"
        )
    path = ctx.checkpoint_dir / name
    write_atomic(path, content)
    for old in stale(p.name for p in ctx.checkpoint_dir.iterdir()):
        (ctx.checkpoint_dir / old).unlink(missing_ok=True)
    remote = remote_for(ctx.checkpoint_uri)
    if remote is not None:
        try:
            remote.put(name, path)
            for old in stale(remote.names()):
                remote.delete(old)
        except Exception as exc:  # the run goes on; only a retried pod loses this resume point
            log.warning("kubeloop_sdk: checkpoint %s not copied to %s: %s", name, remote.uri, exc)
    return path


def load_checkpoint() -> Checkpoint | None:
    """The newest readable checkpoint in the checkpoint folder, or None (a fresh start)."""
    folder = context().checkpoint_dir
    if not folder.is_dir():
        return None
    found = sorted(
        ((s, p) for p in folder.iterdir() if (s := step_of(p.name)) is not None), reverse=True
    )
    for step, path in found:
        try:
            return Checkpoint(step, path.read_bytes(), path)
        except OSError as exc:
            log.warning(
                "kubeloop_sdk: checkpoint %s unreadable (%s); trying an older one", path, exc
            )
    return None
