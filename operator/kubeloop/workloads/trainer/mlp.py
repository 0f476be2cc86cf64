"""TabularMLP: a PyTorch MLP on the preprocessed matrix; CUDA + AMP when present, DDP under
torchrun, a checkpoint each epoch and resume from the latest one.

Determinism: on CPU the same data, params and seed give the same weights bit for bit
(deterministic algorithms, fixed thread count, the shuffling and dropout RNG re-seeded from
(seed, epoch) each epoch, so a resumed run continues exactly as an uninterrupted one).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kubeloop.modelformat import build_mlp
from kubeloop.workloads.trainer.checkpoints import CheckpointStore
from kubeloop.workloads.trainer.errors import TrainingError

__all__ = [
    "Distributed",
    "MLPParams",
    "MLPResult",
    "amp_dtype",
    "parse_params",
    "pick_device",
    "thread_count",
    "train_mlp",
]

log = logging.getLogger("kubeloop.train")


@dataclass(frozen=True)
class MLPParams:
    """spec.model.params of TabularMLP, with defaults."""

    hiddenSizes: tuple[int, ...] = (128, 64)  # noqa: N815 - the spec's camelCase names
    dropout: float = 0.1
    epochs: int = 20
    batchSize: int = 256  # noqa: N815
    lr: float = 1e-3
    weightDecay: float = 0.0  # noqa: N815
    patience: int = 5


_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "hiddenSizes": (
        lambda v: (
            isinstance(v, list | tuple)
            and 0 < len(v) <= 16
            and all(isinstance(h, int) and 1 <= h <= 65536 for h in v)
        ),
        "a list of 1 to 16 integers between 1 and 65536",
    ),
    "dropout": (lambda v: isinstance(v, int | float) and 0 <= v < 1, "a number in [0, 1)"),
    "epochs": (lambda v: isinstance(v, int) and 1 <= v <= 100000, "an integer >= 1"),
    "batchSize": (lambda v: isinstance(v, int) and 1 <= v <= 1 << 20, "an integer >= 1"),
    "lr": (lambda v: isinstance(v, int | float) and 0 < v < 10, "a number in (0, 10)"),
    "weightDecay": (lambda v: isinstance(v, int | float) and 0 <= v < 10, "a number >= 0"),
    "patience": (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0 (0 = never stop)"),
}


def parse_params(params: dict[str, Any]) -> MLPParams:
    """MLPParams from spec.model.params; raises TrainingError naming the bad field."""
    for key, value in params.items():
        if key not in _CHECKS:
            raise TrainingError(
                "InvalidParameter",
                f"spec.model.params.{key} is not a parameter of TabularMLP; it accepts: "
                f"{', '.join(_CHECKS)}",
            )
        check, expected = _CHECKS[key]
        if isinstance(value, bool) or not check(value):
            raise TrainingError(
                "InvalidParameter", f"spec.model.params.{key} must be {expected}, got {value!r}"
            )
    values = dict(params)
    if "hiddenSizes" in values:
        values["hiddenSizes"] = tuple(values["hiddenSizes"])
    return MLPParams(**values)


@dataclass(frozen=True)
class Distributed:
    """torchrun's view of this process (world size 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Distributed:
        """Read RANK / WORLD_SIZE / LOCAL_RANK as torchrun sets them."""
        return cls(
            rank=int(os.environ.get("RANK", "0")),
            world_size=int(os.environ.get("WORLD_SIZE", "1")),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        )


@dataclass
class MLPResult:
    """What training produced: the best weights and how it went."""

    state_dict: dict[str, Any]
    outputs: int
    target_mean: float
    target_std: float
    device: str
    amp: bool
    start_epoch: int
    epochs_run: int
    best_epoch: int
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)


def pick_device() -> tuple[str, bool]:
    """("cuda", AMP on) when a GPU is visible, ("cpu", AMP off) otherwise; env can force cpu."""
    import torch

    if os.environ.get("KUBELOOP_DEVICE", "") != "cpu" and torch.cuda.is_available():
        return "cuda", True
    return "cpu", False


def amp_dtype(device: str) -> Any:
    """The autocast dtype on a GPU: bfloat16 where supported (sm80+), else float16."""
    import torch

    if device == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def configure_determinism(device: str) -> None:
    """Deterministic kernels and a fixed CPU thread count (results depend on both)."""
    import torch

    # cuBLAS needs this before the first CUDA call to be deterministic.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=device == "cuda")
    torch.set_num_threads(thread_count())


