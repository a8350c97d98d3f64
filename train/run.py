"""A whole training run: scan -> split -> train -> pick best -> evaluate on test -> write reports.

An interrupted run (Ctrl-C, kill, power loss) continues with `resume_training` (gclf-train
--resume RUN_DIR) from its last completed epoch. The pieces each have their module:
  gclf.train.config      TrainConfig: the options, their defaults, old config.json files
  gclf.train.run_folder  what a run folder holds; new scan and split, or re-read from it
  gclf.train.loop        the epochs: train one, validate, record, save, until done
  gclf.train.epoch       one epoch's steps (EpochContext, run_epoch) and evaluate
  gclf.train.resume      the training state in last.pt, captured and restored
  gclf.train.optim       the optimizer, learn-rate schedule and shuffling factories
  gclf.train.distributed several processes under torchrun (rank 0 writes the run folder)
This module puts them in order.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, TypeVar

import torch

from gclf.runtime.errors import UsageError
from gclf.runtime.atomic import check_writable_folder, remove_stale_temp_files, write_json_atomic
from gclf.runtime.log import Log
from gclf.train.checkpoint import FACE_CROP_KEY, load_gclf_checkpoint, make_checkpoint
from gclf.train.config import TrainConfig
from gclf.train.distributed import Distributed
from gclf.train.epoch import EvalResult, evaluate
from gclf.train.loop import Progress, eval_loader, make_trainer, train_epochs
from gclf.train.metrics import classification_report
from gclf.train.model import build_model, keeps_head, model_from_checkpoint, resolve_weights
from gclf.train.precision import check_precision
from gclf.train.reports import write_run_reports
from gclf.train.resume import capture_state, restore_state, resume_point
from gclf.train.run_folder import RunData, face_cropper_of, prepare_run_dir, read_run_data, save_epoch, scan_and_split, write_history, write_new_run

T = TypeVar("T")


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


def _quiet(message: str) -> None:
    """The log of ranks other than 0: rank 0 alone prints."""


def _distributed(config: TrainConfig, log: Log) -> tuple[Distributed | None, TrainConfig, Log]:
    """This process's place under torchrun (None outside it), the config as this rank runs
    it, and its log (rank 0's own, silence elsewhere)."""
    dist = Distributed.from_env()
    if dist is None:
        return None, config, log
    if config.freeze:
        # FrozenBackbone trains the head on features cached in this process: under DDP each
        # rank would train its own head on all images. Refused rather than done wrong.
        raise UsageError("--freeze is not supported under torchrun (several processes); run it as a plain gclf-train: with the backbone frozen an epoch costs well under a second anyway")
    if not dist.is_main:
        config = dataclasses.replace(config, verbose=False, progress_bar=False)
        log = _quiet
    return dist, config, log


def _on_this_rank(config: TrainConfig, dist: Distributed | None, body: Callable[[torch.device], TrainResult | None]) -> TrainResult | None:
    """`body(device)`; under torchrun inside the process group, which is left whatever happens."""
    device = resolve_device(config.device)
    if dist is not None:
        device = dist.device(device)
    check_precision(config.precision, device)  # fp16 on a CPU: refused before anything is written
    if dist is None:
        return body(device)
    dist.start(device)
    try:
        return body(device)
    finally:
        dist.stop()


def run_training(config: TrainConfig, log: Log = print) -> TrainResult | None:
    """A new run in `config.out` (new or empty). `resume_training` continues an interrupted one.

    Under torchrun every rank calls this; rank 0 writes the run folder and returns the
    result, the other ranks return None.
    """
    dist, config, log = _distributed(config, log)
    config = dataclasses.replace(config, world_size=dist.world_size if dist else 1)
    torch.manual_seed(config.seed)
    return _on_this_rank(config, dist, lambda device: _new_run(config, device, dist, log))


def _rank0_first(dist: Distributed | None, read: Callable[[], T]) -> T:
    """`read()` (a scan), under torchrun on rank 0 first: it fills the image cache while the
    other ranks wait at a barrier, then they read the same photos from the cache instead of
    decoding them again in parallel (the cache is safe to write at once, but that is work
    done N times). Rank 0 reaches the barrier even when its scan fails, so the others then
    fail with the same error instead of waiting for it."""
    if dist is None:
        return read()
    if dist.is_main:
        try:
            return read()
        finally:
            dist.barrier()
    dist.barrier()
    return read()


def _new_run(config: TrainConfig, device: torch.device, dist: Distributed | None, log: Log) -> TrainResult | None:
    main = dist is None or dist.is_main
    face_crop = face_cropper_of(config)  # bad face-crop options fail before the run folder is made
    if main:
        prepare_run_dir(config.out)
    weights = resolve_weights(config.weights)  # before the scan: a bad --weights fails in seconds
    # Every rank scans and splits: the scan is deterministic, so all hold the same split.
    data, manifest = _rank0_first(dist, lambda: scan_and_split(config, log, face_crop))
    if main:
        write_new_run(config, manifest)
    log("split (seed %d): %s" % (config.seed, ", ".join(f"{k} {len(v)}" for k, v in data.splits.items())))
    model = build_model(data.class_names, weights)
    if keeps_head(weights, data.class_names):
        log(f"the checkpoint's head is kept: it was trained on the same classes ({', '.join(data.class_names)})")
    if weights.init.kind == "random":
        log("warning: training from random initialisation (--weights none): expect lower accuracy than from ImageNet weights")
    return _train_and_report(config, data, model, weights.init.to_dict(), device, None, log, dist)


def resume_training(config: TrainConfig, log: Log = print) -> TrainResult | None:
    """Continue the run in `config.out` after its last completed epoch (its last.pt).

    `config` is the run's own (`run_folder.load_run_config`). On the same device the final
    weights equal those of an uninterrupted run. A run that finished its epochs only redoes
    the final evaluation. A run trained under torchrun resumes under torchrun with the same
    number of processes (its global batch and shards depend on it).
    """
    dist, config, log = _distributed(config, log)
    world_size = dist.world_size if dist else 1
    if world_size != config.world_size:
        how = f"torchrun with {config.world_size} processes in all (e.g. torchrun --nproc_per_node {config.world_size} gclf-train --resume {config.out})" if config.world_size > 1 else f"a plain gclf-train --resume {config.out}"
        raise UsageError(f"--resume: {config.out} was trained by {config.world_size} process(es) and this is {world_size}; continue it with {how}")
    return _on_this_rank(config, dist, lambda device: _resumed_run(config, device, dist, log))


def _resumed_run(config: TrainConfig, device: torch.device, dist: Distributed | None, log: Log) -> TrainResult | None:
    if dist is None or dist.is_main:
        check_writable_folder(config.out)
        for stale in remove_stale_temp_files(config.out):
            log(f"removed {stale.name}, a partial file of the interrupted run")
    data = _rank0_first(dist, lambda: read_run_data(config.out, config, log))
    model, init, state = resume_point(config, data, log)
    return _train_and_report(config, data, model, init, device, state, log, dist)


def _train_and_report(config: TrainConfig, data: RunData, model: torch.nn.Module, init: dict, device: torch.device, state: dict | None, log: Log, dist: Distributed | None = None) -> TrainResult | None:
    main = dist is None or dist.is_main
    where = f"; {dist.world_size} processes (rank 0 of them prints), global batch {config.global_batch_size}" if dist else ""
    if config.precision != "fp32" or config.channels_last:
        where += f"; precision {config.precision}" + (", channels-last" if config.channels_last else "")
    log(f"model: GoogLeNet, {len(data.class_names)}-class head; init: {init['description']}; device: {device}{where}")
    trainer = make_trainer(config, data, model, device, log, dist)
    progress = Progress()
    if state is not None:
        progress = restore_state(trainer, state)
        # history.csv is written after last.pt: a kill between them leaves it one epoch behind.
        if main:
            write_history(config.out, progress.history)
    started = time.monotonic() - (progress.history[-1]["elapsed_s"] if progress.history else 0.0)
    ckpt_common = dict(class_names=data.class_names, spec=data.spec.to_dict(), init=init, transform_input=bool(init["transform_input"]))
    # The detector that cropped the images (--face-crop): gclf-export writes it into the model.
    face_crop = {FACE_CROP_KEY: data.face_crop.to_dict()} if data.face_crop is not None else {}

    def save(progress: Progress, val: EvalResult | None, keep_this: bool) -> None:
        if not main:
            return  # rank 0 alone writes; its network is every rank's (DDP keeps them equal)
        extra = {"epoch": progress.epoch, "val_loss": val.loss if val else None, "val_accuracy": val.accuracy if val else None, "train_config": config.to_dict(), **face_crop}
        checkpoint = make_checkpoint(trainer.model, **ckpt_common, extra=extra)
        save_epoch(config.out, checkpoint, capture_state(trainer, progress), progress.history, keep_this=keep_this)

    train_epochs(config, trainer, progress, started, log, save)
    if not main:
        return None  # rank 0 tests best.pt on the whole test split and writes the reports
    return _evaluate_and_report(config, data, progress, init, device, started, log)


def _evaluate_and_report(config: TrainConfig, data: RunData, progress: Progress, init: dict, device: torch.device, started: float, log: Log) -> TrainResult:
    """Test the best checkpoint and write metrics.json and the reports."""
    best_model = model_from_checkpoint(load_gclf_checkpoint(config.out / "best.pt")).to(device)
    test: EvalResult | None = None
    report = None
    if data.splits["test"]:
        # Unshuffled: rows follow splits["test"]. In fp32 whatever --precision trained: the
        # test report describes the fp32 network that best.pt holds and gclf-export exports.
        test = evaluate(best_model, eval_loader(config, data, "test", pin_memory=device.type == "cuda"), device)
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
        "precision": config.precision,  # the training passes'; the test split is evaluated in fp32
        "world_size": config.world_size,  # processes that trained together (torchrun)
        "global_batch_size": config.global_batch_size,  # --mini-batch-size x world_size
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


def evaluation_report(result: EvalResult, class_names: list[str]) -> dict:
    report = classification_report(result.labels, result.probabilities.argmax(1), class_names)
    report["loss"] = result.loss
    report["mean_confidence"] = float(result.probabilities.max(1).mean()) if len(result.labels) else math.nan
    return report
