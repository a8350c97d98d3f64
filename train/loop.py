"""The epoch loop, shared by new and resumed runs: train an epoch, validate, record, save.

Nothing here reads or writes files: saving an epoch is the caller's `save_epoch` (gclf.train.run
writes best.pt, last.pt and history.csv with it), so the loop is the same for every caller.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch.utils.data import DataLoader

from gclf.runtime.errors import OutputWriteError, TrainingDivergedError
from gclf.runtime.log import Log
from gclf.train.augment import augment, augment_config
from gclf.train.config import TrainConfig
from gclf.train.dataset import ImageDataset, loader_worker_options
from gclf.train.distributed import Distributed, evaluate_sharded, shard_train_loader
from gclf.train.epoch import EpochContext, EvalResult, StepInfo, device_batches, evaluate, run_epoch
from gclf.train.frozen import FrozenBackbone
from gclf.train.optim import make_optimizer, make_scheduler, make_train_loader
from gclf.train.precision import FP32, Precision
from gclf.train.progress import TrainingScreen
from gclf.train.run_folder import RunData, resolve_workers
from gclf.train.scan import POOL_MIN_FILES


@dataclass
class Progress:
    """Where a run stands after its last completed epoch."""

    epoch: int = 0
    best_val_loss: float = math.inf
    best_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    stale_validations: int = 0  # validations since the validation loss last went down

    def record(self, row: dict) -> bool:
        """Add an epoch's history row; True if its validation loss is the best so far
        (never for an epoch without validation: its val_loss is NaN)."""
        self.history.append(row)
        self.epoch = int(row["epoch"])
        if math.isnan(row["val_loss"]):
            return False
        improved = row["val_loss"] < self.best_val_loss
        if improved:
            self.best_val_loss, self.best_epoch, self.stale_validations = row["val_loss"], self.epoch, 0
        else:
            self.stale_validations += 1
        return improved


@dataclass
class Trainer:
    """What an epoch changes (gclf.train.resume captures and restores all of it)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    generator: torch.Generator  # the training loader's shuffling
    train_ds: ImageDataset
    train_loader: DataLoader
    val_loader: DataLoader
    device: torch.device
    frozen: FrozenBackbone | None  # --freeze: the head trains on the backbone's features
    dist: Distributed | None = None  # under torchrun: this process's rank
    # What training steps call: the DistributedDataParallel wrapper under torchrun, else
    # `model` itself. `model` stays the bare network: checkpoints hold its state dict, with
    # no "module." prefixes, so export and everything after it read them as any other.
    forward: torch.nn.Module | None = None
    precision: Precision = FP32  # --precision's autocast and fp16's GradScaler; --channels-last

    def run_epoch(self, epoch: int, started: float, on_step: Callable[[StepInfo], None]) -> tuple[float, float]:
        """(mean loss, accuracy) over the epoch's training batches (this rank's share under torchrun)."""
        self.train_ds.epoch = epoch
        if self.dist is not None:
            self.train_loader.sampler.set_epoch(epoch)
        if self.frozen is not None:
            forward, batches = self.frozen.train_head, self.frozen.training_batches(self.train_loader)
        else:
            forward = self.forward or self.model
            forward.train()
            batches = device_batches(self.train_loader, self.device, self.precision)
        first_iteration = (epoch - 1) * len(self.train_loader) + 1
        ctx = EpochContext(forward, self.optimizer, epoch, first_iteration, started, self.scheduler, on_step, self.precision)
        loss, accuracy = run_epoch(ctx, batches)
        if self.dist is not None and self.frozen is None:
            # Every rank ran as many batches of the same size (ShardSampler pads), so the
            # mean of the ranks' means is the epoch's mean over all of them.
            loss, accuracy = (v / self.dist.world_size for v in self.dist.sum([loss, accuracy], self.device))
        return loss, accuracy

    def validate(self) -> EvalResult:
        if self.frozen is not None:
            return self.frozen.evaluate_head(self.val_loader)
        if self.dist is not None:
            self.dist.sync_buffers(self.model)
            return evaluate_sharded(self.model, self.val_loader.dataset, batch_size=self.val_loader.batch_size, device=self.device, dist=self.dist, precision=self.precision)
        return evaluate(self.model, self.val_loader, self.device, self.precision)


