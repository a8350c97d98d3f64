"""torchvision's GoogLeNet with its 1000-class head replaced, and where its weights come from.

`--weights` accepts:
- "imagenet": torchvision's ImageNet weights, via torchvision's own download-and-cache
  (`$TORCH_HOME/hub/checkpoints/googlenet-1378be20.pth`; a file already there is used offline).
- a path: a torchvision-format GoogLeNet state dict, or a gclf checkpoint (any class count).
- "none": random initialisation.

Note on `transform_input`: torchvision's ImageNet GoogLeNet weights were trained on inputs
normalised as (x - 0.5) / 0.5, so torchvision rebuilds that inside the model from ImageNet
mean/std normalised input. We keep that flag as part of the model (it is traced into the
ONNX graph, so PyTorch and ONNX compute the same thing) and record it in checkpoints.
"""

from __future__ import annotations

import urllib.error
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.models import GoogLeNet, GoogLeNet_Weights

from gclf.runtime.errors import UsageError, WeightsUnavailableError
from gclf.train.checkpoint import is_gclf_checkpoint, load_checkpoint_file

IMAGENET_WEIGHTS = GoogLeNet_Weights.IMAGENET1K_V1


@dataclass(frozen=True)
class ModelInit:
    """How the backbone was initialised, for reports and metadata."""

    kind: str  # "imagenet", "torchvision-state-dict", "gclf-checkpoint", "random"
    source: str  # file or URL it came from ("" for random)
    transform_input: bool

    def describe(self) -> str:
        return {
            "imagenet": "ImageNet (torchvision GoogLeNet IMAGENET1K_V1)",
            "torchvision-state-dict": f"GoogLeNet state dict {self.source}",
            "gclf-checkpoint": f"gclf checkpoint {self.source}",
            "random": "random initialisation (from scratch)",
        }[self.kind]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "source": self.source, "transform_input": self.transform_input, "description": self.describe()}


def new_googlenet(num_classes: int, *, transform_input: bool, init_weights: bool = False) -> GoogLeNet:
    """GoogLeNet without the auxiliary classifiers (used only in ImageNet training)."""
    return GoogLeNet(num_classes=num_classes, aux_logits=False, transform_input=transform_input, init_weights=init_weights)


def _backbone_only(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.startswith(("fc.", "aux1.", "aux2."))}


def _load_backbone(model: GoogLeNet, state: dict[str, torch.Tensor], source: str) -> None:
    missing, unexpected = model.load_state_dict(_backbone_only(state), strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise UsageError(
            f"{source} is not a GoogLeNet state dict: {len(missing)} missing and {len(unexpected)} "
            f"unexpected keys (e.g. {(missing + unexpected)[:3]})"
        )


def imagenet_state_dict() -> dict[str, torch.Tensor]:
    """torchvision's ImageNet GoogLeNet weights from its cache, downloading if needed."""
    try:
        return IMAGENET_WEIGHTS.get_state_dict(progress=True, check_hash=True)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        raise WeightsUnavailableError(
            f"ImageNet weights for GoogLeNet could not be loaded from torchvision's cache or downloaded "
            f"({type(exc).__name__}: {str(exc)[:120]}); pass --weights PATH with a GoogLeNet state dict "
            "or gclf checkpoint, or --weights none to train from random initialisation"
        ) from None


@dataclass(frozen=True)
class BackboneWeights:
    """Resolved `--weights`: the state dict to start from (None: random) and how it was made."""

    state: dict[str, torch.Tensor] | None
    init: ModelInit
    class_names: tuple[str, ...] | None = None  # a gclf checkpoint's classes (its head is reusable for the same ones)


def resolve_weights(weights: str) -> BackboneWeights:
    """Load what `--weights` names. Called before the data is scanned, so a missing file or
    unreachable download fails in seconds, not after minutes of decoding."""
    if weights == "none":
        return BackboneWeights(None, ModelInit("random", "", False))
    if weights == "imagenet":
        return BackboneWeights(imagenet_state_dict(), ModelInit("imagenet", IMAGENET_WEIGHTS.url, True))
    path = Path(weights)
    if not path.is_file():
        raise UsageError(f"--weights: {weights!r} is not 'imagenet', 'none' or an existing file")
    loaded = load_checkpoint_file(path, error=UsageError)
    class_names = None
    if is_gclf_checkpoint(loaded):
        transform_input = bool(loaded["arch"]["transform_input"])
        state, kind = loaded["state_dict"], "gclf-checkpoint"
        class_names = tuple(str(c) for c in loaded.get("class_names", ())) or None
    else:
        # A plain torchvision-format state dict: assumed trained like torchvision's weights.
        transform_input, state, kind = True, loaded, "torchvision-state-dict"
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"{path} holds no state dict of tensors")
    # Check the keys now, against a throwaway model, rather than after the scan.
    _load_backbone(new_googlenet(2, transform_input=transform_input), state, str(path))
    return BackboneWeights(state, ModelInit(kind, str(path), transform_input), class_names)


def build_model(class_names: list[str], weights: BackboneWeights) -> GoogLeNet:
    """A GoogLeNet for `class_names` on the given backbone weights.

    The head is new, except from a gclf checkpoint trained on the very same classes (in the
    same order): then its head is kept too, so training continues where it stopped (e.g. a
    model trained at 112 px fine-tuned at 224 px) instead of relearning the head from noise.
    """
    model = new_googlenet(len(class_names), transform_input=weights.init.transform_input, init_weights=True)
    if weights.state is not None:
        _load_backbone(model, weights.state, weights.init.source)
        if keeps_head(weights, class_names):
            model.fc.load_state_dict({k.removeprefix("fc."): v for k, v in weights.state.items() if k.startswith("fc.")})
    return model


def keeps_head(weights: BackboneWeights, class_names: list[str]) -> bool:
    return weights.class_names is not None and list(weights.class_names) == list(class_names)


def model_from_checkpoint(ckpt: dict) -> torch.nn.Module:
    """The network a gclf checkpoint (load_gclf_checkpoint) holds, in eval mode."""
    model = new_googlenet(ckpt["arch"]["num_classes"], transform_input=ckpt["arch"]["transform_input"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()
