"""--precision and --channels-last: how the training and evaluation passes compute.

fp32 is the study's arithmetic and exactly what gclf did before these options (no autocast
context at all, so it stays bit-identical). bf16 and fp16 run the forward pass and the loss
under `torch.autocast`; the weights, the optimizer state and so every checkpoint stay fp32, so
gclf-export and the runtime see no difference. fp16 needs a GradScaler against gradient
underflow and is only offered on CUDA (CPU autocast is bf16's ground). torch is imported
inside the functions: the commands read PRECISIONS at start-up.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ContextManager

from gclf.runtime.errors import UsageError

if TYPE_CHECKING:
    import torch

# The option's choices; fp32 (the default) is the study's.
PRECISIONS = ("fp32", "bf16", "fp16")


def check_precision(precision: str, device: "torch.device") -> None:
    """Refuse what the device cannot do, before a run folder is written."""
    if precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise UsageError(f"--precision fp16 needs a CUDA GPU and this run is on {device.type}; use --precision bf16 (or fp32) there")


@dataclass(frozen=True)
class Precision:
    """The autocast context of one run's passes, and fp16's gradient scaler (None otherwise)."""

    name: str
    device_type: str
    channels_last: bool = False
    scaler: Any = None  # torch.amp.GradScaler for fp16

    @classmethod
    def of(cls, precision: str, device: "torch.device", *, channels_last: bool = False) -> "Precision":
        check_precision(precision, device)
        scaler = None
        if precision == "fp16":
            import torch

            scaler = torch.amp.GradScaler(device.type)
        return cls(precision, device.type, channels_last, scaler)

    def autocast(self) -> ContextManager:
        if self.name == "fp32":
            return contextlib.nullcontext()  # not even a disabled autocast: fp32 stays as it was
        import torch

        dtype = torch.bfloat16 if self.name == "bf16" else torch.float16
        return torch.autocast(self.device_type, dtype=dtype)

    def inputs(self, x: "torch.Tensor", device: "torch.device", *, non_blocking: bool = False) -> "torch.Tensor":
        """A batch of images on the device, in the memory layout the model is in."""
        if self.channels_last and x.dim() == 4:
            import torch

            return x.to(device, non_blocking=non_blocking, memory_format=torch.channels_last)
        return x.to(device, non_blocking=non_blocking)


FP32 = Precision("fp32", "cpu")  # what callers that do not choose get: the old arithmetic