def make_trainer(config: TrainConfig, data: RunData, model: torch.nn.Module, device: torch.device, log: Log, dist: Distributed | None = None) -> Trainer:
    precision = Precision.of(config.precision, device, channels_last=config.channels_last)
    model.to(device)
    if config.channels_last:
        # The weights change layout, not values; checkpoints store them contiguous again.
        model.to(memory_format=torch.channels_last)
    pin_memory = device.type == "cuda"  # asynchronous copies to the GPU; CPU runs as before
    generator = torch.Generator().manual_seed(config.seed)
    aug = augment_config(config.augment, config.augment_options)
    augment_fn = (lambda rgb, rng: augment(rgb, rng, aug)) if aug.enabled else None
    train_ds = ImageDataset(data.splits["train"], data.store, data.spec, augment=augment_fn, seed=config.seed)
    # Reading and augmenting in loader worker processes. The batches do not depend on it:
    # the order comes from the sampler here, each image's augmentation from (seed, epoch, index).
    small = len(train_ds) < POOL_MIN_FILES  # forking workers every epoch would cost more than they save
    workers = loader_worker_options(0 if config.freeze or small else resolve_workers(config))
    if dist is None:
        train_loader = make_train_loader(train_ds, config, generator, pin_memory=pin_memory, **workers)
    else:
        train_loader = shard_train_loader(train_ds, batch_size=config.batch_size, shuffle=config.shuffle, seed=config.seed, dist=dist, pin_memory=pin_memory, **workers)
    val_loader = eval_loader(config, data, "val", pin_memory=pin_memory)
    frozen = None
    if config.freeze:
        frozen = FrozenBackbone(model, device, batch_size=max(config.batch_size, 32), recompute_each_epoch=aug.enabled, log=log, precision=precision)
    optimizer = make_optimizer(model.fc if config.freeze else model, config)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch=len(train_loader))
    forward = None
    if dist is not None:
        from torch.nn.parallel import DistributedDataParallel

        # Built after the optimizer's parameters are chosen; DDP broadcasts rank 0's weights
        # now, so every rank starts from the same network whatever its own initialisation.
        forward = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return Trainer(model, optimizer, scheduler, generator, train_ds, train_loader, val_loader, device, frozen, dist, forward, precision)


def eval_loader(config: TrainConfig, data: RunData, split: str, *, pin_memory: bool = False) -> DataLoader:
    """A split's images in manifest order (unshuffled), for validation and testing."""
    return DataLoader(ImageDataset(data.splits[split], data.store, data.spec), batch_size=max(config.batch_size, 32), pin_memory=pin_memory)


# save_epoch(progress, validation or None, keep_this): writes the epoch's checkpoints.
SaveEpoch = Callable[[Progress, "EvalResult | None", bool], None]


def train_epochs(config: TrainConfig, trainer: Trainer, progress: Progress, started: float, log: Log, save_epoch: SaveEpoch) -> None:
    """The epochs after `progress.epoch`, up to max_epochs or until the validation patience
    runs out. Each epoch is saved before the next starts, so an interruption loses at most
    the epoch it happened in."""
    if progress.epoch and _patience_ran_out(config, progress):
        return  # a resumed run that had already stopped early
    screen = TrainingScreen(
        log, verbose=config.verbose, verbose_frequency=config.verbose_frequency, progress_bar=config.progress_bar,
        iters_per_epoch=len(trainer.train_loader), max_epochs=config.max_epochs, started=started,
    )
    if progress.epoch < config.max_epochs:
        screen.table_header()
    epoch = progress.epoch + 1
    try:
        for epoch in range(progress.epoch + 1, config.max_epochs + 1):
            with screen.epoch():
                train_loss, train_acc = trainer.run_epoch(epoch, started, screen.on_step)
            val = trainer.validate() if _validates(config, epoch) else None
            if val is not None and not math.isfinite(val.loss):
                raise TrainingDivergedError(f"training diverged: the validation loss is {val.loss} after epoch {epoch}; try a lower --learn-rate")
            improved = progress.record(_history_row(epoch, trainer, started, train_loss, train_acc, val))
            save_epoch(progress, val, config.keep == "last" or improved)
            screen.epoch_line(epoch, train_loss, train_acc, val, saved_as_best=improved and config.keep == "best")
            if _patience_ran_out(config, progress):
                log(f"stopping early: the validation loss has not gone down for {progress.stale_validations} validation(s) (--validation-patience {config.validation_patience}); best epoch {progress.best_epoch}")
                break
    except TrainingDivergedError as exc:
        kept = f"the best checkpoint from epoch {progress.best_epoch} is kept in {config.out / 'best.pt'}" if progress.best_epoch else "no epoch completed, so no checkpoint was written"
        raise TrainingDivergedError(f"{exc}; {kept}") from None
    except OutputWriteError as exc:
        # The previous last.pt is intact (atomic writes): the run can go on once there is room.
        raise OutputWriteError(f"{exc}; once it can be written, continue with gclf-train --resume {config.out}") from None
    except KeyboardInterrupt:
        log(f"interrupted during epoch {epoch} of {config.max_epochs}; continue after the last completed epoch with: gclf-train --resume {config.out}")
        raise


def _history_row(epoch: int, trainer: Trainer, started: float, train_loss: float, train_acc: float, val: EvalResult | None) -> dict:
    return {
        "epoch": epoch, "iteration": epoch * len(trainer.train_loader), "elapsed_s": round(time.monotonic() - started, 1),
        "train_loss": train_loss, "train_accuracy": train_acc,
        "val_loss": val.loss if val else math.nan, "val_accuracy": val.accuracy if val else math.nan,
        "learn_rate": trainer.optimizer.param_groups[0]["lr"],
    }


def _validates(config: TrainConfig, epoch: int) -> bool:
    return epoch % config.validation_frequency == 0 or epoch == config.max_epochs


def _patience_ran_out(config: TrainConfig, progress: Progress) -> bool:
    return config.validation_patience is not None and progress.stale_validations >= config.validation_patience
