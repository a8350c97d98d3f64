"""A whole training run: scan -> split -> train -> pick best -> evaluate on test -> write reports.

Run folder contents (all written atomically):
  manifest.json  the split: file lists, seed, fractions, skipped files, duplicates
  config.json    the options this run used
  history.csv    per-epoch loss and accuracy on train and validation
  best.pt        checkpoint with the lowest validation loss (what gclf-export uses)
  last.pt        checkpoint after the last completed epoch
  metrics.json   test-split accuracy, per-class precision/recall, confusion matrix
  training_progress.png, confusion_matrix.png, test_predictions.png, summary.md
                 figures and a Markdown summary for people (see gclf.train.reports);
                 without a test split only the progress plot and the summary
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from gclf.runtime.errors import TrainingDivergedError, UsageError
from gclf.runtime.files import write_json_atomic, write_text_atomic
from gclf.runtime.preprocess import PreprocessSpec
from gclf.train.checkpoint import make_checkpoint, model_from_checkpoint, save_checkpoint, load_gclf_checkpoint
from gclf.train.data import ImageDataset
from gclf.train.dataset import ImageStore, ScanResult, scan_folders
from gclf.train.engine import EvalResult, StepInfo, evaluate, train_one_epoch
from gclf.train.metrics import classification_report
from gclf.train.model import build_model, resolve_weights
from gclf.train.reports import write_run_reports
from gclf.train.split import SplitFractions, manifest, split_samples

Log = Callable[[str], None]


@dataclass(frozen=True)
class TrainConfig:
    """Options of one run. Defaults are the study's: 6 epochs, mini-batch 4, learn rate 0.001, SGD with momentum."""

    data: tuple[Path, ...]
    out: Path
    weights: str = "imagenet"
    max_epochs: int = 6
    batch_size: int = 4
    learn_rate: float = 1e-3
    momentum: float = 0.9
    optimizer: str = "sgdm"  # "sgdm" (the study's), "adam", "adamw"
    lr_schedule: str = "none"  # "none" (constant, the study's), "cosine", "onecycle" (per iteration)
    l2: float = 1e-4  # L2 regularisation (weight decay), MATLAB trainingOptions' default
    seed: int = 0
    split: SplitFractions = field(default_factory=SplitFractions)
    image_size: int = 224
    input_kind: str = "whole_image"  # "whole_image" or "faces": what the runtime must feed the model
    device: str = "auto"
    verbose: bool = True
    verbose_frequency: int = 50  # iterations between verbose rows, as MATLAB's VerboseFrequency
    memory_budget_gb: float = 4.0

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["data"] = [str(p) for p in self.data]
        d["out"] = str(self.out)
        return d


@dataclass
class TrainResult:
    run_dir: Path
    best_checkpoint: Path
    test_report: dict | None
    best_epoch: int
    init_description: str
    history: list[dict]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA GPU is available")
    return torch.device(name)


