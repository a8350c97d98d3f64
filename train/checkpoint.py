"""gclf checkpoints: a state dict plus everything needed to rebuild and describe the model.

Only tensors and plain data are stored, so they load with `torch.load(weights_only=True)`:
nothing in a checkpoint is ever executed. A run's last.pt also holds, under "resume", the
training state `gclf-train --resume` continues from (optimizer, scheduler, RNG states as
tensors, epoch, best epoch, history).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from gclf.runtime.errors import BadModelError, GclfError, OutputWriteError, UsageError
from gclf.runtime.atomic import write_atomic_with

CHECKPOINT_FORMAT = "gclf-checkpoint"
CHECKPOINT_VERSION = 1
RESUME_KEY = "resume"
# The detector that cropped the training images (gclf-train --face-crop), a FaceCropSpec as a
# dict; absent for a run on the photos as they are (and in every checkpoint from before it).
FACE_CROP_KEY = "face_crop"
# The training state in last.pt, with the type each entry must have.
RESUME_FIELDS: dict[str, type | tuple[type, ...]] = {
    "epoch": int,
    "best_val_loss": float,
    "best_epoch": int,
    "history": list,
    "optimizer": dict,
    "scheduler": (dict, type(None)),
    "torch_rng_state": torch.Tensor,
    "loader_generator_state": torch.Tensor,
    "cuda_rng_states": list,
}


def is_gclf_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT


def load_checkpoint_file(path: Path, *, error: type[GclfError] = BadModelError) -> Any:
    """`torch.load` with `weights_only=True`; a bad file raises `error` naming it: a damaged
    model (BadModelError) by default, a bad option value where the user named the file
    (--weights PATH passes UsageError)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise error(f"{path}: not a loadable weights file ({str(exc).splitlines()[0][:200]})") from None


def make_checkpoint(model: torch.nn.Module, *, class_names: list[str], spec: dict, init: dict, transform_input: bool, extra: dict) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "arch": {"name": "googlenet", "num_classes": len(class_names), "transform_input": transform_input},
        "class_names": list(class_names),
        "spec": spec,
        "init": init,
        # contiguous: a --channels-last run's weights are stored in the default layout (a
        # no-op, no copy, for every other run). Autocast never changes them: always fp32.
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        **extra,
    }


def save_checkpoint(path: Path, checkpoint: dict) -> None:
    try:
        write_atomic_with(path, lambda tmp: torch.save(checkpoint, tmp))
    except RuntimeError as exc:
        # torch.save reports a failed write (a full disk, say) as RuntimeError, not OSError;
        # atomic_path has removed the partial file and left the previous one in place.
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise OutputWriteError(f"cannot write {path}: {reason}; any previous {path.name} is unchanged") from None


def load_gclf_checkpoint(path: Path) -> dict:
    """A run's best.pt or last.pt. One that is damaged or not gclf's is a bad model (exit 6),
    not bad usage."""
    obj = load_checkpoint_file(path)
    if not is_gclf_checkpoint(obj):
        raise BadModelError(f"{path} is not a gclf checkpoint (expected one written by gclf-train)")
    if obj.get("version") != CHECKPOINT_VERSION:
        raise BadModelError(f"{path}: checkpoint version {obj.get('version')!r} is not supported")
    return obj


def resume_state(ckpt: dict, path: Path) -> dict:
    """The training state of a run's last.pt, checked entry by entry."""
    state = ckpt.get(RESUME_KEY)
    if not isinstance(state, dict):
        raise UsageError(f"{path} holds no training state to resume from (not a run's last.pt from this gclf version)")
    wrong = [key for key, kind in RESUME_FIELDS.items() if not isinstance(state.get(key), kind)]
    if wrong:
        raise BadModelError(f"{path}: its training state is incomplete or damaged ({', '.join(wrong)})")
    return state
