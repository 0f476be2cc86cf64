"""The PyTorch trainer on CPU: determinism, resume after SIGKILL, DDP under torchrun (gloo).

The CUDA/AMP branch needs a GPU: `pick_device` is checked here on CPU (it must pick CPU and
turn AMP off), the GPU run itself is recorded in docs/benchmarks/trainer.md when one was used.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kubeloop.workloads.trainer.checkpoints import CheckpointStore

from .conftest import Runner, Spec, manifest_of, mlp_spec


def test_sklearn_runs_with_the_same_data_and_seed_give_identical_metrics(
    spec_for: Callable[..., Spec], train: Runner
) -> None:
    spec = spec_for(estimator="RandomForestClassifier", params={"n_estimators": 20})
    first, second = train(spec)[1], train(spec)[1]
    assert (first["version"], second["version"]) == ("1", "2")  # two runs, not one reported twice
    assert first["metrics"] == second["metrics"]
    spec["seed"] = 8
    assert train(spec)[1]["metrics"] != first["metrics"]


def test_torch_runs_on_cpu_with_the_same_data_and_seed_are_identical(
    spec_for: Callable[..., Spec], train: Runner
) -> None:
    spec = mlp_spec(spec_for, epochs=3)
    first, second = train(spec)[1], train(spec)[1]
    assert (first["version"], second["version"]) == ("1", "2")
    assert first["metrics"] == second["metrics"]
    one, two = manifest_of(first), manifest_of(second)
    assert one["_weights"] == two["_weights"]
    assert one["training"]["history"] == two["training"]["history"]


def test_the_device_is_cpu_without_a_gpu_and_amp_only_on_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    from kubeloop.workloads.trainer.mlp import amp_dtype, pick_device

    monkeypatch.setenv("KUBELOOP_DEVICE", "cpu")
    assert pick_device() == ("cpu", False)
    monkeypatch.delenv("KUBELOOP_DEVICE")
    assert pick_device() == (("cuda", True) if torch.cuda.is_available() else ("cpu", False))
    assert amp_dtype("cpu") == torch.bfloat16  # only used when AMP is on, i.e. on CUDA


def test_early_stopping_stops_after_patience_epochs_without_improvement(
    spec_for: Callable[..., Spec], train: Runner
) -> None:
    # lr so large that validation loss cannot keep improving: patience 1 stops early.
    code, result = train(mlp_spec(spec_for, epochs=30, patience=1, lr=5.0))
    assert code == 0, result
    training = manifest_of(result)["training"]
    assert training["stoppedEarly"] is True
    assert result["epochs"] < 30
    assert training["epochsRun"] == training["bestEpoch"] + 1


def test_checkpoints_keep_two_and_a_different_spec_never_resumes(tmp_path: Path) -> None:
    import torch

    store = CheckpointStore((tmp_path / "models").as_uri(), "run-1")
    for epoch in (1, 2, 3):
        store.save(epoch, {"signature": "spec-a", "epoch": epoch, "w": torch.ones(2) * epoch})
    assert store._epochs() == [2, 3]
    latest = store.latest("spec-a")
    assert latest is not None and latest["epoch"] == 3 and latest["w"].tolist() == [3.0, 3.0]
    assert store.latest("spec-b") is None
    # A torn write of the newest checkpoint: the previous one is used.
    path = tmp_path / "models" / "runs" / "run-1" / "checkpoints" / "epoch-00003.pt"
    path.write_bytes(path.read_bytes()[:100])
    fallback = store.latest("spec-a")
    assert fallback is not None and fallback["epoch"] == 2


def test_threads_follow_the_cgroup_cpu_quota_and_the_processes_per_pod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from kubeloop.workloads.trainer.mlp import thread_count

    cpus = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    monkeypatch.delenv("KUBELOOP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    cpu_max.write_text("150000 100000\n")  # a 1.5-CPU limit rounds up to 2
    assert thread_count(cpu_max) == min(2, cpus)
    cpu_max.write_text("max 100000\n")
    assert thread_count(cpu_max) == min(8, cpus)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(cpus))
    assert thread_count(cpu_max) == 1
    monkeypatch.setenv("KUBELOOP_NUM_THREADS", "3")
    assert thread_count(cpu_max) == 3
