"""torch Datasets over decoded images, built on the runtime's preprocessing contract."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from gclf.runtime.preprocess import PreprocessSpec, preprocess, to_model_input
from gclf.train.dataset import ImageStore, Sample

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]


class ImageDataset(Dataset):
    """Samples -> (model input tensor, label).

    Without augmentation this is exactly the runtime's `preprocess(decode_image(path))`
    (the store keeps the resized copy, and `to_model_input` does the rest). With
    augmentation, it is applied to the decoded RGB image before the same `preprocess`.
    """

    def __init__(self, samples: Sequence[Sample], store: ImageStore, spec: PreprocessSpec, augment: Augment | None = None, seed: int = 0) -> None:
        self.samples = list(samples)
        self.store = store
        self.spec = spec
        self.augment = augment
        self.seed = seed
        self.epoch = 0  # set by the trainer so augmentation differs per epoch yet is reproducible

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        sample = self.samples[i]
        if self.augment is None:
            x = to_model_input(self.store.resized(sample.path), self.spec)[0]
        else:
            rng = np.random.default_rng((self.seed, self.epoch, i))
            x = preprocess(self.augment(self.store.decoded(sample.path), rng), self.spec)
        return torch.from_numpy(x), sample.label
