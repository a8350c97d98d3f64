"""Training in several processes with torchrun: DistributedDataParallel, one process per GPU or CPU share.

gclf builds no launcher: `torchrun --nproc_per_node N gclf-train ...` starts N copies of
gclf-train and sets WORLD_SIZE, RANK and LOCAL_RANK (and the rendezvous address) in each one's
environment; `Distributed.from_env` reads them. Without them (a plain `gclf-train`) there is
no process group and nothing in this module changes what a run computes.

What each rank does (how the pieces below are used by gclf.train.run and gclf.train.loop):
  - every rank scans the same folders and splits them with the same seed (the scan is
    deterministic), so every rank holds the same split; rank 0 alone writes the run folder;
  - each rank trains on its own shard of every epoch's order (`ShardSampler`, which keeps the
    --shuffle modes), with --mini-batch-size images per process: the global batch is
    mini-batch-size x world size, as in torchvision's reference scripts;
  - validation is sharded: each rank evaluates every world-size-th validation image and the
    loss sums and correct counts are summed over ranks (all_reduce), so the figures cover the
    whole validation split; the test split is evaluated by rank 0 alone, over all of it (the
    reports need every prediction).
A rank that fails exits non-zero with its `error:` line; torchrun then stops the other ranks
and exits non-zero itself. Every file is written atomically by rank 0, so the run folder keeps
its last good last.pt and continues with `torchrun ... gclf-train --resume RUN`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from gclf.runtime.errors import UsageError
from gclf.train.epoch import EvalResult
from gclf.train.precision import FP32, Precision

# The variables torchrun sets for each process it starts.
ENV_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


@dataclass(frozen=True)
class Distributed:
    world_size: int
    rank: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Distributed | None":
        """The process's place in a torchrun job; None outside torchrun (or with one process)."""
        env = os.environ if env is None else env
        if "WORLD_SIZE" not in env:
            return None
        try:
            world_size, rank, local_rank = (int(env.get(name, "0")) for name in ENV_VARS)
        except ValueError:
            raise UsageError(f"torchrun's {'/'.join(ENV_VARS)} environment variables are not integers") from None
        if world_size <= 1:
            return None
        return cls(world_size, rank, local_rank)

    def device(self, requested: torch.device) -> torch.device:
        """One GPU per process on a node (its LOCAL_RANK), or the CPU."""
        if requested.type != "cuda":
            return requested
        if self.local_rank >= torch.cuda.device_count():
            raise UsageError(f"torchrun started local rank {self.local_rank} but this node has {torch.cuda.device_count()} CUDA GPU(s): use --nproc_per_node {torch.cuda.device_count()} or fewer")
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)

    def start(self, device: torch.device) -> None:
        import torch.distributed as dist

        if not dist.is_initialized():
            # NCCL between GPUs, gloo between CPU processes; the address comes from torchrun's env.
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")

    def stop(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()

    def sum(self, values: Sequence[float], device: torch.device) -> list[float]:
        """Element-wise sum over all ranks (float64, so counts up to 2**53 stay exact)."""
        import torch.distributed as dist

        tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()

    def sync_buffers(self, model: nn.Module) -> None:
        """Rank 0's batch-norm running statistics to every rank. DDP broadcasts buffers at the
        start of each forward, so after the last training step each rank's differ by that
        step's own update; validation and the checkpoint must use the same (rank 0's)."""
        import torch.distributed as dist

        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


class ShardSampler(Sampler[int]):
    """This rank's share of each epoch's order, for any --shuffle mode.

    The epoch's order is the same on every rank (drawn from the seed, and the epoch for
    "every-epoch"); it is padded by repeating its start to a multiple of the world size, as
    torch's DistributedSampler does, so every rank runs the same number of steps (DDP needs
    that), and rank r takes positions r, r + world_size, ...
    """

    def __init__(self, n: int, *, shuffle: str, seed: int, rank: int, world_size: int) -> None:
        self.n, self.shuffle, self.seed, self.rank, self.world_size = n, shuffle, seed, rank, world_size
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> list[int]:
        if self.shuffle == "never":
            return list(range(self.n))
        seed = self.seed if self.shuffle == "once" else self.seed + self.epoch
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(seed)).tolist()

    def __len__(self) -> int:
        return math.ceil(self.n / self.world_size)

    def __iter__(self) -> Iterator[int]:
        order = self.order()
        total = len(self) * self.world_size
        if order:
            order = (order * math.ceil(total / len(order)))[:total]
        return iter(order[self.rank:total:self.world_size])


def shard_train_loader(dataset: Dataset, *, batch_size: int, shuffle: str, seed: int, dist: Distributed, **loader_options) -> DataLoader:
    sampler = ShardSampler(len(dataset), shuffle=shuffle, seed=seed, rank=dist.rank, world_size=dist.world_size)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=False, **loader_options)


@torch.no_grad()
def evaluate_sharded(model: nn.Module, dataset: Dataset, *, batch_size: int, device: torch.device, dist: Distributed, precision: Precision = FP32) -> EvalResult:
    """Loss and accuracy over the whole of `dataset`, each rank evaluating every
    world-size-th image (no padding, so no image counts twice). Labels and probabilities are
    left empty: the epoch loop needs only the two figures."""
    model.eval()
    indices = list(range(dist.rank, len(dataset), dist.world_size))
    loss_sum, correct = 0.0, 0
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    for x, y in DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch_size):
        x, y = precision.inputs(x, device), y.to(device)
        with precision.autocast():
            logits = model(x)
        logits = logits.float()
        loss_sum += loss_fn(logits, y).item()
        correct += int((logits.argmax(1) == y).sum())
    total_loss, total_correct, n = dist.sum([loss_sum, correct, len(indices)], device)
    empty = (np.empty(0, dtype=np.int64), np.empty((0, 0)))
    if n == 0:
        return EvalResult(math.nan, math.nan, *empty)
    return EvalResult(total_loss / n, total_correct / n, *empty)


def refuse_torchrun(command: str) -> None:
    """Stop a command that is one process by nature (it runs several trainings in turn, or
    generates its own data) when torchrun started it: each of the N copies would run the
    whole job and write the same folders at the same time."""
    dist = Distributed.from_env()
    if dist is not None:
        raise UsageError(
            f"{command} does not run under torchrun ({dist.world_size} processes would each run it "
            "and write the same folders); run it as a plain command, and use torchrun for gclf-train"
        )
