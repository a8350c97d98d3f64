"""A whole training run: scan -> split -> train -> pick best -> evaluate on test -> write reports.

An interrupted run (Ctrl-C, kill, power loss) continues with `resume_training` (gclf-train
--resume RUN_DIR) from its last completed epoch: last.pt holds the optimizer, scheduler and
random-number states, and the split is re-read from manifest.json.

Run folder contents (all written atomically):
  manifest.json  the split: file lists, seed, fractions, skipped files, duplicates
  config.json    the options this run used
  history.csv    per-epoch loss and accuracy on train and validation
  best.pt        the network the run keeps (what gclf-export uses): the one with the lowest
                 validation loss, or the last epoch's with keep="last"
  last.pt        checkpoint after the last completed epoch, with the state --resume needs
  metrics.json   test-split accuracy, per-class precision/recall, confusion matrix
  training_progress.png, confusion_matrix.png, test_predictions.png, summary.md
                 figures and a Markdown summary for people (see gclf.train.reports);
                 without a test split only the progress plot and the summary
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
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

from gclf.runtime.errors import BadDataError, ImageDecodeError, OutputWriteError, TrainingDivergedError, UsageError
from gclf.runtime.files import check_writable_folder, remove_stale_temp_files, write_json_atomic, write_text_atomic
from gclf.runtime.decode import decode_image, read_image_bytes
from gclf.runtime.preprocess import PreprocessSpec
from gclf.train.checkpoint import RESUME_KEY, load_gclf_checkpoint, make_checkpoint, model_from_checkpoint, resume_state, save_checkpoint
from gclf.train.augment import augment, augment_config
from gclf.train.data import ImageDataset
from gclf.train.dataset import SPLIT_NAMES, ImageStore, Sample, ScanResult, scan_folders
from gclf.train.engine import EvalResult, StepInfo, evaluate, train_one_epoch
from gclf.train.frozen import FrozenBackbone, train_head_epoch
from gclf.train.metrics import classification_report
from gclf.train.progress import EpochProgressBar
from gclf.train.model import build_model, keeps_head, resolve_weights
from gclf.train.reports import write_run_reports
from gclf.train.split import SplitFractions, limit_per_class, manifest, split_samples

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
    lr_schedule: str = "none"  # "none" (constant, the study's), "cosine", "onecycle", "piecewise"
    lr_drop_factor: float = 0.1  # piecewise: multiply the learn rate by this...
    lr_drop_period: int = 10  # ...every this many epochs (MATLAB's LearnRateDropFactor/Period)
    l2: float = 1e-4  # L2 regularisation (weight decay), MATLAB trainingOptions' default
    shuffle: str = "every-epoch"  # "every-epoch", "once" (one fixed order), "never" (MATLAB's Shuffle)
    seed: int = 0
    split: SplitFractions = field(default_factory=SplitFractions)
    max_train_per_class: int | None = None  # use only this many training images per class (val/test unchanged)
    image_size: int = 224
    input_kind: str = "whole_image"  # "whole_image" or "faces": what the runtime must feed the model
    augment: str = "none"  # preset name in gclf.train.augment.PRESETS ("none": the study's)
    augment_options: dict = field(default_factory=dict)  # AugmentConfig fields overriding the preset
    freeze: bool = False  # train only the new head; the backbone's features are computed once and cached
    validation_frequency: int = 1  # validate every this many epochs (and after the last)
    validation_patience: int | None = None  # stop after this many validations without a lower loss
    keep: str = "best"  # which network best.pt holds: "best" (lowest validation loss) or "last"
    device: str = "auto"
    verbose: bool = True  # the study's table of iterations
    progress_bar: bool = False  # a progress bar per epoch on stderr (when it is a terminal)
    verbose_frequency: int = 50  # iterations between verbose rows, as MATLAB's VerboseFrequency
    memory_budget_gb: float = 4.0

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["data"] = [str(p) for p in self.data]
        d["out"] = str(self.out)
        return d

    @classmethod
    def from_dict(cls, d: dict, *, source: Path | str = "config.json") -> "TrainConfig":
        """Read back `to_dict()` (a run's config.json). A missing option is refused, except
        those added after config.json files were first written: their defaults are exactly
        what runs before them did, so an older run still resumes."""
        names = {f.name for f in dataclasses.fields(cls)}
        defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.name in OPTIONS_ADDED_LATER}
        d = {**{k: v for k, v in defaults.items() if k != "augment_options"}, "augment_options": {}, **d}
        missing, unknown = sorted(names - d.keys()), sorted(d.keys() - names)
        if missing or unknown:
            raise UsageError(f"{source} does not match this gclf's options (missing {missing}, unknown {unknown})")
        try:
            values = dict(d, data=tuple(Path(p) for p in d["data"]), out=Path(d["out"]), split=SplitFractions(**d["split"]))
            return cls(**values)
        except (TypeError, ValueError, UsageError) as exc:
            raise UsageError(f"{source} holds invalid options ({exc})") from None


# Options a config.json written by the first gclf release lacks; each default reproduces what
# that release did (no drop schedule, reshuffle every epoch, all data, no freezing, validation
# every epoch without early stopping, keep the best, the iteration table on).
OPTIONS_ADDED_LATER = frozenset({
    "lr_drop_factor", "lr_drop_period", "shuffle", "max_train_per_class", "augment_options", "freeze",
    "validation_frequency", "validation_patience", "keep", "progress_bar",
})


@dataclass
class TrainResult:
    run_dir: Path
    best_checkpoint: Path
    test_report: dict | None
    best_epoch: int  # the epoch whose network best.pt holds (the last one with keep="last")
    init_description: str
    history: list[dict]
    kept: str = "best"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA GPU is available")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return device


def prepare_run_dir(out: Path) -> None:
    """A run never overwrites another run's files: the folder must be new or empty."""
    try:
        used = out.exists() and (not out.is_dir() or any(out.iterdir()))
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot read folder ({exc.strerror or exc})") from None
    if used:
        unfinished = (out / "config.json").is_file() and not (out / "metrics.json").is_file()
        hint = f", or continue this interrupted run with --resume {out}" if unfinished else ""
        raise UsageError(f"--out {out} already exists and is not empty; choose a new run folder{hint}")
    check_writable_folder(out)  # a read-only place fails now, not after the scan


def _history_csv(history: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    return buf.getvalue()


def _spec(config: TrainConfig) -> PreprocessSpec:
    return PreprocessSpec(input_height=config.image_size, input_width=config.image_size)


def scan_and_split(config: TrainConfig, spec: PreprocessSpec, log: Log) -> tuple[ScanResult, dict, ImageStore]:
    store = ImageStore(spec, int(config.memory_budget_gb * (1 << 30)))
    # Absolute paths, so manifest.json still finds the images from another working folder
    # (gclf-export, --resume).
    roots = [Path(p).absolute() for p in config.data]
    scan = scan_folders(roots, store, on_skip=lambda p, r: log(f"skipped {p}: {r}"))
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
    if config.max_train_per_class is not None:
        # After the split, so val and test are the same images as a run on all the data.
        splits["train"] = limit_per_class(splits["train"], config.max_train_per_class, config.seed)
        log(f"training on at most {config.max_train_per_class} images per class (--max-train-per-class); validation and test unchanged")
    return scan, splits, store


@dataclass
class RunData:
    """A run's fixed inputs: from a new scan and split, or re-read from its manifest.json."""

    spec: PreprocessSpec
    class_names: list[str]
    splits: dict[str, list[Sample]]
    store: ImageStore
    roots: list[str]  # the DATA folders, resolved


def run_training(config: TrainConfig, log: Log = print) -> TrainResult:
    """A new run in `config.out` (new or empty). `resume_training` continues an interrupted one."""
    spec = _spec(config)
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    prepare_run_dir(config.out)
    weights = resolve_weights(config.weights)
    scan, splits, store = scan_and_split(config, spec, log)
    roots = [str(Path(p).resolve()) for p in config.data]
    write_json_atomic(config.out / "manifest.json", manifest(scan, splits, seed=config.seed, fractions=None if scan.presplit else config.split, roots=roots))
    write_json_atomic(config.out / "config.json", config.to_dict())
    log("split (seed %d): %s" % (config.seed, ", ".join(f"{k} {len(v)}" for k, v in splits.items())))
    model = build_model(scan.class_names, weights)
    if keeps_head(weights, scan.class_names):
        log(f"the checkpoint's head is kept: it was trained on the same classes ({', '.join(scan.class_names)})")
    if weights.init.kind == "random":
        log("warning: training from random initialisation (--weights none): expect lower accuracy than from ImageNet weights")
    data = RunData(spec, scan.class_names, splits, store, roots)
    return _train_and_report(config, data, model, weights.init.to_dict(), device, None, log)


# --- resuming an interrupted run -----------------------------------------------------------


def _read_run_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--resume: {path.parent} is not a gclf run folder (no {path.name})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"--resume: {path} cannot be read ({exc})") from None
    if not isinstance(value, dict):
        raise UsageError(f"--resume: {path} is not a JSON object")
    return value


def load_run_config(run_dir: Path) -> TrainConfig:
    """The options a run was started with (its config.json), with `out` set to `run_dir`
    (the folder may have been moved since)."""
    config = TrainConfig.from_dict(_read_run_json(run_dir / "config.json"), source=run_dir / "config.json")
    return dataclasses.replace(config, out=run_dir)


def read_run_data(run_dir: Path, spec: PreprocessSpec, memory_budget_gb: float, log: Log, *, only: tuple[str, ...] = SPLIT_NAMES) -> RunData:
    """The run's images, split exactly as its manifest.json says (a resumed run never
    re-splits: the folder may have changed). Every listed image must still be readable.
    `only` reads some splits (e.g. ("test",) to evaluate); the others stay empty."""
    path = run_dir / "manifest.json"
    doc = _read_run_json(path)
    try:
        class_names = [str(c) for c in doc["class_names"]]
        index = {name: i for i, name in enumerate(class_names)}
        presplit, roots = bool(doc["presplit"]), [str(r) for r in doc["data"]]
        # Manifest order is the order the new run trained in: the shuffling depends on it.
        entries = [(split, Path(file), index[label]) for split in SPLIT_NAMES if split in only for file, label in doc["splits"][split]]
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"--resume: {path} is not a gclf manifest ({type(exc).__name__}: {exc})") from None
    store = ImageStore(spec, int(memory_budget_gb * (1 << 30)))
    splits: dict[str, list[Sample]] = {name: [] for name in SPLIT_NAMES}
    for split, file, label in entries:
        try:
            raw = read_image_bytes(file)
            rgb = decode_image(raw, name=str(file))
        except ImageDecodeError as exc:
            raise BadDataError(f"{exc}; the run's manifest.json lists it, and resuming needs every image the run was split with") from None
        store.add(file, rgb)
        splits[split].append(Sample(file, label, hashlib.sha256(raw).hexdigest(), split if presplit else None))
    log(f"read {len(entries)} images in {len(class_names)} classes, split as in manifest.json: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()))
    return RunData(spec, class_names, splits, store, roots)


def resume_training(config: TrainConfig, log: Log = print) -> TrainResult:
    """Continue the run in `config.out` after its last completed epoch (its last.pt).

    `config` is the run's own (`load_run_config`). last.pt holds the optimizer, scheduler
    and random-number states, so on the same device the final weights equal those of an
    uninterrupted run. A run that finished its epochs only redoes the final evaluation.
    """
    run_dir = config.out
    spec = _spec(config)
    device = resolve_device(config.device)
    check_writable_folder(run_dir)
    for stale in remove_stale_temp_files(run_dir):
        log(f"removed {stale.name}, a partial file of the interrupted run")
    data = read_run_data(run_dir, spec, config.memory_budget_gb, log)
    last = run_dir / "last.pt"
    if last.exists():
        checkpoint = load_gclf_checkpoint(last)
        state = resume_state(checkpoint, last)
        if checkpoint["class_names"] != data.class_names:
            raise UsageError(f"--resume: {last} has classes {checkpoint['class_names']}, manifest.json {data.class_names}")
        try:
            model, init = model_from_checkpoint(checkpoint), dict(checkpoint["init"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise UsageError(f"--resume: {last} does not hold a usable model ({type(exc).__name__}: {str(exc)[:200]})") from None
        log(f"resuming {run_dir} after epoch {state['epoch']} of {config.max_epochs}")
    else:
        # Interrupted in its first epoch: start again exactly as the new run did (same seed
        # before the same initialisation).
        torch.manual_seed(config.seed)
        weights = resolve_weights(config.weights)
        model, init, state = build_model(data.class_names, weights), weights.init.to_dict(), None
        log(f"resuming {run_dir}: no epoch was completed, starting at epoch 1")
    return _train_and_report(config, data, model, init, device, state, log)


# --- the training loop, shared by new and resumed runs -------------------------------------


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
    """What an epoch changes. `resume_state` captures all of it as tensors and plain data
    (loadable with `weights_only=True`), so a resumed run continues bit for bit."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    generator: torch.Generator  # the training loader's shuffling
    train_ds: ImageDataset
    train_loader: DataLoader
    val_loader: DataLoader
    device: torch.device
    frozen: FrozenBackbone | None  # --freeze: the head trains on the backbone's features

    def resume_state(self, progress: Progress) -> dict:
        return {
            "epoch": progress.epoch,
            "best_val_loss": progress.best_val_loss,
            "best_epoch": progress.best_epoch,
            "stale_validations": progress.stale_validations,
            "history": [dict(row) for row in progress.history],
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            # Saved after validation, so the next epoch starts from exactly this state
            # (dropout draws from it; each loader iteration also draws a seed).
            "torch_rng_state": torch.get_rng_state(),
            "loader_generator_state": self.generator.get_state(),
            "cuda_rng_states": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
        }

    def restore(self, state: dict) -> Progress:
        if (self.scheduler is None) != (state["scheduler"] is None):
            raise UsageError("--resume: last.pt's learn-rate schedule does not match config.json")
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None:
                self.scheduler.load_state_dict(state["scheduler"])
            self.generator.set_state(state["loader_generator_state"])
            torch.set_rng_state(state["torch_rng_state"])
            if self.device.type == "cuda" and len(state["cuda_rng_states"]) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(state["cuda_rng_states"])
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise UsageError(f"--resume: last.pt's training state does not fit this run ({str(exc)[:200]})") from None
        return Progress(state["epoch"], state["best_val_loss"], state["best_epoch"], [dict(row) for row in state["history"]], int(state.get("stale_validations", 0)))

    def run_epoch(self, epoch: int, first_iteration: int, started: float, on_step: Callable[[StepInfo], None]) -> tuple[float, float]:
        self.train_ds.epoch = epoch
        if self.frozen is not None:
            return train_head_epoch(self.frozen, self.train_loader, self.optimizer, epoch=epoch, first_iteration=first_iteration, started=started, scheduler=self.scheduler, on_step=on_step)
        return train_one_epoch(self.model, self.train_loader, self.optimizer, self.device, epoch=epoch, first_iteration=first_iteration, started=started, scheduler=self.scheduler, on_step=on_step)

    def validate(self) -> EvalResult:
        if self.frozen is not None:
            return self.frozen.evaluate_head(self.val_loader)
        return evaluate(self.model, self.val_loader, self.device)


def _make_trainer(config: TrainConfig, data: RunData, model: torch.nn.Module, device: torch.device, log: Log) -> Trainer:
    model.to(device)
    generator = torch.Generator().manual_seed(config.seed)
    aug = augment_config(config.augment, config.augment_options)
    augment_fn = (lambda rgb, rng: augment(rgb, rng, aug)) if aug.enabled else None
    train_ds = ImageDataset(data.splits["train"], data.store, data.spec, augment=augment_fn, seed=config.seed)
    train_loader = make_train_loader(train_ds, config, generator)
    val_loader = _eval_loader(config, data, "val")
    frozen = None
    if config.freeze:
        frozen = FrozenBackbone(model, device, batch_size=max(config.batch_size, 32), recompute_each_epoch=aug.enabled, log=log)
    optimizer = make_optimizer(model.fc if config.freeze else model, config)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch=len(train_loader))
    return Trainer(model, optimizer, scheduler, generator, train_ds, train_loader, val_loader, device, frozen)


def make_train_loader(train_ds: ImageDataset, config: TrainConfig, generator: torch.Generator) -> DataLoader:
    """The training batches, in the order --shuffle asks for."""
    if config.shuffle == "every-epoch":
        return DataLoader(train_ds, batch_size=config.batch_size, shuffle=True, generator=generator, drop_last=False)
    if config.shuffle == "once":
        # One order drawn from the seed, the same every epoch (MATLAB's Shuffle "once").
        order = torch.randperm(len(train_ds), generator=torch.Generator().manual_seed(config.seed)).tolist()
        return DataLoader(train_ds, batch_size=config.batch_size, sampler=order, drop_last=False)
    if config.shuffle == "never":
        return DataLoader(train_ds, batch_size=config.batch_size, shuffle=False, drop_last=False)
    raise UsageError(f"--shuffle must be every-epoch, once or never, got {config.shuffle!r}")


def _eval_loader(config: TrainConfig, data: RunData, split: str) -> DataLoader:
    return DataLoader(ImageDataset(data.splits[split], data.store, data.spec), batch_size=max(config.batch_size, 32))


def _train_and_report(config: TrainConfig, data: RunData, model: torch.nn.Module, init: dict, device: torch.device, state: dict | None, log: Log) -> TrainResult:
    log(f"model: GoogLeNet, {len(data.class_names)}-class head; init: {init['description']}; device: {device}")
    trainer = _make_trainer(config, data, model, device, log)
    progress = Progress()
    if state is not None:
        progress = trainer.restore(state)
        # history.csv is written after last.pt: a kill between them leaves it one epoch behind.
        write_text_atomic(config.out / "history.csv", _history_csv(progress.history))
    started = time.monotonic() - (progress.history[-1]["elapsed_s"] if progress.history else 0.0)
    ckpt_common = dict(class_names=data.class_names, spec=data.spec.to_dict(), init=init, transform_input=bool(init["transform_input"]))
    _train_epochs(config, trainer, progress, ckpt_common, started, log)
    return _evaluate_and_report(config, data, progress, init, device, started, log)


def _train_epochs(config: TrainConfig, trainer: Trainer, progress: Progress, ckpt_common: dict, started: float, log: Log) -> None:
    iters_per_epoch = len(trainer.train_loader)
    if config.verbose and progress.epoch < config.max_epochs:
        log(f"{'epoch':>5} {'iteration':>9} {'elapsed':>8} {'batch acc':>9} {'batch loss':>10} {'val acc':>8} {'val loss':>8} {'learn rate':>10}")

    bar = EpochProgressBar(iters_per_epoch, config.max_epochs) if config.progress_bar else None

    def on_step(s: StepInfo) -> None:
        if config.verbose and (s.iteration == 1 or s.iteration % config.verbose_frequency == 0):
            log(f"{s.epoch:>5} {s.iteration:>9} {_hms(s.elapsed_s):>8} {s.batch_accuracy * 100:8.2f}% {s.batch_loss:10.4f} {'':>8} {'':>8} {s.learn_rate:10.2e}")
        if bar is not None:
            bar.step(s)

    epoch = progress.epoch
    try:
        for epoch in range(progress.epoch + 1, config.max_epochs + 1):
            if progress.epoch > 0 and _patience_ran_out(config, progress):
                break  # a resumed run that had already stopped early
            try:
                train_loss, train_acc = trainer.run_epoch(epoch, (epoch - 1) * iters_per_epoch + 1, started, on_step)
            finally:
                if bar is not None:
                    bar.close()
            val = trainer.validate() if _validates(config, epoch) else None
            if val is not None and not math.isfinite(val.loss):
                raise TrainingDivergedError(f"training diverged: the validation loss is {val.loss} after epoch {epoch}; try a lower --learn-rate")
            row = {
                "epoch": epoch, "iteration": epoch * iters_per_epoch, "elapsed_s": round(time.monotonic() - started, 1),
                "train_loss": train_loss, "train_accuracy": train_acc,
                "val_loss": val.loss if val else math.nan, "val_accuracy": val.accuracy if val else math.nan,
                "learn_rate": trainer.optimizer.param_groups[0]["lr"],
            }
            improved = progress.record(row)
            keep_this = improved if config.keep == "best" else True
            _save_epoch(config, trainer, progress, ckpt_common, val, keep_this)
            if val is None:
                val_text = "not validated this epoch"
            else:
                saved = "  (best so far, saved)" if improved and config.keep == "best" else ""
                val_text = f"val loss {val.loss:.4f} acc {val.accuracy * 100:.1f}%{saved}"
            log(f"epoch {epoch}/{config.max_epochs}: train loss {train_loss:.4f} acc {train_acc * 100:.1f}% | {val_text} | {_hms(time.monotonic() - started)}")
            if _patience_ran_out(config, progress):
                log(f"stopping early: the validation loss has not gone down for {progress.stale_validations} validation(s) (--validation-patience {config.validation_patience}); best epoch {progress.best_epoch}")
                break
    except TrainingDivergedError as exc:
        best_epoch = progress.best_epoch
        kept = f"the best checkpoint from epoch {best_epoch} is kept in {config.out / 'best.pt'}" if best_epoch else "no epoch completed, so no checkpoint was written"
        raise TrainingDivergedError(f"{exc}; {kept}") from None
    except OutputWriteError as exc:
        # The previous last.pt is intact (atomic writes): the run can go on once there is room.
        raise OutputWriteError(f"{exc}; once it can be written, continue with gclf-train --resume {config.out}") from None
    except KeyboardInterrupt:
        log(f"interrupted during epoch {epoch} of {config.max_epochs}; continue after the last completed epoch with: gclf-train --resume {config.out}")
        raise


def _validates(config: TrainConfig, epoch: int) -> bool:
    return epoch % config.validation_frequency == 0 or epoch == config.max_epochs


def _patience_ran_out(config: TrainConfig, progress: Progress) -> bool:
    return config.validation_patience is not None and progress.stale_validations >= config.validation_patience


def _save_epoch(config: TrainConfig, trainer: Trainer, progress: Progress, ckpt_common: dict, val: EvalResult | None, keep_this: bool) -> None:
    extra = {"epoch": progress.epoch, "val_loss": val.loss if val else None, "val_accuracy": val.accuracy if val else None, "train_config": config.to_dict()}
    checkpoint = make_checkpoint(trainer.model, **ckpt_common, extra=extra)
    # best.pt before last.pt: last.pt is what --resume continues from, so a kill between the
    # two redoes this epoch, which writes the same best.pt again.
    if keep_this:
        save_checkpoint(config.out / "best.pt", checkpoint)
    save_checkpoint(config.out / "last.pt", {**checkpoint, RESUME_KEY: trainer.resume_state(progress)})
    write_text_atomic(config.out / "history.csv", _history_csv(progress.history))


def _evaluate_and_report(config: TrainConfig, data: RunData, progress: Progress, init: dict, device: torch.device, started: float, log: Log) -> TrainResult:
    """Test the best checkpoint and write metrics.json and the reports."""
    best = load_gclf_checkpoint(config.out / "best.pt")
    best_model = model_from_checkpoint(best).to(device)
    test: EvalResult | None = None
    report = None
    if data.splits["test"]:
        test = evaluate(best_model, _eval_loader(config, data, "test"), device)  # unshuffled: rows follow splits["test"]
        report = evaluation_report(test, data.class_names)
    kept_epoch = progress.best_epoch if config.keep == "best" else progress.epoch
    summary = {
        "test": report,
        "best_epoch": progress.best_epoch,
        "best_val_loss": progress.best_val_loss,
        "keep": config.keep,
        "kept_epoch": kept_epoch,  # the epoch whose network best.pt holds
        "epochs_run": len(progress.history),
        "stopped_early": len(progress.history) < config.max_epochs,
        "init": init,
        "split_counts": {k: len(v) for k, v in data.splits.items()},
        "wall_time_s": round(time.monotonic() - started, 1),
        "device": str(device),
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }
    write_json_atomic(config.out / "metrics.json", summary)
    try:
        written = write_run_reports(
            config.out, data=data.roots, class_names=data.class_names, splits=data.splits, spec=data.spec, init=init["description"],
            options=config.to_dict(), history=progress.history, best_epoch=kept_epoch, test=test, test_report=report,
            wall_time_s=summary["wall_time_s"],
        )
    except Exception:
        # Not swallowed: the error propagates. The checkpoints and metrics.json are complete
        # by now and nothing here removes them, so the trained model is kept.
        log(f"error: writing the run reports failed; the trained model ({config.out / 'best.pt'}) and metrics.json are kept")
        raise
    log("reports: " + ", ".join(p.name for p in written))
    return TrainResult(config.out, config.out / "best.pt", report, kept_epoch, init["description"], progress.history, config.keep)


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Over all of `model`'s parameters (pass only the head to train only the head)."""
    params, lr, l2 = model.parameters(), config.learn_rate, config.l2
    if config.optimizer == "sgdm":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=l2)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=l2)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=l2)
    raise UsageError(f"--optimizer must be sgdm, adam or adamw, got {config.optimizer!r}")


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Stepped once per iteration; --learn-rate is the peak (onecycle) or starting (cosine, piecewise) rate."""
    steps = max(config.max_epochs * steps_per_epoch, 1)
    if config.lr_schedule == "none":
        return None
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    if config.lr_schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.learn_rate, total_steps=steps)
    if config.lr_schedule == "piecewise":
        # MATLAB's piecewise: drop by a factor every lr_drop_period epochs.
        period = config.lr_drop_period * max(steps_per_epoch, 1)
        factor = config.lr_drop_factor
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor ** (step // period))
    raise UsageError(f"--lr-schedule must be none, cosine, onecycle or piecewise, got {config.lr_schedule!r}")


def evaluation_report(result: EvalResult, class_names: list[str]) -> dict:
    report = classification_report(result.labels, result.probabilities.argmax(1), class_names)
    report["loss"] = result.loss
    report["mean_confidence"] = float(result.probabilities.max(1).mean()) if len(result.labels) else math.nan
    return report


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
