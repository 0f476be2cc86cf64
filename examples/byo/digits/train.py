"""Digits: your own PyTorch training code (a small CNN), run by Kubeloop (docs/byo.md).

Everything Kubeloop-specific is a `kubeloop_sdk` call: the params and seed, the staged data,
progress, checkpoints to resume from, metrics, and the model Kubeloop scores and publishes.
The same script runs on a laptop (README.md), on a GPU with mixed precision, and under
torchrun (`spec.distributed.workers > 1` or several GPUs) with DistributedDataParallel.
"""

from __future__ import annotations

import io
import os

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

import kubeloop_sdk as kl


class DigitsCNN(nn.Module):
    """[n, 1, 8, 8] pixel intensities (0..16) -> [n, classes] logits."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 32 x 4 x 4
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(32 * 16, 128),
            nn.ReLU(),
            nn.Linear(128, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x / 16.0))


class Probabilities(nn.Module):
    """What Kubeloop serves: float32 [n, 64] (the features in the pipeline's order) ->
    [n, classes] probabilities, in the order of the pipeline's classes."""

    def __init__(self, net: DigitsCNN) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x.reshape(-1, 1, 8, 8)), dim=1)


def arrays(split: str, features: list[str], target: str, classes: list[str]) -> TensorDataset:
    """A split as tensors: pixels [n, 1, 8, 8] and class indices (positions in `classes`)."""
    table = kl.read_table(split, columns=[*features, target])
    x = np.column_stack([table.column(f).to_numpy().astype(np.float32) for f in features])
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[str(v)] for v in table.column(target).to_pylist()], dtype=np.int64)
    return TensorDataset(torch.from_numpy(x).reshape(-1, 1, 8, 8), torch.from_numpy(y))


def accuracy(net: nn.Module, data: TensorDataset, device: torch.device) -> float:
    x, y = data.tensors
    net.eval()
    with torch.no_grad():
        predicted = net(x.to(device)).argmax(dim=1).cpu()
    return float((predicted == y).float().mean())


def main() -> None:
    ctx = kl.context()
    epochs = int(ctx.params.get("epochs", 8))
    lr = float(ctx.params.get("lr", 0.002))
    batch_size = int(ctx.params.get("batchSize", 64))
    seed = ctx.seed if ctx.seed is not None else 0

    cuda = torch.cuda.is_available()
    distributed = ctx.world_size > 1
    if distributed:  # torchrun set RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
        dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device(f"cuda:{ctx.local_rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.manual_seed(seed)

    names = ctx.feature_names or [f"px{i}" for i in range(64)]
    train_columns = kl.read_table("train", columns=[ctx.target]).column(ctx.target)
    classes = [str(c) for c in (ctx.classes or sorted(set(train_columns.to_pylist())))]
    train = arrays("train", names, ctx.target, classes)
    validation = arrays("validation", names, ctx.target, classes)

    net = DigitsCNN(len(classes)).to(device)
    model: nn.Module = net
    if distributed:
        model = DistributedDataParallel(net, device_ids=[device.index] if cuda else None)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)

    start = 0
    checkpoint = kl.load_checkpoint()  # restored by Kubeloop when this pod is a retry
    if checkpoint is not None:
        state = torch.load(io.BytesIO(checkpoint.data), map_location=device, weights_only=True)
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start = int(state["epoch"])
        print(f"resuming after epoch {start} (checkpoint {checkpoint.path.name})", flush=True)

    sampler = (
        DistributedSampler(train, num_replicas=ctx.world_size, rank=ctx.rank, seed=seed)
        if distributed
        else None
    )
    loader = DataLoader(
        train,
        batch_size=batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=torch.Generator().manual_seed(seed + start),
    )
    metrics: dict[str, float] = {}
    for epoch in range(start + 1, epochs + 1):
        if sampler is not None:
            sampler.set_epoch(epoch)
        model.train()
        total, count = 0.0, 0
        for batch_x, batch_y in loader:
            x = batch_x.to(device, non_blocking=True)
            y = batch_y.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=cuda):
                loss = nn.functional.cross_entropy(model(x), y)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total += loss.item() * len(y)
            count += len(y)
        metrics = {
            "train_loss": total / count,
            "validation_accuracy": accuracy(net, validation, device),
        }
        kl.report(epoch=epoch, epochs=epochs, loss=metrics["train_loss"])
        if ctx.is_main:
            print(f"epoch {epoch}/{epochs}: {metrics}", flush=True)
            buffer = io.BytesIO()
            state = {
                "model": net.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "epoch": epoch,
            }
            torch.save(state, buffer)
            kl.save_checkpoint(buffer.getvalue(), step=epoch)
        if ctx.params.get("stopAfterEpoch") == epoch:  # for trying resume: die like a lost node
            os._exit(137)

    if ctx.is_main:
        kl.log_metrics(metrics or {"validation_accuracy": accuracy(net, validation, device)})
        served = torch.jit.script(Probabilities(net.to("cpu").eval()))
        kl.save_model(served, format="torchscript")
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
