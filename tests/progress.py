"""The epochs a training script reported, read from its `kubeloop-progress` log lines."""

from __future__ import annotations

__all__ = ["epochs_reported"]


def epochs_reported(stdout: str) -> list[int]:
    """`epoch=` of every `kubeloop-progress` line (kubeloop_sdk.progress.progress_line)."""
    return [
        int(line.split("epoch=")[1].split()[0])
        for line in stdout.splitlines()
        if line.startswith("kubeloop-progress ")
    ]
