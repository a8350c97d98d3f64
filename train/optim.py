"""What --optimizer, --lr-schedule and --shuffle build: one factory per name.

The dicts' keys are the options' choices (gclf.train.options reads them), so a new optimizer
or schedule is one entry here. torch is imported inside the factories: the commands read the
names at start-up, and `gclf-train --help` must not wait for torch (nor fail without it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from gclf.runtime.errors import UsageError

if TYPE_CHECKING:
    import torch
    from torch.utils.data import DataLoader, Dataset

    from gclf.train.config import TrainConfig


def _sgdm(params, config: "TrainConfig") -> "torch.optim.Optimizer":
    import torch

    return torch.optim.SGD(params, lr=config.learn_rate, momentum=config.momentum, weight_decay=config.l2)


def _adam(params, config: "TrainConfig") -> "torch.optim.Optimizer":
    import torch

    return torch.optim.Adam(params, lr=config.learn_rate, weight_decay=config.l2)


def _adamw(params, config: "TrainConfig") -> "torch.optim.Optimizer":
    import torch

    return torch.optim.AdamW(params, lr=config.learn_rate, weight_decay=config.l2)


OPTIMIZERS: dict[str, Callable] = {"sgdm": _sgdm, "adam": _adam, "adamw": _adamw}  # sgdm: the study's


def _cosine(optimizer, config: "TrainConfig", steps: int, steps_per_epoch: int):
    import torch

    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)


def _onecycle(optimizer, config: "TrainConfig", steps: int, steps_per_epoch: int):
    import torch

    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.learn_rate, total_steps=steps)


def _piecewise(optimizer, config: "TrainConfig", steps: int, steps_per_epoch: int):
    import torch

    # MATLAB's piecewise: drop by a factor every lr_drop_period epochs.
    period = config.lr_drop_period * max(steps_per_epoch, 1)
    factor = config.lr_drop_factor
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor ** (step // period))


# "none": a constant learn rate (the study's), no scheduler object at all.
LR_SCHEDULES: dict[str, Callable | None] = {"none": None, "cosine": _cosine, "onecycle": _onecycle, "piecewise": _piecewise}


def _every_epoch(dataset: "Dataset", config: "TrainConfig", generator: "torch.Generator", **loader_options) -> "DataLoader":
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=config.batch_size, shuffle=True, generator=generator, drop_last=False, **loader_options)


def _once(dataset: "Dataset", config: "TrainConfig", generator: "torch.Generator", **loader_options) -> "DataLoader":
    import torch
    from torch.utils.data import DataLoader

    # One order drawn from the seed, the same every epoch (MATLAB's Shuffle "once").
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(config.seed)).tolist()
    return DataLoader(dataset, batch_size=config.batch_size, sampler=order, drop_last=False, **loader_options)


def _never(dataset: "Dataset", config: "TrainConfig", generator: "torch.Generator", **loader_options) -> "DataLoader":
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=config.batch_size, shuffle=False, drop_last=False, **loader_options)


SHUFFLES: dict[str, Callable] = {"every-epoch": _every_epoch, "once": _once, "never": _never}


def _lookup(table: dict, name: str, what: str):
    if name not in table:
        raise UsageError(f"{what} must be one of {', '.join(table)}, got {name!r}")
    return table[name]


def make_optimizer(model: "torch.nn.Module", config: "TrainConfig") -> "torch.optim.Optimizer":
    """Over all of `model`'s parameters (pass only the head to train only the head)."""
    return _lookup(OPTIMIZERS, config.optimizer, "--optimizer")(model.parameters(), config)


def make_scheduler(optimizer: "torch.optim.Optimizer", config: "TrainConfig", steps_per_epoch: int):
    """Stepped once per iteration; --learn-rate is the peak (onecycle) or starting (cosine,
    piecewise) rate. None for a constant learn rate."""
    factory = _lookup(LR_SCHEDULES, config.lr_schedule, "--lr-schedule")
    if factory is None:
        return None
    return factory(optimizer, config, max(config.max_epochs * steps_per_epoch, 1), steps_per_epoch)


def make_train_loader(train_ds: "Dataset", config: "TrainConfig", generator: "torch.Generator", *, pin_memory: bool = False, **loader_options) -> "DataLoader":
    """The training batches, in the order --shuffle asks for. pin_memory (for a CUDA run)
    lets the copies to the GPU run asynchronously; CPU runs leave it off. `loader_options`:
    further DataLoader arguments (its worker processes)."""
    return _lookup(SHUFFLES, config.shuffle, "--shuffle")(train_ds, config, generator, pin_memory=pin_memory, **loader_options)
