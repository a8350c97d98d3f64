"""Continuing an interrupted run bit for bit.

After every epoch, last.pt stores the training state beside the weights: optimizer and
scheduler state, the loader's shuffling generator and torch's random-number states, the
progress (epoch, best epoch, history). All of it is tensors and plain data, loadable with
`weights_only=True`. Restored on the same device, the resumed run computes exactly what the
uninterrupted one would have.
"""

from __future__ import annotations


import torch

from gclf.runtime.errors import BadModelError, UsageError
from gclf.runtime.log import Log
from gclf.train.checkpoint import load_gclf_checkpoint, resume_state
from gclf.train.config import TrainConfig
from gclf.train.loop import Progress, Trainer
from gclf.train.model import build_model, model_from_checkpoint, resolve_weights
from gclf.train.run_folder import RunData

GRAD_SCALER_KEY = "grad_scaler"


def capture_state(trainer: Trainer, progress: Progress) -> dict:
    """Everything an epoch changed, as last.pt's "resume" entry."""
    state = {
        "epoch": progress.epoch,
        "best_val_loss": progress.best_val_loss,
        "best_epoch": progress.best_epoch,
        "stale_validations": progress.stale_validations,
        "history": [dict(row) for row in progress.history],
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": None if trainer.scheduler is None else trainer.scheduler.state_dict(),
        # Saved after validation, so the next epoch starts from exactly this state
        # (dropout draws from it; each loader iteration also draws a seed).
        "torch_rng_state": torch.get_rng_state(),
        "loader_generator_state": trainer.generator.get_state(),
        "cuda_rng_states": torch.cuda.get_rng_state_all() if trainer.device.type == "cuda" else [],
    }
    if trainer.precision.scaler is not None:
        # --precision fp16: the loss scale and its growth tracker (plain numbers). Other runs'
        # last.pt has no such entry, exactly as before the option.
        state[GRAD_SCALER_KEY] = trainer.precision.scaler.state_dict()
    return state


def restore_state(trainer: Trainer, state: dict) -> Progress:
    """Put `capture_state`'s state back into a freshly made trainer; returns the progress."""
    if (trainer.scheduler is None) != (state["scheduler"] is None):
        raise UsageError("--resume: last.pt's learn-rate schedule does not match config.json")
    scaler = trainer.precision.scaler
    if (scaler is None) != (state.get(GRAD_SCALER_KEY) is None):
        raise UsageError(f"--resume: last.pt's precision does not match config.json's --precision {trainer.precision.name}")
    try:
        if scaler is not None:
            scaler.load_state_dict(state[GRAD_SCALER_KEY])
        trainer.optimizer.load_state_dict(state["optimizer"])
        if trainer.scheduler is not None:
            trainer.scheduler.load_state_dict(state["scheduler"])
        trainer.generator.set_state(state["loader_generator_state"])
        torch.set_rng_state(state["torch_rng_state"])
        if trainer.device.type == "cuda" and len(state["cuda_rng_states"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda_rng_states"])
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise UsageError(f"--resume: last.pt's training state does not fit this run ({str(exc)[:200]})") from None
    return Progress(state["epoch"], state["best_val_loss"], state["best_epoch"], [dict(row) for row in state["history"]], int(state.get("stale_validations", 0)))


def resume_point(config: TrainConfig, data: RunData, log: Log) -> tuple[torch.nn.Module, dict, dict | None]:
    """(model, init description, training state) to continue `config.out` from: its last.pt,
    or, for a run interrupted in its first epoch, the new run's own start (state None)."""
    run_dir = config.out
    last = run_dir / "last.pt"
    if not last.exists():
        # Interrupted in its first epoch: start again exactly as the new run did (same seed
        # before the same initialisation).
        torch.manual_seed(config.seed)
        weights = resolve_weights(config.weights)
        log(f"resuming {run_dir}: no epoch was completed, starting at epoch 1")
        return build_model(data.class_names, weights), weights.init.to_dict(), None
    checkpoint = load_gclf_checkpoint(last)
    state = resume_state(checkpoint, last)
    if checkpoint["class_names"] != data.class_names:
        raise UsageError(f"--resume: {last} has classes {checkpoint['class_names']}, manifest.json {data.class_names}")
    try:
        model, init = model_from_checkpoint(checkpoint), dict(checkpoint["init"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise BadModelError(f"--resume: {last} does not hold a usable model ({type(exc).__name__}: {str(exc)[:200]})") from None
    log(f"resuming {run_dir} after epoch {state['epoch']} of {config.max_epochs}")
    return model, init, state
