"""DDP on CPU: `torchrun --nproc-per-node=2` with the gloo backend, as the Indexed Job starts
the trainer; every rank trains, only rank 0 reports progress and writes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .conftest import Spec, manifest_of, mlp_spec, subprocess_env, write_spec


def test_ddp_with_two_cpu_processes_trains_and_only_rank_0_writes(
    spec_for: Callable[..., Spec], tmp_path: Path
) -> None:
    spec = mlp_spec(spec_for, epochs=2)
    spec_path = write_spec(spec, tmp_path / "pipeline.yaml")
    result_path = tmp_path / "termination-log"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node=2",
            "-m",
            "kubeloop.cli",
            "train",
            "--spec",
            str(spec_path),
            "--run-id",
            "ddp",
        ],
        env=subprocess_env(KUBELOOP_RESULT_PATH=str(result_path), KUBELOOP_WORK_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "DDP rank 0 of 2 (gloo)" in output and "DDP rank 1 of 2 (gloo)" in output
    result = json.loads(result_path.read_text())
    assert result["ok"] is True and result["version"] == "1"
    versions = sorted(p.name for p in (tmp_path / "models" / "versions").iterdir())
    assert versions == ["1"]
    manifest = manifest_of(result)
    assert manifest["training"]["worldSize"] == 2
    # Progress is reported by rank 0 alone: one line per epoch.
    assert output.count("kubeloop-progress epoch=1 ") == 1
    assert output.count("kubeloop-progress epoch=2 ") == 1
    assert '"rank": 1' in output  # rank 1 finished its share and logged, not wrote, its result
