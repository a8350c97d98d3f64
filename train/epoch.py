"""One training epoch and one evaluation pass; nothing here knows about files or CLIs."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from gclf.runtime.errors import TrainingDivergedError
from gclf.train.precision import FP32, Precision


@dataclass(frozen=True)
class StepInfo:
    epoch: int
    iteration: int  # global, 1-based
    batch_loss: float
    batch_accuracy: float
    learn_rate: float
    elapsed_s: float


@dataclass(frozen=True)
class EvalResult:
    loss: float
    accuracy: float
    labels: np.ndarray  # (N,) true class indices
    probabilities: np.ndarray  # (N, C) softmax


@dataclass(frozen=True)
class EpochContext:
    """Everything one training epoch's steps use besides the batches themselves.

    Built afresh each epoch (by gclf.train.loop's Trainer) for full training, for --freeze
    (cached features through the head) and under torchrun alike, so the step below is
    written once.
    """

    forward: Callable[[torch.Tensor], torch.Tensor]  # the model, its DDP wrapper, or --freeze's head
    optimizer: torch.optim.Optimizer
    epoch: int
    first_iteration: int  # global, 1-based: the epoch's first step
    started: float  # time.monotonic() at the run's start, for StepInfo.elapsed_s
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None  # stepped after every batch
    on_step: Callable[[StepInfo], None] | None = None
    precision: Precision = FP32  # --precision's autocast and fp16's GradScaler


def device_batches(loader: DataLoader, device: torch.device, precision: Precision = FP32) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """`loader`'s (input, label) batches on `device`, inputs in --precision's memory layout."""
    return ((precision.inputs(x, device, non_blocking=True), y.to(device, non_blocking=True)) for x, y in loader)


def run_epoch(ctx: EpochContext, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, float]:
    """One optimizer step per (input, label) batch; returns (mean loss, accuracy).

    Raises `TrainingDivergedError` at the first non-finite loss, before the optimizer step,
    so the weights last saved stay the last good ones. Under --precision bf16/fp16 the
    forward pass and the loss run in autocast; the weights stay fp32. The caller puts the
    model in training mode (`forward` may be a head on cached features).
    """
    optimizer, precision = ctx.optimizer, ctx.precision
    loss_fn = nn.CrossEntropyLoss()
    total_loss, correct, seen = 0.0, 0, 0
    for step, (x, y) in enumerate(batches):
        with precision.autocast():
            logits = ctx.forward(x)
            loss = loss_fn(logits, y)
        if not torch.isfinite(loss):
            lr = optimizer.param_groups[0]["lr"]
            raise TrainingDivergedError(
                f"training diverged: the loss became {loss.item()} at epoch {ctx.epoch}, iteration "
                f"{ctx.first_iteration + step} (learn rate {lr:g}); the learn rate is too high for this "
                "model and data, try a lower --learn-rate (e.g. 0.001)"
            )
        optimizer.zero_grad(set_to_none=True)
        if precision.scaler is None:
            loss.backward()
            optimizer.step()
        else:
            # fp16: gradients scaled up against underflow; a step whose gradients overflowed
            # is skipped and the scale lowered (GradScaler's own recipe).
            precision.scaler.scale(loss).backward()
            precision.scaler.step(optimizer)
            precision.scaler.update()
        if ctx.scheduler is not None:
            ctx.scheduler.step()
        batch_correct = int((logits.argmax(1) == y).sum())
        total_loss += loss.item() * len(y)
        correct += batch_correct
        seen += len(y)
        if ctx.on_step:
            ctx.on_step(StepInfo(ctx.epoch, ctx.first_iteration + step, loss.item(), batch_correct / len(y), optimizer.param_groups[0]["lr"], time.monotonic() - ctx.started))
    return total_loss / max(seen, 1), correct / max(seen, 1)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, precision: Precision = FP32) -> EvalResult:
    model.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    total_loss, labels, probs = 0.0, [], []
    for x, y in loader:
        x, y = precision.inputs(x, device), y.to(device)
        with precision.autocast():
            logits = model(x)
        logits = logits.float()  # the loss and softmax in fp32 whatever the forward pass ran in
        total_loss += loss_fn(logits, y).item()
        labels.append(y.cpu().numpy())
        probs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
    n = sum(len(l) for l in labels)
    if n == 0:
        return EvalResult(math.nan, math.nan, np.empty(0, dtype=np.int64), np.empty((0, 0)))
    labels_arr, probs_arr = np.concatenate(labels), np.concatenate(probs)
    accuracy = float((probs_arr.argmax(1) == labels_arr).mean())
    return EvalResult(total_loss / n, accuracy, labels_arr, probs_arr)
