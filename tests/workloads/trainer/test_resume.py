"""A torch run killed after epoch k (SIGKILL, as when a node drops a pod) resumes at k+1 from
its checkpoint and ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from kubeloop.workloads.trainer.checkpoints import CheckpointStore

from .conftest import Runner, Spec, manifest_of, mlp_spec, subprocess_env, write_spec

# Runs the real CLI, but SIGKILLs its own process right after epoch KILL_AFTER_EPOCH was
# reported (the checkpoint of that epoch is saved before the report): a pod killed mid-run.
KILLER = """
import os, signal, sys
from kubeloop.workloads.trainer.progress import ProgressReporter
report = ProgressReporter.report
def killing_report(self, progress):
    report(self, progress)
    if progress.get("epoch") == int(os.environ["KILL_AFTER_EPOCH"]):
        os.kill(os.getpid(), signal.SIGKILL)
ProgressReporter.report = killing_report
from kubeloop.cli import main
sys.exit(main())
"""


def test_a_run_killed_after_epoch_k_resumes_at_k_plus_1_with_the_same_result(
    spec_for: Callable[..., Spec],
    train: Runner,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = mlp_spec(spec_for)
    killer = tmp_path / "killer.py"
    killer.write_text(KILLER)
    spec_path = write_spec(spec, tmp_path / "pipeline.yaml")
    killed = subprocess.run(
        [sys.executable, str(killer), "train", "--spec", str(spec_path), "--run-id", "7"],
        env=subprocess_env(
            KUBELOOP_WORK_DIR=str(tmp_path),
            KUBELOOP_RESULT_PATH=str(tmp_path / "killed.json"),
            KILL_AFTER_EPOCH="3",
        ),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert "epoch=3 " in killed.stdout and "epoch=4 " not in killed.stdout
    assert not (tmp_path / "killed.json").exists()  # no result: it died, it did not fail
    assert CheckpointStore(spec["artifacts"], "7")._epochs() == [2, 3]  # the last two kept
    assert not (tmp_path / "models" / "versions" / "1" / "manifest.json").exists()

    # The pod starts again: same spec, same run id (KUBELOOP_RUN_ID from the Job).
    capsys.readouterr()
    with caplog.at_level("INFO", logger="kubeloop.train"):
        code, result = train(spec, "--run-id", "7")
    assert code == 0, result
    assert "resuming at epoch 4 from the checkpoint of epoch 3" in caplog.text
    progress = capsys.readouterr().out
    assert "epoch=1 " not in progress and "epoch=4 " in progress
    assert (result["startEpoch"], result["epochs"], result["version"]) == (4, 6, "1")

    # The same spec uninterrupted, elsewhere: the resumed run ends exactly there.
    fresh_spec = dict(spec, artifacts=(tmp_path / "fresh").as_uri() + "/")
    code, uninterrupted = train(fresh_spec, "--run-id", "7")
    assert code == 0 and uninterrupted["startEpoch"] == 1
    assert result["metrics"] == uninterrupted["metrics"]
    one, two = manifest_of(result), manifest_of(uninterrupted)
    assert one["_weights"] == two["_weights"]
    assert one["training"]["history"] == two["training"]["history"]