def prepare_run_dir(out: Path) -> None:
    """A run never overwrites another run's files: the folder must be new or empty."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out} already exists and is not empty; choose a new run folder")
    out.mkdir(parents=True, exist_ok=True)


def _history_csv(history: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    return buf.getvalue()


def scan_and_split(config: TrainConfig, spec: PreprocessSpec, log: Log) -> tuple[ScanResult, dict, ImageStore]:
    store = ImageStore(spec, int(config.memory_budget_gb * (1 << 30)))
    scan = scan_folders(list(config.data), store, on_skip=lambda p, r: log(f"skipped {p}: {r}"))
    counts = scan.class_counts()
    log(f"found {len(scan.samples)} usable images in {len(scan.class_names)} classes: " + ", ".join(f"{c} {n}" for c, n in counts.items()))
    if scan.skipped:
        log(f"skipped {len(scan.skipped)} unreadable file(s) (listed above and in manifest.json)")
    if scan.duplicate_groups:
        n_files = sum(len(g) for g in scan.duplicate_groups)
        log(f"{len(scan.duplicate_groups)} group(s) of identical files ({n_files} files): each group is kept inside one split")
    for group in scan.conflicts:
        log(f"warning: the same image is filed under different classes, excluded: {', '.join(group)}")
    splits = split_samples(scan, config.split, config.seed)
    return scan, splits, store


def run_training(config: TrainConfig, log: Log = print) -> TrainResult:
    spec = PreprocessSpec(input_height=config.image_size, input_width=config.image_size)
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    prepare_run_dir(config.out)
    weights = resolve_weights(config.weights)
    init = weights.init
    scan, splits, store = scan_and_split(config, spec, log)
    roots = [str(Path(p).resolve()) for p in config.data]
    write_json_atomic(config.out / "manifest.json", manifest(scan, splits, seed=config.seed, fractions=None if scan.presplit else config.split, roots=roots))
    write_json_atomic(config.out / "config.json", config.to_dict())
    log("split (seed %d): %s" % (config.seed, ", ".join(f"{k} {len(v)}" for k, v in splits.items())))

    model = build_model(len(scan.class_names), weights)
    if init.kind == "random":
        log("warning: training from random initialisation (--weights none): expect lower accuracy than from ImageNet weights")
    log(f"model: GoogLeNet, {len(scan.class_names)}-class head; init: {init.describe()}; device: {device}")
    model.to(device)

    generator = torch.Generator().manual_seed(config.seed)
    train_ds = ImageDataset(splits["train"], store, spec, seed=config.seed)
    train_loader = DataLoader(train_ds, batch_size=config.batch_size, shuffle=True, generator=generator, drop_last=False)
    eval_loader = lambda name: DataLoader(ImageDataset(splits[name], store, spec), batch_size=max(config.batch_size, 32))
    val_loader = eval_loader("val")
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config, steps=config.max_epochs * len(train_loader))

    ckpt_common = dict(class_names=scan.class_names, spec=spec.to_dict(), init=init.to_dict(), transform_input=init.transform_input)
    history: list[dict] = []
    best_loss, best_epoch = math.inf, 0
    started = time.monotonic()
    iteration = 1
    iters_per_epoch = len(train_loader)
    if config.verbose:
        log(f"{'epoch':>5} {'iteration':>9} {'elapsed':>8} {'batch acc':>9} {'batch loss':>10} {'val acc':>8} {'val loss':>8} {'learn rate':>10}")

    def on_step(s: StepInfo) -> None:
        if config.verbose and (s.iteration == 1 or s.iteration % config.verbose_frequency == 0):
            log(f"{s.epoch:>5} {s.iteration:>9} {_hms(s.elapsed_s):>8} {s.batch_accuracy * 100:8.2f}% {s.batch_loss:10.4f} {'':>8} {'':>8} {s.learn_rate:10.2e}")

    try:
        for epoch in range(1, config.max_epochs + 1):
            train_ds.epoch = epoch
            train_loss, train_acc = train_one_epoch(model, train_loader, optimizer, device, epoch=epoch, first_iteration=iteration, started=started, scheduler=scheduler, on_step=on_step)
            iteration += iters_per_epoch
            val = evaluate(model, val_loader, device)
            if not math.isfinite(val.loss):
                raise TrainingDivergedError(f"training diverged: the validation loss is {val.loss} after epoch {epoch}; try a lower --learn-rate")
            row = {"epoch": epoch, "iteration": iteration - 1, "elapsed_s": round(time.monotonic() - started, 1), "train_loss": train_loss, "train_accuracy": train_acc, "val_loss": val.loss, "val_accuracy": val.accuracy, "learn_rate": optimizer.param_groups[0]["lr"]}
            history.append(row)
            extra = {"epoch": epoch, "val_loss": val.loss, "val_accuracy": val.accuracy, "train_config": config.to_dict()}
            checkpoint = make_checkpoint(model, **ckpt_common, extra=extra)
            save_checkpoint(config.out / "last.pt", checkpoint)
            improved = val.loss < best_loss
            if improved:
                best_loss, best_epoch = val.loss, epoch
                save_checkpoint(config.out / "best.pt", checkpoint)
            write_text_atomic(config.out / "history.csv", _history_csv(history))
            log(
                f"epoch {epoch}/{config.max_epochs}: train loss {train_loss:.4f} acc {train_acc * 100:.1f}% | "
                f"val loss {val.loss:.4f} acc {val.accuracy * 100:.1f}%{'  (best so far, saved)' if improved else ''} | {_hms(time.monotonic() - started)}"
            )
    except TrainingDivergedError as exc:
        kept = f"the best checkpoint from epoch {best_epoch} is kept in {config.out / 'best.pt'}" if best_epoch else "no epoch completed, so no checkpoint was written"
        raise TrainingDivergedError(f"{exc}; {kept}") from None

    best = load_gclf_checkpoint(config.out / "best.pt")
    best_model = model_from_checkpoint(best).to(device)
    test: EvalResult | None = None
    report = None
    if splits["test"]:
        test = evaluate(best_model, eval_loader("test"), device)  # unshuffled: rows follow splits["test"]
        report = evaluation_report(test, scan.class_names)
    summary = {
        "test": report,
        "best_epoch": best_epoch,
        "best_val_loss": best_loss,
        "epochs_run": len(history),
        "init": init.to_dict(),
        "split_counts": {k: len(v) for k, v in splits.items()},
        "wall_time_s": round(time.monotonic() - started, 1),
        "device": str(device),
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }
    write_json_atomic(config.out / "metrics.json", summary)
    try:
        written = write_run_reports(
            config.out, data=roots, class_names=scan.class_names, splits=splits, spec=spec, init=init.describe(),
            options=config.to_dict(), history=history, best_epoch=best_epoch, test=test, test_report=report,
            wall_time_s=summary["wall_time_s"],
        )
    except Exception:
        # Not swallowed: the error propagates. The checkpoints and metrics.json are complete
        # by now and nothing here removes them, so the trained model is kept.
        log(f"error: writing the run reports failed; the trained model ({config.out / 'best.pt'}) and metrics.json are kept")
        raise
    log("reports: " + ", ".join(p.name for p in written))
    return TrainResult(config.out, config.out / "best.pt", report, best_epoch, init.describe(), history)


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params, lr, l2 = model.parameters(), config.learn_rate, config.l2
    if config.optimizer == "sgdm":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=l2)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=l2)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=l2)
    raise UsageError(f"--optimizer must be sgdm, adam or adamw, got {config.optimizer!r}")


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Stepped once per iteration; --learn-rate is the peak (onecycle) or starting (cosine) rate."""
    if config.lr_schedule == "none":
        return None
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    if config.lr_schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.learn_rate, total_steps=max(steps, 1))
    raise UsageError(f"--lr-schedule must be none, cosine or onecycle, got {config.lr_schedule!r}")


def evaluation_report(result: EvalResult, class_names: list[str]) -> dict:
    report = classification_report(result.labels, result.probabilities.argmax(1), class_names)
    report["loss"] = result.loss
    report["mean_confidence"] = float(result.probabilities.max(1).mean()) if len(result.labels) else math.nan
    return report


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
