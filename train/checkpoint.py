"""gclf checkpoints: a state dict plus everything needed to rebuild and describe the model.

Only tensors and plain data are stored, so they load with `torch.load(weights_only=True)`:
nothing in a checkpoint is ever executed.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from gclf.runtime.errors import UsageError
from gclf.runtime.files import write_atomic_with

CHECKPOINT_FORMAT = "gclf-checkpoint"
CHECKPOINT_VERSION = 1


def is_gclf_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT


def load_checkpoint_file(path: Path) -> Any:
    """`torch.load` with `weights_only=True`; a bad file is a `UsageError` naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a loadable weights file ({str(exc).splitlines()[0][:200]})") from None


def make_checkpoint(model: torch.nn.Module, *, class_names: list[str], spec: dict, init: dict, transform_input: bool, extra: dict) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "arch": {"name": "googlenet", "num_classes": len(class_names), "transform_input": transform_input},
        "class_names": list(class_names),
        "spec": spec,
        "init": init,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }


def save_checkpoint(path: Path, checkpoint: dict) -> None:
    write_atomic_with(path, lambda tmp: torch.save(checkpoint, tmp))


def load_gclf_checkpoint(path: Path) -> dict:
    obj = load_checkpoint_file(path)
    if not is_gclf_checkpoint(obj):
        raise UsageError(f"{path} is not a gclf checkpoint (expected one written by gclf-train)")
    if obj.get("version") != CHECKPOINT_VERSION:
        raise UsageError(f"{path}: checkpoint version {obj.get('version')!r} is not supported")
    return obj


def model_from_checkpoint(ckpt: dict) -> torch.nn.Module:
    from gclf.train.model import new_googlenet

    model = new_googlenet(ckpt["arch"]["num_classes"], transform_input=ckpt["arch"]["transform_input"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()
