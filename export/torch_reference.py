"""PyTorch eager inference on a gclf checkpoint, for the side-by-side benchmark (gclf-bench)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from gclf.train.checkpoint import load_gclf_checkpoint, model_from_checkpoint


def eager_runner(checkpoint: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    torch.set_num_threads(threads)
    model = model_from_checkpoint(load_gclf_checkpoint(checkpoint)).eval()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(batch)).numpy()

    return run