def thread_count(cgroup: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """Intra-op threads: KUBELOOP_NUM_THREADS, else this process's share of the CPUs it may use.

    A pod's CPU limit is a CFS quota, not an affinity mask: a 2-CPU pod on a 64-core node sees
    64 CPUs, and 64 spinning threads under a 2-CPU quota run many times slower than 2. Under
    torchrun the processes of one pod split the CPUs (LOCAL_WORLD_SIZE).
    """
    forced = int(os.environ.get("KUBELOOP_NUM_THREADS", "0") or 0)
    if forced > 0:
        return forced
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = cgroup.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # cgroup v1 or no limit: the affinity mask is all we know
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(1, min(8, cpus // local))


def train_mlp(
    x_train: np.ndarray[Any, Any],
    y_train: np.ndarray[Any, Any],
    x_val: np.ndarray[Any, Any],
    y_val: np.ndarray[Any, Any],
    *,
    task: str,
    outputs: int,
    params: MLPParams,
    seed: int,
    signature: str,
    checkpoints: CheckpointStore | None,
    dist: Distributed,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> MLPResult:
    """Train (or resume) the MLP; only rank 0 saves checkpoints and calls `on_epoch`."""
    import torch
    from torch import nn

    device, amp = pick_device()
    configure_determinism(device)
    if device == "cuda":
        torch.cuda.set_device(dist.local_rank)
    dev = torch.device(device, dist.local_rank) if device == "cuda" else torch.device("cpu")
    classification = task == "classification"
    mean = 0.0 if classification else float(np.mean(y_train))
    std = 1.0 if classification else float(np.std(y_train)) or 1.0
    x = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32)).to(dev)
    xv = torch.from_numpy(np.ascontiguousarray(x_val, dtype=np.float32)).to(dev)
    if classification:
        y = torch.from_numpy(np.asarray(y_train, dtype=np.int64)).to(dev)
        yv = torch.from_numpy(np.asarray(y_val, dtype=np.int64)).to(dev)
        criterion: nn.Module = nn.CrossEntropyLoss()
    else:
        y = torch.from_numpy(((np.asarray(y_train) - mean) / std).astype(np.float32)).to(dev)
        yv = torch.from_numpy(((np.asarray(y_val) - mean) / std).astype(np.float32)).to(dev)
        criterion = nn.MSELoss()

    torch.manual_seed(seed)
    net = build_mlp(x.shape[1], params.hiddenSizes, params.dropout, outputs).to(dev)
    model: nn.Module = net
    if dist.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(net, device_ids=[dev.index] if device == "cuda" else None)
    optimizer = torch.optim.AdamW(net.parameters(), lr=params.lr, weight_decay=params.weightDecay)
    dtype = amp_dtype(device) if amp else torch.float32
    # float16 needs loss scaling against underflowing gradients; bfloat16 (Ampere and later)
    # has float32's range and does not. Disabled, the scaler passes everything through.
    scaler = torch.amp.GradScaler("cuda", enabled=amp and dtype == torch.float16)

    start, best_loss, best_epoch, bad_epochs = 0, math.inf, 0, 0
    best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    history: list[dict[str, float]] = []
    resumed = checkpoints.latest(signature) if checkpoints is not None else None
    if resumed is not None:
        net.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        if resumed.get("scaler"):
            scaler.load_state_dict(resumed["scaler"])
        start = int(resumed["epoch"])
        best_loss, best_epoch = float(resumed["bestLoss"]), int(resumed["bestEpoch"])
        bad_epochs, best_state = int(resumed["badEpochs"]), resumed["best"]
        history = [dict(h) for h in resumed["history"]]
        log.info("resuming at epoch %d from the checkpoint of epoch %d", start + 1, start)

    n = x.shape[0]
    per_rank = n // dist.world_size if dist.world_size > 1 else n
    stopped = bad_epochs >= params.patience > 0
    began = time.monotonic()
    epoch = start
    for epoch in range(start + 1, params.epochs + 1):
        if stopped:
            break
        model.train()
        torch.manual_seed(seed * 100003 + epoch)  # dropout: a function of (seed, epoch)
        generator = torch.Generator().manual_seed(seed * 1000003 + epoch)
        order = torch.randperm(n, generator=generator)
        if dist.world_size > 1:
            # equal shards: every rank runs the same number of steps (DDP all-reduces each)
            order = order[dist.rank * per_rank : (dist.rank + 1) * per_rank]
        order = order.to(dev)
        total, batches = torch.zeros((), device=dev), 0
        for i in range(0, order.shape[0], params.batchSize):
            idx = order[i : i + params.batchSize]
            with torch.autocast(device_type=device, dtype=dtype, enabled=amp):
                out = model(x[idx])
                loss = criterion(out.float() if classification else out.float()[:, 0], y[idx])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total += loss.detach()
            batches += 1
        train_loss = float(total) / max(batches, 1)
        model.eval()
        with torch.no_grad(), torch.autocast(device_type=device, dtype=dtype, enabled=amp):
            out = net(xv).float()
            val_loss = float(criterion(out if classification else out[:, 0], yv))
        history.append({"epoch": epoch, "loss": train_loss, "valLoss": val_loss})
        if val_loss < best_loss - 1e-9:
            best_loss, best_epoch, bad_epochs = val_loss, epoch, 0
            best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        else:
            bad_epochs += 1
        stopped = params.patience > 0 and bad_epochs >= params.patience
        if dist.rank == 0:
            if checkpoints is not None:
                checkpoints.save(
                    epoch,
                    {
                        "signature": signature,
                        "epoch": epoch,
                        "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
                        "optimizer": optimizer.state_dict(),
                        "scaler": scaler.state_dict() if scaler.is_enabled() else {},
                        "best": best_state,
                        "bestLoss": best_loss,
                        "bestEpoch": best_epoch,
                        "badEpochs": bad_epochs,
                        "history": history,
                    },
                )
            if on_epoch is not None:
                done = epoch - start
                elapsed = time.monotonic() - began
                left = params.epochs - epoch
                on_epoch(
                    {
                        "epoch": epoch,
                        "epochs": params.epochs,
                        "loss": train_loss,
                        "valLoss": val_loss,
                        "percent": int(100 * epoch / params.epochs),
                        "etaSeconds": 0 if stopped else int(elapsed / done * left),
                    }
                )
    return MLPResult(
        state_dict=best_state,
        outputs=outputs,
        target_mean=mean,
        target_std=std,
        device=device,
        amp=amp,
        start_epoch=start + 1,
        epochs_run=int(history[-1]["epoch"]) if history else 0,
        best_epoch=best_epoch,
        stopped_early=stopped,
        history=history,
    )


def params_dict(params: MLPParams) -> dict[str, Any]:
    """The effective params, for the manifest."""
    out = asdict(params)
    out["hiddenSizes"] = list(params.hiddenSizes)
    return out
